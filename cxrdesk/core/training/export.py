"""Model folders from a run: the EMA UNet with the run's VAE (``export``), or a run's fine-tuned
decoder with another model's UNet (``export --init-from``)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..generation.models import LATENT_SCALING_KEYS, build_unet, latent_scaling, scheduler_config
from ..generation.models import fit_preview_map as preview_map_of
from .common import RunFolder, load_ckpt
from .vae import same_encoder


def export_model(run: Path, unet, ema, dest: str | Path, meta: dict, step: int = 0,
                 name: str | None = None, guidance: float | None = None,
                 guidance_interval: tuple[float, float] | None = None, latent_norm: dict | None = None,
                 prediction: str = "epsilon", zero_snr: bool = False) -> Path:
    """Write a diffusers model folder with the EMA UNet weights, the trained VAE (its config
    carrying the UNet's latent scaling: one factor, or per-channel statistics) and the scheduler
    config (with what the UNet predicts)."""
    import copy

    from diffusers import AutoencoderKL

    from ..modelfolder import write_model_folder

    dest = Path(dest)
    ema_unet = copy.deepcopy(unet)
    with torch.no_grad():
        for p, e in zip(ema_unet.parameters(), ema):
            p.copy_(e)
    vae = AutoencoderKL.from_pretrained(RunFolder(run).vae_final, local_files_only=True)
    vae.register_to_config(**latent_scaling(meta["scaling_factor"], latent_norm))
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    params = {}
    params_file = RunFolder(run).stage("unet") / "params.json"
    if params_file.exists():
        params = json.loads(params_file.read_text())
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
    ``model_dir``'s UNet, scheduler, training record, sampling settings and distilled student: for a
    run that trained a decoder but no UNet. The run's encoder must be the model's, since the UNet (and
    the student) draw its latents."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from ..modelfolder import recommended_guidance, recommended_interval, write_model_folder

    run, model, dest = Path(run_dir), Path(model_dir), Path(dest)
    if not (model / "text_encoder" / "cxrdesk_text_encoder.json").is_file():
        raise ValueError(f"{model} is not a cxrdesk model folder (it has its own text encoder)")
    vae = AutoencoderKL.from_pretrained(RunFolder(run).vae_final, local_files_only=True, use_safetensors=True)
    base = AutoencoderKL.from_pretrained(model / "vae", local_files_only=True, use_safetensors=True)
    if not same_encoder(vae, base):
        raise ValueError(f"the VAE in {run / 'vae' / 'final'} encodes differently from {model.name}'s: "
                         f"that model's UNet would not fit it (fine-tune the decoder only: 'train decoder --init-from')")
    vae.register_to_config(**{k: base.config.get(k) for k in LATENT_SCALING_KEYS})
    unet = UNet2DConditionModel.from_pretrained(model / "unet", local_files_only=True, use_safetensors=True)
    extra = json.loads((model / "cxrdesk.json").read_text()) if (model / "cxrdesk.json").is_file() else {}
    training = dict(extra.get("training") or {})
    ckpt = RunFolder(run).ckpt("decoder")
    if ckpt.exists():
        state = load_ckpt(ckpt)
        keep = ("steps", "batch", "crop", "lr", "edge_weight", "adv_weight", "adv_start", "latent_noise", "spectral_weight",
                "decoder_layers")
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
    _carry_student(model, extra, tmp)
    return _replace_folder(tmp, dest)


def _carry_student(model: Path, extra: dict, dest: Path) -> None:
    """A new decoder keeps the encoder, the UNet and so every latent: a student distilled from
    ``model`` (in latent space) fits the new folder as it fitted the old one. Copied with its record,
    tied to the new folder's weights (``distilled_against``: the weights it was distilled from).
    A student that did not fit ``model`` is left behind. The preview decoder is not carried: it
    imitates the old decoder (`train preview-decoder` makes one for the new)."""
    from ..modelfolder import STUDENT_DIR, model_hash, student_record

    fits, _ = student_record(model, extra, model_hash(model))
    if fits is None:
        return
    shutil.copytree(model / STUDENT_DIR, dest / STUDENT_DIR)
    record = dict(extra["student"])
    record.setdefault("distilled_against", record["teacher_hash"])
    record["teacher_hash"] = model_hash(dest)
    meta = json.loads((dest / "cxrdesk.json").read_text())
    meta["student"] = record
    (dest / "cxrdesk.json").write_text(json.dumps(meta, indent=2))


def training_label_counts(run: Path) -> dict[str, int]:
    """How many training films (not validation) carry each finding label, from the run's cache;
    written into the model folder so the app can say when a prompt asks for a rare finding."""
    records = RunFolder(run).cached("records.json")
    if not records.exists():
        return {}
    counts: dict[str, int] = {}
    for r in json.loads(records.read_text()):
        if r.get("split") != "val":
            for label in r.get("labels", []):
                counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def fit_preview_map(run: Path, n: int = 512) -> list[float] | None:
    """The latent-to-grey preview map (generation.models.fit_preview_map) fitted on the run's cached
    latents and their films; None before the encode stage."""
    lat_file, img_file = RunFolder(run).cached("latents.npy"), RunFolder(run).images(256)
    if not lat_file.exists() or not img_file.exists():
        return None
    lat = np.load(lat_file, mmap_mode="r")
    imgs = np.load(img_file, mmap_mode="r")
    n = min(n, len(lat), len(imgs))
    return preview_map_of([np.asarray(lat[i], np.float32) for i in range(n)],
                          [np.asarray(imgs[i], np.float32) / 255.0 for i in range(n)])


def export_from_checkpoint(run_dir: str | Path, dest: str | Path, name: str | None = None,
                           guidance: float | None = None,
                           guidance_interval: tuple[float, float] | None = None) -> Path:
    """Write a model folder from the UNet checkpoint's EMA weights (no training)."""
    run = Path(run_dir)
    ckpt = RunFolder(run).ckpt("unet")
    if not ckpt.exists():
        raise FileNotFoundError(f"no UNet checkpoint in {run / 'unet'}")
    state = load_ckpt(ckpt)
    meta = json.loads(RunFolder(run).cached("done.json").read_text())
    cfg = state.get("config", {})
    c, h = meta["latent_shape"][0], meta["latent_shape"][1]
    unet = build_unet(cfg.get("preset", "default"), h, c)
    unet.load_state_dict(state["model"])
    return export_model(run, unet, state["ema"], dest, meta, step=int(state["step"]), name=name, guidance=guidance,
                        guidance_interval=guidance_interval, latent_norm=state.get("latent_norm"),
                        prediction=state.get("prediction", "epsilon"), zero_snr=bool(state.get("zero_snr", False)))

