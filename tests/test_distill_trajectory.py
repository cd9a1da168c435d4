"""Trajectory distillation: the coarse DPM++ 2M steps, the loss, the resumable stage and its record."""
import json

import numpy as np
import pytest
import torch

from cxrdesk.core.training import distill as D
from cxrdesk.core.training import trajectory as T

from .test_distill import _fake_run

ZERO_SNR = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "prediction_type": "v_prediction", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}


def _student(tiny_model_dir):
    from diffusers import UNet2DConditionModel

    student = D.build_student(UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet")).eval()
    with torch.no_grad():  # a student whose guidance input matters
        student.time_embedding.cond_proj.weight.normal_(0, 0.02)
    return student


def test_the_coarse_plan_sits_on_the_fine_grid_and_refuses_other_schedules():
    plan = T.coarse_plan(ZERO_SNR, 4, 20)
    assert plan["timesteps"].tolist() == [999, 749, 499, 249] and plan["every"] == 5
    # first and last step first order, the middle ones second order; the last lands on the clean latent
    assert plan["second"][0] == 0 and plan["second"][3] == 0 and (plan["second"][1:3] > 0).all()
    assert plan["ratio"][3] == 0 and torch.isclose(plan["gain"][3], torch.tensor(-1.0))
    with pytest.raises(ValueError, match="multiple"):
        T.coarse_plan(ZERO_SNR, 4, 18)
    with pytest.raises(ValueError, match="DPM\\+\\+ 2M"):
        T.coarse_plan({**ZERO_SNR, "use_karras_sigmas": True}, 4, 20)


@pytest.mark.parametrize("prediction", ["v_prediction", "epsilon"])
def test_a_student_on_its_own_coarse_trajectory_has_no_loss_and_on_a_finer_one_it_has(tiny_model_dir, prediction):
    """The loss is the coarse sampler's own step: trajectories drawn by the student in the coarse steps
    themselves give (numerically) zero; the fine trajectory's landing points differ."""
    config = {**ZERO_SNR, "prediction_type": prediction, "rescale_betas_zero_snr": prediction == "v_prediction"}
    student = _student(tiny_model_dir)
    g = torch.Generator().manual_seed(0)
    noise, cond = torch.randn(3, 4, 32, 32, generator=g), torch.randn(3, 8, 384, generator=g)
    w = D.guidance_embedding(torch.tensor([2.0, 5.0, 7.0]))
    own = T.coarse_plan(config, 4, 4)
    states = T.build_trajectories(student, config, own, cond, w, noise)
    assert states.shape == (3, 5, 4, 32, 32) and torch.equal(states[:, 0], noise)
    with torch.no_grad():
        zero = T.trajectory_loss(student, own, states, cond, w, prediction)
        fine = T.coarse_plan(config, 4, 20)
        states20 = T.build_trajectories(student, config, fine, cond, w, noise)
        loss = T.trajectory_loss(student, fine, states20, cond, w, prediction)
    scale = float(states[:, -1].pow(2).mean())
    assert float(zero) < 1e-8 * max(1.0, scale) and float(loss) > 1e3 * float(zero) + 1e-9


def _zero_snr_model(dest):
    import torch

    from cxrdesk.core.generation.models import build_unet, build_vae, scheduler_config
    from cxrdesk.core.modelfolder import write_model_folder

    torch.manual_seed(1)
    return write_model_folder(dest, build_vae("tiny", 256), build_unet("tiny", latent_size=32), name="tiny-zero-snr",
                              random_weights=True, scheduler=scheduler_config("v_prediction", zero_snr=True))


def test_trajectory_distillation_draws_resumes_trains_and_exports_a_four_step_student(tiny_model_dir, tmp_path):
    from cxrdesk.core.generation.pipeline import Pipeline

    teacher = _zero_snr_model(tmp_path / "teacher")
    run = _fake_run(tmp_path / "run", teacher)
    first = D.train_distill(run, teacher, D.DistillConfig(steps=1, batch=2, method="guidance", warmup=1),
                            threads=1, progress=False, export_to=tmp_path / "guided")
    record = json.loads((first / "cxrdesk.json").read_text())
    record["student"]["guidance"] = 6.5  # a scale chosen for the starting student carries over
    (first / "cxrdesk.json").write_text(json.dumps(record))

    run2 = _fake_run(tmp_path / "run2", teacher)
    cfg = D.DistillConfig(steps=2, batch=2, method="trajectory", warmup=1, lr=1e-3, init_from=str(first),
                          trajectories=5, fine_steps=8)
    out = D.train_distill(run2, teacher, cfg, threads=1, progress=False)
    drawn = torch.load(run2 / "distill" / "trajectories-0-of-1.pt", weights_only=True)
    assert drawn["states"].shape == (5, 5, 4, 32, 32) and drawn["tid"].shape == (5,)
    assert ((drawn["scale"] >= 2) & (drawn["scale"] <= 8)).all()
    student = json.loads((out / "cxrdesk.json").read_text())["student"]
    assert student["steps"] == 4 and student["sampler"] == "model" and student["guidance"] == 6.5
    # its count of training steps includes the starting student's one
    assert student["method"] == "trajectory distillation" and student["distill_steps"] == 1 + 2
    # resumed: the checkpoint's step goes on, the trajectories are not drawn again
    stamp = (run2 / "distill" / "trajectories-0-of-1.pt").stat().st_mtime_ns
    D.train_distill(run2, teacher, D.DistillConfig(**{**cfg.__dict__, "steps": 3}), threads=1, progress=False)
    assert (run2 / "distill" / "trajectories-0-of-1.pt").stat().st_mtime_ns == stamp
    assert json.loads((out / "cxrdesk.json").read_text())["student"]["distill_steps"] == 1 + 3
    pipe = Pipeline.load(out)
    assert pipe.model.student["steps"] == 4 and pipe.model.default_guidance(fast=True) == 6.5
    r = pipe.generate("normal chest radiograph", seed=2, fast=True, steps=4, guidance_scale=6.5)
    assert r.params["fast"] and r.params["sampler"] == "dpm++" and r.params["guided_steps"] == 0
    assert np.isfinite(r.image).all()
    # other settings against the same drawn trajectories are refused
    with pytest.raises(ValueError, match="other settings"):
        D.train_distill(run2, teacher, D.DistillConfig(**{**cfg.__dict__, "steps": 4, "fine_steps": 12}),
                        threads=1, progress=False)
    # exported again into a folder that already holds this run's student: the starting count once
    D.export_from_checkpoint(run2, teacher, tmp_path / "guided")
    again = json.loads((tmp_path / "guided" / "cxrdesk.json").read_text())["student"]
    D.export_from_checkpoint(run2, teacher, tmp_path / "guided")
    assert json.loads((tmp_path / "guided" / "cxrdesk.json").read_text())["student"] == again
    assert again["distill_steps"] == 1 + 3 and again["guidance"] == 6.5
    # a trajectory student is no starting point for another (it learnt only its 4 steps)
    with pytest.raises(ValueError, match="already trajectory-distilled"):
        D.train_distill(_fake_run(tmp_path / "run3", teacher), teacher,
                        D.DistillConfig(**{**cfg.__dict__, "init_from": str(tmp_path / "guided")}), threads=1,
                        progress=False)


def test_trajectory_distillation_needs_a_guided_student_and_the_models_dpm_sampler(tiny_model_dir, tmp_path):
    run = _fake_run(tmp_path / "run", tiny_model_dir)
    with pytest.raises(ValueError, match="--init-from"):
        D.train_distill(run, tiny_model_dir, D.DistillConfig(steps=1, method="trajectory"), threads=1, progress=False)
    guided = D.train_distill(run, tiny_model_dir, D.DistillConfig(steps=1, batch=2, method="guidance", warmup=1),
                             threads=1, progress=False, export_to=tmp_path / "guided")
    run2 = _fake_run(tmp_path / "run2", tiny_model_dir)
    with pytest.raises(ValueError, match="samples with 'dpm\\+\\+-karras'"):
        D.train_distill(run2, tiny_model_dir, D.DistillConfig(steps=1, method="trajectory", init_from=str(guided)),
                        threads=1, progress=False)


def test_train_distill_command_takes_the_trajectory_method(tiny_model_dir, tmp_path, capsys):
    from cxrdesk.cli import main

    run = _fake_run(tmp_path / "run", tiny_model_dir)
    assert main(["train", "distill", "--run-dir", str(run), "--teacher", str(tiny_model_dir), "--method",
                 "trajectory", "--trajectories", "0"]) == 2
    assert "--trajectories must be 1 or more" in capsys.readouterr().err
    assert main(["train", "distill", "--run-dir", str(run), "--teacher", str(tiny_model_dir), "--method",
                 "trajectory", "--steps", "1"]) == 2
    assert "--init-from" in capsys.readouterr().err
