"""The preview-decoder stage (issue 28): a tiny decoder (generation.preview_decoder) taught to draw what a
model's VAE decoder draws from the same latents, for sharp step previews.

Latents are the run's cache (``train encode`` with that model's VAE): the training films' latents as
they are, and as the denoising loop's early clean estimates look (blurred and drawn toward the mean
latent, or with noise added), so previews of early steps look like the VAE's decode of them too. The
VAE's decodes (the targets) are costly next to the tiny decoder's step, so each step decodes a few
new latents into a replay buffer and trains on a batch drawn from it. Loss: L1 on grey levels plus
L1 on the image's horizontal and vertical gradients (edges). The EMA of the weights is exported.
Resumes from RUN/preview-decoder/ckpt.pt; under torchrun each process draws its own share of the
batch (DDP averages the gradients).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..generation import preview_decoder as PD

STAGE = "preview-decoder"


@dataclass
class PreviewDecoderConfig:
    steps: int = 4000
    batch: int = 8
    lr: float = 2e-3
    warmup: int = 100
    decay_from: float = 0.6        # the rate falls linearly to a tenth over the steps after this fraction
    ema_decay: float = 0.998
    grad_weight: float = 0.5       # weight of the image-gradient L1 term
    fresh: int = 2                 # new latents the VAE decodes into the buffer per step (per process)
    buffer: int = 1024             # (latent, VAE film) pairs kept
    clean_share: float = 0.4       # of new latents: as encoded; the rest as early denoising estimates
    ckpt_every: int = 100
    sample_every: int = 500        # held-out error, and a side-by-side PNG
    n_val: int = 24
    seed: int = 0
    onnx_targets: bool = True      # decode the targets with an ONNX Runtime graph of the VAE decoder (CPU)


def channel_stats(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and spread of (N, C, h, w) latents, as (1, C, 1, 1) tensors."""
    x = latents.float().transpose(0, 1).reshape(latents.shape[1], -1)
    return x.mean(1).view(1, -1, 1, 1), x.std(1).view(1, -1, 1, 1)


def _blur(z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each latent blurred by a Gaussian of its own ``sigma`` (latent pixels; 0: unchanged)."""
    r = 5
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    out = []
    for zi, s in zip(z, sigma):
        if float(s) < 0.3:
            out.append(zi)
            continue
        k = torch.exp(-x ** 2 / (2 * float(s) ** 2))
        k = (k / k.sum()).to(z)
        c = zi.shape[0]
        y = F.conv2d(F.pad(zi[None], (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        out.append(y[0])
    return torch.stack(out)


def preview_like(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, gen: torch.Generator,
                 clean_share: float = 0.4) -> torch.Tensor:
    """Latents as previews see them: a ``clean_share`` of them as they are, half the rest as an early
    denoising estimate looks (blurred by up to 2.5 latent pixels and drawn toward the mean latent by
    up to 80%), the other half with noise of up to 0.6 of each channel's spread."""
    n = len(z)
    kind = torch.rand(n, generator=gen)
    smooth = (kind >= clean_share) & (kind < clean_share + (1 - clean_share) / 2)
    noisy = kind >= clean_share + (1 - clean_share) / 2
    out = z.clone()
    if smooth.any():
        k = int(smooth.sum())
        a = (0.2 + 0.8 * torch.rand(k, generator=gen)).view(-1, 1, 1, 1)
        blurred = _blur(z[smooth], 2.5 * torch.rand(k, generator=gen))
        out[smooth] = mean + a * (blurred - mean)
    if noisy.any():
        k = int(noisy.sum())
        s = (0.6 * torch.rand(k, generator=gen)).view(-1, 1, 1, 1)
        out[noisy] = z[noisy] + s * std * torch.randn(z[noisy].shape, generator=gen)
    return out


class VaeTarget:
    """What the model's VAE decoder draws from VAE latents: grey (N, 1, H, W) in [0, 1] (luma of an
    RGB VAE). Runs an ONNX Runtime graph of the decoder per batch size where one can be made."""

    def __init__(self, model_dir: Path, device, onnx: bool = True):
        from diffusers import AutoencoderKL

        self.vae = AutoencoderKL.from_pretrained(Path(model_dir) / "vae", local_files_only=True,
                                                 use_safetensors=True).to(device).eval().requires_grad_(False)
        self.hash = PD.vae_hash(model_dir)
        self.device = device
        self.onnx = onnx
        self._graphs: dict = {}

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            img = self._run(z.float()).float()
        img = (img.clamp(-1, 1) + 1) / 2
        if img.shape[1] == 3:
            img = 0.299 * img[:, :1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]
        return img

    def _run(self, z):
        if self.device.type == "cpu" and self.onnx:
            key = tuple(z.shape)
            if key not in self._graphs:
                from ..generation.engines import onnx_graph, plain_decoder

                self._graphs[key] = onnx_graph(plain_decoder(self.vae), ("latents",), (z,), "decoder", self.hash)
            if self._graphs[key] is not None:
                return self._graphs[key](z)
        return self.vae.decode(z).sample


def preview_loss(pred: torch.Tensor, target: torch.Tensor, grad_weight: float) -> torch.Tensor:
    """L1 on grey levels plus ``grad_weight`` x L1 on the horizontal and vertical differences."""
    loss = (pred - target).abs().mean()
    if grad_weight:
        for a, b in ((pred.diff(dim=-1), target.diff(dim=-1)), (pred.diff(dim=-2), target.diff(dim=-2))):
            loss = loss + grad_weight * (a - b).abs().mean()
    return loss


def _lr(cfg: PreviewDecoderConfig, step: int) -> float:
    lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))
    start = int(cfg.decay_from * cfg.steps)
    if step > start:
        lr *= 1 - 0.9 * min(1.0, (step - start) / max(1, cfg.steps - start))
    return lr


