"""VAE and UNet training: resumable, CPU-first, torchrun/DDP-ready.

Stages (each resumes from ``RUN/<stage>/ckpt.pt`` when present):

1. ``vae``    - train the grayscale AutoencoderKL on random crops (L1 + edge + small KL).
2. ``encode`` - encode every image once to latents; pre-encode caption embeddings.
3. ``unet``   - train the text-conditioned UNet on cached latents (epsilon or v prediction, min-SNR
               weighting, 10% caption dropout for classifier-free guidance, EMA weights).
4. ``export`` - write a diffusers model folder (safetensors only) from the EMA weights.

Run under ``torchrun --nproc_per_node N`` for several processes or machines: each process takes
its own share of every batch, gradients are averaged by DistributedDataParallel (gloo on CPU,
nccl on CUDA), and only rank 0 writes checkpoints, logs and samples.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import captions as cap
from .datasets import Record, load_gray, read_dataset
from .models import (LATENT_SCALING_KEYS, build_unet, build_vae, latent_scaling, n_params, scheduler_config,
                     vae_to_unet_latents)

ProgressFn = Callable[[int, int, dict], None]


# --------------------------------------------------------------------------- distributed helpers
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_dist(device: str = "auto") -> Dist:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    dev = torch.device(device)
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    return Dist(rank=rank, world=world, device=dev)


def _wrap(model: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    return model


def _barrier(dist: Dist) -> None:
    if dist.world > 1:
        torch.distributed.barrier()


def cpu_setup(threads: int | None) -> None:
    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(threads)


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_ckpt(path: Path):
    # Our own resume files only; weights_only refuses arbitrary pickled objects.
    return torch.load(path, map_location="cpu", weights_only=True)


class CsvLog:
    def __init__(self, path: Path, fields: list[str], enabled: bool = True):
        self.path, self.fields, self.enabled = path, fields, enabled
        header = None
        if enabled and path.exists():  # resuming: keep the columns the file already has
            with open(path, newline="") as fh:
                header = next(csv.reader(fh), None)
        if header:
            self.fields = header
        elif enabled:
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerow(fields)

    def write(self, row: dict) -> None:
        if self.enabled:
            with open(self.path, "a", newline="") as fh:
                csv.writer(fh).writerow([row.get(k, "") for k in self.fields])


def _progress(total: int, start: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True, mininterval=2.0)


# --------------------------------------------------------------------------- data
def load_image_cache(data_dir: str, run_dir: Path, size: int = 256,
                     dist: Dist | None = None) -> tuple[list[Record], np.ndarray]:
    """All readable images of a dataset as a uint8 (N, size, size) array, cached in the run folder."""
    records = read_dataset(data_dir)
    cache = run_dir / f"images_{size}.npy"
    index = run_dir / f"images_{size}.json"
    if cache.exists() and index.exists():
        kept = json.loads(index.read_text())
        if kept["data_dir"] == str(Path(data_dir).resolve()) and kept["n_records"] == len(records):
            keep = set(kept["uids"])
            records = [r for r in records if r.uid in keep]
            return records, np.load(cache, mmap_mode="r")
    if dist is not None and not dist.main:
        _barrier(dist)
        return load_image_cache(data_dir, run_dir, size)
    arr = np.zeros((len(records), size, size), np.uint8)
    ok: list[Record] = []
    skipped = 0
    for r in records:
        try:
            img = load_gray(r.path, size)
        except Exception:  # unreadable files are skipped, not fatal
            skipped += 1
            continue
        arr[len(ok)] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        ok.append(r)
    arr = arr[: len(ok)]
    if not ok:
        raise RuntimeError(f"no readable images in {data_dir}")
    tmp = run_dir / f"images_{size}.tmp.npy"
    np.save(tmp, arr)
    os.replace(tmp, cache)
    index.write_text(json.dumps({"data_dir": str(Path(data_dir).resolve()), "n_records": len(records),
                                 "uids": [r.uid for r in ok], "skipped": skipped}))
    if dist is not None and dist.world > 1:
        _barrier(dist)
    return ok, np.load(cache, mmap_mode="r")


# --------------------------------------------------------------------------- VAE
@dataclass
class VAEConfig:
    steps: int = 4000
    batch: int = 8
    crop: int = 128
    lr: float | None = None  # None: 2e-4 for a full VAE, 1e-4 for decoder-only fine-tuning
    kl_weight: float = 1e-5
    edge_weight: float = 0.5
    preset: str = "default"
    image_size: int = 256
    # latent channels of a new VAE (None: the preset's, 4); a resumed run keeps its checkpoint's
    latent_channels: int | None = None
    ckpt_every: int = 200
    sample_every: int = 500
    seed: int = 0
    # Decoder-only fine-tuning: the encoder (and so every cached latent and any UNet trained on
    # them) stays exactly as it is; only the decoder learns to draw sharper images.
    decoder_only: bool = False
    # Adversarial term (hinge loss against a small PatchGAN, weighted adaptively against the
    # reconstruction gradient as in Esser et al. 2021). L1 alone draws the conditional median, which
    # is soft: the film grain and fine trabecular/vascular texture of a radiograph are lost. 0 = off;
    # None: 0.1 for decoder-only fine-tuning, off for a full VAE.
    adv_weight: float | None = None
    # step from which the decoder uses the adversarial term (the critic trains from 0);
    # None: 500 for decoder-only fine-tuning (the critic learns first), else 0
    adv_start: int | None = None
    disc_lr: float = 2e-4
    # Decoder-only: start from this model folder's VAE when the run has no VAE of its own yet (to
    # sharpen the decoder of a shipped model; `export --init-from` then pairs it with that UNet).
    init_from: str | None = None
    # Decoder-only: decode latents with white noise added, of a random strength up to this many times
    # each channel's spread (per film, uniform from 0), so the decoder learns to draw a clean film from
    # slightly wrong latents. A UNet's samples carry small uncorrelated latent errors, which a sharp
    # adversarial decoder can render as a cellular texture (the 16-channel VAE: see the model card).
    # 0 = off.
    latent_noise: float = 0.0

    def __post_init__(self):
        if self.latent_noise and not self.decoder_only:
            raise ValueError("latent noise is for decoder-only fine-tuning (train decoder)")
        if self.lr is None:
            self.lr = 1e-4 if self.decoder_only else 2e-4
        if self.adv_weight is None:
            self.adv_weight = 0.1 if self.decoder_only else 0.0
        if self.adv_start is None:
            self.adv_start = 500 if self.decoder_only else 0


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (receptive field 70 px): real/fake logits per patch of a grey image."""

    def __init__(self, ch: int = 32):
        super().__init__()

        def block(a, b, stride):
            return [nn.Conv2d(a, b, 4, stride, 1), nn.GroupNorm(8, b), nn.LeakyReLU(0.2, inplace=True)]

        self.net = nn.Sequential(nn.Conv2d(1, ch, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
                                 *block(ch, ch * 2, 2), *block(ch * 2, ch * 4, 2), *block(ch * 4, ch * 4, 1),
                                 nn.Conv2d(ch * 4, 1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    gr = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
    gg = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
    return (gr.norm() / (gg.norm() + 1e-4)).clamp(0.0, 1.0).detach()


def _edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def vae_loss(vae, x: torch.Tensor, cfg: VAEConfig, disc: nn.Module | None = None,
             step: int = 0) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Generator-side loss; also returns the reconstruction for the discriminator step."""
    if cfg.decoder_only:
        with torch.no_grad():
            post = vae.encode(x).latent_dist
        z = post.mode()
        if cfg.latent_noise:
            strength = cfg.latent_noise * torch.rand(len(z), 1, 1, 1, device=z.device)
            z = z + strength * z.std(dim=(0, 2, 3), keepdim=True) * torch.randn_like(z)
    else:
        post = vae.encode(x).latent_dist
        z = post.sample()
    rec = vae.decode(z).sample
    l1 = (rec - x).abs().mean()
    gy, gx = _edges(rec)
    ty, tx = _edges(x)
    edge = (gy - ty).abs().mean() + (gx - tx).abs().mean()
    kl = post.kl().mean() / z[0].numel()
    rec_loss = l1 + cfg.edge_weight * edge
    loss = rec_loss + cfg.kl_weight * kl
    parts = {"l1": l1.item(), "edge": edge.item(), "kl": kl.item()}
    if disc is not None and cfg.adv_weight > 0 and step >= cfg.adv_start:
        g_loss = -disc(rec).mean()
        w = _adaptive_weight(rec_loss, g_loss, vae.decoder.conv_out.weight) * cfg.adv_weight
        loss = loss + w * g_loss
        parts.update(g=g_loss.item(), adv_w=w.item())
    return loss, parts, rec


def _allreduce_grads(model: nn.Module, dist: Dist) -> None:
    # vae_loss calls encode/decode directly (no single forward for a DDP wrapper to hook), so with
    # several processes the gradients are averaged explicitly.
    if dist.world > 1:
        for p in model.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= dist.world


def train_vae(data_dir: str, run_dir: str | Path, cfg: VAEConfig | None = None, threads: int | None = None,
              device: str = "auto", progress: bool = True, on_progress: ProgressFn | None = None) -> Path:
    cfg = cfg or VAEConfig()
    cpu_setup(threads)
    dist = init_dist(device)
    run = Path(run_dir)
    out = run / ("decoder" if cfg.decoder_only else "vae")
    out.mkdir(parents=True, exist_ok=True)
    records, images = load_image_cache(data_dir, run, cfg.image_size, dist)
    train_idx = np.array([i for i, r in enumerate(records) if r.split != "val"] or list(range(len(records))))
    val_idx = [i for i, r in enumerate(records) if r.split == "val"][:4] or list(range(min(4, len(records))))

    torch.manual_seed(cfg.seed)
    ckpt = out / "ckpt.pt"
    state = load_ckpt(ckpt) if ckpt.exists() else None  # resume
    if cfg.decoder_only:
        from diffusers import AutoencoderKL

        base = run / "vae" / "final"
        if not base.is_dir() and cfg.init_from:
            if dist.main:
                _copy_model_vae(Path(cfg.init_from), base)
            _barrier(dist)
        if not base.is_dir():
            raise FileNotFoundError(f"decoder fine-tuning needs a trained VAE in {base}")
        vae = AutoencoderKL.from_pretrained(base, local_files_only=True).to(dist.device)
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
        if not (out / "encoder_reference.safetensors").exists() and dist.main:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))},
                      str(out / "encoder_reference.safetensors"))
    else:
        if state is not None:
            had = latent_channels_of(state["model"])
            if cfg.latent_channels and had != cfg.latent_channels:
                raise ValueError(f"{ckpt} is a VAE with {had} latent channels, not {cfg.latent_channels}: "
                                 f"resume without --latent-channels, or use a new run folder")
            cfg.latent_channels = had
        vae = build_vae(cfg.preset, cfg.image_size, cfg.latent_channels).to(dist.device)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    disc = dopt = None
    if cfg.adv_weight > 0:
        disc = PatchDiscriminator().to(dist.device)
        dopt = torch.optim.AdamW(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9), weight_decay=0.0)
    step = 0
    if state is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        if disc is not None and "disc" in state:
            disc.load_state_dict(state["disc"])
            dopt.load_state_dict(state["disc_opt"])
    rng = np.random.default_rng(cfg.seed * 1000 + step * 7 + dist.rank)
    log = CsvLog(out / "loss.csv", ["step", "loss", "l1", "edge", "kl", "g", "d", "adv_w", "lr", "sec"], dist.main)
    bar = _progress(cfg.steps, step, "decoder" if cfg.decoder_only else "vae", progress and dist.main)
    per_rank = max(1, cfg.batch // dist.world)
    t0 = time.time()
    while step < cfg.steps:
        idx = rng.choice(train_idx, per_rank)
        crops = []
        for i in idx:
            y, x = rng.integers(0, cfg.image_size - cfg.crop + 1, 2)
            crops.append(images[i, y:y + cfg.crop, x:x + cfg.crop])
        x = torch.from_numpy(np.stack(crops)).float().div_(127.5).sub_(1.0).unsqueeze(1).to(dist.device)
        lr = cfg.lr * min(1.0, (step + 1) / 200)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, parts, rec = vae_loss(vae, x, cfg, disc, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _allreduce_grads(vae, dist)
        torch.nn.utils.clip_grad_norm_([p for p in vae.parameters() if p.requires_grad], 1.0)
        opt.step()
        if disc is not None:  # the discriminator learns from step 0; the decoder uses it after adv_start
            disc.zero_grad(set_to_none=True)
            d_loss = 0.5 * (F.relu(1.0 - disc(x)).mean() + F.relu(1.0 + disc(rec.detach())).mean())
            d_loss.backward()
            _allreduce_grads(disc, dist)
            dopt.step()
            parts["d"] = d_loss.item()
        step += 1
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", l1=f"{parts['l1']:.4f}")
        if on_progress:
            on_progress(step, cfg.steps, parts)
        if dist.main and (step % 20 == 0 or step == cfg.steps):
            adv = {k: f"{parts[k]:.4f}" for k in ("g", "d", "adv_w") if k in parts}
            log.write({"step": step, "loss": f"{loss.item():.5f}", "l1": f"{parts['l1']:.5f}",
                       "edge": f"{parts['edge']:.5f}", "kl": f"{parts['kl']:.3f}", "lr": f"{lr:.2e}",
                       "sec": f"{time.time() - t0:.1f}", **adv})
        if dist.main and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            state = {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, "config": cfg.__dict__}
            if disc is not None:
                state.update(disc=disc.state_dict(), disc_opt=dopt.state_dict())
            atomic_save(state, ckpt)
        if dist.main and (step % cfg.sample_every == 0 or step == cfg.steps):
            _vae_samples(vae, images, val_idx, out / f"recon_{step:06d}.png", dist.device)
    if bar:
        bar.close()
    final = run / "vae" / "final"
    if dist.main:
        if cfg.decoder_only:
            # Same encoder, new decoder: replace the VAE that export_model() ships.
            tmp = run / "vae" / "final.tmp"
            vae.save_pretrained(tmp, safe_serialization=True)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        else:
            vae.save_pretrained(final, safe_serialization=True)
    _barrier(dist)
    return final


def _copy_model_vae(model_dir: Path, dest: Path) -> None:
    """A model folder's VAE, as float32 safetensors, into a run's vae/final (written whole or not at all)."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(model_dir / "vae", local_files_only=True, use_safetensors=True)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    vae.float().save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, dest)


def latent_channels_of(vae_state: dict) -> int:
    """The latent channel count of an AutoencoderKL state dict (quant_conv gives mean and log-variance)."""
    return vae_state["quant_conv.weight"].shape[0] // 2


def load_vae(path: str | Path):
    """Any VAE a user points at, as float32 in eval mode: a model folder (its vae/), a VAE folder,
    a run folder (its vae/final), or a vae or decoder training checkpoint (a ckpt.pt)."""
    from diffusers import AutoencoderKL

    path = Path(path)
    if path.is_file():
        state = load_ckpt(path)
        sd, cfg = state["model"], state.get("config", {})
        vae = build_vae(cfg.get("preset", "default"), cfg.get("image_size", 256), latent_channels_of(sd))
        vae.load_state_dict(sd)
        return vae.float().eval()
    for folder in (path / "vae", path / "vae" / "final", path):
        if (folder / "config.json").is_file():
            return AutoencoderKL.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32).eval()
    raise FileNotFoundError(f"no VAE in {path}: give a model folder, a VAE folder, a run folder or a ckpt.pt")


ENCODER_PREFIXES = ("encoder.", "quant_conv.")


def same_encoder(a, b) -> bool:
    """Whether two AutoencoderKLs encode alike (same encoder and quant_conv weights), i.e. share
    one latent space: a UNet trained on the latents of one draws for the other's decoder too.
    Weights are compared at float16 precision: model folders store them so, while a training run
    keeps the same VAE in float32."""
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(ENCODER_PREFIXES)]
    return bool(keys) and keys == [k for k in sb if k.startswith(ENCODER_PREFIXES)] and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k].half(), sb[k].half()) for k in keys)


