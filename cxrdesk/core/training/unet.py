"""The UNet stage: the text-conditioned UNet on cached latents (epsilon or v prediction, min-SNR
weighting, caption dropout for classifier-free guidance, EMA weights), exported as it trains."""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.findings import record_class
from ..generation.models import build_unet, latent_scaling, n_params, scheduler_config, vae_to_unet_latents
from .common import (CsvLog, ProgressFn, RunFolder, _barrier, _progress, _wrap, atomic_save, cpu_setup, ema_update,
                     init_dist, load_ckpt, optimizer_step)
from .export import export_model


@dataclass
class UNetConfig:
    steps: int = 30000
    batch: int = 32
    lr: float = 3e-4
    warmup: int = 500
    cond_dropout: float = 0.1
    snr_gamma: float = 5.0
    ema_decay: float = 0.999
    preset: str = "default"
    ckpt_every: int = 500
    sample_every: int = 2000
    export_every: int = 2000
    seed: int = 0
    # Offset noise: add a per-image, per-channel constant to the training noise, with this standard
    # deviation. This noise schedule leaves part of each film's overall brightness in the latent
    # at the last step, so a model trained without it cannot set the exposure of what it draws:
    # generated films come out at the dataset's average exposure and too alike. The same offset
    # is added to the starting noise at generation (the model folder records it). None: keep the
    # checkpoint's value when resuming, else 0.
    noise_offset: float | None = None
    # Class-balanced sampling: draw each training film with probability proportional to
    # n_class ** -class_balance over the classes normal / COVID-19 / other findings. 0 samples the
    # data as it is (in the default data 10% of films show other findings, and a model trained
    # that way draws them rarely when asked); 1 gives each class the same share; 0.5 is between.
    # None: keep the checkpoint's value when resuming, else 0.
    class_balance: float | None = None
    # Finding-balanced sampling, finer than class_balance (use one or the other): each film is
    # drawn with probability proportional to n ** -finding_balance, where n is the number of
    # training films that share the film's rarest finding label (1 gives each such group the same
    # share). Findings that share the "other" class (pneumonia, infiltration, fibrosis, effusion
    # ...) are then no longer outnumbered by one another or by COVID-19. None: keep the
    # checkpoint's value when resuming, else 0.
    finding_balance: float | None = None
    # Start from an existing model folder's UNet (continue or fine-tune a shipped model) when
    # the run has no checkpoint of its own yet.
    init_from: str | None = None
    # Anneal: over the last N steps before `steps`, the learning rate falls linearly from `lr` to
    # LR_DECAY_END x `lr`. 0 keeps it constant after warm-up, so that a finished run can be extended
    # with more steps (an annealed run can be too; the rate then steps back up to `lr`).
    lr_decay_steps: int = 0
    # Per-channel latent normalisation: denoise each latent channel at zero mean and unit variance
    # (statistics of the training films' latents, kept in the checkpoint and written to the VAE
    # config as diffusers' latents_mean / latents_std) instead of one scaling factor for all. A VAE
    # with many latent channels has channels of very unequal spread (0.2 to 1.7 after the global
    # scaling for the 16-channel one): under one noise schedule the quiet channels drown first.
    # (On that VAE it made no difference over a UNet's first 1100 steps: see the model card.)
    # A run keeps the choice it started with. None: the checkpoint's, else off.
    channel_norm: bool | None = None
    # What the UNet predicts: "epsilon" (the noise) or "v_prediction" (the velocity
    # sqrt(a) noise - sqrt(1 - a) latents, Salimans & Ho 2022). At high noise an epsilon UNet must
    # pass its input through almost unchanged, and every error there is amplified in the film it
    # recovers (70-fold at t=900 on this schedule); a v UNet predicts the film itself there. A UNet
    # on latents with many channels (16) learns the pass-through slowly. The exported scheduler
    # config records it. A run keeps the choice it started with; None: the checkpoint's, else
    # epsilon (a new run can switch from an --init-from model's: a fine-tune).
    prediction: str | None = None
    # Zero terminal SNR (models.scheduler_config): the last training step is pure noise, so the
    # model learns to choose each film's exposure and contrast itself instead of drifting to the
    # mean grey (v0.5's foggy films). Needs v prediction; the loss then weighs the clean-film error
    # at least as plain v prediction does at every step (snr_floor), or the pure-noise steps would
    # carry no weight. A run keeps the choice it started with; None: the checkpoint's, else off.
    zero_snr: bool | None = None


