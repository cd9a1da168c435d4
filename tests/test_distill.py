"""Latent consistency distillation: the student, the loss, the resumable stage and its model folder."""
import csv
import json

import numpy as np
import pytest
import torch

from cxrdesk.core.training import distill as D


def _fake_run(run, teacher, n=6, scaling=None):
    """A run folder as 'train encode' leaves it, with random latents of the teacher's shape."""
    vae_cfg = json.loads((teacher / "vae" / "config.json").read_text())
    unet_cfg = json.loads((teacher / "unet" / "config.json").read_text())
    c, s = unet_cfg["in_channels"], unet_cfg["sample_size"]
    cache = run / "cache"
    cache.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(cache / "latents.npy", rng.standard_normal((n, c, s, s)).astype(np.float16))
    np.save(cache / "text_emb.npy", rng.standard_normal((3, 8, unet_cfg["cross_attention_dim"])).astype(np.float16))
    np.save(cache / "caption_ids.npy", rng.integers(1, 3, (n, 2)).astype(np.int32))
    (cache / "records.json").write_text(json.dumps([{"split": "val" if i == 0 else "train", "labels": []}
                                                    for i in range(n)]))
    sf = vae_cfg.get("scaling_factor", 1.0) if scaling is None else scaling
    (cache / "done.json").write_text(json.dumps({"scaling_factor": sf, "latent_shape": [c, s, s]}))
    return run


def test_the_student_starts_as_the_teacher_at_every_guidance_scale(tiny_model_dir):
    from diffusers import UNet2DConditionModel

    teacher = UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet")
    student = D.build_student(teacher)
    assert student.config.time_cond_proj_dim == D.W_EMBED_DIM
    x = torch.randn(2, 4, 32, 32)
    ctx = torch.randn(2, 8, 384)
    t = torch.tensor([999, 259])
    with torch.no_grad():
        want = teacher(x, t, encoder_hidden_states=ctx).sample
        for scale in (1.0, 4.0, 8.0):
            got = student(x, t, encoder_hidden_states=ctx,
                          timestep_cond=D.guidance_embedding(torch.full((2,), scale))).sample
            assert torch.allclose(got, want, atol=1e-5)
        # once the guidance projection has learnt something, the scale changes the output
        student.time_embedding.cond_proj.weight.normal_()
        a = student(x, t, encoder_hidden_states=ctx, timestep_cond=D.guidance_embedding(torch.full((2,), 2.0))).sample
        b = student(x, t, encoder_hidden_states=ctx, timestep_cond=D.guidance_embedding(torch.full((2,), 7.0))).sample
    assert not torch.allclose(a, b, atol=1e-3)


def test_guidance_embedding_matches_diffusers_lcm_pipeline():
    from diffusers import LatentConsistencyModelPipeline

    w = torch.tensor([3.0, 6.5])
    want = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w - 1, embedding_dim=D.W_EMBED_DIM)
    assert torch.allclose(D.guidance_embedding(w), want, atol=1e-5)


def test_boundary_condition_and_ddim_grid():
    c_skip, c_out = D.boundary_scalings(torch.tensor([0, 19, 999]))
    assert c_skip[0].item() == 1.0 and c_out[0].item() == 0.0  # f(x, 0) = x
    assert c_skip[2].item() < 1e-6 and c_out[2].item() == pytest.approx(1.0, abs=1e-6)
    alphas = torch.linspace(0.999, 0.0, 1000)
    grid = D.DDIMGrid(alphas)
    assert grid.timesteps[0].item() == 19 and grid.timesteps[-1].item() == 999 and grid.skip == 20
    x0, noise = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    # one step from grid point k lands exactly where point k-1 noises x0 with the same noise
    a = alphas[19]
    assert torch.allclose(grid.step(x0, noise, torch.tensor([1])), a.sqrt() * x0 + (1 - a).sqrt() * noise)
    # the v and epsilon forms recover the same clean latent
    ab = torch.tensor([0.3])
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    v = ab.sqrt() * noise - (1 - ab).sqrt() * x0
    for out, kind in ((v, "v_prediction"), (noise, "epsilon")):
        got_x0, got_noise = D.x0_and_noise(out, xt, ab, kind)
        assert torch.allclose(got_x0, x0, atol=1e-5) and torch.allclose(got_noise, noise, atol=1e-5)


