"""Generate chest radiographs from text with a loaded model folder: the denoising loop.

``Pipeline.generate`` runs diffusers' pipeline stages in order: ``check_inputs``, ``encode_prompt``,
``prepare_latents``, the loop (``_denoise``) and ``decode_latents``.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import numpy as np

from ..errors import GenerationCancelled, PipelineError
from . import engines
from .attention import (ATTENTION_EVERY, AttnStore, RecordingAttnProcessor, attention_maps, record_probs,
                        token_index, wrap_cross_attention)
from ..modelfolder import ModelFolder
from .loading import Runtime, load_folder
from .models import fit_preview_map, unet_to_vae_latents, vae_to_unet_latents
from .sampling import (FALLBACK_SAMPLER, FULL_INTERVAL, MAX_GUIDANCE, SAMPLERS, DEFAULT_SAMPLER,
                       annealed_condition, check_condition_noise, check_interval, denoised, guided, make_scheduler)

from .limits import MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS, SIZES, check_text  # noqa: F401 - also imported from here
from .outputs import GenerationResult, metrics_at_step  # noqa: F401 - also imported from here

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, "np.ndarray | None"], None]


@dataclass
class _Prompt:
    """An encoded prompt: the UNet's context with and without guidance, and its tokens."""
    context: object
    cond_context: object
    tokens: list
    truncated: bool