LR_DECAY_END = 0.1


def unet_lr(cfg: "UNetConfig", step: int) -> float:
    """Learning rate for optimisation step `step` (0-based): linear warm-up, constant, then the
    optional linear anneal to LR_DECAY_END x lr over the last `lr_decay_steps` steps."""
    lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
    if cfg.lr_decay_steps > 0:
        into = step + 1 - (cfg.steps - cfg.lr_decay_steps)
        if into > 0:
            lr *= 1.0 - (1.0 - LR_DECAY_END) * min(1.0, into / cfg.lr_decay_steps)
    return lr


FINE_TUNE_SETTINGS = ("noise_offset", "class_balance", "finding_balance")

SAMPLE_PROMPTS = [
    "normal chest radiograph",
    "bilateral peripheral ground-glass opacities consistent with COVID-19 pneumonia",
    "pulmonary fibrosis with coarse reticular opacities",
    "right lower lobe pneumonia",
]


def class_balance_weights(labels: list[list[str]], balance: float) -> torch.Tensor | None:
    """Sampling weights n_class ** -balance per film (see UNetConfig.class_balance); None for 0."""
    if not balance:
        return None
    classes = [record_class(lab) for lab in labels]
    counts = {c: classes.count(c) for c in set(classes)}
    return torch.tensor([counts[c] ** -float(balance) for c in classes], dtype=torch.float64)


def finding_balance_weights(labels: list[list[str]], balance: float) -> torch.Tensor | None:
    """Sampling weights n ** -balance per film, n = films whose rarest finding label (the label
    fewest training films carry) is this film's (see UNetConfig.finding_balance); None for 0."""
    if not balance:
        return None
    counts = Counter(lab for film in labels for lab in set(film) or {"No Finding"})
    rarest = [min(sorted(set(film) or {"No Finding"}), key=counts.__getitem__) for film in labels]
    groups = Counter(rarest)
    return torch.tensor([groups[g] ** -float(balance) for g in rarest], dtype=torch.float64)


def draw_weights_for(labels: list[list[str]], cfg: "UNetConfig") -> torch.Tensor | None:
    """The training sampler's per-film weights for cfg's class or finding balance (not both)."""
    if cfg.class_balance and cfg.finding_balance:
        raise ValueError("use class balance or finding balance, not both")
    if cfg.finding_balance:
        return finding_balance_weights(labels, cfg.finding_balance)
    return class_balance_weights(labels, cfg.class_balance)


def channel_stats(latents: torch.Tensor) -> dict:
    """Per-channel mean and standard deviation of (N, C, H, W) latents, as lists (for the
    checkpoint and the VAE config's latents_mean / latents_std)."""
    std, mean = torch.std_mean(latents.float(), dim=(0, 2, 3))
    return {"mean": mean.tolist(), "std": std.clamp_min(1e-6).tolist()}