@torch.no_grad()
def _vae_samples(vae, images, idx, path: Path, device) -> None:
    from PIL import Image

    vae.eval()
    x = torch.from_numpy(np.stack([np.array(images[i]) for i in idx])).float().div(127.5).sub(1).unsqueeze(1).to(device)
    rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    vae.train()
    top = np.concatenate(list(((x[:, 0].cpu().numpy() + 1) * 127.5).astype(np.uint8)), axis=1)
    bottom = np.concatenate(list(((rec[:, 0].cpu().numpy() + 1) * 127.5).astype(np.uint8)), axis=1)
    Image.fromarray(np.concatenate([top, bottom], 0)).save(path)


# --------------------------------------------------------------------------- latents + captions
def encode_dataset(data_dir: str, run_dir: str | Path, vae_dir: str | Path | None = None,
                   image_size: int = 256, threads: int | None = None, captions_per_image: int = 6,
                   progress: bool = True, batch: int = 16, captions_only: bool = False) -> Path:
    """Encode every image to latents and every caption to token embeddings, once.

    ``captions_only`` re-encodes just the captions of an encoded dataset (after a change to the
    caption rules) and keeps its latents and scaling factor, so a UNet can fine-tune on the new
    captions from its checkpoint."""
    from diffusers import AutoencoderKL

    cpu_setup(threads)
    run = Path(run_dir)
    out = run / "cache"
    out.mkdir(parents=True, exist_ok=True)
    done = out / "done.json"
    if captions_only:
        if not done.exists():
            raise FileNotFoundError(f"no encoded dataset in {out}: encode the images first")
        index = run / f"images_{image_size}.json"
        source = json.loads(index.read_text()).get("data_dir") if index.exists() else None
        if source != str(Path(data_dir).resolve()):
            raise ValueError(f"{run} was encoded from {source}, not {data_dir}: re-caption with the same "
                             f"--data, or encode into a new run folder")
        records, _ = load_image_cache(data_dir, run, image_size)
        known = [r["uid"] for r in json.loads((out / "records.json").read_text())]
        if known != [r.uid for r in records]:
            raise ValueError(f"the films in {data_dir} changed since {out} was encoded: encode into a new run folder")
        _encode_captions(out, records, captions_per_image)
        return out
    if done.exists():
        return out
    records, images = load_image_cache(data_dir, run, image_size)
    vae = AutoencoderKL.from_pretrained(vae_dir or run / "vae" / "final", local_files_only=True).eval()
    lat = []
    bar = _progress(len(records), 0, "encode", progress)
    with torch.no_grad():
        for s in range(0, len(records), batch):
            x = torch.from_numpy(np.array(images[s:s + batch])).float().div(127.5).sub(1).unsqueeze(1)
            lat.append(vae.encode(x).latent_dist.mode().half().numpy())
            if bar:
                bar.update(len(x))
    if bar:
        bar.close()
    latents = np.concatenate(lat)
    scale = float(1.0 / latents.astype(np.float32).std())
    _encode_captions(out, records, captions_per_image)
    np.save(out / "latents.npy", latents)
    (out / "records.json").write_text(json.dumps([{"uid": r.uid, "labels": r.labels, "split": r.split}
                                                  for r in records]))
    done.write_text(json.dumps({"scaling_factor": scale, "n": len(records),
                                "latent_shape": list(latents.shape[1:])}))
    return out


