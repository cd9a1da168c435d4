"""Read a model folder onto a device: its components, their precision and what runs them (``Runtime``).

``Pipeline.load`` is the entry point; this module does the reading and checking behind it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError, PipelineError
from ..modelfolder import ModelFolder, check_no_pickles, default_model_path, model_json
from . import engines
from .models import load_components, n_params
from .sampling import SAMPLERS, make_scheduler


@dataclass(frozen=True)
class Runtime:
    """What runs a loaded model, fixed at load: device, precision and the shapes it works in."""
    device: str
    dtype: str  # "float32", "float16" or "bf16-autocast"
    native_size: int  # films are drawn at native_size x native_size
    latent_shape: tuple[int, int, int]  # the UNet's (channels, height, width)
    image_channels: int
    params: dict  # parameter counts: unet, vae, text_encoder
    text_encoder: str
    prediction_type: str
    load_parts: dict  # where the load's seconds went (imports, weights, text_encoder, folder_record, schedulers)


@dataclass
class LoadedFolder:
    """A model folder's components on their device, its record and what runs it."""
    vae: object
    unet: object
    text_encoder: object
    scheduler_config: dict
    folder: Path
    model: ModelFolder
    runtime: Runtime
    autocast: bool  # run the models under bfloat16 autocast (CPU)


# What reading a model folder imports (torch, diffusers' model classes, transformers' text encoder):
# about 700,000 Python objects that live as long as the process.
LIBRARIES = ("torch", "diffusers", "transformers")


def import_libraries() -> None:
    """Import the libraries a model load needs with Python's cyclic garbage collector paused, then
    freeze what they made (``gc.freeze``: it lives as long as the process), so that neither the
    imports' own collections nor the one after a load walk those objects again (the README's
    "Start-up" figures). Nothing is paused or frozen where the libraries were already imported."""
    import gc
    import sys

    if all(name in sys.modules for name in LIBRARIES):
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import torch  # noqa: F401
        from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401
        from transformers import AutoModel, AutoTokenizer  # noqa: F401

        gc.freeze()
    finally:
        if was_enabled:
            gc.enable()


def pick_device(device: str = "auto") -> str:
    """The torch device for ``device`` ("auto": CUDA when there is one, else the CPU)."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError("CUDA was requested but no CUDA device is available")
    return device


def check_schedulers(scheduler_config: dict, folder: Path | None) -> None:
    """Build every sampler's scheduler once, so that an odd scheduler_config.json fails the load with one
    line (ModelLoadError) rather than a later generation with a traceback."""
    for sampler in SAMPLERS:
        if sampler == "auto":
            continue
        try:
            make_scheduler(scheduler_config, sampler).set_timesteps(20)
        except Exception as exc:  # noqa: BLE001 - NotImplementedError, TypeError, ValueError ... from diffusers
            msg = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise ModelLoadError(f"{Path(folder or '.').name}: scheduler/scheduler_config.json is unusable "
                                 f"for the {sampler} sampler ({msg})") from None


def load_folder(path: str | os.PathLike | None, device: str = "auto", precision: str = "fp32") -> LoadedFolder:
    """Read and check the model folder at ``path`` (None: the embedded default model) and put its models
    on ``device`` at ``precision``. ModelLoadError (one line) for a folder that cannot be used."""
    if path is None:
        folder = default_model_path()
        if folder is None:
            raise ModelLoadError("no default model is installed; pass a model folder (--model DIR)")
    else:
        folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelLoadError(f"model folder not found: {folder}")
    check_no_pickles(folder)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelLoadError(f"{folder} is not a model folder (no model_index.json)")
    model_json(folder, "model_index.json", required=True)
    parts, t0 = {}, time.perf_counter()
    import_libraries()
    parts["imports"] = time.perf_counter() - t0
    device = pick_device(device)
    import torch

    vae, unet, text, te_kind, weights = load_components(folder, device, parts)
    t0 = time.perf_counter()
    mf = ModelFolder.read(folder, unet.config.in_channels, weights)
    parts["folder_record"] = time.perf_counter() - t0
    use_bf16 = precision == "bf16" or (precision == "auto" and device == "cpu" and engines._cpu_has_bf16())
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    for m in (vae, unet):
        m.to(device).eval().requires_grad_(False)
        if dtype != torch.float32:
            m.to(dtype)
    if device == "cpu":
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
    native = unet.config.sample_size * (2 ** (len(vae.config.block_out_channels) - 1))
    runtime = Runtime(
        device=device,
        dtype="float16" if dtype == torch.float16 else ("bf16-autocast" if use_bf16 else "float32"),
        native_size=int(native),
        latent_shape=(unet.config.in_channels, unet.config.sample_size, unet.config.sample_size),
        image_channels=vae.config.out_channels,
        params={"unet": n_params(unet), "vae": n_params(vae), "text_encoder": text.n_params()},
        text_encoder=te_kind,
        prediction_type=mf.scheduler.get("prediction_type", "epsilon"),
        load_parts=parts,
    )
    t0 = time.perf_counter()
    check_schedulers(mf.scheduler, folder)
    parts["schedulers"] = time.perf_counter() - t0
    for k, v in parts.items():
        parts[k] = round(v, 3)
    return LoadedFolder(vae, unet, text, mf.scheduler, folder, mf, runtime, use_bf16)
