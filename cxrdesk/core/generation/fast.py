"""Fast mode: a film in a few steps from the model folder's distilled student (core.training.distill).

The student takes the guidance scale as an input, so each step is one UNet call on one latent
(a guided step of the teacher is two). A consistency student (sampler "lcm") is walked by
``LCMScheduler`` along the teacher's 50-point grid from pure noise, predicting the clean film at each
step and re-noising it to the next; a guidance-distilled one by the sampler its record names (the
model's own, "model", or a named one), in fewer steps than full generation.
"""
from __future__ import annotations

from pathlib import Path

from ..training.distill import DDIM_TIMESTEPS, TIMESTEP_SCALING, W_EMBED_DIM, guidance_embedding
from ..errors import GenerationCancelled, ModelLoadError, PipelineError
from ..modelfolder import STUDENT_DIR
from .attention import ATTENTION_EVERY, attention_unet, record_probs

SAMPLER = "lcm"


def load_student(folder: Path, device: str, dtype):
    """The student UNet, ready for inference (ModelLoadError with one line if it cannot be read)."""
    import torch
    from diffusers import UNet2DConditionModel

    try:
        unet = UNet2DConditionModel.from_pretrained(Path(folder) / STUDENT_DIR, local_files_only=True,
                                                    use_safetensors=True)
    except Exception as exc:  # corrupt weights, wrong shapes
        raise ModelLoadError(f"cannot load the distilled student: {str(exc).splitlines()[0][:200]}") from None
    if unet.config.time_cond_proj_dim != W_EMBED_DIM:
        raise ModelLoadError("the student folder holds a UNet without a guidance input: distil the model again")
    unet.to(device).eval().requires_grad_(False)
    if dtype != torch.float32:
        unet.to(dtype)
    if device == "cpu":
        unet.to(memory_format=torch.channels_last)
    return unet


def scheduler(pipe, steps: int, sampler: str = "auto"):
    """The scheduler that walks the folder's student, its timesteps set: LCMScheduler on the teacher's
    noise schedule and the grid a consistency student was distilled on, or for a guidance-distilled
    student ``sampler`` ("auto": the one its record names, see guided_sampler)."""
    from diffusers import LCMScheduler

    if pipe.model.student["sampler"] != SAMPLER:
        sched = pipe.make_scheduler(guided_sampler(pipe, sampler))
        sched.set_timesteps(steps, device=pipe.device)
        return sched
    cfg = {k: v for k, v in pipe.scheduler_config.items() if not k.startswith("_")}
    sched = LCMScheduler.from_config(cfg, original_inference_steps=DDIM_TIMESTEPS, timestep_scaling=TIMESTEP_SCALING)
    if not 1 <= steps <= DDIM_TIMESTEPS:
        raise PipelineError(f"fast mode takes 1 to {DDIM_TIMESTEPS} steps, not {steps}")
    sched.set_timesteps(steps, device=pipe.device)
    return sched


def guided_sampler(pipe, sampler: str = "auto") -> str:
    """The sampler a guidance-distilled student runs: ``sampler`` where one is named, else the one
    its record names ("model": the model's own)."""
    if sampler not in (None, "auto"):
        return sampler
    record = pipe.model.student["sampler"]
    return pipe.own_sampler() if record == "model" else record


def sampler_name(pipe, sampler: str = "auto") -> str:
    """The sampler a fast film records: "lcm" for a consistency student (which runs no other), else
    guided_sampler's."""
    return SAMPLER if pipe.model.student["sampler"] == SAMPLER else guided_sampler(pipe, sampler)


def plain_student(student):
    """``student(sample, t, context, w)`` as a module returning a tensor, for export (w: the guidance
    embedding)."""
    import torch

    class PlainStudent(torch.nn.Module):
        def __init__(self, u):
            super().__init__()
            self.u = u

        def forward(self, sample, t, context, w):
            return self.u(sample, t, encoder_hidden_states=context, timestep_cond=w, return_dict=False)[0]

    return PlainStudent(student).eval()


