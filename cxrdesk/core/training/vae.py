"""The VAE stages: ``train vae`` (the grayscale AutoencoderKL on random crops: L1 + edge + small KL,
optionally adversarial) and ``train decoder`` (the decoder alone, the encoder and its latents kept)."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..generation.models import build_vae
from .common import (CsvLog, Dist, ProgressFn, RunFolder, _barrier, _progress, atomic_save, cpu_setup, init_dist,
                     load_ckpt, load_image_cache, optimizer_step)


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
    # Weight of the spectral term: L1 between the log power of the film and of its reconstruction
    # in radial frequency bands (SPECTRAL_BANDS), per film. It asks for the right amount of detail
    # at each scale without asking for its exact position (no phase), which L1 alone never draws:
    # the shipped decoder keeps only 55-70% of real films' power at 3-12 pixel scales. 0 = off.
    spectral_weight: float = 0.0
    # Decoder-only: give the run's VAE (when it is first copied from init_from) this many residual
    # blocks per resolution instead of its own, the added ones starting as the identity (deepen_vae),
    # so training starts from the shipped round trip with more decoder capacity. None = as it is.
    decoder_layers: int | None = None

    def __post_init__(self):
        if self.decoder_layers is not None and not self.decoder_only:
            raise ValueError("decoder layers are for decoder-only fine-tuning (train decoder)")
        if self.spectral_weight < 0:
            raise ValueError("the spectral weight must be 0 or more")
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


# Radial frequency bands (cycles per pixel; 0.5 is the Nyquist limit) of the spectral term: above the
# coarse anatomy (below 0.04 the round trip keeps over 90% of the power, and L1 already holds it).
SPECTRAL_BANDS = (0.04, 0.08, 0.12, 0.16, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def band_log_power(x: torch.Tensor, bands=SPECTRAL_BANDS) -> torch.Tensor:
    """Per film, the log of the mean spectral power in each radial band: (N, len(bands) - 1)."""
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, device=x.device)[:, None]
    fx = torch.fft.fftfreq(w, device=x.device)[None, :]
    r = (fy * fy + fx * fx).sqrt()
    power = torch.fft.fft2(x.float().flatten(1, -3)).abs().pow(2).mean(1)  # (N, h, w), channels averaged
    edges = torch.tensor(bands, device=x.device)
    which = torch.bucketize(r, edges, right=True) - 1  # band of each frequency; -1 below, last+ above
    out = []
    for b in range(len(bands) - 1):
        m = which == b
        out.append(power[:, m].mean(1))
    return torch.log(torch.stack(out, 1) + 1e-8)


def spectral_loss(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (band_log_power(rec) - band_log_power(x)).abs().mean()


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
    parts = {"l1": l1.item(), "edge": edge.item(), "kl": kl.item()}
    if cfg.spectral_weight:
        spec = spectral_loss(rec, x)
        rec_loss = rec_loss + cfg.spectral_weight * spec
        parts["spec"] = spec.item()
    loss = rec_loss + cfg.kl_weight * kl
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
    run = RunFolder(Path(run_dir))
    out = run.stage("decoder" if cfg.decoder_only else "vae")
    out.mkdir(parents=True, exist_ok=True)
    records, images = load_image_cache(data_dir, run.root, cfg.image_size, dist)
    train_idx = np.array([i for i, r in enumerate(records) if r.split != "val"] or list(range(len(records))))
    val_idx = [i for i, r in enumerate(records) if r.split == "val"][:4] or list(range(min(4, len(records))))

    torch.manual_seed(cfg.seed)
    ckpt = run.ckpt(out.name)
    state = load_ckpt(ckpt) if ckpt.exists() else None  # resume
    if cfg.decoder_only:
        from diffusers import AutoencoderKL

        base = run.vae_final
        if not base.is_dir() and cfg.init_from:
            if dist.main:  # with its own random state: every process must draw the critic's start alike
                with torch.random.fork_rng():
                    _copy_model_vae(Path(cfg.init_from), base, cfg.decoder_layers)
            _barrier(dist)
        if not base.is_dir():
            raise FileNotFoundError(f"decoder fine-tuning needs a trained VAE in {base}")
        vae = AutoencoderKL.from_pretrained(base, local_files_only=True).to(dist.device)
        if cfg.decoder_layers is not None and vae.config.layers_per_block != cfg.decoder_layers:
            raise ValueError(f"the run's VAE ({base}) has {vae.config.layers_per_block} blocks per resolution, not "
                             f"{cfg.decoder_layers}: resume without the decoder depth, or use a new run folder")
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
    log = CsvLog(out / "loss.csv", ["step", "loss", "l1", "edge", "kl", "spec", "g", "d", "adv_w", "lr", "sec"], dist.main)
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
        loss, parts, rec = vae_loss(vae, x, cfg, disc, step)
        optimizer_step(opt, loss, [p for p in vae.parameters() if p.requires_grad], lr,
                       sync=lambda: _allreduce_grads(vae, dist))
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
            adv = {k: f"{parts[k]:.4f}" for k in ("spec", "g", "d", "adv_w") if k in parts}
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
    final = run.vae_final
    if dist.main:
        if cfg.decoder_only:
            # Same encoder, new decoder: replace the VAE that export_model() ships.
            tmp = final.with_name("final.tmp")
            vae.save_pretrained(tmp, safe_serialization=True)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        else:
            vae.save_pretrained(final, safe_serialization=True)
    _barrier(dist)
    return final


def deepen_vae(vae, layers_per_block: int, seed: int = 0):
    """The same AutoencoderKL with ``layers_per_block`` residual blocks per resolution: its own blocks
    keep their places and weights; each added block (after them) has its last convolution zeroed, so it
    adds nothing and the deeper VAE encodes and decodes exactly as ``vae`` does, until the decoder's new
    blocks learn. (AutoencoderKL gives the encoder the decoder's depth: the encoder's added blocks stay
    the identity when only the decoder trains, and `same_encoder` sees one encoder.)"""
    from diffusers import AutoencoderKL

    had = vae.config.layers_per_block
    if layers_per_block < had:
        raise ValueError(f"the VAE already has {had} blocks per resolution; it can be deepened, not made shallower")
    if layers_per_block == had:
        return vae
    config = {k: v for k, v in vae.config.items() if not k.startswith("_")}
    with torch.random.fork_rng():  # the added blocks' first convolutions start alike on every run
        torch.manual_seed(seed)
        deep = AutoencoderKL(**{**config, "layers_per_block": layers_per_block}).to(vae.dtype)
    state, own = deep.state_dict(), vae.state_dict()
    for k, v in own.items():
        state[k] = v.clone()
    for k in state:
        if k not in own and ".conv2." in k:
            state[k] = torch.zeros_like(state[k])
    deep.load_state_dict(state)
    return deep


def _copy_model_vae(model_dir: Path, dest: Path, layers_per_block: int | None = None) -> None:
    """A model folder's VAE, as float32 safetensors, into a run's vae/final (written whole or not at all);
    deepened to ``layers_per_block`` when given."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(model_dir / "vae", local_files_only=True, use_safetensors=True)
    if layers_per_block is not None:
        vae = deepen_vae(vae.float(), layers_per_block)
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


