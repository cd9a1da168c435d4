"""Faster engines for the UNet and the VAE decoder on the CPU: ONNX Runtime sessions (onnx_graphs),
TorchScript graphs, and TorchScript graphs of bfloat16 copies. ``warm_up`` makes them for a
pipeline; its generations then run them instead of the eager modules."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..errors import PipelineError
from .attention import attention_unet
from .limits import MAX_SEED
from .sampling import FULL_INTERVAL, MAX_GUIDANCE

log = logging.getLogger(__name__)

# What warm_up may run the UNet on: ONNX Runtime, a TorchScript graph (also the fallback where ONNX
# Runtime is missing or fails), or TorchScript graphs of bfloat16 copies of the UNet and the decoder
# (only on CPUs with native bfloat16 arithmetic; elsewhere "onnx").
UNET_ENGINES = ("onnx", "trace", "bf16")
# A bfloat16 graph must reproduce the float32 module to within this (relative to the output's scale).
BF16_TOLERANCE = 0.03


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def plain_unet(unet):
    """``unet(sample, t, context)`` as a module whose forward returns a tensor, for tracing."""
    import torch

    class PlainUNet(torch.nn.Module):
        def __init__(self, u):
            super().__init__()
            self.u = u

        def forward(self, sample, t, context):
            return self.u(sample, t, encoder_hidden_states=context, return_dict=False)[0]

    return PlainUNet(unet).eval()


def plain_decoder(vae):
    """``vae.decode(latents)`` as a module whose forward returns a tensor, for export."""
    import torch

    class PlainDecoder(torch.nn.Module):
        def __init__(self, v):
            super().__init__()
            self.v = v

        def forward(self, latents):
            return self.v.decode(latents, return_dict=False)[0]

    return PlainDecoder(vae).eval()


class Bf16Graph:
    """A frozen TorchScript graph of a bfloat16 copy of a module: float32 tensors in (integer ones
    pass unchanged), float32 tensors out, like an OnnxGraph."""

    def __init__(self, graph):
        self.graph = graph

    def __call__(self, *tensors):
        import torch

        out = self.graph(*(t.to(torch.bfloat16) if t.is_floating_point() else t for t in tensors))
        return tuple(o.float() for o in out) if isinstance(out, (tuple, list)) else out.float()


def bf16_graph(module, inputs, tolerance: float | None = None) -> Bf16Graph:
    """``module`` (float32, eval mode, forward(*inputs) -> tensor or tuple) as a frozen TorchScript
    graph of a bfloat16 copy in channels-last memory order. Checked against the module on
    ``inputs``; RuntimeError where it deviates by more than ``tolerance`` (default BF16_TOLERANCE)
    of the output's scale."""
    import copy

    import torch

    from .onnx_graphs import deviation

    with torch.no_grad():
        reference = module(*inputs)
        low = copy.deepcopy(module).to(torch.bfloat16).to(memory_format=torch.channels_last).eval()
        args = tuple(t.to(torch.bfloat16) if t.is_floating_point() else t for t in inputs)
        graph = Bf16Graph(torch.jit.freeze(torch.jit.trace(low, args, check_trace=False)))
        graph(*inputs)  # the first calls of a frozen graph optimise it; the check below is the second
        err = deviation(graph, reference, inputs)
    if not err <= (BF16_TOLERANCE if tolerance is None else tolerance):
        raise RuntimeError(f"the bfloat16 graph differs from the module by {err:.2g} of its output scale")
    return graph


def graph_engine(graph) -> str:
    """What a graph of warm_up's runs on: "onnxruntime", "torchscript-bf16" or "torchscript"."""
    name = type(graph).__name__
    return "onnxruntime" if name == "OnnxGraph" else "torchscript-bf16" if isinstance(graph, Bf16Graph) else "torchscript"


def trace_key(sample, context) -> tuple:
    """The key of a UNet graph: input shapes and dtype."""
    return tuple(sample.shape), tuple(context.shape), sample.dtype


