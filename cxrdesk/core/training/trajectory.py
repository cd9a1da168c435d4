"""Step distillation onto the fine sampler's trajectory (``train distill --method trajectory``).

A guidance-distilled student (one UNet call per step) sampled in 4 steps of DPM++ 2M makes films of one
prompt that look more alike than the same student in 20 steps: the coarse solver, not the network, loses
the variety. This stage teaches the student to take the 4 coarse steps so that they land where 20 fine
steps of the starting student land (Salimans & Ho, "Progressive distillation", ICLR 2022, with the
whole fine trajectory as teacher instead of two steps at a time):

1. ``build_trajectories``: from pure noise (the zero terminal SNR schedule's first timestep), the frozen
   starting student draws films in ``fine`` steps of DPM++ 2M for captions and guidance scales drawn from
   the training set; the states at the coarse sampler's timesteps are kept (``coarse + 1`` per film,
   the last one the film's clean latent). Built in chunks into RUN/distill, resumable.
2. ``trajectory_loss``: the student, given the fine trajectory's state at each coarse timestep, makes
   its clean estimate; the coarse DPM++ 2M step it implies (first order at the first and last step,
   second order between, with the previous step's estimate as the sampler would have it) is compared
   with the step that reaches the fine trajectory's next state, in clean-latent units (mean squared).

The student is then sampled exactly as before (the model's own sampler, ``coarse`` steps), so the app's
quick start and ONNX graphs need nothing new.
"""
from __future__ import annotations

import numpy as np
import torch

from ..generation.quickmath import DpmSolver2M, dpm_supported


def coarse_plan(scheduler_config: dict, coarse: int, fine: int) -> dict:
    """The coarse sampler's timesteps and step coefficients, and where they sit on the fine grid.

    ValueError where the model's schedule is not one DpmSolver2M reproduces or the coarse
    timesteps are not on the fine grid."""
    if not dpm_supported(scheduler_config):
        raise ValueError("trajectory distillation needs a model whose own sampler is DPM++ 2M on trailing timesteps")
    if coarse < 1 or fine < coarse or fine % coarse:
        raise ValueError(f"the fine steps ({fine}) must be a multiple of the coarse steps ({coarse})")
    c, f = DpmSolver2M(scheduler_config, coarse), DpmSolver2M(scheduler_config, fine)
    every = fine // coarse
    if not np.array_equal(f.timesteps[::every], c.timesteps):
        raise ValueError(f"{coarse} steps' timesteps are not on the {fine}-step grid")
    alpha, sigma = DpmSolver2M._alpha_sigma(c.sigmas.astype(np.float64))
    with np.errstate(divide="ignore"):
        lam = np.log(alpha) - np.log(sigma)
    ratio, gain, second = [], [], []
    for i in range(coarse):
        h = lam[i + 1] - lam[i]
        last = i == coarse - 1
        ratio.append(sigma[i + 1] / sigma[i])
        gain.append(alpha[i + 1] * (np.exp(-h) - 1.0))     # prev = ratio x - gain D
        # DPM++ 2M's D = x0 + (h / 2 h0) (x0 - x0_prev) between the first and the last step
        second.append(0.0 if i == 0 or last else 0.5 * h / (lam[i] - lam[i - 1]))
    return {"timesteps": torch.as_tensor(c.timesteps.copy()), "alpha": torch.tensor(alpha[:-1], dtype=torch.float32),
            "sigma": torch.tensor(sigma[:-1], dtype=torch.float32), "ratio": torch.tensor(ratio, dtype=torch.float32),
            "gain": torch.tensor(gain, dtype=torch.float32), "second": torch.tensor(second, dtype=torch.float32),
            "every": every, "fine": fine, "coarse": coarse}


@torch.no_grad()
def build_trajectories(unet, scheduler_config: dict, plan: dict, cond: torch.Tensor, w_emb: torch.Tensor,
                       noise: torch.Tensor) -> torch.Tensor:
    """The fine sampler's states at the coarse timesteps, (B, coarse + 1, C, H, W): ``unet`` (a
    guidance-input student, called as ``unet(x, t, encoder_hidden_states=, timestep_cond=)``) walks
    ``plan["fine"]`` DPM++ 2M steps from ``noise`` (float32)."""
    sched = DpmSolver2M(scheduler_config, plan["fine"])
    x = noise.float().numpy()
    keep = [noise.float()]
    for i, t in enumerate(sched.timesteps):
        tt = torch.full((len(noise),), int(t), dtype=torch.long)
        out = unet(torch.from_numpy(x), tt, encoder_hidden_states=cond, timestep_cond=w_emb).sample
        x = sched.step(out.float().numpy(), x)
        if (i + 1) % plan["every"] == 0:
            keep.append(torch.from_numpy(x.copy()))
    return torch.stack(keep, dim=1)


def trajectory_loss(student, plan: dict, states: torch.Tensor, cond: torch.Tensor, w_emb: torch.Tensor,
                    prediction: str) -> torch.Tensor:
    """Mean squared error, in clean-latent units, between the coarse DPM++ 2M step the student's
    estimates imply at each coarse timestep and the step reaching the fine trajectory's next state.

    ``states``: (B, coarse + 1, C, H, W) from build_trajectories; ``cond``, ``w_emb``: each film's."""
    b, k = states.shape[0], plan["coarse"]
    x = states[:, :k].transpose(0, 1).reshape(k * b, *states.shape[2:])      # step-major
    t = plan["timesteps"].repeat_interleave(b).to(x.device)
    out = student(x, t, encoder_hidden_states=cond.repeat(k, 1, 1), timestep_cond=w_emb.repeat(k, 1)).sample.float()
    shape = (k, 1, 1, 1, 1)  # per coarse step
    alpha, sigma = plan["alpha"].view(shape), plan["sigma"].view(shape)
    xs = x.view(k, b, *x.shape[1:])
    out = out.view(k, b, *out.shape[1:])
    x0 = alpha * xs - sigma * out if prediction == "v_prediction" else (xs - sigma * out) / alpha
    prev = torch.cat([x0[:1], x0[:-1]]).detach()          # the estimate the sampler carries from the step before
    second = plan["second"].view(shape)
    d = x0 + second * (x0 - prev)
    nxt = states[:, 1:].transpose(0, 1)
    goal = (plan["ratio"].view(shape) * xs - nxt) / plan["gain"].view(shape)
    return torch.nn.functional.mse_loss(d, goal)
