"""Model component definitions: the compact grayscale VAE and the text-conditioned UNet.

Both are stock diffusers classes (``AutoencoderKL``, ``UNet2DConditionModel``) so that a model
folder written by cxrdesk is an ordinary diffusers folder, and a diffusers folder written
elsewhere loads here too.
"""
from __future__ import annotations

import logging

import numpy as np

TEXT_DIM = 384  # all-MiniLM-L6-v2 hidden size

# Sizes measured on a 2-core CPU (bench/bench_generate.py); see models/*/model_card.md.
PRESETS = {
    "default": dict(
        vae=dict(block_out_channels=(16, 32, 64, 128), layers_per_block=1, latent_channels=4),
        unet=dict(block_out_channels=(64, 128, 192), layers_per_block=1, attention_head_dim=32,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
    ),
    # Tiny random components for tests (seconds on CPU, meaningless output).
    "tiny": dict(
        vae=dict(block_out_channels=(8, 8, 16, 16), layers_per_block=1, latent_channels=4),
        unet=dict(block_out_channels=(16, 32), layers_per_block=1, attention_head_dim=8,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")),
    ),
}


def vae_config(preset: str = "default", image_size: int = 256, latent_channels: int | None = None) -> dict:
    """``latent_channels`` overrides the preset's (4): more channels keep more of a film's fine
    texture in the latents at the same 8x downsampling, at little cost to the UNet."""
    p = PRESETS[preset]["vae"]
    n = len(p["block_out_channels"])
    return dict(
        in_channels=1, out_channels=1, latent_channels=latent_channels or p["latent_channels"],
        block_out_channels=list(p["block_out_channels"]), layers_per_block=p["layers_per_block"],
        down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n,
        norm_num_groups=8, sample_size=image_size, scaling_factor=1.0,
    )


def unet_config(preset: str = "default", latent_size: int = 32, latent_channels: int = 4) -> dict:
    p = PRESETS[preset]["unet"]
    return dict(
        sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels,
        block_out_channels=list(p["block_out_channels"]), layers_per_block=p["layers_per_block"],
        down_block_types=list(p["down_block_types"]), up_block_types=list(p["up_block_types"]),
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=TEXT_DIM,
        attention_head_dim=p["attention_head_dim"], norm_num_groups=8 if preset == "tiny" else 32,
    )


PREDICTIONS = ("epsilon", "v_prediction")


def scheduler_config(prediction: str = "epsilon", zero_snr: bool = False) -> dict:
    """The training noise schedule; ``prediction`` is what the UNet predicts (diffusers' names:
    the noise, or the velocity sqrt(a) noise - sqrt(1 - a) latents).

    ``zero_snr``: rescale the betas so that the last training step is pure noise (Lin et al., "Common
    diffusion noise schedules and sample steps are flawed", WACV 2024), and sample from the last
    step on (trailing timesteps). Without it the last step keeps 6.8% of the film's signal, so the
    model never learns to choose a film's exposure and contrast from noise alone: its films drift
    to the dataset's mean grey. Needs v prediction (an epsilon UNet cannot recover a film from pure
    noise)."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")
    if zero_snr and prediction != "v_prediction":
        raise ValueError("a zero terminal SNR schedule needs v prediction")
    cfg = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
               beta_schedule="scaled_linear", prediction_type=prediction, clip_sample=False,
               steps_offset=1, timestep_spacing="leading")
    if zero_snr:
        cfg.update(rescale_betas_zero_snr=True, timestep_spacing="trailing", steps_offset=0)
    return cfg


def clean_latents(out, latents, alpha_bar, prediction: str = "epsilon"):
    """The clean latents implied by a UNet's output on ``latents`` noised as sqrt(a) x0 + sqrt(1 - a)
    noise (``alpha_bar`` = a): from its predicted noise, or from its predicted velocity
    sqrt(a) noise - sqrt(1 - a) x0."""
    if prediction == "v_prediction":
        return alpha_bar ** 0.5 * latents - (1 - alpha_bar) ** 0.5 * out
    return (latents - (1 - alpha_bar) ** 0.5 * out) / alpha_bar ** 0.5


LATENT_SCALING_KEYS = ("scaling_factor", "latents_mean", "latents_std")


def latent_scaling(scaling_factor: float, norm: dict | None = None) -> dict:
    """The VAE config entries that relate the UNet's latents to the VAE's (diffusers' names): one
    scaling factor, or with ``norm`` (per-channel "mean" and "std" lists, `train unet --channel-norm`)
    each channel at zero mean and unit variance and the factor 1."""
    if norm:
        return {"scaling_factor": 1.0, "latents_mean": norm["mean"], "latents_std": norm["std"]}
    return {"scaling_factor": scaling_factor, "latents_mean": None, "latents_std": None}


def _channel_stats(config, like):
    """The config's per-channel latents_mean / latents_std as (1, C, 1, ...) tensors, or None."""
    import torch

    mean, std = config.get("latents_mean"), config.get("latents_std")
    if mean is None or std is None:
        return None
    shape = (1, len(mean)) + (1,) * (like.ndim - 2)
    return (torch.as_tensor(mean, dtype=like.dtype, device=like.device).view(shape),
            torch.as_tensor(std, dtype=like.dtype, device=like.device).view(shape))


def vae_to_unet_latents(z, config):
    """Latents as the VAE encodes them -> the space the UNet denoises, by ``config`` (a VAE config
    or :func:`latent_scaling`'s entries). diffusers' convention: with per-channel ``latents_mean`` /
    ``latents_std``, each channel at zero mean and unit variance, times ``scaling_factor``; without
    them, only times ``scaling_factor``."""
    stats = _channel_stats(config, z)
    if stats is None:
        return z * config["scaling_factor"]
    return (z - stats[0]) * (config["scaling_factor"] / stats[1])


def unet_to_vae_latents(z, config):
    """The inverse of :func:`vae_to_unet_latents`: what the VAE's decoder takes."""
    stats = _channel_stats(config, z)
    if stats is None:
        return z / config["scaling_factor"]
    return z * (stats[1] / config["scaling_factor"]) + stats[0]


def build_vae(preset: str = "default", image_size: int = 256, latent_channels: int | None = None):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**vae_config(preset, image_size, latent_channels))


def build_unet(preset: str = "default", latent_size: int = 32, latent_channels: int = 4):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**unet_config(preset, latent_size, latent_channels))


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def fit_preview_map(latents, greys) -> list[float]:
    """The least-squares linear map from latent channels (plus a bias) to grey: ``latents`` (C, h, w)
    arrays in UNet scale, ``greys`` their films in [0, 1], resized to the latent grid. The
    arithmetic runs in the latents' dtype."""
    import cv2

    xs, ys = [], []
    for z, grey in zip(latents, greys):
        c, h, w = z.shape
        xs.append(z.reshape(c, -1).T)
        ys.append(cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA).reshape(-1))
    a = np.concatenate(xs)
    a = np.concatenate([a, np.ones((len(a), 1), a.dtype)], axis=1)
    coef, *_ = np.linalg.lstsq(a, np.concatenate(ys), rcond=None)
    return [float(v) for v in coef]