def test_distill_trains_resumes_and_exports_a_student_beside_the_teacher(tiny_model_dir, tmp_path):
    from cxrdesk.core.generation.pipeline import Pipeline

    run = _fake_run(tmp_path / "run", tiny_model_dir)
    cfg = D.DistillConfig(steps=2, batch=2, ckpt_every=1, export_every=2, warmup=1)
    out = D.train_distill(run, tiny_model_dir, cfg, threads=1, progress=False)
    assert (out / D.STUDENT_DIR / "config.json").is_file()
    cfg.steps = 3
    D.train_distill(run, tiny_model_dir, cfg, threads=1, progress=False)
    rows = list(csv.DictReader(open(run / "distill" / "loss.csv")))
    assert [r["step"] for r in rows] == ["2", "3"]  # resumed from step 2, not from zero
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    record = json.loads((out / "cxrdesk.json").read_text())["student"]
    assert record["distill_steps"] == 3 and record["steps"] == D.FAST_STEPS
    assert record["teacher_hash"] == Pipeline.load(tiny_model_dir).info["hash"]
    assert Pipeline.load(out).info["hash"] == Pipeline.load(tiny_model_dir).info["hash"]  # teacher unchanged
    assert not (tiny_model_dir / D.STUDENT_DIR).exists()


def test_distill_refuses_latents_of_another_vae_and_a_student_as_teacher(tiny_model_dir, tmp_path):
    run = _fake_run(tmp_path / "run", tiny_model_dir, scaling=0.1234)
    with pytest.raises(ValueError, match="encoded by another VAE"):
        D.train_distill(run, tiny_model_dir, D.DistillConfig(steps=1, batch=2), threads=1, progress=False)
    run2 = _fake_run(tmp_path / "run2", tiny_model_dir)
    out = D.train_distill(run2, tiny_model_dir, D.DistillConfig(steps=1, batch=2, export_every=1), threads=1,
                          progress=False)
    student_as_model = tmp_path / "student-model"
    import shutil

    shutil.copytree(out, student_as_model)
    shutil.rmtree(student_as_model / "unet")
    shutil.copytree(out / D.STUDENT_DIR, student_as_model / "unet")
    with pytest.raises(ValueError, match="already a distilled student"):
        D.train_distill(tmp_path / "run2", student_as_model, D.DistillConfig(steps=2, batch=2), threads=1,
                        progress=False)


def test_train_distill_command(tiny_model_dir, tmp_path, capsys):
    from cxrdesk.cli import main

    run = tmp_path / "run"
    assert main(["train", "distill", "--run-dir", str(run), "--quiet"]) == 2
    assert "needs --teacher" in capsys.readouterr().err
    assert main(["train", "distill", "--run-dir", str(run), "--teacher", str(tiny_model_dir), "--quiet"]) == 2
    assert "train encode" in capsys.readouterr().err  # nothing encoded yet: says what to run
    _fake_run(run, tiny_model_dir)
    out = tmp_path / "fast"
    assert main(["train", "distill", "--run-dir", str(run), "--teacher", str(tiny_model_dir), "--steps", "1",
                 "--batch", "2", "--guidance-range", "3,5", "--out", str(out), "--quiet"]) == 0
    assert f"model folder with the student: {out}" in capsys.readouterr().out
    record = json.loads((out / "cxrdesk.json").read_text())["student"]
    assert record["config"]["guidance_min"] == 3.0 and record["config"]["guidance_max"] == 5.0


def test_train_export_puts_the_checkpoints_student_beside_the_teacher_in_float16(tiny_model_dir, tmp_path, capsys):
    import shutil
    import stat

    from safetensors.torch import load_file

    from cxrdesk.cli import main

    run = _fake_run(tmp_path / "run", tiny_model_dir)
    D.train_distill(run, tiny_model_dir, D.DistillConfig(steps=2, batch=2, export_every=100, warmup=1), threads=1,
                    progress=False)
    target = torch.load(run / "distill" / "ckpt.pt", weights_only=True)["target"]
    teacher_copy = tmp_path / "teacher"
    shutil.copytree(tiny_model_dir, teacher_copy)
    assert main(["train", "export", "--run-dir", str(run), "--teacher", str(teacher_copy),
                 "--out", str(teacher_copy)]) == 0  # in place: the student joins the teacher's folder
    weights = teacher_copy / D.STUDENT_DIR / "diffusion_pytorch_model.safetensors"
    saved = load_file(weights)
    assert {t.dtype for t in saved.values()} == {torch.float16}
    for k, v in saved.items():  # the EMA target, not the online student
        assert torch.equal(v, target[k].half()), k
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644
    assert json.loads((teacher_copy / "cxrdesk.json").read_text())["student"]["distill_steps"] == 2
    from cxrdesk.core.generation.pipeline import Pipeline

    pipe = Pipeline.load(teacher_copy)
    assert pipe.generate("normal chest radiograph", seed=1, fast=True).image.shape == (256, 256)
    # another teacher: refused in one line
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    unet_w = other / "unet" / "diffusion_pytorch_model.safetensors"
    w = load_file(unet_w)
    next(iter(w.values())).add_(1)
    from safetensors.torch import save_file

    save_file(w, unet_w)
    assert main(["train", "export", "--run-dir", str(run), "--teacher", str(other)]) == 2
    assert "distilled another teacher than other" in capsys.readouterr().err