def _identity_resnets(state: dict, keys: list[str]) -> bool:
    """Whether ``keys`` are all parameters of residual blocks that compute the identity: no shortcut
    convolution (same width in and out) and a zero last convolution, so the block adds nothing (how
    `deepen_vae` adds depth without changing what the encoder computes)."""
    blocks = {k[: k.index(".resnets.") + len(".resnets.")] + k.split(".resnets.")[1].split(".")[0] for k in keys
              if ".resnets." in k}
    if len(blocks) == 0 or any(not any(k.startswith(b + ".") for b in blocks) for k in keys):
        return False
    return all(f"{b}.conv_shortcut.weight" not in state and f"{b}.conv2.weight" in state
               and not state[f"{b}.conv2.weight"].any() and not state[f"{b}.conv2.bias"].any() for b in blocks)


def same_encoder(a, b) -> bool:
    """Whether two AutoencoderKLs encode alike (same encoder and quant_conv weights), i.e. share
    one latent space: a UNet trained on the latents of one draws for the other's decoder too.
    Weights are compared at float16 precision: model folders store them so, while a training run
    keeps the same VAE in float32. Residual blocks that one encoder has and the other lacks are
    allowed where they compute the identity (a VAE deepened by `deepen_vae`: AutoencoderKL gives its
    encoder the decoder's depth)."""
    sa, sb = a.state_dict(), b.state_dict()
    ka = [k for k in sa if k.startswith(ENCODER_PREFIXES)]
    kb = [k for k in sb if k.startswith(ENCODER_PREFIXES)]
    common = [k for k in ka if k in sb]
    only_a = [k for k in ka if k not in sb]
    only_b = [k for k in kb if k not in sa]
    return (bool(common) and [k for k in kb if k in sa] == common
            and (not only_a or _identity_resnets(sa, only_a)) and (not only_b or _identity_resnets(sb, only_b))
            and all(sa[k].shape == sb[k].shape and torch.equal(sa[k].half(), sb[k].half()) for k in common))


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

