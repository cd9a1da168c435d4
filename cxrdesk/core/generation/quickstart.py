"""The first fast film without torch, diffusers or transformers: drawn from what an earlier run left in
the graph cache while the model stack loads.

An earlier run's warm-up (engines.prepare_quick_start, fast.warm_up_student, engines.warm_up) leaves
ONNX Runtime graphs of the text encoder, the distilled student and the VAE decoder, each checked
against its torch module and marked so (onnx_graphs.mark_verified), and a numbers file: torch's
guidance embeddings, recorded after torch's starting noise was found equal to quickmath.torch_randn
on this machine. ``QuickStart.open`` finds them for a model folder, or returns None (the app then
waits for the model as before). Its films equal ``Pipeline.generate(..., fast=True)``'s on the same
ONNX Runtime graphs to within float rounding.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import GenerationCancelled
from ..modelfolder import STUDENT_DIR, ModelFolder, component_weights, default_model_path, file_hash
from . import onnx_graphs
from .attention import ATTENTION_EVERY, AttnStore, attention_maps, token_index
from .quickmath import DpmSolver2M, dpm_supported, torch_randn
from .sampling import FALLBACK_SAMPLER, ZERO_SNR_SAMPLER
from .text import MAX_TOKENS, PlainTokenizer, packaged_encoder_path

log = logging.getLogger(__name__)

W_EMBED_DIM = 256  # the student's guidance embedding (training.distill.W_EMBED_DIM, which imports torch)
GUIDANCE_STEP = 10  # the numbers file holds the guidance embeddings of 0.0, 0.1, ... MAX_GUIDANCE
TEXT_PART = "text_encoder"


def torch_version() -> str | None:
    """The installed torch's version, without importing it."""
    import importlib.metadata

    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def numbers_path(version: str, folder: Path | None = None) -> Path:
    """The numbers file for this torch version, ONNX Runtime and CPU."""
    folder = folder or onnx_graphs.cache_dir()
    return folder / f"quickstart-torch{version.split('+')[0]}-{onnx_graphs._machine_key()}.npz"


def model_record_path(model_hash: str, student_hash: str, version: str, folder: Path | None = None) -> Path:
    """The record of a model whose student's sampler a full run found quickmath walking as it does."""
    folder = folder or onnx_graphs.cache_dir()
    return folder / f"quickstart-{model_hash}-{student_hash}-torch{version.split('+')[0]}.json"


def text_encoder_hash(path: str | None = None) -> str:
    """The packaged text encoder's weights hash: its graph's name in the cache."""
    return file_hash(component_weights(Path(path or packaged_encoder_path())))


def text_encoder_shapes(max_tokens: int = MAX_TOKENS):
    return [(1, max_tokens), (1, max_tokens)]


def student_shapes(latent_shape, max_tokens: int = MAX_TOKENS, dim: int = 384):
    c, h, w = latent_shape
    return [(1, c, h, w), (1,), (1, max_tokens, dim), (1, W_EMBED_DIM)]


def engine_allows() -> bool:
    """Whether the UNet engine asked for ($CXRDESK_UNET_ENGINE) is the ONNX Runtime one these graphs are."""
    return os.environ.get("CXRDESK_UNET_ENGINE", "") in ("", "onnx")


