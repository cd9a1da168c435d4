"""Image metrics: contrast, sharpness, entropy, SSIM, PSNR, before/after comparisons, diversity.

Pure numpy + OpenCV; images are compared in [0, 1] with a common bit depth.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterable, Sequence

import cv2
import numpy as np

from .enhancement import ENHANCEMENT_PRESETS, EnhanceParams, enhance
from .imaging import _as_2d, _common_bits, infer_bits, to_unit

__all__ = ["image_metrics", "ssim", "psnr", "compare", "compare_presets", "mean_pairwise_ssim"]


def image_metrics(img, bits: int | None = None) -> dict[str, float]:
    """Quality figures of one image, computed on its [0, 1] normalised form.

    contrast: RMS contrast (standard deviation of the [0, 1] image);
    sharpness: variance of the 3x3 Laplacian on the 0..255 scale (as usually quoted for 8-bit
    images, computed without quantising);
    entropy: Shannon entropy of the 256-bin (8-bit) histogram in bits (0 for a constant image);
    mean: mean of the [0, 1] image.
    """
    x = to_unit(img, bits)
    lap = cv2.Laplacian(x.astype(np.float64) * 255.0, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT)
    q = np.floor(x * 255.0 + 0.5).astype(np.uint8)
    h = np.bincount(q.ravel(), minlength=256).astype(np.float64)
    p = h[h > 0] / max(h.sum(), 1.0)
    entropy = float(-(p * np.log2(p)).sum()) if p.size > 1 else 0.0
    return {
        "contrast": float(x.std(dtype=np.float64)),
        "sharpness": float(lap.var()),
        "entropy": entropy,
        "mean": float(x.mean(dtype=np.float64)),
    }


_SSIM_SIGMA = 1.5
_SSIM_KSIZE = 11  # Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03
_C1 = 0.01 ** 2
_C2 = 0.03 ** 2
_SSIM_BAND_FROM = 4 * 1024 ** 2  # pixels: larger images are compared in bands of rows
_SSIM_BAND_ROWS = 256


def _blur(z: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(z, (_SSIM_KSIZE, _SSIM_KSIZE), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def _crop(m: np.ndarray) -> np.ndarray:
    r = _SSIM_KSIZE // 2
    return m[r:-r, r:-r] if min(m.shape) > 2 * r else m


def _ssim_from(mx, my, sxx, syy, x, y) -> float:
    mxy = mx * my
    sxy = _blur(x * y) - mxy
    num = (2 * mxy + _C1) * (2 * sxy + _C2)
    den = (mx * mx + my * my + _C1) * (sxx + syy + _C2)
    return float(_crop(num / den).mean())


def _unit64(imgs: Sequence, bits: int | None) -> list[np.ndarray]:
    if bits is None:
        bits = _common_bits(*imgs)
    return [to_unit(a, bits).astype(np.float64) for a in imgs]


def ssim(a, b, bits: int | None = None) -> float:
    """Mean structural similarity (Gaussian window, Wang et al. 2004) of two images.

    Both are converted to [0, 1] with a common bit depth (data range 1); the map is averaged
    away from the 5-pixel border the window cannot cover. 1.0 for identical images.
    """
    a, b = _as_2d(a), _as_2d(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    r = _SSIM_KSIZE // 2
    if a.size <= _SSIM_BAND_FROM or min(a.shape) <= 2 * r:
        x, y = _unit64([a, b], bits)
        mx, my = _blur(x), _blur(y)
        return _ssim_from(mx, my, _blur(x * x) - mx * mx, _blur(y * y) - my * my, x, y)
    # a large image in bands of rows, each with the r rows either side its window reads: the same
    # map (the border the window cannot cover is left out as above), a fraction of the float64 copies
    if bits is None:
        bits = _common_bits(a, b)
    h = a.shape[0]
    total, count = 0.0, 0
    for y0 in range(r, h - r, _SSIM_BAND_ROWS):
        y1 = min(y0 + _SSIM_BAND_ROWS, h - r)
        x, y = _unit64([a[y0 - r:y1 + r], b[y0 - r:y1 + r]], bits)
        mx, my = _blur(x), _blur(y)
        mxy = mx * my
        num = (2 * mxy + _C1) * (2 * (_blur(x * y) - mxy) + _C2)
        den = (mx * mx + my * my + _C1) * (_blur(x * x) - mx * mx + _blur(y * y) - my * my + _C2)
        band = (num / den)[r:-r, r:-r]
        total += float(band.sum())
        count += band.size
    return total / count


def psnr(a, b, bits: int | None = None) -> float:
    """Peak signal-to-noise ratio in dB on [0, 1] images (peak 1); ``inf`` when identical."""
    x, y = _unit64([_as_2d(a), _as_2d(b)], bits)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _pct(before: float, after: float) -> float:
    if before == 0:
        return 0.0 if after == 0 else math.inf
    return 100.0 * (after - before) / abs(before)


def compare(original, enhanced, bits: int | None = None) -> dict[str, float]:
    """How ``enhanced`` differs from ``original``.

    Keys: contrast_pct, sharpness_pct, entropy_pct (percent change of :func:`image_metrics`;
    ``inf`` when the original's figure is 0 and the new one is not), ssim, psnr (dB, vs. the
    original).
    """
    a, b = _as_2d(original), _as_2d(enhanced)
    if bits is None:
        bits = _common_bits(a, b)
    m0, m1 = image_metrics(a, bits), image_metrics(b, bits)
    out = {f"{k}_pct": _pct(m0[k], m1[k]) for k in ("contrast", "sharpness", "entropy")}
    out["ssim"] = ssim(a, b, bits)
    out["psnr"] = psnr(a, b, bits)
    return out


def compare_presets(img, presets: dict[str, EnhanceParams] | None = None,
                    bits: int | None = None) -> dict[str, dict[str, float]]:
    """:func:`compare` of ``img`` with each preset's :func:`enhance` result, by preset name."""
    a = _as_2d(img)
    if bits is None:
        bits = infer_bits(a)
    presets = ENHANCEMENT_PRESETS if presets is None else presets
    return {name: compare(a, enhance(a, p, bits), bits) for name, p in presets.items()}


def mean_pairwise_ssim(images: Iterable, bits: int | None = None,
                       max_pairs: int | None = None, seed: int = 0) -> float:
    """Mean SSIM over all pairs of ``images`` (same shape): the diversity metric.

    Lower means more diverse; a generator that collapses or copies scores high. Compare with the
    same figure for real images of the class at the same count. ``max_pairs`` evaluates a
    seeded random subset of pairs when the full set (n*(n-1)/2) is too many.
    """
    imgs = [_as_2d(a) for a in images]
    if len(imgs) < 2:
        raise ValueError("need at least two images")
    if len({a.shape for a in imgs}) != 1:
        raise ValueError("images differ in shape")
    xs = _unit64(imgs, bits)
    mus = [_blur(x) for x in xs]
    var = [_blur(x * x) - m * m for x, m in zip(xs, mus)]
    pairs = list(itertools.combinations(range(len(xs)), 2))
    if max_pairs is not None and len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = [pairs[k] for k in sorted(rng.choice(len(pairs), size=max_pairs, replace=False))]
    vals = [_ssim_from(mus[i], mus[j], var[i], var[j], xs[i], xs[j]) for i, j in pairs]
    return float(np.mean(vals))