class _quiet_diffusers:
    """Silence diffusers' and transformers' loggers within the block (restored after)."""

    def __enter__(self):
        self._saved = [(lg, lg.level) for lg in map(logging.getLogger, ("diffusers", "transformers"))]
        for lg, _ in self._saved:
            lg.setLevel(logging.CRITICAL + 1)
        return self

    def __exit__(self, *exc):
        for lg, level in self._saved:
            lg.setLevel(level)
        return False


def load_components(folder, device: str, parts: dict | None = None):
    """A model folder's VAE, UNet and text encoder (safetensors only; ModelLoadError, one line, for
    what cannot be loaded): (vae, unet, text encoder, its kind, the VAE and UNet weight files). With
    ``parts``, the seconds of the weights and of the text encoder go into it."""
    import time

    from diffusers import AutoencoderKL, UNet2DConditionModel

    from ..errors import ModelLoadError, PipelineError
    from ..modelfolder import component_weights
    from .text import TextEncoder

    parts = {} if parts is None else parts
    t0 = time.perf_counter()
    weights = []
    for comp in ("vae", "unet"):
        if not (folder / comp / "config.json").is_file():
            raise ModelLoadError(f"{folder.name}: component {comp}/ is missing or has no config.json")
        weights += component_weights(folder / comp)
    try:
        with _quiet_diffusers():  # our one line, not diffusers' log lines before it
            vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True, use_safetensors=True)
            unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True,
                                                        use_safetensors=True)
    except Exception as exc:  # corrupt weights, wrong shapes
        raise ModelLoadError(f"cannot load weights from {folder.name}: {str(exc).splitlines()[0][:200]}") from None
    parts["weights"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    te_dir = folder / "text_encoder"
    ref = te_dir / "cxrdesk_text_encoder.json"
    try:
        if ref.is_file() or not te_dir.is_dir():
            text = TextEncoder(device=device)
            te_kind = "all-MiniLM-L6-v2 (packaged)"
        else:
            component_weights(te_dir)
            text = TextEncoder(str(te_dir), kind="clip", device=device)
            te_kind = type(text.model).__name__
    except PipelineError:  # our own messages (e.g. pickle-only weights) pass through as they are
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load the text encoder: {str(exc).splitlines()[0][:200]}") from None
    parts["text_encoder"] = time.perf_counter() - t0
    if unet.config.cross_attention_dim != text.dim:
        raise ModelLoadError(f"text encoder width {text.dim} does not match the UNet's "
                             f"cross-attention width {unet.config.cross_attention_dim}")
    return vae, unet, text, te_kind, weights