def _json(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


class QuickStart:
    """A model folder's fast films on verified ONNX Runtime graphs and numpy, without torch."""

    def __init__(self, model: ModelFolder, folder: Path, latent_shape, native_size: int, vae_config: dict,
                 sessions: dict, guidance: np.ndarray, tokenizer: PlainTokenizer):
        self.model = model
        self.folder = folder
        self.latent_shape = tuple(latent_shape)
        self.native_size = native_size
        self.vae_config = vae_config
        self.sessions = sessions  # part -> ONNX Runtime session ("student-attention" where verified)
        self.guidance_table = guidance
        self.tokenizer = tokenizer
        self.open_seconds = 0.0
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, threads: int | None = None) -> "QuickStart | None":
        """The quick path for the model folder at ``path`` (None: the default model), or None (logged)
        where anything it needs is missing, unverified or not supported."""
        t0 = time.perf_counter()
        try:
            quick = cls._open(path, threads)
        except Exception as exc:  # noqa: BLE001 - no quick path; the model loads as before
            log.info("no quick start: %s", " ".join(str(exc).split())[:200] or type(exc).__name__)
            return None
        quick.open_seconds = time.perf_counter() - t0
        log.info("quick start ready in %.2f s", quick.open_seconds)
        return quick

    @classmethod
    def _open(cls, path, threads):
        if not engine_allows():
            raise RuntimeError("another UNet engine is asked for")
        folder = default_model_path() if path is None else Path(path).expanduser()
        if folder is None or not (folder / "model_index.json").is_file():
            raise RuntimeError("no model folder")
        version = torch_version()
        if version is None:
            raise RuntimeError("torch is not installed")
        te_dir = folder / "text_encoder"
        if te_dir.is_dir() and not (te_dir / "cxrdesk_text_encoder.json").is_file():
            raise RuntimeError("the model has its own text encoder")
        unet_cfg, vae_cfg = _json(folder / "unet" / "config.json"), _json(folder / "vae" / "config.json")
        weights = component_weights(folder / "vae") + component_weights(folder / "unet")
        model = ModelFolder.read(folder, int(unet_cfg["in_channels"]), weights)
        student = model.student
        if student is None or student["sampler"] == "lcm":
            raise RuntimeError("no guidance-distilled student")
        sampler = (model.sampler or FALLBACK_SAMPLER) if student["sampler"] == "model" else student["sampler"]
        if sampler != ZERO_SNR_SAMPLER or not dpm_supported(model.scheduler):
            raise RuntimeError(f"the student's sampler ({sampler}) has no numpy form here")
        if model.noise_offset:
            raise RuntimeError("the model draws its noise with an offset")
        if int(unet_cfg.get("cross_attention_dim", 0)) != 384:
            raise RuntimeError("the UNet does not take the packaged text encoder's width")
        size = int(unet_cfg["sample_size"])
        latent_shape = (int(unet_cfg["in_channels"]), size, size)
        native = size * 2 ** (len(vae_cfg["block_out_channels"]) - 1)
        numbers = numbers_path(version)
        if onnx_graphs.verified(numbers) is None:
            raise RuntimeError("no checked numbers file from an earlier run")
        with np.load(numbers) as data:
            guidance = np.asarray(data["guidance"], np.float32)
            threads = int(threads or data["threads"])
        student_hash = file_hash(component_weights(folder / STUDENT_DIR))
        record = model_record_path(model.hash, student_hash, version)
        if onnx_graphs.verified(record) is None or _json(record).get("steps") != student["steps"]:
            raise RuntimeError("no record of this model's sampler checked by an earlier run")
        names = {
            TEXT_PART: onnx_graphs.shaped_name(TEXT_PART, text_encoder_hash(), text_encoder_shapes(), version),
            "student": onnx_graphs.shaped_name("student", student_hash, student_shapes(latent_shape), version),
            "decoder": onnx_graphs.shaped_name("decoder", model.hash, [(1, *latent_shape)], version),
        }
        names["student-attention"] = names["student"].replace("student-", "student-attention-", 1)
        cache = onnx_graphs.cache_dir()
        sessions = {}
        for part, name in names.items():
            session = onnx_graphs.verified_session(cache / name, threads)
            if session is None and part != "student-attention":
                raise RuntimeError(f"no verified {part} graph in the cache")
            if session is not None:
                sessions[part] = session
        return cls(model, folder, latent_shape, native, vae_cfg, sessions, guidance, PlainTokenizer())

    # ------------------------------------------------------------------ films
    def guidance_embedding(self, scale: float) -> np.ndarray | None:
        """torch's embedding of ``scale`` as the numbers file recorded it (1, 256), or None for a scale
        off its 0.1 grid."""
        k = int(round(float(scale) * GUIDANCE_STEP))
        if not 0 <= k < len(self.guidance_table) or np.float32(scale) != np.float32(k / GUIDANCE_STEP):
            return None
        return self.guidance_table[k:k + 1]

    def accepts(self, prompt, steps: int, guidance_scale: float | None = None, size: int = 256, seed=None) -> bool:
        """Whether ``generate`` draws this request (the pipeline would take it, and its guidance, None for
        the model's, is on the numbers file's grid); the others are left to the full path."""
        from .pipeline import Pipeline

        g = self.model.default_guidance(fast=True) if guidance_scale is None else guidance_scale
        if steps != self.model.student["steps"]:  # the steps an earlier run checked the sampler on
            return False
        try:  # the pipeline's own check (it uses no instance)
            Pipeline.check_inputs(None, prompt, steps, g, size, size, "auto", seed=seed)
            return self.guidance_embedding(float(g)) is not None
        except Exception:  # noqa: BLE001 - PipelineError and anything else: the full path decides
            return False

    def _decode(self, latents: np.ndarray) -> np.ndarray:
        """pipeline.Pipeline.decode in numpy, on the decoder graph."""
        mean, std = self.vae_config.get("latents_mean"), self.vae_config.get("latents_std")
        scale = np.float32(self.vae_config.get("scaling_factor", 1.0))
        if mean is None or std is None:
            z = latents / scale
        else:
            shape = (1, len(mean), 1, 1)
            z = latents * (np.asarray(std, np.float32).reshape(shape) / scale) + np.asarray(mean, np.float32).reshape(shape)
        img = self.sessions["decoder"].run(None, {self.sessions["decoder"].get_inputs()[0].name: z.astype(np.float32)})[0]
        arr = (np.clip(img, -1, 1) + 1) / 2
        arr = arr[0]
        arr = 0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2] if arr.shape[0] == 3 else arr[0]
        return arr.astype(np.float32)

    def _student(self, part: str, sample, t: int, context, w):
        session = self.sessions[part]
        feed = dict(zip((i.name for i in session.get_inputs()),
                        (sample, np.full((1,), t, np.float32), context, w)))
        return session.run(None, feed)

    def generate(self, prompt: str, steps: int | None = None, guidance_scale: float | None = None,
                 seed: int | None = None, width: int = 256, height: int = 256, on_step=None,
                 cancel: threading.Event | None = None, attention_words: list[str] | None = None):
        """A fast film as ``Pipeline.generate(prompt, steps=steps, guidance_scale=..., seed=seed,
        fast=True)`` draws it (GenerationResult; its step previews are None), or None where this
        request needs the full path. Raises GenerationCancelled on cancel."""
        import random

        from .pipeline import GenerationResult, Pipeline

        steps = int(self.model.student["steps"] if steps is None else steps)
        g = self.model.default_guidance(fast=True) if guidance_scale is None else float(guidance_scale)
        if width != height or not self.accepts(prompt, steps, g, width, seed):
            return None
        w_emb = self.guidance_embedding(g)
        if seed is None or int(seed) < 0:
            seed = random.SystemRandom().randrange(0, 2 ** 31 - 1)
        seed = int(seed)
        with self._lock:
            t0 = time.perf_counter()
            ids, mask, tokens, truncated = self.tokenizer.encode([prompt])
            sess = self.sessions[TEXT_PART]
            names = [i.name for i in sess.get_inputs()]
            context = sess.run(None, {names[0]: ids.astype(np.float32), names[1]: mask.astype(np.float32)})[0]
            timings = {"text": time.perf_counter() - t0}
            sched = DpmSolver2M(self.model.scheduler, steps)
            latents = torch_randn((1, *self.latent_shape), seed)
            store = None
            if attention_words and "student-attention" in self.sessions:
                idx = token_index(self.tokenizer, tokens[0], attention_words)
                store = AttnStore(idx) if idx else None
            t1 = time.perf_counter()
            total = len(sched.timesteps)
            for i, t in enumerate(sched.timesteps):
                if cancel is not None and cancel.is_set():
                    raise GenerationCancelled()
                record = store is not None and ((i + 1) % ATTENTION_EVERY == 0 or i == total - 1)
                out, *probs = self._student("student-attention" if record else "student", latents, int(t), context, w_emb)
                for p in probs:
                    _record(store, p)
                latents = sched.step(out.astype(np.float32), latents)
                if on_step is not None and i < total - 1:
                    on_step(i + 1, total, None)
            timings["denoise"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            image = self._decode(latents)
            timings["decode"] = time.perf_counter() - t2
            if on_step is not None:
                on_step(total, total, image)
        native = image.shape[0]
        image, upscale = Pipeline._resize(image, width, height)
        attention = attention_maps(store, width, height) if store is not None else {}
        timings["total"] = time.perf_counter() - t0
        timings["quick_start"] = self.open_seconds  # drawn before the model loaded; its graphs took this to open
        lo, hi = self.model.guidance_interval
        params = {
            "prompt": prompt, "negative_prompt": "", "steps": steps, "guidance_scale": float(g),
            "guidance_interval": [float(lo), float(hi)], "guided_steps": 0, "seed": seed,
            "sampler": ZERO_SNR_SAMPLER, "fast": True, "condition_noise": 0.0, "width": width, "height": height, "native_size": native,
            "upscale": upscale, "prompt_truncated": bool(truncated[0]), "max_tokens": self.tokenizer.max_tokens,
            "model": self.model.name, "model_hash": self.model.hash, "device": "cpu", "precision": "float32",
            "unet_engine": "onnxruntime",
        }
        return GenerationResult(image=image, params=params, attention=attention, timings=timings)


def _record(store: AttnStore, probs: np.ndarray) -> None:
    """attention.record_probs for a numpy (positions, tokens) array."""
    side = int(round(probs.shape[0] ** 0.5))
    for word, idx in store.token_index.items():
        store.maps[word].append(probs[:, idx].sum(-1).reshape(side, side).astype(np.float32))