def diffusion_loss(pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor,
                   prediction: str, snr_gamma: float, snr_floor: float = 0.0) -> torch.Tensor:
    """The UNet's training loss for a batch noised as sqrt(a) x0 + sqrt(1 - a) noise (``alpha_bar``:
    a per film): mean squared error against the noise (epsilon prediction) or the velocity
    sqrt(a) noise - sqrt(1 - a) x0 (v prediction), with min-SNR-gamma weighting (Hang et al. 2023)
    in the form for each target, so both weigh the films' own error alike at every noise level.

    ``snr_floor``: the clean-film error is weighed at least this much (Salimans & Ho's truncated
    SNR weighting, max(SNR, 1), under the min-SNR cap); a zero terminal SNR schedule needs it, since
    min-SNR alone gives its pure-noise steps no weight at all."""
    a = alpha_bar.view(-1, *([1] * (x0.dim() - 1)))
    snr = alpha_bar / (1 - alpha_bar)
    film_weight = torch.clamp(snr, min=snr_floor, max=snr_gamma)
    if prediction == "v_prediction":
        target = a.sqrt() * noise - (1 - a).sqrt() * x0
        weight = film_weight / (snr + 1)
    else:
        target = noise
        weight = film_weight / snr
    return (weight * F.mse_loss(pred, target, reduction="none").mean(dim=tuple(range(1, x0.dim())))).mean()


LATENT_LAYERS = ("conv_in.", "conv_out.")


def init_across_latent_channels(unet: nn.Module, sd: dict) -> bool:
    """Load a UNet state dict into ``unet``; where only the latent channel count differs (a new VAE
    with more channels), keep ``unet``'s fresh input and output convolutions and take every other
    weight: the text conditioning and the layout of a chest carry over, and only the mapping to and
    from the new latents is learnt anew. True if those layers were left fresh; ValueError for a UNet
    of another size."""
    own = unet.state_dict()
    fits = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    left = sorted(set(own) - set(fits))
    if set(sd) != set(own) or any(not k.startswith(LATENT_LAYERS) for k in left):
        raise ValueError("that UNet is of another size or layout than this run's: use the same --preset")
    unet.load_state_dict(fits, strict=not left)
    return bool(left)


def _settle_config(cfg: UNetConfig, state: dict | None, run: Path, latents: torch.Tensor, train_idx) -> dict | None:
    """Check ``cfg`` against the run's checkpoint (ValueError for a setting a run cannot change) and fill
    in what the checkpoint fixes: the balance left off, latent normalisation, prediction, schedule.
    Returns the per-channel latent normalisation (None: one scale)."""
    # The two balances are alternatives: asking for one (when resuming too) turns the other off.
    if cfg.finding_balance and cfg.class_balance is None:
        cfg.class_balance = 0.0
    if cfg.class_balance and cfg.finding_balance is None:
        cfg.finding_balance = 0.0
    norm = state.get("latent_norm") if state else None
    if state and cfg.channel_norm is not None and cfg.channel_norm != bool(norm):
        raise ValueError(f"{run} trained its UNet {'with' if norm else 'without'} per-channel latent "
                         f"normalisation: resume without --channel-norm, or use a new run folder")
    cfg.channel_norm = bool(norm) if state else bool(cfg.channel_norm)
    if cfg.channel_norm and norm is None:
        norm = channel_stats(latents[train_idx])
    trained_as = state.get("prediction", "epsilon") if state else None
    if state and cfg.prediction is not None and cfg.prediction != trained_as:
        raise ValueError(f"{run} trained its UNet with {trained_as} prediction: resume without --prediction "
                         f"(or with --prediction {trained_as}), or use a new run folder (--init-from a model of this one)")
    cfg.prediction = trained_as or cfg.prediction or "epsilon"
    zero_before = bool(state.get("zero_snr", False)) if state else None
    if state and cfg.zero_snr is not None and bool(cfg.zero_snr) != zero_before:
        raise ValueError(f"{run} trained its UNet {'with' if zero_before else 'without'} a zero terminal SNR "
                         f"schedule: resume without --zero-snr, or use a new run folder (--init-from a model of this one)")
    cfg.zero_snr = zero_before if state else bool(cfg.zero_snr)
    if cfg.zero_snr and cfg.prediction != "v_prediction":
        raise ValueError("--zero-snr needs v prediction (--prediction v)")
    return norm


