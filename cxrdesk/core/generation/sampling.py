"""Samplers (diffusers schedulers built from a model's training schedule) and guidance settings."""
from __future__ import annotations

from ..errors import PipelineError
from .models import clean_latents

# "auto": the sampler the model folder recommends (ModelFolder.sampler).
SAMPLERS = ("auto", "dpm++-karras", "dpm++", "ddim", "euler")
DEFAULT_SAMPLER = "auto"
# For a model folder without its own choice: DPM++ 2M on Karras noise levels; for a zero terminal
# SNR model, DPM++ 2M on trailing timesteps (see the model card).
FALLBACK_SAMPLER = "dpm++-karras"
ZERO_SNR_SAMPLER = "dpm++"
# Guidance for a model folder that does not recommend its own.
DEFAULT_GUIDANCE = 4.0
MAX_GUIDANCE = 30.0
# Where in the noise schedule guidance applies, as fractions t / T of the training timesteps: (0, 1)
# is everywhere. Outside the interval a step runs the conditional half only.
FULL_INTERVAL = (0.0, 1.0)
# Condition-annealed sampling (Sadat et al., "CADS", ICLR 2024): the prompt's embedding is noised at the
# noisiest steps, fully above t/T = CADS_TAU[1], not at all below CADS_TAU[0], linearly between.
CADS_TAU = (0.6, 0.9)
MAX_CONDITION_NOISE = 1.0


def make_scheduler(scheduler_config: dict, sampler: str):
    """A fresh diffusers scheduler for ``sampler`` (not "auto") on the model's training schedule."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    cfg = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
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


def denoised(sched, latents, out, t, prediction: str):
    """The current clean-latent estimate from the model output ``out`` at timestep ``t`` (for
    previews), on sigma-parameterised schedulers and on alpha-bar ones alike."""
    if hasattr(sched, "sigmas") and getattr(sched, "init_noise_sigma", 1.0) > 1.0 and hasattr(sched, "step_index"):
        idx = sched.step_index if sched.step_index is not None else 0
        sigma = sched.sigmas[idx].to(latents.dtype)
        if prediction == "v_prediction":
            return out * (-sigma / (sigma ** 2 + 1) ** 0.5) + latents / (sigma ** 2 + 1)
        return latents - sigma * out
    a = sched.alphas_cumprod.to(latents.device)[int(t)].to(latents.dtype)
    return clean_latents(out, latents, a, prediction)


def guided(out, guidance_scale: float):
    """Classifier-free guidance on a (unconditional, conditional) batch of model outputs."""
    out_u, out_c = out.chunk(2)
    return out_u + guidance_scale * (out_c - out_u)


def check_condition_noise(scale) -> float:
    """A condition-noise scale from 0 (off) to MAX_CONDITION_NOISE; PipelineError otherwise."""
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise PipelineError(f"condition noise must be a number, not {scale!r}") from None
    if not 0.0 <= s <= MAX_CONDITION_NOISE:
        raise PipelineError(f"condition noise must be between 0 and {MAX_CONDITION_NOISE:g}, not {scale!r}")
    return s


def annealed_condition(cond, t_frac: float, scale: float, gen):
    """CADS: the conditional embedding ``cond`` at a step whose timestep is ``t_frac`` of the schedule,
    mixed with Gaussian noise (``scale``, drawn from ``gen``) where t_frac > CADS_TAU[0] and rescaled to
    the embedding's own mean and spread; ``cond`` itself below CADS_TAU[0] or at scale 0."""
    import torch

    lo, hi = CADS_TAU
    gamma = min(1.0, max(0.0, (hi - t_frac) / (hi - lo)))
    if scale <= 0 or gamma >= 1.0:
        return cond
    noise = torch.randn(cond.shape, generator=gen, dtype=torch.float32).to(cond)
    y = gamma ** 0.5 * cond + scale * (1.0 - gamma) ** 0.5 * noise
    return (y - y.mean()) / y.std() * cond.std() + cond.mean()


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