def warm_up(pipe, batches: tuple[int, ...] | None = None, engine: str | None = None,
            attention: bool = False) -> float:
    """Make ``pipe``'s faster graphs for the native latent size at these batch sizes (2: a guided
    step, 1: an unguided one; default: those the model's recommended sampling uses). ``engine``
    (default ``$CXRDESK_UNET_ENGINE``, else "onnx"): "onnx" (UNet and decoder in ONNX Runtime, cached
    per model; the UNet traced where that fails), "trace" (a TorchScript UNet, bit-identical to the
    eager one) or "bf16" (bfloat16 graphs of the UNet and the decoder; "onnx" on CPUs without native
    bfloat16). With ``attention`` the onnx and bf16 engines also make a UNet graph returning the
    cross-attention maps. Returns the seconds spent; 0 where none applies (CUDA, bf16 autocast). A
    graph that fails to build is logged and skipped."""
    import warnings

    import torch

    engine = engine or os.environ.get("CXRDESK_UNET_ENGINE") or "onnx"
    if engine not in UNET_ENGINES:
        raise PipelineError(f"unknown UNet engine {engine!r}; choose one of {', '.join(UNET_ENGINES)}")
    if engine == "bf16" and not _cpu_has_bf16():
        log.info("this CPU has no native bfloat16 arithmetic: running the UNet in ONNX Runtime instead")
        engine = "onnx"
    if not pipe._can_trace():
        return 0.0
    if batches is None:
        guided = pipe.model.guidance != 1.0
        batches = (2,) if guided and pipe.model.guidance_interval == FULL_INTERVAL else (1, 2)
    t0 = time.perf_counter()
    c, h, w = pipe.runtime.latent_shape
    dtype = next(pipe.unet.parameters()).dtype
    with pipe._lock, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic the graph keeps
        ctx = pipe.text_encoder.encode([""]).embeddings.to(pipe.device, dtype)
        for b in batches:
            sample = torch.zeros((b, c, h, w), dtype=dtype)
            context = ctx.expand(b, -1, -1).contiguous()
            key = trace_key(sample, context)
            if key not in pipe._traced:
                _prepare_unet(pipe, key, engine, sample, context)
            if attention and engine in ("onnx", "bf16") and key not in pipe._attention:
                graph = _fast_graph(pipe, engine, "unet-attention", sample, context)
                if graph is not None:
                    pipe._attention[key] = graph
        z = torch.zeros((1, c, h, w), dtype=dtype)
        if engine in ("onnx", "bf16") and tuple(z.shape) not in pipe._decoders:
            graph = _fast_graph(pipe, engine, "decoder", z)
            if graph is not None:
                pipe._decoders[tuple(z.shape)] = graph
    if engine == "onnx":
        prepare_quick_start(pipe)
    from ..memory import release

    release()  # the export's and tracing's buffers: freed, but kept mapped by malloc until trimmed
    return time.perf_counter() - t0


def plain_text_encoder(model):
    """The packaged text encoder's ``model(input_ids, attention_mask).last_hidden_state`` as a module
    taking both as float tensors (the graphs' inputs are float32), for export."""
    import torch

    class PlainTextEncoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask):
            return self.m(input_ids=ids.long(), attention_mask=mask.long()).last_hidden_state

    return PlainTextEncoder(model).eval()