def warm_up_student(pipe, engine: str | None = None, attention: bool = False) -> float:
    """An ONNX Runtime graph of the loaded student for one film (cached per student weights, checked
    against the student like the UNet's), as the UNet's "onnx" and "bf16" engines make for it; with
    ``attention`` also one returning the cross-attention maps, for the steps that record them.
    Returns the seconds spent; 0 where none applies. A graph that cannot be made is logged and
    skipped: fast mode then runs the student in torch."""
    import os
    import time

    import torch

    from ..modelfolder import component_weights, file_hash
    from .engines import onnx_graph, trace_key

    engine = engine or os.environ.get("CXRDESK_UNET_ENGINE") or "onnx"
    if engine not in ("onnx", "bf16") or not pipe._can_trace():
        return 0.0
    t0 = time.perf_counter()
    c, h, w = pipe.runtime.latent_shape
    dtype = next(pipe.unet.parameters()).dtype
    with pipe._lock, torch.no_grad():
        context = pipe.text_encoder.encode([""]).embeddings.to(pipe.device, dtype)
        sample = torch.randn((1, c, h, w), generator=torch.Generator("cpu").manual_seed(0), dtype=dtype)
        inputs = (sample, torch.full((1,), 500, dtype=torch.long), context,
                  guidance_embedding(torch.tensor([4.0])).to(dtype))
        weights = file_hash(component_weights(Path(pipe.folder) / STUDENT_DIR))
        key = trace_key(sample, context)
        names = ("sample", "t", "context", "w")
        if key not in pipe._student_graphs:
            graph = onnx_graph(plain_student(pipe._student), names, inputs, "student", weights)
            if graph is not None:
                pipe._student_graphs[key] = graph
        if attention and key not in pipe._student_attention:
            graph = onnx_graph(attention_unet(pipe._student, guidance_input=True), names, inputs,
                               "student-attention", weights)
            if graph is not None:
                pipe._student_attention[key] = graph
    return time.perf_counter() - t0


def denoise(pipe, student, latents, sched, context, guidance_scale: float, gen, store, on_step, cancel,
            preview_every: int, want_metrics: bool):
    """The student's loop: one UNet call per step. Returns (final latents, per-step metrics)."""
    import torch
    from diffusers import LCMScheduler

    from .engines import trace_key
    from .pipeline import metrics_at_step

    consistency = isinstance(sched, LCMScheduler)
    w_emb = guidance_embedding(torch.tensor([guidance_scale])).to(latents.device, latents.dtype)
    metrics = []
    total = len(sched.timesteps)
    for i, t in enumerate(sched.timesteps):
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled()
        last = i == total - 1
        if store is not None:
            store.enabled = (i + 1) % ATTENTION_EVERY == 0 or last
        wants = not last and ((on_step is not None and preview_every > 0) or want_metrics)
        model_in = latents if consistency else sched.scale_model_input(latents, t)
        record = store is not None and store.enabled
        key = trace_key(model_in, context)
        graph = (pipe._student_attention if record else pipe._student_graphs).get(key)
        if graph is None:  # the student's own modules (their recording processors fill the store)
            out = student(model_in, t, encoder_hidden_states=context, timestep_cond=w_emb).sample.to(latents.dtype)
        else:
            out = graph(model_in, t.reshape(1).expand(model_in.shape[0]), context, w_emb)
            pipe._graph_steps += 1
            if record:
                out, *probs = out
                for p in probs:
                    record_probs(store, p)
            out = out.to(latents.dtype)
        if consistency:
            latents, x0 = sched.step(out, t, latents, generator=gen, return_dict=False)
        else:
            x0 = pipe._x0(sched, latents, out, t) if wants else None
            latents = sched.step(out, t, latents).prev_sample
        preview = None
        if wants:
            full = preview_every > 0 and (i + 1) % preview_every == 0
            preview = pipe.decode(x0) if (full or want_metrics) else pipe.quick_preview(x0)
            if want_metrics:
                metrics.append(metrics_at_step(preview, i + 1))
        if on_step is not None and not last:
            on_step(i + 1, total, preview)
    return latents, metrics
