"""A tiny decoder for step previews: latents -> a grey film in a few milliseconds (issue 28).

Like TAESD for Stable Diffusion (Bohan Ollin Boer, "Tiny AutoEncoder for Stable Diffusion"), a few
conv blocks, trained by ``cxrdesk train preview-decoder`` to imitate one model's VAE decoder (its
target is what that decoder draws from the same latents). It is used for the previews between the
full VAE decodes during generation; the final film is always the VAE decoder's.

A model folder holds it in ``preview_decoder/`` (``config.json`` + ``model.safetensors``, float16)
and records it in ``cxrdesk.json`` ("preview_decoder": the hash of the VAE weights it imitated, its
training steps and held-out error). A folder without it, or with one of another VAE or a damaged one,
previews with the linear latent map as before.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError
from ..modelfolder import (
    PREVIEW_DECODER_DIR,
    preview_decoder_record,
    write_preview_decoder_record,
)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# widths at latent size, 2x, 4x; the last stage predicts 2x2 pixels per position (pixel shuffle) -> 8x
DEFAULT_WIDTHS = (48, 32, 16)

log = logging.getLogger(__name__)


def build(latent_channels: int = 4, widths=DEFAULT_WIDTHS, latent_scale: float = 1.0):
    """The decoder: (N, C, h, w) latents as the VAE's decoder takes them -> (N, 1, 8h, 8w) grey in
    [0, 1] (unclamped while training). ``latent_scale`` brings the latents to about unit spread (the
    model's scaling factor)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(n, n, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(n, n, 3, padding=1))

        def forward(self, x):
            return torch.relu(x + self.conv(x))

    class TinyDecoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = {"latent_channels": int(latent_channels), "widths": [int(w) for w in widths],
                           "latent_scale": float(latent_scale)}
            w0, w1, w2 = self.config["widths"]
            self.register_buffer("scale", torch.tensor(float(latent_scale)), persistent=False)
            self.body = nn.Sequential(
                nn.Conv2d(latent_channels, w0, 3, padding=1), nn.ReLU(inplace=True), Block(w0), Block(w0),
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w0, w1, 3, padding=1),
                nn.ReLU(inplace=True), Block(w1),
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w1, w2, 3, padding=1),
                nn.ReLU(inplace=True), Block(w2),
                nn.Conv2d(w2, 4, 3, padding=1), nn.PixelShuffle(2))

        def forward(self, z):
            z = torch.tanh(z * self.scale / 3) * 3  # TAESD's soft clamp of out-of-range latents
            return self.body(z) + 0.5

    return TinyDecoder()


def save(decoder, folder: str | Path) -> Path:
    """``folder/preview_decoder/``: config.json and float16 safetensors weights, files 0644."""
    from safetensors.torch import save_file

    out = Path(folder) / PREVIEW_DECODER_DIR
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous().cpu() for k, v in decoder.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    (out / CONFIG_FILE).write_text(json.dumps({"_class_name": "TinyPreviewDecoder", **decoder.config}, indent=2))
    for p in (out, out / WEIGHTS_FILE, out / CONFIG_FILE):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return out


def load(folder: str | Path, device: str = "cpu"):
    """The folder's preview decoder in float32, ready for inference; ModelLoadError (one line) where
    its files cannot be read or do not fit."""
    import torch
    from safetensors.torch import load_file

    d = Path(folder) / PREVIEW_DECODER_DIR
    try:
        cfg = json.loads((d / CONFIG_FILE).read_text())
        decoder = build(int(cfg["latent_channels"]), tuple(int(w) for w in cfg["widths"]),
                        float(cfg["latent_scale"]))
        state = load_file(str(d / WEIGHTS_FILE))
        decoder.load_state_dict({k: v.float() for k, v in state.items()})
    except Exception as exc:  # noqa: BLE001 - missing or corrupt files, wrong shapes, bad JSON
        msg = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ModelLoadError(f"cannot load the preview decoder in {d.parent.name}/{PREVIEW_DECODER_DIR}: {msg}") from None
    if not all(torch.isfinite(p).all() for p in decoder.parameters()):
        raise ModelLoadError(f"the preview decoder in {d.parent.name}/{PREVIEW_DECODER_DIR} holds non-finite weights")
    return decoder.to(device).eval().requires_grad_(False)


def vae_hash(folder: str | Path) -> str:
    """The hash of a model folder's VAE weights (what a preview decoder record is checked against)."""
    from ..modelfolder import component_weights, file_hash

    return file_hash(component_weights(Path(folder) / "vae"))


def record(folder: str | Path) -> tuple[dict | None, str]:
    """The folder's preview decoder record when it imitates this folder's VAE; otherwise None and why
    (modelfolder.preview_decoder_record)."""
    return preview_decoder_record(Path(folder))


def write_record(folder: str | Path, rec: dict) -> None:
    write_preview_decoder_record(Path(folder), rec)


def decode(decoder, latents) -> np.ndarray:
    """VAE latents (1, C, h, w) -> a float32 (8h, 8w) film in [0, 1]."""
    import torch

    with torch.no_grad():
        img = decoder(latents[:1].float())
    return img[0, 0].clamp(0, 1).cpu().numpy().astype(np.float32)


class _Graphed:
    """The decoder through an ONNX Runtime graph for the shape it was made for (a few times faster
    than torch on a small CPU), the torch module for other shapes."""

    def __init__(self, decoder, graph, shape):
        self.module, self.graph, self.shape = decoder, graph, tuple(shape)
        self.config = decoder.config

    def __call__(self, z):
        return self.graph(z) if tuple(z.shape) == self.shape else self.module(z)


def _with_graph(pipe, decoder):
    """``decoder`` with an ONNX Runtime graph for one film (cached per weights, like the UNet's), once
    warm_up has made the VAE decoder's graph (``pipe._decoders``); as it is where none can be made."""
    import torch

    from ..modelfolder import file_hash
    from .engines import onnx_graph

    c, h, w = pipe.runtime.latent_shape
    z = torch.zeros((1, c, h, w))
    weights = file_hash([Path(pipe.folder) / PREVIEW_DECODER_DIR / WEIGHTS_FILE])
    graph = onnx_graph(decoder, ("latents",), (z,), "preview_decoder", weights)
    return decoder if graph is None else _Graphed(decoder, graph, z.shape)


def for_pipeline(pipe):
    """The pipeline's preview decoder, loaded on first use (in ONNX Runtime once warm_up has made the
    VAE decoder's graph); None where the folder has none or it cannot be loaded (said once in the log
    and in ``pipe.preview_decoder_note``)."""
    if pipe.preview_decoder_note is None:
        pipe._preview_decoder = None
        rec, note = record(pipe.folder) if pipe.folder is not None else (None, "no model folder")
        if rec is not None:
            try:
                decoder = load(pipe.folder, pipe.device)
                c, h, _ = pipe.runtime.latent_shape
                if decoder.config["latent_channels"] != c or 8 * h != pipe.runtime.native_size:
                    raise ModelLoadError("the preview decoder does not fit this model's latents")
                pipe._preview_decoder = decoder
            except ModelLoadError as exc:
                note = str(exc)
                log.warning("%s; previews use the linear latent map", exc)
        pipe.preview_decoder_note = note
    decoder = getattr(pipe, "_preview_decoder", None)
    if decoder is not None and pipe._decoders and not getattr(pipe, "_preview_graph_tried", False):
        pipe._preview_graph_tried = True
        pipe._preview_decoder = decoder = _with_graph(pipe, decoder)
    return decoder