def val_figures(decoder, z: torch.Tensor, target: torch.Tensor) -> dict:
    """Held-out error of ``decoder`` against the VAE's films: mean absolute error in grey levels (0-255)
    and PSNR (dB), over all of them."""
    with torch.no_grad():
        pred = torch.cat([decoder(z[i:i + 8]) for i in range(0, len(z), 8)]).clamp(0, 1)
    err = (pred - target).float()
    mse = float((err ** 2).mean())
    return {"mae_grey": float(err.abs().mean()) * 255, "psnr": 10 * float(np.log10(1.0 / max(mse, 1e-12)))}


def side_by_side(decoder, z: torch.Tensor, target: torch.Tensor, path: Path, n: int = 8) -> None:
    """A PNG: the VAE decoder's films (top row) over the tiny decoder's (bottom row)."""
    from PIL import Image

    with torch.no_grad():
        pred = decoder(z[:n]).clamp(0, 1)
    top = np.concatenate(list(target[:n, 0].cpu().numpy()), axis=1)
    bottom = np.concatenate(list(pred[:, 0].cpu().numpy()), axis=1)
    Image.fromarray(np.round(np.concatenate([top, bottom]) * 255).astype(np.uint8), mode="L").save(path)


def validation_set(latents, recs, mean, std, n: int, seed: int = 1234) -> torch.Tensor:
    """``n`` held-out latents (of validation films), a third of them as encoded and the rest as early
    denoising estimates look (``preview_like``), the same ones at every call."""
    val = [i for i, r in enumerate(recs) if r.get("split") == "val"] or list(range(len(recs)))
    gen = torch.Generator().manual_seed(seed)
    pick = torch.tensor(val)[torch.randperm(len(val), generator=gen)[:n]]
    return preview_like(latents[pick].float(), mean, std, gen, clean_share=1 / 3)