def _encode_captions(out: Path, records, captions_per_image: int) -> None:
    """Draw each film's caption pool and encode every distinct caption once."""
    from .text import TextEncoder

    texts: list[str] = [""]
    lookup = {"": 0}
    per_image = []
    for r in records:
        pool = cap.caption_pool(r.labels, r.text, captions_per_image)
        ids = []
        for c in pool:
            if c not in lookup:
                lookup[c] = len(texts)
                texts.append(c)
            ids.append(lookup[c])
        per_image.append(ids + [ids[0]] * (captions_per_image - len(ids)))
    enc = TextEncoder()
    embs = [enc.encode(texts[s:s + 64]).embeddings.half().numpy() for s in range(0, len(texts), 64)]
    # Written whole or not at all: a crash here leaves the previous caption set in place.
    for name, arr in (("text_emb.npy", np.concatenate(embs)), ("caption_ids.npy", np.array(per_image, np.int32))):
        with open(out / (name + ".tmp"), "wb") as f:
            np.save(f, arr)
    (out / "captions.json.tmp").write_text(json.dumps(texts))
    for name in ("text_emb.npy", "caption_ids.npy", "captions.json"):
        os.replace(out / (name + ".tmp"), out / name)


# --------------------------------------------------------------------------- UNet
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
    classes = [cap.record_class(lab) for lab in labels]
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