def _resume(state: dict, cfg: UNetConfig, unet, ema: list, opt) -> tuple[int, dict]:
    """Load the checkpoint's weights, EMA and optimiser; returns its step and, for each fine-tune
    setting, the step it took its current value ("<name>_since": a changed value starts now)."""
    unet.load_state_dict(state["model"])
    for e, v in zip(ema, state["ema"]):
        e.copy_(v)
    opt.load_state_dict(state["opt"])
    step = int(state["step"])
    since = {}
    for k in FINE_TUNE_SETTINGS:
        since[k] = int(state.get(f"{k}_since", 0))
        before = float(state.get("config", {}).get(k) or 0.0)
        if getattr(cfg, k) is None:
            setattr(cfg, k, before)
        elif getattr(cfg, k) != before:
            since[k] = step
    return step, since


def _start_from_model(folder: str, unet, ema: list, channels: int, say: bool) -> None:
    """Start the UNet (and its EMA) from a model folder's UNet (init_across_latent_channels)."""
    from safetensors.torch import load_file

    weights = sorted((Path(folder) / "unet").glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"no UNet safetensors in {folder}/unet")
    sd = load_file(str(weights[0]))
    adapted = init_across_latent_channels(unet, sd)
    if adapted and say:
        print(f"{folder}: its UNet denoises {sd['conv_in.weight'].shape[1]} latent channels and this "
              f"run's latents have {channels}: starting from its weights with new input and output layers")
    with torch.no_grad():
        for e, p in zip(ema, unet.parameters()):
            e.copy_(p)


def _draw_batch(cfg: UNetConfig, latents, text_emb, cap_ids, train_idx, draw_weights, n: int, n_train: int, gen,
                device):
    """One training batch of ``n`` films: clean latents, caption embeddings (dropped to the empty caption
    at cfg.cond_dropout), noise (with cfg.noise_offset) and timesteps, drawn from ``gen`` in a fixed order."""
    if draw_weights is None:
        pick = train_idx[torch.randint(len(train_idx), (n,), generator=gen)]
    else:
        pick = train_idx[torch.multinomial(draw_weights, n, replacement=True, generator=gen)]
    x0 = latents[pick].to(device)
    which = torch.randint(cap_ids.shape[1], (n,), generator=gen)
    tid = cap_ids[pick, which]
    drop = torch.rand(n, generator=gen) < cfg.cond_dropout
    tid = torch.where(drop, torch.zeros_like(tid), tid)
    cond = text_emb[tid].float().to(device)
    noise = torch.randn(x0.shape, generator=gen)
    if cfg.noise_offset:
        noise = noise + cfg.noise_offset * torch.randn(x0.shape[:2] + (1, 1), generator=gen)
    t = torch.randint(0, n_train, (n,), generator=gen).to(device)
    return x0, cond, noise.to(device), t