def train_preview_decoder(run_dir: str | Path, model_dir: str | Path, cfg: PreviewDecoderConfig | None = None,
                          threads: int | None = None, device: str = "auto", progress: bool = True,
                          on_progress=None, export_to: str | Path | None = None) -> Path:
    """Train the tiny decoder on the run's cached latents against ``model_dir``'s VAE decoder; resumes from
    RUN/preview-decoder/ckpt.pt. With ``export_to`` (a model folder with that VAE) it is written there at
    the end. Returns the stage folder."""
    from .common import (
        CsvLog,
        RunFolder,
        _barrier,
        _progress,
        _wrap,
        atomic_save,
        cpu_setup,
        ema_update,
        init_dist,
        load_ckpt,
        optimizer_step,
    )

    cfg = cfg or PreviewDecoderConfig()
    cpu_setup(threads)
    dist = init_dist(device)
    run, model_dir = RunFolder(Path(run_dir)), Path(model_dir)
    meta, latents, _, _, recs, train_idx = run.read_cache()
    teacher = VaeTarget(model_dir, dist.device, cfg.onnx_targets)
    scale = float(teacher.vae.config.scaling_factor)
    if abs(scale - float(meta["scaling_factor"])) > 1e-6 or teacher.vae.config.latent_channels != latents.shape[1]:
        raise ValueError(f"{run.root}'s latents were encoded by another VAE than {model_dir.name}'s: copy its VAE "
                         f"to {run.vae_final} and run 'cxrdesk train encode' first")
    mean, std = channel_stats(latents[train_idx[:4096]])
    out = run.stage(STAGE)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    decoder = PD.build(latents.shape[1], latent_scale=scale).to(dist.device).train()
    ema = [p.detach().clone() for p in decoder.parameters()]
    opt = torch.optim.AdamW(decoder.parameters(), lr=cfg.lr, weight_decay=1e-4)
    step = 0
    ckpt = run.ckpt(STAGE)
    if ckpt.exists():
        state = load_ckpt(ckpt)
        if state.get("vae_hash") != teacher.hash:
            raise ValueError(f"{run.root} trained a preview decoder for another VAE than {model_dir.name}'s: "
                             f"use a new run folder")
        decoder.load_state_dict(state["model"])
        ema = [t.clone() for t in state["ema"]]
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
    model = _wrap(decoder, dist)
    ema_model = PD.build(latents.shape[1], latent_scale=scale).eval()
    per_rank = max(1, cfg.batch // dist.world)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + step * 7 + dist.rank)
    # the replay buffer: latents and their VAE films (float16), filled before the first step
    fill = min(cfg.buffer, max(per_rank * 4, 64))
    buf_z, buf_y = [], []
    for s in range(0, fill, 8):
        pick = train_idx[torch.randint(len(train_idx), (8,), generator=gen)]
        z = preview_like(latents[pick].float(), mean, std, gen, cfg.clean_share)
        buf_z.append(z)
        buf_y.append(teacher(z.to(dist.device)).cpu().half())
    buf_z, buf_y = torch.cat(buf_z), torch.cat(buf_y)
    val_z = val_y = None
    if dist.main:
        val_z = validation_set(latents, recs, mean, std, cfg.n_val)
        val_y = teacher(val_z.to(dist.device)).cpu()
        (out / "params.json").write_text(json.dumps({"model": str(model_dir), "vae_hash": teacher.hash,
                                                     "params": sum(p.numel() for p in decoder.parameters()),
                                                     **cfg.__dict__}))
    log = CsvLog(out / "loss.csv", ["step", "loss", "lr", "buffer", "sec"], dist.main)
    val_log = CsvLog(out / "val.csv", ["step", "mae_grey", "psnr"], dist.main)
    bar = _progress(cfg.steps, step, STAGE, progress and dist.main)
    t0 = time.time()

    def ema_decoder():
        with torch.no_grad():
            for p, e in zip(ema_model.parameters(), ema):
                p.copy_(e)
        return ema_model

    while step < cfg.steps:
        pick = train_idx[torch.randint(len(train_idx), (cfg.fresh,), generator=gen)]
        z_new = preview_like(latents[pick].float(), mean, std, gen, cfg.clean_share)
        y_new = teacher(z_new.to(dist.device)).cpu().half()
        if len(buf_z) < cfg.buffer:
            slot = torch.arange(len(buf_z), len(buf_z) + cfg.fresh)
            buf_z, buf_y = torch.cat([buf_z, z_new]), torch.cat([buf_y, y_new])
        else:
            slot = torch.randint(len(buf_z), (cfg.fresh,), generator=gen)
            buf_z[slot], buf_y[slot] = z_new, y_new
        take = torch.randint(len(buf_z), (per_rank,), generator=gen)
        k = min(cfg.fresh, per_rank)  # every new film is trained on at least once
        take[:k] = slot[:k]
        z, y = buf_z[take].to(dist.device), buf_y[take].float().to(dist.device)
        loss = preview_loss(model(z), y, cfg.grad_weight)
        lr = _lr(cfg, step)
        optimizer_step(opt, loss, decoder.parameters(), lr)
        step += 1
        ema_update(ema, decoder.parameters(), min(cfg.ema_decay, (1 + step) / (10 + step)))
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if on_progress:
            on_progress(step, cfg.steps, {"loss": loss.item()})
        if dist.main and (step % 20 == 0 or step == cfg.steps):
            log.write({"step": step, "loss": f"{loss.item():.5f}", "lr": f"{lr:.2e}", "buffer": len(buf_z),
                       "sec": f"{time.time() - t0:.1f}"})
        if dist.main and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            atomic_save({"model": decoder.state_dict(), "ema": ema, "opt": opt.state_dict(), "step": step,
                         "config": cfg.__dict__, "vae_hash": teacher.hash, "decoder": decoder.config}, ckpt)
        if dist.main and (step % cfg.sample_every == 0 or step == cfg.steps):
            fig = val_figures(ema_decoder(), val_z, val_y)
            val_log.write({"step": step, "mae_grey": f"{fig['mae_grey']:.3f}", "psnr": f"{fig['psnr']:.3f}"})
            side_by_side(ema_model, val_z, val_y, out / f"val_{step:06d}.png")
    if bar:
        bar.close()
    _barrier(dist)
    if export_to is not None and dist.main:
        export_preview_decoder(run.root, model_dir, export_to)
    return out


def export_preview_decoder(run_dir: str | Path, model_dir: str | Path, dest: str | Path | None = None) -> Path:
    """Write the checkpoint's EMA decoder into ``dest`` (default ``model_dir``): its preview_decoder/ folder
    and cxrdesk.json's record. ``dest`` must hold the VAE the decoder imitated (ValueError otherwise)."""
    from .common import RunFolder, load_ckpt

    run, model_dir = RunFolder(Path(run_dir)), Path(model_dir)
    dest = Path(dest or model_dir)
    ckpt = run.ckpt(STAGE)
    if not ckpt.exists():
        raise FileNotFoundError(f"no preview decoder checkpoint in {run.stage(STAGE)}")
    state = load_ckpt(ckpt)
    if state.get("vae_hash") != PD.vae_hash(dest):
        raise ValueError(f"{dest.name}'s VAE is not the one the preview decoder in {run.root} imitated")
    cfg = state.get("config", {})
    scale = float(state["decoder"]["latent_scale"])
    arch = state["decoder"]
    decoder = PD.build(arch["latent_channels"], tuple(arch["widths"]), scale)
    with torch.no_grad():
        for p, e in zip(decoder.parameters(), state["ema"]):
            p.copy_(e)
    PD.save(decoder, dest)
    rec = {"vae_hash": state["vae_hash"], "steps": int(state["step"]),
           "params": sum(p.numel() for p in decoder.parameters()), "use": "previews only",
           "config": {k: cfg.get(k) for k in ("batch", "lr", "grad_weight", "fresh", "buffer", "clean_share")}}
    val = run.stage(STAGE) / "val.csv"
    if val.exists():
        rows = val.read_text().strip().splitlines()
        if len(rows) > 1:
            last = dict(zip(rows[0].split(","), rows[-1].split(",")))
            rec["held_out"] = {"step": int(last["step"]), "mae_grey": float(last["mae_grey"]),
                               "psnr": float(last["psnr"])}
    PD.write_record(dest, rec)
    return dest / PD.PREVIEW_DECODER_DIR