def train_unet(run_dir: str | Path, cfg: UNetConfig | None = None, threads: int | None = None,
               device: str = "auto", progress: bool = True, on_progress: ProgressFn | None = None,
               export_to: str | Path | None = None) -> Path:
    from diffusers import DDPMScheduler

    cfg = cfg or UNetConfig()
    cpu_setup(threads)
    dist = init_dist(device)
    run = Path(run_dir)
    cache = run / "cache"
    meta = json.loads((cache / "done.json").read_text())
    latents = torch.from_numpy(np.load(cache / "latents.npy")).float()
    text_emb = torch.from_numpy(np.load(cache / "text_emb.npy"))
    cap_ids = torch.from_numpy(np.load(cache / "caption_ids.npy")).long()
    recs = json.loads((cache / "records.json").read_text())
    train_idx = torch.tensor([i for i, r in enumerate(recs) if r["split"] != "val"] or list(range(len(recs))))
    out = run / "unet"
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    c, h, _ = latents.shape[1:]
    unet = build_unet(cfg.preset, h, c).to(dist.device)
    ema = [p.detach().clone() for p in unet.parameters()]
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=1e-2)
    step = 0
    ckpt = out / "ckpt.pt"
    # Settings whose change on resume starts a fine-tune of the model trained so far: the step it
    # began is recorded as "<name>_since". None in cfg keeps the checkpoint's value, else 0.
    since = {k: 0 for k in FINE_TUNE_SETTINGS}
    # The two balances are alternatives: asking for one (when resuming too) turns the other off.
    if cfg.finding_balance and cfg.class_balance is None:
        cfg.class_balance = 0.0
    if cfg.class_balance and cfg.finding_balance is None:
        cfg.finding_balance = 0.0
    state = load_ckpt(ckpt) if ckpt.exists() else None
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
    sched = DDPMScheduler(**scheduler_config(cfg.prediction, cfg.zero_snr))
    alphas = sched.alphas_cumprod.to(dist.device)
    latents = vae_to_unet_latents(latents, latent_scaling(meta["scaling_factor"], norm))
    if state:
        unet.load_state_dict(state["model"])
        for e, v in zip(ema, state["ema"]):
            e.copy_(v)
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        for k in FINE_TUNE_SETTINGS:
            since[k] = int(state.get(f"{k}_since", 0))
            before = float(state.get("config", {}).get(k) or 0.0)
            if getattr(cfg, k) is None:
                setattr(cfg, k, before)
            elif getattr(cfg, k) != before:
                since[k] = step
    elif cfg.init_from:
        from safetensors.torch import load_file

        weights = sorted((Path(cfg.init_from) / "unet").glob("*.safetensors"))
        if not weights:
            raise FileNotFoundError(f"no UNet safetensors in {cfg.init_from}/unet")
        sd = load_file(str(weights[0]))
        adapted = init_across_latent_channels(unet, sd)
        if adapted and dist.main:
            print(f"{cfg.init_from}: its UNet denoises {sd['conv_in.weight'].shape[1]} latent channels and this "
                  f"run's latents have {c}: starting from its weights with new input and output layers")
        with torch.no_grad():
            for e, p in zip(ema, unet.parameters()):
                e.copy_(p)
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
        if draw_weights is None:
            pick = train_idx[torch.randint(len(train_idx), (per_rank,), generator=gen)]
        else:
            pick = train_idx[torch.multinomial(draw_weights, per_rank, replacement=True, generator=gen)]
        x0 = latents[pick].to(dist.device)
        which = torch.randint(cap_ids.shape[1], (per_rank,), generator=gen)
        tid = cap_ids[pick, which]
        drop = torch.rand(per_rank, generator=gen) < cfg.cond_dropout
        tid = torch.where(drop, torch.zeros_like(tid), tid)
        cond = text_emb[tid].float().to(dist.device)
        noise = torch.randn(x0.shape, generator=gen)
        if cfg.noise_offset:
            noise = noise + cfg.noise_offset * torch.randn(x0.shape[:2] + (1, 1), generator=gen)
        noise = noise.to(dist.device)
        t = torch.randint(0, sched.config.num_train_timesteps, (per_rank,), generator=gen).to(dist.device)
        xt = sched.add_noise(x0, noise, t)
        pred = model(xt, t, encoder_hidden_states=cond).sample
        loss = diffusion_loss(pred, x0, noise, alphas[t], cfg.prediction, cfg.snr_gamma,
                              snr_floor=1.0 if cfg.zero_snr else 0.0)
        lr = unet_lr(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, unet.parameters()):
                e.lerp_(p.detach(), 1 - decay)
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
            folder = export_model(run, unet, ema, export_to or run / "model", meta, step=step, latent_norm=norm,
                                  prediction=cfg.prediction, zero_snr=cfg.zero_snr)
            if step % cfg.sample_every == 0 or step == cfg.steps:
                _unet_samples(folder, out / f"samples_{step:06d}.png")
    if bar:
        bar.close()
    _barrier(dist)
    return Path(export_to or run / "model")