def prepare_quick_start(pipe) -> None:
    """Leave in the cache what the next start's first fast film needs without torch (quickstart): the
    text encoder's graph (checked against it like the others) and the numbers file (torch's guidance
    embeddings, written once torch's starting noise was found equal to quickmath's). Nothing where
    the model has no quick path; failures are logged."""
    import numpy as np
    import torch

    from . import onnx_graphs, quickstart
    from .quickmath import torch_randn
    from .text import PlainTokenizer

    student = pipe.model.student
    if (student is None or student["sampler"] == "lcm" or pipe.model.noise_offset or not pipe._can_trace()
            or getattr(pipe.text_encoder, "kind", None) != "minilm"):
        return
    try:
        path = quickstart.numbers_path(torch.__version__)
        if onnx_graphs.verified(path) is None:
            shape = (1, *pipe.runtime.latent_shape)
            for seed in (0, 20261207, MAX_SEED):
                ref = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
                if not np.array_equal(ref.numpy(), torch_randn(shape, seed)):
                    log.info("torch's starting noise differs from numpy's on this machine: no quick start")
                    return
            from .fast import guidance_embedding

            grid = np.stack([guidance_embedding(torch.tensor([k / quickstart.GUIDANCE_STEP]))[0].numpy()
                             for k in range(int(round(MAX_GUIDANCE * quickstart.GUIDANCE_STEP)) + 1)])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
            try:
                np.savez(tmp, guidance=grid.astype(np.float32), threads=np.int64(torch.get_num_threads()))
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            onnx_graphs.mark_verified(path)
        te = pipe.text_encoder
        plain = PlainTokenizer(te.path, te.max_tokens)
        prompts = ["Normal chest radiograph", "Small right pleural effusion, no pneumothorax " * 8]
        ids, mask, _, _ = plain.encode(prompts)
        ref = te.tokenizer(prompts, padding="max_length", truncation=True, max_length=te.max_tokens, return_tensors="np")
        if not (np.array_equal(ref["input_ids"], ids) and np.array_equal(ref["attention_mask"], mask)):
            log.info("the tokenizers library tokenises differently from transformers here: no quick start")
            return
        inputs = (torch.from_numpy(ids[:1]).float(), torch.from_numpy(mask[:1]).float())
        onnx_graph(plain_text_encoder(te.model), ("input_ids", "attention_mask"), inputs, quickstart.TEXT_PART,
                   quickstart.text_encoder_hash(te.path))
        _record_sampler(pipe, quickstart, onnx_graphs)
    except Exception:  # noqa: BLE001 - the next start waits for the model instead
        log.warning("could not prepare the quick start", exc_info=True)


def _record_sampler(pipe, quickstart, onnx_graphs) -> None:
    """The model's record for the quick start: written (and marked) where quickmath's sampler walks the
    student's steps as the pipeline's scheduler does, removed where it does not."""
    import json

    import numpy as np
    import torch

    from ..modelfolder import STUDENT_DIR, component_weights, file_hash
    from . import fast
    from .quickmath import DpmSolver2M, dpm_supported, torch_randn

    steps = int(pipe.model.student["steps"])
    student_hash = file_hash(component_weights(Path(pipe.folder) / STUDENT_DIR))
    path = quickstart.model_record_path(pipe.model.hash, student_hash, torch.__version__)
    same = fast.guided_sampler(pipe) == "dpm++" and dpm_supported(pipe.scheduler_config)
    if same:
        ref, mine = fast.scheduler(pipe, steps), DpmSolver2M(pipe.scheduler_config, steps)
        x = torch_randn((1, *pipe.runtime.latent_shape), 0)
        xt, rng = torch.from_numpy(x.copy()), np.random.default_rng(0)
        for t in ref.timesteps:
            out = rng.standard_normal(x.shape).astype(np.float32)
            xt, x = ref.step(torch.from_numpy(out), t, xt).prev_sample, mine.step(out, x)
        same = (np.array_equal(ref.timesteps.cpu().numpy(), mine.timesteps)
                and float(np.abs(x - xt.numpy()).max()) <= 1e-4 * max(1.0, float(xt.abs().max())))
    if not same:
        log.info("the student's sampler has no numpy form that matches it here: no quick start for this model")
        onnx_graphs.verified_marker(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return
    if onnx_graphs.verified(path) is None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"steps": steps}), encoding="utf-8")
        os.replace(tmp, path)
        onnx_graphs.mark_verified(path)


