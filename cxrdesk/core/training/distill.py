"""Distillation of the teacher's guided sampling into a student UNet that takes the guidance scale as
an input, so each step is one UNet call. Three methods:

- ``lcd``, latent consistency distillation (Luo et al. 2023; diffusers' examples/consistency_distillation):
  a guided film in a few (4) steps of ``LCMScheduler``.
- ``guidance``, guidance distillation (Meng et al., CVPR 2023, its first stage): the student matches
  the guided teacher's output at every timestep, and samples with the model's own sampler in fewer
  steps (8) than the teacher's 20 guided ones (40 calls).
- ``trajectory``, step distillation of such a student (``--init-from`` a folder holding it): its 4 coarse
  steps learn to land where its own 20 fine steps land (``trajectory.py``).

The student is the teacher's UNet plus a guidance embedding (diffusers' ``time_cond_proj_dim``),
initialised from the teacher with that embedding at zero, so it starts as the teacher (or from an earlier
student of a teacher this one was fine-tuned from: ``moved_student``). Each ``lcd`` step:
noise a cached latent to a timestep t on a 50-step DDIM grid, let the teacher (guided, scale drawn
in a range) take one DDIM step to the grid point before it, and teach the student to map both
points to the same clean latent, the far one through the student and the near one through a slow
EMA copy of it (the target network). ``LCMScheduler`` then samples the student in 1-8 steps.
"""
from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..modelfolder import FAST_STEPS, GUIDED_FAST_STEPS, STUDENT_DIR
from .trajectory import build_trajectories, coarse_plan, trajectory_loss

W_EMBED_DIM = 256            # the guidance embedding's width (diffusers' LCM default)
DDIM_TIMESTEPS = 50          # the teacher's solver grid: every 20th training timestep
TIMESTEP_SCALING = 10.0      # LCMScheduler's boundary-condition scaling
SIGMA_DATA = 0.5
METHODS = ("lcd", "guidance", "trajectory")
# what each method's student is sampled with (the model folder's record): LCMScheduler, or the model's own
SAMPLER_OF = {"lcd": "lcm", "guidance": "model", "trajectory": "model"}
NAME_OF = {"lcd": "latent consistency distillation", "guidance": "guidance distillation",
           "trajectory": "trajectory distillation"}


@dataclass
class DistillConfig:
    steps: int = 2000
    batch: int = 16
    lr: float = 2e-5
    warmup: int = 100
    target_decay: float = 0.95   # EMA of the target network (LCM's default)
    huber_c: float = 0.001
    guidance_min: float = 2.0    # guidance scales the student learns (the app's scale, 1 = unguided)
    guidance_max: float = 8.0
    ckpt_every: int = 100
    export_every: int = 500
    seed: int = 0
    method: str = "lcd"          # "lcd", "guidance" or "trajectory" (see the module's docstring)
    init_from: str = ""          # a model folder whose student starts this one (moved_student)
    fast_steps: int = 4          # trajectory: the coarse steps the student learns to take
    fine_steps: int = 20         # trajectory: the fine steps whose landing points it learns
    trajectories: int = 2048     # trajectory: films drawn in fine steps to learn from (all processes)


def guidance_embedding(scale: torch.Tensor, dim: int = W_EMBED_DIM) -> torch.Tensor:
    """Sinusoidal embedding of the guidance scale, as diffusers' LatentConsistencyModelPipeline makes
    it (of w = scale - 1, the form of classifier-free guidance cond + w (cond - uncond))."""
    w = (torch.as_tensor(scale, dtype=torch.float32).reshape(-1) - 1.0) * 1000.0
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(np.log(10000.0) / (half - 1)))
    emb = w[:, None] * freq[None, :]
    return torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)