def export_model(run: Path, unet, ema, dest: str | Path, meta: dict, step: int = 0,
                 name: str | None = None, guidance: float | None = None,
                 guidance_interval: tuple[float, float] | None = None, latent_norm: dict | None = None,
                 prediction: str = "epsilon", zero_snr: bool = False) -> Path:
    """Write a diffusers model folder with the EMA UNet weights, the trained VAE (its config
    carrying the UNet's latent scaling: one factor, or per-channel statistics) and the scheduler
    config (with what the UNet predicts)."""
    import copy

    from diffusers import AutoencoderKL

    from .pipeline import write_model_folder

    dest = Path(dest)
    ema_unet = copy.deepcopy(unet)
    with torch.no_grad():
        for p, e in zip(ema_unet.parameters(), ema):
            p.copy_(e)
    vae = AutoencoderKL.from_pretrained(run / "vae" / "final", local_files_only=True)
    vae.register_to_config(**latent_scaling(meta["scaling_factor"], latent_norm))
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    params = {}
    if (run / "unet" / "params.json").exists():
        params = json.loads((run / "unet" / "params.json").read_text())
    training = {"unet_steps": step, "unet": params, "scaling_factor": meta["scaling_factor"],
                "latent_norm": "per channel" if latent_norm else "scaling factor"}
    counts = training_label_counts(run)
    if counts:
        training["label_counts"] = counts
    write_model_folder(tmp, vae, ema_unet, name=name or dest.name, training=training,
                       preview_map=fit_preview_map(run), noise_offset=float(params.get("noise_offset", 0.0)),
                       guidance=guidance, guidance_interval=guidance_interval,
                       scheduler=scheduler_config(prediction, zero_snr))
    return _replace_folder(tmp, dest)