class Pipeline:
    """Text-to-chest-radiograph latent diffusion, offline, CPU first.

    ``model`` is the folder's record (a frozen ModelFolder), ``runtime`` what runs it (a frozen
    Runtime), ``unet_engine`` what the UNet runs on (``warm_up`` may change it); ``info`` is a
    read-only view of all three for display and records."""

    def __init__(self, vae, unet, text_encoder, scheduler_config: dict, folder: Path | None,
                 model: ModelFolder, runtime: Runtime):
        self.vae = vae
        self.unet = unet
        self.text_encoder = text_encoder
        self.scheduler_config = scheduler_config
        self.folder = folder
        self.model = model
        self.runtime = runtime
        self.device = runtime.device
        self.unet_engine = "eager"  # or "onnxruntime", "torchscript", "torchscript-bf16" after warm_up
        self.load_seconds: float | None = None
        self.warm_up_seconds = 0.0
        self.preview_decoder_note: str | None = None  # set when the preview decoder is first looked for
        self._preview_map = model.preview_map  # or one fitted on first use (_fit_preview_map)
        self._lock = threading.Lock()
        # Faster graphs made by warm_up (core.generation.engines): UNet graphs per input shape, UNet
        # graphs that also return the cross-attention maps, VAE decoders per latent shape.
        self._traced: dict = {}
        self._decoders: dict = {}
        self._attention: dict = {}
        self._graph_steps = 0  # UNet calls of the current generation that ran a graph
        self._student = None  # the distilled student UNet (fast mode), loaded on first use
        self._student_graphs = {}  # its ONNX Runtime graphs by input shape (fast.warm_up_student)
        self._student_attention = {}  # and those returning the cross-attention maps

    @property
    def info(self) -> MappingProxyType:
        """A read-only view of the model's record and what runs it (the keys the model panel, ``cxrdesk
        info`` and tests read)."""
        m, r = self.model, self.runtime
        info = {
            "name": m.name, "folder": str(self.folder), "hash": m.hash, "random_weights": m.random_weights,
            "device": r.device, "dtype": r.dtype, "unet_engine": self.unet_engine,
            "native_size": r.native_size, "latent_shape": list(r.latent_shape), "image_channels": r.image_channels,
            "params": dict(r.params), "text_encoder": r.text_encoder, "prediction_type": r.prediction_type,
            "training": m.training, "preview_map": self._preview_map, "noise_offset": m.noise_offset,
            "guidance": m.guidance, "guidance_interval": m.guidance_interval, "sampler": m.sampler,
            "condition_noise": m.condition_noise,
            "findings_check": m.findings_check, "student": m.student, "student_note": m.student_note,
            "load_parts": dict(r.load_parts), "load_seconds": self.load_seconds,
            "warm_up_seconds": round(self.warm_up_seconds, 3),
        }
        if self.preview_decoder_note is not None:
            info["preview_decoder_note"] = self.preview_decoder_note
        return MappingProxyType(info)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str = "auto",
             precision: str = "fp32") -> "Pipeline":
        """Load a model folder (None = the embedded default model; see loading.load_folder). Never
        touches the network."""
        t0 = time.perf_counter()
        m = load_folder(path, device, precision)
        pipe = cls(m.vae, m.unet, m.text_encoder, m.scheduler_config, m.folder, m.model, m.runtime)
        pipe._autocast = m.autocast
        from ..memory import release

        release()  # the float16 -> float32 conversion's buffers
        pipe.load_seconds = round(time.perf_counter() - t0, 3)
        return pipe

    # ------------------------------------------------------------------ components
    def make_scheduler(self, sampler: str):
        """A fresh scheduler for ``sampler`` ("auto": the model's recommended one)."""
        return make_scheduler(self.scheduler_config, self.own_sampler() if sampler in (None, "auto") else sampler)

    def default_guidance(self, fast: bool = False) -> float:
        """The guidance a film is drawn with when none is asked for (ModelFolder.default_guidance)."""
        return self.model.default_guidance(fast)

    def own_sampler(self) -> str:
        """The sampler the model folder recommends: the one "auto" stands for."""
        return self.model.sampler or FALLBACK_SAMPLER

    def _x0(self, sched, latents, out, t):
        """Current denoised estimate from the model output (for previews)."""
        return denoised(sched, latents, out, t, self.scheduler_config.get("prediction_type", "epsilon"))

    def decode(self, latents) -> np.ndarray:
        """UNet latents -> a float32 (H, W) film in [0, 1] (grey from an RGB VAE by BT.601 luma)."""
        import torch

        with torch.no_grad(), self._precision():
            z = unet_to_vae_latents(latents, self.vae.config)
            graph = self._decoders.get(tuple(z.shape)) if self._decoders else None
            img = graph(z) if graph is not None else self.vae.decode(z).sample.float()
        img = (img.clamp(-1, 1) + 1) / 2
        arr = img[0].cpu().numpy()
        if arr.shape[0] == 3:  # standard RGB VAE: convert to grayscale (ITU-R BT.601 luma)
            arr = 0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2]
        else:
            arr = arr[0]
        return arr.astype(np.float32)

    def _fit_preview_map(self):
        """The folder's latent-to-grey map, or one fitted on decoded random latents."""
        import torch

        if self._preview_map:
            return self._preview_map
        c, h, w = self.runtime.latent_shape
        gen = torch.Generator("cpu").manual_seed(0)
        z = torch.randn((1, c, h, w), generator=gen).to(self.device, next(self.vae.parameters()).dtype)
        img = self.decode(vae_to_unet_latents(z, self.vae.config))
        self._preview_map = fit_preview_map([z[0].float().cpu().numpy().astype(np.float64)], [img])
        return self._preview_map

    def fast_preview(self, latents) -> np.ndarray:
        """A blurry but near-free preview: a linear map of the (scaled) latents, upsampled."""
        import cv2

        coef = np.asarray(self._fit_preview_map(), np.float32)
        z = unet_to_vae_latents(latents[:1].float(), self.vae.config)[0].cpu().numpy()
        small = np.tensordot(coef[:-1], z, axes=(0, 0)) + coef[-1]
        size = self.runtime.native_size
        return np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1).astype(np.float32)

    def quick_preview(self, latents) -> np.ndarray:
        """A step preview between full decodes: the folder's tiny preview decoder (preview_decoder.py)
        where it has a usable one, else the linear map (fast_preview)."""
        from . import preview_decoder

        decoder = preview_decoder.for_pipeline(self)
        if decoder is None:
            return self.fast_preview(latents)
        return preview_decoder.decode(decoder, unet_to_vae_latents(latents[:1].float(), self.vae.config))

    def graphs(self) -> dict[str, dict[int, str]]:
        """The faster graphs warm_up made: for each part ("unet", "unet-attention", "decoder",
        "student", "student-attention", "preview_decoder") the batch sizes it has one for, and what each runs on
        ("onnxruntime", "torchscript-bf16" or "torchscript"). Parts without a graph are left out."""
        out = {}
        for part, graphs in (("unet", self._traced), ("unet-attention", self._attention), ("decoder", self._decoders),
                             ("student", self._student_graphs), ("student-attention", self._student_attention)):
            if graphs:  # keys: engines.trace_key (shapes first), or a decoder's latent shape
                out[part] = {int(k[0] if part == "decoder" else k[0][0]): engines.graph_engine(g)
                             for k, g in graphs.items()}
        graph = getattr(getattr(self, "_preview_decoder", None), "graph", None)
        if graph is not None:
            out["preview_decoder"] = {1: engines.graph_engine(graph)}
        return out

    def _precision(self):
        import contextlib

        import torch

        if getattr(self, "_autocast", False):
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _can_trace(self) -> bool:
        return self.device == "cpu" and not getattr(self, "_autocast", False)

    def warm_up(self, batches: tuple[int, ...] | None = None, engine: str | None = None,
                attention: bool = False) -> float:
        """Make faster UNet and decoder graphs that later generations run (see engines.warm_up), and
        load the distilled student and the preview decoder where the folder has them (with their
        graphs), so that the first fast film and the first preview do not wait for them. ``unet_engine`` says
        what the UNet runs on. Returns the seconds spent (also added to ``warm_up_seconds``)."""
        seconds = engines.warm_up(self, batches, engine, attention)
        if self.model.student is not None and self._student is None:
            t0 = time.perf_counter()
            try:
                self.student_unet()
            except PipelineError as exc:  # a damaged student: fast mode says so when asked for
                log.warning("cannot load the distilled student: %s", exc)
            seconds += time.perf_counter() - t0
        if self._student is not None and (not self._student_graphs or (attention and not self._student_attention)):
            from .fast import warm_up_student

            seconds += warm_up_student(self, engine, attention)
        if self._decoders:  # the tiny preview decoder's graph too, so that the first preview does not make it
            from . import preview_decoder

            t0 = time.perf_counter()
            preview_decoder.for_pipeline(self)
            seconds += time.perf_counter() - t0
        self.warm_up_seconds += seconds
        return seconds

    def _unet(self, sample, t, context, store: AttnStore | None = None):
        """The UNet's output: the faster graph for this shape when warm_up() made one. With ``store``
        (a step that records attention) the attention graph, or else the UNet's own modules, whose
        recording processors fill the store."""
        key = engines.trace_key(sample, context)
        graph = (self._attention if store is not None else self._traced).get(key)
        if graph is None:
            return self.unet(sample, t, encoder_hidden_states=context).sample
        self._graph_steps += 1
        out = graph(sample, t.reshape(1).expand(sample.shape[0]), context)
        if store is None:
            return out
        out, *probs = out
        for p in probs:
            record_probs(store, p)
        return out

    # ------------------------------------------------------------------ generation stages
    def check_inputs(self, prompt, steps, guidance_scale, width, height, sampler, guidance_interval=FULL_INTERVAL,
                     seed=None, negative_prompt="") -> None:
        """PipelineError (one line) for a request the pipeline cannot run."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise PipelineError("the prompt is empty: describe the radiograph, e.g. 'normal chest radiograph'")
        check_text("prompt", prompt)
        check_text("negative prompt", negative_prompt or "")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed > MAX_SEED):
            raise PipelineError(f"seed must be a whole number from 0 to {MAX_SEED} (or -1 for a random one), not {seed!r}")
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
            raise PipelineError(f"steps must be a whole number from 1 to {MAX_STEPS}, not {steps!r}")
        try:
            g = float(guidance_scale)
        except (TypeError, ValueError):
            raise PipelineError(f"guidance must be a number, not {guidance_scale!r}") from None
        if not (0.0 <= g <= MAX_GUIDANCE) or g != g:
            raise PipelineError(f"guidance must be between 0 and {MAX_GUIDANCE:g}, not {guidance_scale!r}")
        if width not in SIZES or height not in SIZES or width != height:
            raise PipelineError(f"size must be one of {', '.join(map(str, SIZES))} (square), not {width}x{height}")
        if sampler not in SAMPLERS:
            raise PipelineError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        check_interval(guidance_interval)

    validate = check_inputs

    def encode_prompt(self, prompt: str, negative_prompt: str, use_cfg: bool) -> _Prompt:
        """The prompt's token embeddings as the UNet's context: (unconditional, conditional) for a
        guided step, the conditional alone for an unguided one."""
        import torch

        enc = self.text_encoder.encode([prompt, negative_prompt or ""])
        cond, uncond = enc.embeddings[0:1], enc.embeddings[1:2]
        dtype = next(self.unet.parameters()).dtype
        context = (torch.cat([uncond, cond]) if use_cfg else cond).to(self.device, dtype)
        return _Prompt(context, cond.to(self.device, dtype), enc.tokens[0], bool(enc.truncated[0]))

    def prepare_latents(self, seed: int, sched):
        """The starting noise for ``seed`` (with the model's per-channel noise offset), scaled for
        ``sched``."""
        import torch

        c, h, w = self.runtime.latent_shape
        gen = torch.Generator("cpu").manual_seed(seed)
        latents = torch.randn((1, c, h, w), generator=gen, dtype=torch.float32)
        if self.model.noise_offset:
            latents += self.model.noise_offset * torch.randn((1, c, 1, 1), generator=gen)
        return latents.to(self.device, next(self.unet.parameters()).dtype) * sched.init_noise_sigma

    def decode_latents(self, latents) -> np.ndarray:
        """The final latents as a float32 film in [0, 1] at the model's native size."""
        return self.decode(latents)

    @staticmethod
    def _resize(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, str | None]:
        """The film at the requested size (Lanczos upsampling beyond the native size) and a note on
        the upsampling, or None."""
        native = image.shape[0]
        if width == native:
            return image, None
        import cv2

        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LANCZOS4)
        return (np.clip(image, 0, 1).astype(np.float32),
                f"generated at {native}x{native} and upsampled to {width}x{height} (Lanczos)")

    def generate(self, prompt: str, negative_prompt: str = "", steps: int = 20, guidance_scale: float | None = None,
                 seed: int | None = None, width: int = 256, height: int = 256, sampler: str = DEFAULT_SAMPLER,
                 on_step: StepCallback | None = None, cancel: threading.Event | None = None,
                 preview_every: int | None = None, attention_words: list[str] | None = None,
                 step_metrics: bool = False,
                 guidance_interval: tuple[float, float] | None = None, fast: bool = False,
                 condition_noise: float | None = None) -> GenerationResult:
        """Generate one image. Raises PipelineError on bad input, GenerationCancelled on cancel.

        ``on_step(i, total, preview)`` is called after every step. The preview is the current
        denoised estimate: a full VAE decode every ``preview_every`` steps (default 5) and a
        near-free one on the other steps (the folder's tiny preview decoder, else a linear
        approximation); ``preview_every=0`` gives no previews.
        ``guidance_scale=None`` uses the model's recommended guidance (``default_guidance``).
        ``guidance_interval=(lo, hi)`` applies guidance only at steps whose timestep t satisfies
        lo <= t / T <= hi (T: training timesteps); None uses the model's (``model.guidance_interval``).
        ``fast``: draw with the folder's distilled student (generation.fast): one UNet call per step,
        ``steps`` of them (the student's own, ``model.student["steps"]``, is the one to use), with
        its own sampler unless ``sampler`` names one (a consistency student has only its own); the
        guidance interval and the negative prompt do not apply. PipelineError where the folder has no usable student.
        ``condition_noise``: CADS noise on the prompt's embedding at the noisiest steps (sampling.annealed_condition;
        None: the model's, ``model.condition_noise``; not in fast mode).
        """
        import torch

        if guidance_scale is None:
            guidance_scale = self.default_guidance(fast)
        if guidance_interval is None:
            guidance_interval = self.model.guidance_interval
        if sampler is None:
            sampler = "auto"
        condition_noise = 0.0 if fast else check_condition_noise(
            self.model.condition_noise if condition_noise is None else condition_noise)
        self.check_inputs(prompt, steps, guidance_scale, width, height, sampler, guidance_interval, seed=seed,
                          negative_prompt=negative_prompt)
        if fast:
            from . import fast as fast_mode

            student = self.student_unet()
            sampler = fast_mode.sampler_name(self, sampler)
        elif sampler == "auto":
            sampler = self.own_sampler()
        guidance_scale = float(guidance_scale)
        g_lo, g_hi = (float(v) for v in guidance_interval)
        if seed is None or int(seed) < 0:
            seed = random.SystemRandom().randrange(0, 2 ** 31 - 1)
        seed = int(seed)
        timings = {}
        with self._lock, torch.no_grad():
            t0 = time.perf_counter()
            use_cfg = guidance_scale != 1.0 and not fast
            enc = self.encode_prompt(prompt, negative_prompt, use_cfg)
            timings["text"] = time.perf_counter() - t0
            if fast:
                sched = fast_mode.scheduler(self, steps, sampler)
            else:
                sched = self.make_scheduler(sampler)
                sched.set_timesteps(steps, device=self.device)
            latents = self.prepare_latents(seed, sched)
            net = student if fast else self.unet
            store = None
            if attention_words:
                idx = token_index(self.text_encoder.tokenizer, enc.tokens, attention_words)
                if idx:
                    store = AttnStore(idx)
                    saved = wrap_cross_attention(net, lambda inner: RecordingAttnProcessor(store, inner))
            if preview_every is None:
                preview_every = 5
            try:
                t1 = time.perf_counter()
                if fast:
                    self._graph_steps = guided_steps = 0
                    noise = torch.Generator("cpu").manual_seed(seed + 1)  # the re-noising between steps
                    latents, metrics = fast_mode.denoise(self, student, latents, sched, enc.cond_context,
                                                         guidance_scale, noise, store, on_step, cancel,
                                                         preview_every, step_metrics)
                else:
                    cads = (condition_noise, torch.Generator("cpu").manual_seed(seed + 2)) if condition_noise else None
                    latents, guided_steps, metrics = self._denoise(latents, sched, enc, guidance_scale, (g_lo, g_hi),
                                                                   store, on_step, cancel, preview_every, step_metrics,
                                                                   cads)
                timings["denoise"] = time.perf_counter() - t1
                t2 = time.perf_counter()
                image = self.decode_latents(latents)
                timings["decode"] = time.perf_counter() - t2
                total = len(sched.timesteps)
                if step_metrics:
                    metrics.append(metrics_at_step(image, total))
                if on_step is not None:
                    on_step(total, total, image if preview_every > 0 else None)
            finally:
                if store is not None:
                    net.set_attn_processor(saved)
        native = image.shape[0]
        image, upscale = self._resize(image, width, height)
        attention = attention_maps(store, width, height) if store is not None else {}
        timings["total"] = time.perf_counter() - t0
        params = {
            "prompt": prompt, "negative_prompt": "" if fast else (negative_prompt or ""), "steps": steps,
            "guidance_scale": guidance_scale, "guidance_interval": [g_lo, g_hi], "guided_steps": guided_steps,
            "seed": seed, "sampler": sampler, "fast": bool(fast), "condition_noise": condition_noise, "width": width,
            "height": height, "native_size": native, "upscale": upscale,
            "prompt_truncated": enc.truncated, "max_tokens": self.text_encoder.max_tokens,
            "model": self.model.name, "model_hash": self.model.hash, "device": self.device,
            "precision": self.runtime.dtype,
            # what ran the UNet (ONNX Runtime and torch round differently: a redraw on the other
            # may differ by a grey level in a few pixels)
            "unet_engine": self.unet_engine if self._graph_steps else "eager",
        }
        return GenerationResult(image=image, params=params, attention=attention, step_metrics=metrics,
                                timings=timings)

    def student_unet(self):
        """The folder's distilled student, loaded on first use (PipelineError where there is none)."""
        if self.model.student is None:
            raise PipelineError(self.model.student_note or "this model has no distilled student")
        if self._student is None:
            from .fast import load_student

            self._student = load_student(self.folder, self.device, next(self.unet.parameters()).dtype)
        return self._student

    def _denoise(self, latents, sched, enc: _Prompt, guidance_scale: float, interval: tuple[float, float],
                 store: AttnStore | None, on_step, cancel, preview_every: int, want_metrics: bool, cads=None):
        """The denoising loop (``cads``: (scale, generator) of condition-annealed sampling, or None).
        Returns (final latents, number of guided steps, per-step metrics)."""
        import torch

        use_cfg = guidance_scale != 1.0
        g_lo, g_hi = interval
        n_train = int(self.scheduler_config.get("num_train_timesteps", 1000))
        guided_steps = 0
        metrics = []
        self._graph_steps = 0
        total = len(sched.timesteps)
        for i, t in enumerate(sched.timesteps):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            guide = use_cfg and g_lo <= float(t) / n_train <= g_hi
            guided_steps += guide
            model_in = torch.cat([latents] * 2) if guide else latents
            model_in = sched.scale_model_input(model_in, t)
            last = i == total - 1
            # Attention is recorded every ATTENTION_EVERY steps and at the last, by the attention
            # graph or the UNet's own modules; the other steps may run the plain graph.
            record = store is not None and ((i + 1) % ATTENTION_EVERY == 0 or last)
            if store is not None:
                store.enabled = record
            context = enc.context if guide else enc.cond_context
            if cads is not None:
                cond = annealed_condition(enc.cond_context, float(t) / n_train, *cads)
                context = torch.cat([enc.context[:1], cond]) if guide else cond
            with self._precision():
                out = self._unet(model_in, t, context, store=store if record else None).to(latents.dtype)
            if guide:
                out = guided(out, guidance_scale)
            full = preview_every > 0 and (i + 1) % preview_every == 0
            wants = on_step is not None and preview_every > 0
            # The last step's preview is the final image itself, decoded once after the loop.
            x0 = self._x0(sched, latents, out, t) if (wants or want_metrics) and not last else None
            latents = sched.step(out, t, latents).prev_sample
            preview = None
            if x0 is not None:
                # A full VAE decode every `preview_every` steps; a near-free one (quick_preview) on the others.
                preview = self.decode(x0) if (full or want_metrics) else self.quick_preview(x0)
                if want_metrics:
                    metrics.append(metrics_at_step(preview, i + 1))
            if on_step is not None and not last:
                on_step(i + 1, total, preview)
        return latents, guided_steps, metrics

    def edit(self, image, mask, prompt: str, **kwargs) -> GenerationResult:
        """Redraw the masked region of a film from ``prompt`` and keep the rest exactly (see
        core.generation.editing.edit for the arguments). Raises EditError (a ValueError) on bad input,
        PipelineError on a bad prompt or setting, GenerationCancelled on cancel."""
        from .editing import edit

        return edit(self, image, mask, prompt, **kwargs)