def test_guidance_distillation_matches_the_guided_teacher_and_samples_with_the_models_own_sampler(tiny_model_dir,
                                                                                                  tmp_path):
    from diffusers import UNet2DConditionModel

    from cxrdesk.core.generation.pipeline import Pipeline

    teacher = UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet").eval()
    student = D.build_student(teacher).eval()
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 32, 32, generator=g), torch.randn(2, 4, 32, 32, generator=g)
    cond, uncond = torch.randn(2, 8, 384, generator=g), torch.randn(1, 8, 384, generator=g)
    alphas = torch.linspace(0.99, 0.01, 1000)
    t = torch.tensor([10, 900])
    with torch.no_grad():
        # scale 1 is the unguided teacher, which the student starts as: no loss; scale 5 is not
        assert D.guidance_loss(student, teacher, x0, cond, uncond, torch.ones(2), noise, t, alphas) < 1e-10
        loss5 = D.guidance_loss(student, teacher, x0, cond, uncond, torch.full((2,), 5.0), noise, t, alphas)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        c = teacher(xt, t, encoder_hidden_states=cond).sample
        u = teacher(xt, t, encoder_hidden_states=uncond.expand_as(cond)).sample
        assert torch.allclose(loss5, ((c - (u + 5 * (c - u))) ** 2).mean(), rtol=1e-4)

    run = _fake_run(tmp_path / "run", tiny_model_dir)
    out = D.train_distill(run, tiny_model_dir, D.DistillConfig(steps=2, batch=2, method="guidance", warmup=1),
                          threads=1, progress=False)
    record = json.loads((out / "cxrdesk.json").read_text())["student"]
    assert record["sampler"] == "model" and record["steps"] == 8 and record["method"] == "guidance distillation"
    pipe = Pipeline.load(out)
    assert pipe.info["student"] == {"steps": 8, "distill_steps": 2, "sampler": "model"}
    seen = []
    r = pipe.generate("normal chest radiograph", seed=1, fast=True, steps=8, on_step=lambda i, n, p: seen.append(i))
    assert r.params["fast"] and r.params["sampler"] == pipe.info["sampler"] and seen == list(range(1, 9))
    assert r.params["guided_steps"] == 0  # one UNet call per step
    # a run is one method: resuming it with the other is refused
    with pytest.raises(ValueError, match="another method"):
        D.train_distill(run, tiny_model_dir, D.DistillConfig(steps=3, batch=2), threads=1, progress=False)


def test_a_student_of_an_earlier_teacher_starts_the_next_distillation_moved_by_the_teachers_change(tiny_model_dir,
                                                                                                   tmp_path):
    """--init-from: the earlier student plus how the new teacher differs from the one it was distilled from;
    the same teacher gives the earlier student back exactly, a folder without a student is refused."""
    import shutil

    from diffusers import UNet2DConditionModel

    run = _fake_run(tmp_path / "run", tiny_model_dir)
    first = D.train_distill(run, tiny_model_dir, D.DistillConfig(steps=2, batch=2, method="guidance", warmup=1,
                                                                 lr=1e-2), threads=1, progress=False)
    old_student = UNet2DConditionModel.from_pretrained(first / D.STUDENT_DIR).state_dict()
    teacher = UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet")
    same = D.moved_student(first, teacher)
    assert all(torch.equal(same[k], old_student[k]) for k in old_student)
    # a teacher trained on: every weight moved by the same amount in the student
    newer = tmp_path / "newer"
    shutil.copytree(tiny_model_dir, newer)
    changed = UNet2DConditionModel.from_pretrained(newer / "unet")
    with torch.no_grad():
        changed.conv_in.weight.add_(0.25)
    changed.save_pretrained(newer / "unet", safe_serialization=True)
    moved = D.moved_student(first, changed)
    assert torch.allclose(moved["conv_in.weight"], old_student["conv_in.weight"] + 0.25, atol=1e-6)
    assert torch.equal(moved["time_embedding.cond_proj.weight"], old_student["time_embedding.cond_proj.weight"])
    # the distillation starts from it (its first loss is the moved student's, not a fresh one's)
    run2 = _fake_run(tmp_path / "run2", newer)
    out = D.train_distill(run2, newer, D.DistillConfig(steps=1, batch=2, method="guidance", warmup=1, lr=0.0,
                                                       init_from=str(first)), threads=1, progress=False)
    got = UNet2DConditionModel.from_pretrained(out / D.STUDENT_DIR).state_dict()
    assert torch.allclose(got["conv_in.weight"], (old_student["conv_in.weight"] + 0.25).half().float(), atol=1e-3)
    with pytest.raises(ValueError, match="no usable student"):
        D.moved_student(tiny_model_dir, teacher)
