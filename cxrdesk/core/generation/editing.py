"""Edit a film: redraw a painted region from text, keep everything else exactly as it was.

``edit(pipe, image, mask, prompt, ...)`` is latent inpainting with the model as it is (no inpainting
UNet): the film is encoded, noised to the step that ``strength`` picks (1: pure noise), and denoised
under the prompt; after every step the region outside the mask is replaced by the film's own latents
noised to the same level (as diffusers' inpainting pipelines do for a plain text-to-image UNet), so
the redrawn region grows into the film around it. The decoded result is then composited onto the
input at the input's own size with a feathered edge: pixels farther than the feather from the mask
are the input's, bit for bit.

Pure numpy/torch; the UI and the CLI call it through ``Pipeline.edit``.
"""
from __future__ import annotations

import hashlib
import random
import threading
import time

import numpy as np

from .models import vae_to_unet_latents

# The feather at the model's native size (256): the composite fades from the redrawn film to the
# input over this many pixels outside the mask; beyond it the input is untouched. Scaled with the
# input's size.
FEATHER_PX = 8
MAX_FEATHER_PX = 16
DEFAULT_STRENGTH = 0.85


class EditError(ValueError):
    """Bad input to an edit (empty or full mask, sizes, strength): one line for the user."""


def lung_field_mask(shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    """A default mask of both lung fields on a frontal film (two ellipses where the lungs lie on a
    typical PA radiograph framed as the training films are), for "clear lungs" / "add opacities"
    edits without painting. Boolean (H, W)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    yy, xx = yy / h, xx / w
    out = np.zeros(shape, bool)
    for cx in (0.29, 0.71):  # the patient's right lung on the viewer's left
        out |= ((xx - cx) / 0.17) ** 2 + ((yy - 0.47) / 0.31) ** 2 < 1
    return out


def prepare_mask(mask, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask at ``shape`` (H, W) from any grey/boolean array: non-zero = redraw. Scaled
    with nearest-neighbour when its size differs. EditError when it selects nothing or everything."""
    import cv2

    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.ndim != 2 or m.size == 0:
        raise EditError("the mask must be a 2-D grey image")
    m = m != 0
    if m.shape != tuple(shape):
        m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    if not m.any():
        raise EditError("the mask selects no pixels: paint the region to redraw (non-zero = redraw)")
    if m.all():
        raise EditError("the mask selects the whole film: nothing would be kept; paint only the region to redraw")
    return m


def feather_weights(mask: np.ndarray, radius: float) -> np.ndarray:
    """Composite weights: 1 inside ``mask``, falling linearly to 0 at ``radius`` pixels outside it,
    exactly 0 beyond."""
    import cv2

    if radius <= 0:
        return mask.astype(np.float32)
    outside = (~mask).astype(np.uint8)
    dist = cv2.distanceTransform(outside, cv2.DIST_L2, 5)
    return np.clip(1.0 - dist / float(radius), 0.0, 1.0).astype(np.float32)


def composite(original: np.ndarray, redrawn: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``redrawn`` over ``original`` by ``weights``; where a weight is 0 the original value itself."""
    out = np.array(original, dtype=np.float32, copy=True)
    sel = weights > 0
    out[sel] = weights[sel] * redrawn[sel] + (1.0 - weights[sel]) * out[sel]
    return out


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if image.shape == (size, size):
        return image
    shrink = image.shape[0] > size or image.shape[1] > size
    out = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def edit(pipe, image, mask, prompt: str, negative_prompt: str = "", strength: float = DEFAULT_STRENGTH,
         steps: int = 20, guidance_scale: float | None = None, seed: int | None = None, sampler: str = "auto",
         on_step=None, cancel: threading.Event | None = None, preview_every: int = 5,
         feather_px: float | None = None):
    """Redraw the masked region of ``image`` from ``prompt``; see the module docstring.

    ``image``: (H, W) float in [0, 1] (any size; 8- and 16-bit arrays are scaled by their type's
    range); ``mask``: any 2-D array, non-zero = redraw, scaled to the image. ``strength`` in (0, 1]:
    how far into the noise the region is sent (1 draws it anew, lower keeps more of its layout).
    Returns a GenerationResult at the input's size whose ``params["edit"]`` records the strength,
    the mask's share of the film, the feather and a hash of the source pixels (no file name)."""
    import torch

    from ..errors import GenerationCancelled
    from .pipeline import GenerationResult
    from .sampling import guided

    img = np.asarray(image)
    if img.ndim != 2 or min(img.shape) < 8:
        raise EditError("the film to edit must be a 2-D grey image of at least 8x8 pixels")
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.0
    else:
        img = np.clip(img.astype(np.float32), 0.0, 1.0)
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        raise EditError(f"strength must be a number between 0 and 1, not {strength!r}") from None
    if not 0.0 < strength <= 1.0:
        raise EditError(f"strength must be above 0 and at most 1, not {strength:g}")
    m_full = prepare_mask(mask, img.shape)
    if guidance_scale is None:
        guidance_scale = pipe.model.guidance
    native = pipe.runtime.native_size
    pipe.check_inputs(prompt, steps, guidance_scale, native, native, sampler)
    if sampler in (None, "auto"):
        sampler = pipe.own_sampler()
    if seed is None or int(seed) < 0:
        seed = random.SystemRandom().randrange(0, 2 ** 31 - 1)
    seed = int(seed)
    if feather_px is None:
        feather_px = FEATHER_PX * max(img.shape) / native
    if not 0 <= feather_px <= MAX_FEATHER_PX * max(img.shape) / native:
        raise EditError(f"the feather must be between 0 and {MAX_FEATHER_PX} pixels at {native}x{native}")
    guidance_scale = float(guidance_scale)
    t0 = time.perf_counter()
    small = _fit(img, native)
    m_small = _fit(m_full.astype(np.float32), native) > 0
    c, h, w = pipe.runtime.latent_shape
    with pipe._lock, torch.no_grad():
        pipe._graph_steps = 0
        dtype = next(pipe.unet.parameters()).dtype
        device = pipe.device
        x = torch.from_numpy(small)[None, None].to(device, dtype) * 2 - 1
        if pipe.vae.config.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        with pipe._precision():
            z0 = pipe.vae.encode(x).latent_dist.mode().float()
        z0 = vae_to_unet_latents(z0, pipe.vae.config).to(dtype)
        # the latent cells the mask touches (max over each cell): redrawn in latent space
        lm = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(m_small.astype(np.float32))[None, None],
                                                     (h, w)).to(device, dtype)
        enc = pipe.text_encoder.encode([prompt, negative_prompt or ""])
        cond, uncond = enc.embeddings[0:1], enc.embeddings[1:2]
        use_cfg = guidance_scale != 1.0
        context = (torch.cat([uncond, cond]) if use_cfg else cond).to(device, dtype)
        sched = pipe.make_scheduler(sampler)
        sched.set_timesteps(steps, device=device)
        run = max(1, min(steps, int(round(steps * strength))))
        start = steps - run
        timesteps = sched.timesteps[start:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start)
        gen = torch.Generator("cpu").manual_seed(seed)
        noise = torch.randn((1, c, h, w), generator=gen, dtype=torch.float32).to(device, dtype)
        if run == steps:
            latents = noise * sched.init_noise_sigma
        else:
            latents = sched.add_noise(z0, noise, timesteps[:1])
        total = len(timesteps)
        for i, t in enumerate(timesteps):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            model_in = torch.cat([latents] * 2) if use_cfg else latents
            model_in = sched.scale_model_input(model_in, t)
            with pipe._precision():
                out = pipe._unet(model_in, t, context).to(latents.dtype)
            if use_cfg:
                out = guided(out, guidance_scale)
            last = i == total - 1
            x0 = pipe._x0(sched, latents, out, t) if on_step is not None and preview_every > 0 and not last else None
            latents = sched.step(out, t, latents).prev_sample
            if not last:
                known = sched.add_noise(z0, noise, timesteps[i + 1:i + 2])
                latents = lm * latents + (1 - lm) * known
            if x0 is not None:
                x0 = lm * x0 + (1 - lm) * z0
                full = (i + 1) % preview_every == 0
                prev = pipe.decode(x0) if full else pipe.fast_preview(x0)
                on_step(i + 1, total, composite(small, _fit(prev, native), feather_weights(m_small, FEATHER_PX)))
            elif on_step is not None and not last:
                on_step(i + 1, total, None)
        latents = lm * latents + (1 - lm) * z0
        redrawn = pipe.decode(latents)
    import cv2

    if redrawn.shape != img.shape:
        redrawn = np.clip(cv2.resize(redrawn, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_CUBIC), 0, 1)
    result = composite(img, redrawn.astype(np.float32), feather_weights(m_full, feather_px))
    if on_step is not None:
        on_step(total, total, result if preview_every > 0 else None)
    params = {
        "prompt": prompt, "negative_prompt": negative_prompt or "", "steps": steps, "guidance_scale": guidance_scale,
        "seed": seed, "sampler": sampler, "width": int(img.shape[1]), "height": int(img.shape[0]),
        "native_size": native, "model": pipe.model.name, "model_hash": pipe.model.hash, "device": pipe.device,
        "precision": pipe.runtime.dtype, "unet_engine": pipe.unet_engine if pipe._graph_steps else "eager",
        "edit": {"derived_from": "an edited film", "strength": strength, "denoised_steps": total,
                 "mask_area": round(float(m_full.mean()), 4), "feather_px": round(float(feather_px), 2),
                 "source_sha256": hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()[:16]},
    }
    return GenerationResult(image=result, params=params, timings={"total": time.perf_counter() - t0})