def _replace_folder(tmp: Path, dest: Path) -> Path:
    """Move a freshly written model folder over ``dest``, keeping the card and evaluation files
    ``dest`` already had (they are rewritten by hand or by `evaluate` for the new weights)."""
    for extra in ("model_card.md", "eval.json", "eval_grid.png"):
        if (dest / extra).exists():
            shutil.copy(dest / extra, tmp / extra)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def export_with_model_unet(run_dir: str | Path, model_dir: str | Path, dest: str | Path,
                           name: str | None = None, guidance: float | None = None,
                           guidance_interval: tuple[float, float] | None = None) -> Path:
    """A model folder with the run's VAE (a decoder fine-tuned by `train decoder --init-from`) and
    ``model_dir``'s UNet, scheduler, training record and sampling settings: for a run that trained a
    decoder but no UNet. The run's encoder must be the model's, since the UNet draws its latents."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from .pipeline import recommended_guidance, recommended_interval, write_model_folder

    run, model, dest = Path(run_dir), Path(model_dir), Path(dest)
    if not (model / "text_encoder" / "cxrdesk_text_encoder.json").is_file():
        raise ValueError(f"{model} is not a cxrdesk model folder (it has its own text encoder)")
    vae = AutoencoderKL.from_pretrained(run / "vae" / "final", local_files_only=True, use_safetensors=True)
    base = AutoencoderKL.from_pretrained(model / "vae", local_files_only=True, use_safetensors=True)
    if not same_encoder(vae, base):
        raise ValueError(f"the VAE in {run / 'vae' / 'final'} encodes differently from {model.name}'s: "
                         f"that model's UNet would not fit it (fine-tune the decoder only: 'train decoder --init-from')")
    vae.register_to_config(**{k: base.config.get(k) for k in LATENT_SCALING_KEYS})
    unet = UNet2DConditionModel.from_pretrained(model / "unet", local_files_only=True, use_safetensors=True)
    extra = json.loads((model / "cxrdesk.json").read_text()) if (model / "cxrdesk.json").is_file() else {}
    training = dict(extra.get("training") or {})
    ckpt = run / "decoder" / "ckpt.pt"
    if ckpt.exists():
        state = load_ckpt(ckpt)
        keep = ("steps", "batch", "crop", "lr", "edge_weight", "adv_weight", "adv_start")
        training["decoder"] = {"steps": int(state["step"]), "from": extra.get("name", model.name),
                               **{k: state.get("config", {}).get(k) for k in keep}}
    sched_file = model / "scheduler" / "scheduler_config.json"
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_model_folder(tmp, vae, unet, name=name or extra.get("name") or dest.name, training=training,
                       scheduler=json.loads(sched_file.read_text()) if sched_file.is_file() else None,
                       preview_map=extra.get("preview_map"), noise_offset=float(extra.get("noise_offset") or 0.0),
                       guidance=recommended_guidance(extra) if guidance is None else guidance,
                       guidance_interval=recommended_interval(extra) if guidance_interval is None else guidance_interval)
    return _replace_folder(tmp, dest)


def training_label_counts(run: Path) -> dict[str, int]:
    """How many training films (not validation) carry each finding label, from the run's cache;
    written into the model folder so the app can say when a prompt asks for a rare finding."""
    records = run / "cache" / "records.json"
    if not records.exists():
        return {}
    counts: dict[str, int] = {}
    for r in json.loads(records.read_text()):
        if r.get("split") != "val":
            for label in r.get("labels", []):
                counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def fit_preview_map(run: Path, n: int = 512) -> list[float] | None:
    """Linear map from latent channels to gray (plus bias), fitted on the cached dataset latents."""
    import cv2

    lat_file, img_file = run / "cache" / "latents.npy", run / "images_256.npy"
    if not lat_file.exists() or not img_file.exists():
        return None
    lat = np.load(lat_file, mmap_mode="r")
    imgs = np.load(img_file, mmap_mode="r")
    n = min(n, len(lat), len(imgs))
    c, h, w = lat.shape[1:]
    xs, ys = [], []
    for i in range(n):
        xs.append(np.asarray(lat[i], np.float32).reshape(c, -1).T)
        small = cv2.resize(np.asarray(imgs[i], np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)
        ys.append(small.reshape(-1))
    a = np.concatenate(xs)
    a = np.concatenate([a, np.ones((len(a), 1), np.float32)], axis=1)
    coef, *_ = np.linalg.lstsq(a, np.concatenate(ys), rcond=None)
    return [float(v) for v in coef]


def export_from_checkpoint(run_dir: str | Path, dest: str | Path, name: str | None = None,
                           guidance: float | None = None,
                           guidance_interval: tuple[float, float] | None = None) -> Path:
    """Write a model folder from the UNet checkpoint's EMA weights (no training)."""
    run = Path(run_dir)
    ckpt = run / "unet" / "ckpt.pt"
    if not ckpt.exists():
        raise FileNotFoundError(f"no UNet checkpoint in {run / 'unet'}")
    state = load_ckpt(ckpt)
    meta = json.loads((run / "cache" / "done.json").read_text())
    cfg = state.get("config", {})
    c, h = meta["latent_shape"][0], meta["latent_shape"][1]
    unet = build_unet(cfg.get("preset", "default"), h, c)
    unet.load_state_dict(state["model"])
    return export_model(run, unet, state["ema"], dest, meta, step=int(state["step"]), name=name, guidance=guidance,
                        guidance_interval=guidance_interval, latent_norm=state.get("latent_norm"),
                        prediction=state.get("prediction", "epsilon"), zero_snr=bool(state.get("zero_snr", False)))


def _unet_samples(folder: Path, path: Path) -> None:
    from PIL import Image

    from .pipeline import Pipeline

    pipe = Pipeline.load(folder, device="cpu")
    tiles = [pipe.generate(p, steps=20, seed=i, guidance_scale=4.0).image_u8 for i, p in enumerate(SAMPLE_PROMPTS)]
    Image.fromarray(np.concatenate(tiles, axis=1)).save(path)