def _prepare_unet(pipe, key, engine: str, sample, context) -> None:
    """A faster UNet for one input shape into pipe._traced: ONNX Runtime or bfloat16 (engine "onnx",
    "bf16"), else a TorchScript graph; nothing (logged) where neither can be made."""
    import torch

    if engine in ("onnx", "bf16"):
        graph = _fast_graph(pipe, engine, "unet", sample, context)
        if graph is not None:
            pipe._traced[key] = graph
            pipe.unet_engine = "torchscript-bf16" if isinstance(graph, Bf16Graph) else "onnxruntime"
            return
    t = torch.full((sample.shape[0],), 500, dtype=torch.long)
    try:
        graph = torch.jit.freeze(torch.jit.trace(plain_unet(pipe.unet), (sample, t, context), check_trace=False))
        graph(sample, t, context)  # the first calls of a frozen graph optimise it
        graph(sample, t, context)
    except Exception:  # noqa: BLE001 - an optimisation must never stop generation
        log.warning("could not trace the UNet (batch %d); generating without it", sample.shape[0], exc_info=True)
        return
    pipe._traced[key] = graph
    pipe.unet_engine = "torchscript"


def _fast_graph(pipe, engine: str, part: str, sample, context=None):
    """The ``part`` ("unet", "unet-attention" or "decoder") on ``engine``: ONNX Runtime ("onnx") or
    a bfloat16 TorchScript graph ("bf16", falling back to ONNX Runtime where it cannot be made)."""
    if engine == "bf16":
        graph = _bf16_part(pipe, part, sample, context)
        if graph is not None:
            return graph
    return _onnx_part(pipe, part, sample, context)


def _part_inputs(pipe, part: str, sample, context=None):
    """(module, input names, check inputs) of a part: random check inputs, since zeros would check
    little."""
    import torch

    gen = torch.Generator("cpu").manual_seed(0)
    check = torch.randn(sample.shape, generator=gen, dtype=sample.dtype)
    if part in ("unet", "unet-attention"):
        module = (plain_unet if part == "unet" else attention_unet)(pipe.unet)
        return module, ("sample", "t", "context"), (check, torch.full((sample.shape[0],), 500, dtype=torch.long), context)
    return plain_decoder(pipe.vae), ("latents",), (check,)


def _bf16_part(pipe, part: str, sample, context=None):
    """A bfloat16 TorchScript graph of the part, or None (logged)."""
    module, _, inputs = _part_inputs(pipe, part, sample, context)
    try:
        return bf16_graph(module, inputs)
    except Exception:  # noqa: BLE001 - an optimisation must never stop generation
        log.warning("could not make a bfloat16 graph of the %s (input %s)", part, tuple(sample.shape),
                    exc_info=True)
    return None


def _onnx_part(pipe, part: str, sample, context=None):
    """An ONNX Runtime graph of the part for this input shape, or None (logged)."""
    module, names, inputs = _part_inputs(pipe, part, sample, context)
    return onnx_graph(module, names, inputs, part, pipe.model.hash)


def onnx_graph(module, names, inputs, part: str, weights_hash: str):
    """An ONNX Runtime graph of ``module`` for inputs shaped like ``inputs`` (cached under ``part`` and
    ``weights_hash``), or None (logged): the caller then runs the module in torch."""
    import torch

    from . import onnx_graphs

    try:
        return onnx_graphs.load_or_export(module, inputs, names, part, weights_hash, threads=torch.get_num_threads())
    except onnx_graphs.OnnxUnavailable as e:
        log.info("%s: running the %s in torch", e, part)
    except Exception:  # noqa: BLE001 - an optimisation must never stop generation
        log.warning("could not run the %s in ONNX Runtime (input %s); running it in torch",
                    part, tuple(inputs[0].shape), exc_info=True)
    return None