def train_unet(run_dir: str | Path, cfg: UNetConfig | None = None, threads: int | None = None,
               device: str = "auto", progress: bool = True, on_progress: ProgressFn | None = None,
               export_to: str | Path | None = None) -> Path:
    """Train the run's UNet on its cached latents (``train encode``), resuming from RUN/unet/ckpt.pt;
    exports a model folder every cfg.export_every steps (default RUN/model)."""
    from diffusers import DDPMScheduler

    cfg = cfg or UNetConfig()
    cpu_setup(threads)
    dist = init_dist(device)
    run = Path(run_dir)
    meta, latents, text_emb, cap_ids, recs, train_idx = RunFolder(run).read_cache()
    out = RunFolder(run).stage("unet")
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    c, h, _ = latents.shape[1:]
    unet = build_unet(cfg.preset, h, c).to(dist.device)
    ema = [p.detach().clone() for p in unet.parameters()]
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=1e-2)
    ckpt = RunFolder(run).ckpt("unet")
    state = load_ckpt(ckpt) if ckpt.exists() else None
    norm = _settle_config(cfg, state, run, latents, train_idx)
    sched = DDPMScheduler(**scheduler_config(cfg.prediction, cfg.zero_snr))
    alphas = sched.alphas_cumprod.to(dist.device)
    latents = vae_to_unet_latents(latents, latent_scaling(meta["scaling_factor"], norm))
    # Settings whose change on resume starts a fine-tune of the model trained so far: the step it
    # began is recorded as "<name>_since". None in cfg keeps the checkpoint's value, else 0.
    step, since = 0, {k: 0 for k in FINE_TUNE_SETTINGS}
    if state:
        step, since = _resume(state, cfg, unet, ema, opt)
    elif cfg.init_from:
        _start_from_model(cfg.init_from, unet, ema, c, dist.main)
    for k in FINE_TUNE_SETTINGS:
        if getattr(cfg, k) is None:
            setattr(cfg, k, 0.0)
    since_meta = {f"{k}_since": v for k, v in since.items()}
    draw_weights = draw_weights_for([recs[i]["labels"] for i in train_idx.tolist()], cfg)
    model = _wrap(unet, dist)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + step * 7 + dist.rank)
    log = CsvLog(out / "loss.csv", ["step", "loss", "lr", "sec"], dist.main)
    bar = _progress(cfg.steps, step, "unet", progress and dist.main)
    per_rank = max(1, cfg.batch // dist.world)
    t0 = time.time()
    run_loss = None
    if dist.main:
        (out / "params.json").write_text(json.dumps({"unet_params": n_params(unet), **cfg.__dict__, **since_meta}))
    while step < cfg.steps:
        x0, cond, noise, t = _draw_batch(cfg, latents, text_emb, cap_ids, train_idx, draw_weights, per_rank,
                                         sched.config.num_train_timesteps, gen, dist.device)
        xt = sched.add_noise(x0, noise, t)
        pred = model(xt, t, encoder_hidden_states=cond).sample
        loss = diffusion_loss(pred, x0, noise, alphas[t], cfg.prediction, cfg.snr_gamma,
                              snr_floor=1.0 if cfg.zero_snr else 0.0)
        lr = unet_lr(cfg, step)
        optimizer_step(opt, loss, unet.parameters(), lr)
        step += 1
        ema_update(ema, unet.parameters(), min(cfg.ema_decay, (1 + step) / (10 + step)))
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{run_loss:.4f}")
        if on_progress:
            on_progress(step, cfg.steps, {"loss": loss.item()})
        if dist.main and (step % 20 == 0 or step == cfg.steps):
            log.write({"step": step, "loss": f"{loss.item():.5f}", "lr": f"{lr:.2e}",
                       "sec": f"{time.time() - t0:.1f}"})
        if dist.main and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            atomic_save({"model": unet.state_dict(), "ema": ema, "opt": opt.state_dict(), "step": step,
                         "config": cfg.__dict__, "latent_norm": norm, "prediction": cfg.prediction,
                         "zero_snr": cfg.zero_snr, **since_meta}, ckpt)
        if dist.main and (step % cfg.export_every == 0 or step == cfg.steps):
            folder = export_model(run, unet, ema, export_to or RunFolder(run).model, meta, step=step, latent_norm=norm,
                                  prediction=cfg.prediction, zero_snr=cfg.zero_snr)
            if step % cfg.sample_every == 0 or step == cfg.steps:
                _unet_samples(folder, out / f"samples_{step:06d}.png")
    if bar:
        bar.close()
    _barrier(dist)
    return Path(export_to or RunFolder(run).model)


def _unet_samples(folder: Path, path: Path) -> None:
    from PIL import Image

    from ..generation.pipeline import Pipeline

    pipe = Pipeline.load(folder, device="cpu")
    tiles = [pipe.generate(p, steps=20, seed=i, guidance_scale=4.0).image_u8 for i, p in enumerate(SAMPLE_PROMPTS)]
    Image.fromarray(np.concatenate(tiles, axis=1)).save(path)