def boundary_scalings(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip, c_out of the consistency function f(x, t) = c_skip x + c_out x0(x, t) (LCMScheduler's):
    f is the identity at t = 0 and the model's clean estimate elsewhere."""
    s = TIMESTEP_SCALING * t.float()
    c_skip = SIGMA_DATA ** 2 / (s ** 2 + SIGMA_DATA ** 2)
    c_out = s / (s ** 2 + SIGMA_DATA ** 2) ** 0.5
    return c_skip.view(-1, 1, 1, 1), c_out.view(-1, 1, 1, 1)


def x0_and_noise(out: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction: str):
    """The clean latent and the noise a UNet output implies at x (alpha_bar per film)."""
    a = alpha_bar.view(-1, 1, 1, 1).sqrt()
    s = (1 - alpha_bar).view(-1, 1, 1, 1).sqrt()
    if prediction == "v_prediction":
        return a * x - s * out, a * out + s * x
    return (x - s * out) / a.clamp_min(1e-4), out


class DDIMGrid:
    """The teacher's solver: timesteps 19, 39, ... 999 and one deterministic DDIM step down the grid."""

    def __init__(self, alphas_cumprod: torch.Tensor, n_train: int = 1000, n_grid: int = DDIM_TIMESTEPS):
        step = n_train // n_grid
        self.skip = step
        self.timesteps = torch.arange(1, n_grid + 1) * step - 1
        self.alphas = alphas_cumprod.float()
        prev = torch.cat([self.alphas[:1], self.alphas[self.timesteps[:-1]]])
        self.alpha_prev = prev

    def step(self, x0: torch.Tensor, noise: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        a = self.alpha_prev[index].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


def build_student(teacher_unet):
    """A UNet of the teacher's shape with a guidance embedding, holding the teacher's weights and
    a zero guidance projection (so it starts as the teacher)."""
    from diffusers import UNet2DConditionModel

    cfg = {k: v for k, v in dict(teacher_unet.config).items() if not k.startswith("_")}
    cfg["time_cond_proj_dim"] = W_EMBED_DIM
    student = UNet2DConditionModel.from_config(cfg)
    missing, unexpected = student.load_state_dict(teacher_unet.state_dict(), strict=False)
    if unexpected or set(missing) != {"time_embedding.cond_proj.weight"}:
        raise ValueError("the teacher's UNet does not fit a student of its own shape")
    with torch.no_grad():
        student.time_embedding.cond_proj.weight.zero_()
    return student


def moved_student(folder: Path, teacher_unet) -> dict:
    """A starting student for ``teacher_unet`` from ``folder``'s student: that student's weights moved by
    how the teacher differs from ``folder``'s own UNet (student + teacher - its teacher), so a teacher
    trained on from ``folder``'s starts from a student that already follows guidance. ValueError where
    the folder has no student or its UNets have another shape."""
    from diffusers import UNet2DConditionModel

    folder = Path(folder)
    try:
        old_student = UNet2DConditionModel.from_pretrained(folder / STUDENT_DIR, local_files_only=True,
                                                           use_safetensors=True)
        old_teacher = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True,
                                                           use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{folder.name} has no usable student to start from ({str(exc).splitlines()[0][:160]})") from None
    if old_student.config.time_cond_proj_dim != W_EMBED_DIM:
        raise ValueError(f"{folder.name}'s student has no guidance input")
    new, old = teacher_unet.state_dict(), old_teacher.state_dict()
    state = old_student.state_dict()
    if set(old) != set(new) or any(old[k].shape != new[k].shape for k in new) or not set(new) <= set(state):
        raise ValueError(f"{folder.name}'s UNet has another shape than the teacher's")
    return {k: v + (new[k].to(v) - old[k].to(v)) if k in new else v for k, v in state.items()}


def lcd_loss(student, teacher, target, grid: DDIMGrid, x0: torch.Tensor, cond: torch.Tensor,
             uncond: torch.Tensor, scale: torch.Tensor, noise: torch.Tensor, index: torch.Tensor,
             prediction: str, huber_c: float) -> torch.Tensor:
    """One latent consistency distillation loss (pseudo-Huber) for a batch.

    ``index``: each film's point on the grid; ``scale``: each film's guidance scale."""
    t = grid.timesteps[index]
    t_prev = (t - grid.skip).clamp_min(0)
    a = grid.alphas[t]
    xt = a.sqrt().view(-1, 1, 1, 1) * x0 + (1 - a).sqrt().view(-1, 1, 1, 1) * noise
    w_emb = guidance_embedding(scale).to(x0)
    c_skip, c_out = boundary_scalings(t)
    out = student(xt, t, encoder_hidden_states=cond, timestep_cond=w_emb).sample
    pred = c_skip * xt + c_out * x0_and_noise(out, xt, a, prediction)[0]
    with torch.no_grad():
        both = teacher(torch.cat([xt, xt]), torch.cat([t, t]),
                       encoder_hidden_states=torch.cat([cond, uncond.expand_as(cond)])).sample
        x0_c, n_c = x0_and_noise(both[: len(xt)], xt, a, prediction)
        x0_u, n_u = x0_and_noise(both[len(xt):], xt, a, prediction)
        w = (scale - 1).view(-1, 1, 1, 1).to(x0)
        x_prev = grid.step(x0_c + w * (x0_c - x0_u), n_c + w * (n_c - n_u), index)
        out_t = target(x_prev, t_prev, encoder_hidden_states=cond, timestep_cond=w_emb).sample
        c_skip_p, c_out_p = boundary_scalings(t_prev)
        goal = c_skip_p * x_prev + c_out_p * x0_and_noise(out_t, x_prev, grid.alphas[t_prev], prediction)[0]
    return (torch.sqrt((pred.float() - goal.float()) ** 2 + huber_c ** 2) - huber_c).mean()


def guidance_loss(student, teacher, x0: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, scale: torch.Tensor,
                  noise: torch.Tensor, t: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Guidance distillation's loss for a batch: the student's output at (x_t, t, scale) against the
    teacher's guided output uncond + scale (cond - uncond), mean squared (``t``: each film's timestep)."""
    a = alphas[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    out = student(xt, t, encoder_hidden_states=cond, timestep_cond=guidance_embedding(scale).to(x0)).sample
    with torch.no_grad():
        both = teacher(torch.cat([xt, xt]), torch.cat([t, t]),
                       encoder_hidden_states=torch.cat([cond, uncond.expand_as(cond)])).sample
        c, u = both[: len(xt)], both[len(xt):]
        goal = u + scale.view(-1, 1, 1, 1).to(x0) * (c - u)
    return torch.nn.functional.mse_loss(out.float(), goal.float())


def _lr(cfg: DistillConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))


def _load_teacher(teacher_dir: Path, device):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(teacher_dir / "unet", local_files_only=True, use_safetensors=True)
    if unet.config.time_cond_proj_dim is not None:
        raise ValueError(f"{teacher_dir.name}'s UNet is already a distilled student")
    vae_cfg = dict(AutoencoderKL.load_config(teacher_dir / "vae", local_files_only=True))
    sched = json.loads((teacher_dir / "scheduler" / "scheduler_config.json").read_text())
    return unet.to(device).eval().requires_grad_(False), vae_cfg, sched


def train_distill(run_dir: str | Path, teacher_dir: str | Path, cfg: DistillConfig | None = None,
                  threads: int | None = None, device: str = "auto", progress: bool = True,
                  on_progress=None, export_to: str | Path | None = None) -> Path:
    """Distil ``teacher_dir``'s UNet into a few-step student on the run's cached latents (``train
    encode`` with the teacher's VAE); resumes from RUN/distill/ckpt.pt. Exports the teacher's folder
    with the student added (default RUN/model-fast)."""

    from diffusers import DDPMScheduler

    from ..generation.models import vae_to_unet_latents
    from .common import (CsvLog, RunFolder, _barrier, _progress, _wrap, atomic_save, cpu_setup, ema_update,
                         init_dist, load_ckpt, optimizer_step)

    cfg = cfg or DistillConfig()
    if not 1.0 <= cfg.guidance_min <= cfg.guidance_max:
        raise ValueError("the guidance range must satisfy 1 <= min <= max")
    if cfg.method not in METHODS:
        raise ValueError(f"unknown distillation method {cfg.method!r}: {' or '.join(METHODS)}")
    if cfg.method == "trajectory":
        _check_trajectory_start(cfg.init_from)
    cpu_setup(threads)
    dist = init_dist(device)
    run, teacher_dir = RunFolder(Path(run_dir)), Path(teacher_dir)
    meta, latents, text_emb, cap_ids, _, train_idx = run.read_cache()
    teacher, vae_cfg, sched_cfg = _load_teacher(teacher_dir, dist.device)
    if abs(float(vae_cfg.get("scaling_factor", 0)) - float(meta["scaling_factor"])) > 1e-6:
        raise ValueError(f"{run.root}'s latents were encoded by another VAE than {teacher_dir.name}'s: copy its "
                         f"VAE to {run.vae_final} and run 'cxrdesk train encode' first")
    latents = vae_to_unet_latents(latents, vae_cfg)
    uncond = text_emb[0:1].float().to(dist.device)
    prediction = sched_cfg.get("prediction_type", "epsilon")
    sched = DDPMScheduler.from_config(sched_cfg)
    grid = DDIMGrid(sched.alphas_cumprod, sched.config.num_train_timesteps)

    out = run.stage("distill")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    student = build_student(teacher).to(dist.device).train().requires_grad_(True)
    ckpt = run.ckpt("distill")
    start = moved_student(Path(cfg.init_from), teacher) if cfg.init_from else None
    if start is not None and not ckpt.exists():
        student.load_state_dict(start)
    target = copy.deepcopy(student).eval().requires_grad_(False)
    guide = None  # trajectory: the fine trajectories are the starting student's, however far a resumed run has come
    if cfg.method == "trajectory":
        guide = build_student(teacher).to(dist.device)
        guide.load_state_dict(start)
        guide.eval().requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=1e-2)
    step = 0
    teacher_hash = _teacher_hash(teacher_dir)  # read once: every checkpoint records it
    if ckpt.exists():
        state = load_ckpt(ckpt)
        if state.get("teacher_hash") != teacher_hash:
            raise ValueError(f"{run.root} distilled another teacher than {teacher_dir.name}: use a new run folder")
        if state.get("config", {}).get("method", "lcd") != cfg.method:
            raise ValueError(f"{run.root} distilled with another method ({state['config'].get('method', 'lcd')}): "
                             f"use a new run folder")
        student.load_state_dict(state["model"])
        target.load_state_dict(state["target"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
    if cfg.method == "trajectory":
        _check_own_sampler(teacher_dir, teacher)
        plan = coarse_plan(sched_cfg, cfg.fast_steps, cfg.fine_steps)
        trajectories = _trajectories(run, cfg, dist, plan, sched_cfg, guide, text_emb, cap_ids, train_idx,
                                     latents.shape[1:], progress)
        del guide
    model = _wrap(student, dist)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + step * 7 + dist.rank)
    log = CsvLog(out / "loss.csv", ["step", "loss", "lr", "sec"], dist.main)
    bar = _progress(cfg.steps, step, "distill", progress and dist.main)
    per_rank = max(1, cfg.batch // dist.world)
    t0 = time.time()
    if dist.main:
        (out / "params.json").write_text(json.dumps({"teacher": str(teacher_dir), **cfg.__dict__}))
    while step < cfg.steps:
        if cfg.method == "trajectory":  # its batch is drawn films, not the cached data
            take = torch.randint(len(trajectories["states"]), (per_rank,), generator=gen)
            loss = trajectory_loss(model, plan, trajectories["states"][take].to(dist.device),
                                   text_emb[trajectories["tid"][take]].float().to(dist.device),
                                   guidance_embedding(trajectories["scale"][take]).to(dist.device), prediction)
        else:
            pick = train_idx[torch.randint(len(train_idx), (per_rank,), generator=gen)]
            x0 = latents[pick].to(dist.device)
            tid = cap_ids[pick, torch.randint(cap_ids.shape[1], (per_rank,), generator=gen)]
            cond = text_emb[tid].float().to(dist.device)
            noise = torch.randn(x0.shape, generator=gen).to(dist.device)
            index = torch.randint(0, len(grid.timesteps), (per_rank,), generator=gen)
            scale = cfg.guidance_min + (cfg.guidance_max - cfg.guidance_min) * torch.rand(per_rank, generator=gen)
            if cfg.method == "guidance":
                t = torch.randint(0, len(grid.alphas), (per_rank,), generator=gen).to(dist.device)
                loss = guidance_loss(model, teacher, x0, cond, uncond, scale, noise, t, grid.alphas)
            else:
                loss = lcd_loss(model, teacher, target, grid, x0, cond, uncond, scale, noise, index, prediction,
                                cfg.huber_c)
        lr = _lr(cfg, step)
        optimizer_step(opt, loss, student.parameters(), lr)
        step += 1
        ema_update(target.parameters(), student.parameters(), cfg.target_decay)
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if on_progress:
            on_progress(step, cfg.steps, {"loss": loss.item()})
        if dist.main and (step % 20 == 0 or step == cfg.steps):
            log.write({"step": step, "loss": f"{loss.item():.5f}", "lr": f"{lr:.2e}", "sec": f"{time.time() - t0:.1f}"})
        if dist.main and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            atomic_save({"model": student.state_dict(), "target": target.state_dict(), "opt": opt.state_dict(),
                         "step": step, "config": cfg.__dict__, "teacher_hash": teacher_hash}, ckpt)
        if dist.main and (step % cfg.export_every == 0 or step == cfg.steps):
            export_student(teacher_dir, target, export_to or run.model_fast, step=step, config=cfg)
    if bar:
        bar.close()
    _barrier(dist)
    return Path(export_to or run.model_fast)


def _student_of(folder: str | Path) -> dict:
    """The student record in ``folder``'s cxrdesk.json as written (empty where there is none)."""
    record = Path(folder) / "cxrdesk.json"
    return (json.loads(record.read_text()) if record.is_file() else {}).get("student") or {}


def _check_trajectory_start(init_from: str) -> None:
    """ValueError unless ``init_from`` names a folder whose student is guidance-distilled: a trajectory
    student learnt only its 4 steps' timesteps, so its own 20-step films are no teacher for another."""
    if not init_from:
        raise ValueError("trajectory distillation starts from a guidance-distilled student: give --init-from "
                         "a model folder that holds one")
    student = _student_of(init_from)
    if student.get("method") == NAME_OF["trajectory"]:
        raise ValueError(f"{Path(init_from).name}'s student is already trajectory-distilled (it learnt only its "
                         f"{student.get('steps')} steps): start from a folder with its guidance-distilled student "
                         f"(train distill --method guidance --init-from {Path(init_from).name} makes one)")


def _check_own_sampler(teacher_dir: Path, teacher) -> None:
    """ValueError unless the model samples its students with DPM++ 2M on trailing timesteps (the sampler
    trajectory distillation teaches the student's coarse steps)."""
    from ..generation.sampling import ZERO_SNR_SAMPLER
    from ..modelfolder import cxrdesk_json, recommended_sampler, scheduler_json

    own = recommended_sampler(cxrdesk_json(teacher_dir, int(teacher.config.in_channels)), scheduler_json(teacher_dir))
    if own != ZERO_SNR_SAMPLER:
        raise ValueError(f"trajectory distillation teaches the steps of DPM++ 2M on trailing timesteps "
                         f"({ZERO_SNR_SAMPLER!r}); {teacher_dir.name} samples with {own!r}")


def _trajectories(run, cfg: DistillConfig, dist, plan: dict, sched_cfg: dict, guide, text_emb, cap_ids,
                  train_idx, shape, progress: bool) -> dict:
    """This process's share of the fine trajectories (build_trajectories), drawn by the frozen starting
    student ``guide`` for training captions and guidance scales in the config's range; built in chunks
    of 16 into RUN/distill/trajectories-R-of-W.pt, so an interrupted build resumes. Each process draws
    its own share with its own seeds."""
    from .common import _progress, atomic_save

    path = run.stage("distill") / f"trajectories-{dist.rank}-of-{dist.world}.pt"
    want = -(-cfg.trajectories // dist.world)
    have = torch.load(path, weights_only=True) if path.exists() else None
    key = [cfg.seed, cfg.fast_steps, cfg.fine_steps, cfg.guidance_min, cfg.guidance_max]
    if have is not None and have.get("key") != key:
        raise ValueError(f"{path} was drawn with other settings: use a new run folder")
    have = have or {"key": key, "states": torch.zeros(0, plan["coarse"] + 1, *shape), "tid": torch.zeros(0, dtype=torch.long),
                    "scale": torch.zeros(0)}
    bar = _progress(want, len(have["states"]), "trajectories", progress and dist.main)
    while len(have["states"]) < want:
        chunk = len(have["states"]) // 16
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + dist.rank * 10_007 + chunk)
        n = min(16, want - len(have["states"]))
        pick = train_idx[torch.randint(len(train_idx), (n,), generator=gen)]
        tid = cap_ids[pick, torch.randint(cap_ids.shape[1], (n,), generator=gen)]
        scale = cfg.guidance_min + (cfg.guidance_max - cfg.guidance_min) * torch.rand(n, generator=gen)
        noise = torch.randn((n, *shape), generator=gen)
        states = build_trajectories(guide, sched_cfg, plan, text_emb[tid].float().to(dist.device),
                                    guidance_embedding(scale).to(dist.device), noise.to(dist.device)).cpu()
        have = {"key": key, "states": torch.cat([have["states"], states]), "tid": torch.cat([have["tid"], tid]),
                "scale": torch.cat([have["scale"], scale])}
        atomic_save(have, path)
        if bar:
            bar.update(n)
    if bar:
        bar.close()
    return have


def export_from_checkpoint(run_dir: str | Path, teacher_dir: str | Path, dest: str | Path | None = None) -> Path:
    """Export the distillation checkpoint's student (its EMA target) beside ``teacher_dir``'s weights
    (default RUN/model-fast; ``dest`` may be the teacher's own folder). Refuses a checkpoint of
    another teacher."""
    from .common import RunFolder, load_ckpt

    run, teacher_dir = RunFolder(Path(run_dir)), Path(teacher_dir)
    ckpt = run.ckpt("distill")
    if not ckpt.exists():
        raise FileNotFoundError(f"no distillation checkpoint in {run.stage('distill')}")
    state = load_ckpt(ckpt)
    if state.get("teacher_hash") != _teacher_hash(teacher_dir):
        raise ValueError(f"{run.root} distilled another teacher than {teacher_dir.name}")
    teacher, _, _ = _load_teacher(teacher_dir, "cpu")
    student = build_student(teacher)
    student.load_state_dict(state["target"])
    cfg = DistillConfig(**{k: v for k, v in state.get("config", {}).items() if k in DistillConfig.__dataclass_fields__})
    return export_student(teacher_dir, student, dest or run.model_fast, step=int(state["step"]), config=cfg)


def _teacher_hash(teacher_dir: Path) -> str:
    from ..modelfolder import model_hash

    return model_hash(teacher_dir)


def export_student(teacher_dir: str | Path, student, dest: str | Path, step: int = 0,
                   config: DistillConfig | None = None) -> Path:
    """``dest``: a copy of the teacher's model folder with the student in ``student/`` and its record
    (steps, teacher hash, the distillation's settings) in cxrdesk.json. ``dest`` may be the teacher's
    own folder (the student is added, the teacher untouched)."""
    teacher_dir, dest = Path(teacher_dir), Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(teacher_dir, tmp, ignore=shutil.ignore_patterns(STUDENT_DIR, "*.tmp"))
    # float16 on disk like the teacher's weights (they load back in the teacher's dtype)
    copy.deepcopy(student).half().save_pretrained(tmp / STUDENT_DIR, safe_serialization=True)
    for f in [tmp / STUDENT_DIR, *(tmp / STUDENT_DIR).iterdir()]:  # safetensors writes 0600 files
        f.chmod(0o755 if f.is_dir() else 0o644)
    extra_file = tmp / "cxrdesk.json"
    extra = json.loads(extra_file.read_text()) if extra_file.is_file() else {}
    method = config.method if config else "lcd"
    steps = {"guidance": GUIDED_FAST_STEPS, "trajectory": config.fast_steps if config else FAST_STEPS}
    # the starting student's chosen guidance carries over
    previous = _student_of(config.init_from) if method == "trajectory" and config.init_from else {}
    # a trajectory student's count includes the steps of the student it started from (once, where that
    # folder's student is already an earlier export of this run)
    base = int(previous.get("started_from_steps" if previous.get("method") == NAME_OF["trajectory"]
                            else "distill_steps") or 0)
    extra["student"] = {"steps": steps.get(method, FAST_STEPS), "sampler": SAMPLER_OF[method],
                        "distill_steps": int(step) + base,
                        "teacher_hash": _teacher_hash(teacher_dir), "method": NAME_OF[method],
                        "config": dict(config.__dict__) if config else {}}
    if method == "trajectory":
        extra["student"]["started_from_steps"] = base
    if "guidance" in previous:
        extra["student"]["guidance"] = previous["guidance"]
    extra_file.write_text(json.dumps(extra, indent=2))
    if dest.exists() and dest.resolve() != teacher_dir.resolve():
        shutil.rmtree(dest)
    if dest.resolve() == teacher_dir.resolve():
        if (dest / STUDENT_DIR).exists():
            shutil.rmtree(dest / STUDENT_DIR)
        shutil.move(str(tmp / STUDENT_DIR), dest / STUDENT_DIR)
        shutil.copy(extra_file, dest / "cxrdesk.json")
        shutil.rmtree(tmp)
        return dest
    tmp.replace(dest)
    return dest
