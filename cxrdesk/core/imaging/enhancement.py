"""Enhancement of grey-scale radiographs: the filter chain (:func:`enhance`) and its presets.

Pure numpy + OpenCV; works on [0, 1] float images (see :mod:`~cxrdesk.core.imaging.imaging`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .imaging import _as_2d, from_unit, infer_bits, to_unit

__all__ = ["EnhanceParams", "ENHANCEMENT_PRESETS", "enhance"]


@dataclass(frozen=True)
class EnhanceParams:
    """Parameters of :func:`enhance`. Steps run in the order of the fields.

    window_low/window_high: percentiles stretched to black/white first (None = no stretch).
    median_ksize: median filter aperture, 0 (off), 3 or 5 (denoises before contrast steps).
    hist_eq: global histogram equalisation.
    clahe_clip: CLAHE clip limit as in OpenCV (multiple of the mean bin count, 256 bins; 0 =
    off); clahe_tiles: tiles per side.
    unsharp_amount/unsharp_radius: unsharp mask ``x + amount * (x - gauss(x, radius))``, radius
    being the Gaussian sigma in pixels (amount 0 = off).
    gamma: power curve ``x ** gamma`` (> 1 darkens mid-tones, like denser film).
    film_curve: slope of a logistic characteristic (H&D) curve with toe and shoulder (0 = off).
    vignette: darkening towards the corners, 0..1 (fraction lost at the corners).
    """

    window_low: float | None = 0.5
    window_high: float | None = 99.5
    median_ksize: int = 0
    hist_eq: bool = False
    clahe_clip: float = 0.0
    clahe_tiles: int = 8
    unsharp_amount: float = 0.0
    unsharp_radius: float = 1.0
    gamma: float = 1.0
    film_curve: float = 0.0
    vignette: float = 0.0

    def __post_init__(self):
        if (self.window_low is None) != (self.window_high is None):
            raise ValueError("window_low and window_high must both be set or both be None")
        if self.window_low is not None and not 0 <= self.window_low < self.window_high <= 100:
            raise ValueError("window percentiles must satisfy 0 <= low < high <= 100")
        if self.median_ksize not in (0, 1, 3, 5):
            raise ValueError("median_ksize must be 0 (off), 3 or 5")
        if self.clahe_clip < 0 or not 1 <= self.clahe_tiles <= 64:
            raise ValueError("clahe_clip must be >= 0 and clahe_tiles 1..64")
        if self.unsharp_amount < 0 or self.unsharp_radius <= 0:
            raise ValueError("unsharp_amount must be >= 0 and unsharp_radius > 0")
        if self.gamma <= 0 or self.film_curve < 0 or not 0 <= self.vignette <= 1:
            raise ValueError("gamma must be > 0, film_curve >= 0, vignette 0..1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One-line human summary of the steps that are on."""
        parts = []
        if self.window_low is not None:
            parts.append(f"window {self.window_low:g}-{self.window_high:g} %")
        if self.median_ksize > 1:
            parts.append(f"median {self.median_ksize}")
        if self.hist_eq:
            parts.append("histogram equalisation")
        if self.clahe_clip > 0:
            parts.append(f"CLAHE clip {self.clahe_clip:g} tiles {self.clahe_tiles}")
        if self.unsharp_amount > 0:
            parts.append(f"unsharp {self.unsharp_amount:g} radius {self.unsharp_radius:g}")
        if self.gamma != 1:
            parts.append(f"gamma {self.gamma:g}")
        if self.film_curve > 0:
            parts.append(f"film curve {self.film_curve:g}")
        if self.vignette > 0:
            parts.append(f"vignette {self.vignette:g}")
        return ", ".join(parts) or "identity"


ENHANCEMENT_PRESETS: dict[str, EnhanceParams] = {
    # Mild, general purpose: light denoise, moderate local contrast, a touch of sharpening.
    "Balanced": EnhanceParams(window_low=0.5, window_high=99.5, median_ksize=3,
                              clahe_clip=1.5, clahe_tiles=8,
                              unsharp_amount=0.5, unsharp_radius=1.5),
    # Tighter window, global equalisation then strong CLAHE: maximal tissue separation.
    "High Contrast": EnhanceParams(window_low=1.0, window_high=99.0, median_ksize=3,
                                   hist_eq=True, clahe_clip=3.0, clahe_tiles=8,
                                   unsharp_amount=0.3, unsharp_radius=1.0),
    # No median (it would erase fine lines); strong small-radius unsharp mask for edges,
    # interstitial markings, fissures and line/tube tips.
    "Sharp Detail": EnhanceParams(window_low=0.5, window_high=99.5, median_ksize=0,
                                  clahe_clip=2.0, clahe_tiles=8,
                                  unsharp_amount=1.0, unsharp_radius=1.2),
    # Look of a film on a light box: soft local contrast, broad unsharp (edge enhancement of
    # screen-film), a sigmoid characteristic curve with toe and shoulder, slightly denser
    # mid-tones and light fall-off towards the corners.
    "Radiographic Film": EnhanceParams(window_low=1.0, window_high=99.5, median_ksize=3,
                                       clahe_clip=1.2, clahe_tiles=4,
                                       unsharp_amount=0.6, unsharp_radius=2.5,
                                       gamma=1.1, film_curve=5.0, vignette=0.25),
}


def _cdf_lookup(C: np.ndarray, Hn: np.ndarray, tile_idx, pos_i: np.ndarray, frac: np.ndarray):
    """Continuous CDF mapping: exclusive cumulative + fraction of the pixel's own bin."""
    return C[tile_idx, pos_i] + frac * Hn[tile_idx, pos_i]


def _bin_positions(x: np.ndarray, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    pos = x * np.float32(nbins)
    i = np.minimum(pos.astype(np.int32), nbins - 1)
    frac = pos - i.astype(np.float32)
    return i, frac


def _equalize(x: np.ndarray, nbins: int = 4096) -> np.ndarray:
    """Global histogram equalisation of a [0, 1] float32 image, continuous (no 8-bit banding)."""
    i, frac = _bin_positions(x, nbins)
    h = np.bincount(i.ravel(), minlength=nbins).astype(np.float64)
    hn = (h / max(h.sum(), 1.0))[None, :]
    c = np.cumsum(hn, axis=1) - hn
    return _cdf_lookup(c.astype(np.float32), hn.astype(np.float32), 0, i, frac)


def _clahe(x: np.ndarray, clip: float, tiles: int, nbins: int = 256) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a [0, 1] float32 image.

    Same model as OpenCV's CLAHE (tiles, clip limit ``clip * tile_area / nbins`` with the excess
    spread evenly, bilinear interpolation between tile mappings), but every mapping is continuous
    within a bin, so 12- and 16-bit data keep their precision and behave like 8-bit data with
    the same clip limit (OpenCV's 16-bit CLAHE uses 65536 bins, which makes the clip limit
    meaningless at usual tile sizes).
    """
    H, W = x.shape
    ty, tx = max(1, min(tiles, H)), max(1, min(tiles, W))
    th, tw = -(-H // ty), -(-W // tx)
    xp = np.pad(x, ((0, ty * th - H), (0, tx * tw - W)), mode="symmetric")
    ip, _ = _bin_positions(xp, nbins)
    tile_of = (np.arange(ty * th) // th)[:, None] * tx + (np.arange(tx * tw) // tw)[None, :]
    hist = np.bincount((tile_of * nbins + ip).ravel(), minlength=ty * tx * nbins)
    hist = hist.reshape(ty * tx, nbins).astype(np.float64)
    area = float(th * tw)
    limit = max(clip * area / nbins, 1.0)
    excess = np.maximum(hist - limit, 0.0).sum(axis=1, keepdims=True)
    hist = np.minimum(hist, limit) + excess / nbins
    hn = hist / area
    c = (np.cumsum(hn, axis=1) - hn).astype(np.float32)
    hn = hn.astype(np.float32)

    i, frac = _bin_positions(x, nbins)
    gy = (np.arange(H, dtype=np.float32) + 0.5) / th - 0.5
    gx = (np.arange(W, dtype=np.float32) + 0.5) / tw - 0.5
    y1 = np.floor(gy).astype(np.int64)
    x1 = np.floor(gx).astype(np.int64)
    wy = (gy - y1)[:, None]
    wx = (gx - x1)[None, :]
    y2 = np.minimum(y1 + 1, ty - 1)[:, None]
    x2 = np.minimum(x1 + 1, tx - 1)[None, :]
    y1 = np.maximum(y1, 0)[:, None]
    x1 = np.maximum(x1, 0)[None, :]
    top = (_cdf_lookup(c, hn, y1 * tx + x1, i, frac) * (1 - wx)
           + _cdf_lookup(c, hn, y1 * tx + x2, i, frac) * wx)
    bottom = (_cdf_lookup(c, hn, y2 * tx + x1, i, frac) * (1 - wx)
              + _cdf_lookup(c, hn, y2 * tx + x2, i, frac) * wx)
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def _film_curve(x: np.ndarray, k: float) -> np.ndarray:
    """Logistic characteristic curve through (0, 0), (0.5, 0.5), (1, 1): toe and shoulder."""
    lo = 1.0 / (1.0 + math.exp(k / 2))
    hi = 1.0 / (1.0 + math.exp(-k / 2))
    return ((1.0 / (1.0 + np.exp(-k * (x - 0.5))) - lo) / (hi - lo)).astype(np.float32)


def _vignette_mask(shape: tuple[int, int], strength: float) -> np.ndarray:
    H, W = shape
    yy = (np.arange(H, dtype=np.float32) - (H - 1) / 2) / max((H - 1) / 2, 1)
    xx = (np.arange(W, dtype=np.float32) - (W - 1) / 2) / max((W - 1) / 2, 1)
    r2 = (yy[:, None] ** 2 + xx[None, :] ** 2) / 2.0  # 0 at the center, 1 at the corners
    return (1.0 - strength * r2).astype(np.float32)


def enhance_unit(x: np.ndarray, params: EnhanceParams) -> np.ndarray:
    """:func:`enhance` on a float [0, 1] image, returning a new float32 [0, 1] image."""
    p = params
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    if p.window_low is not None and x.size:
        lo, hi = np.percentile(x if x.size <= 4_000_000 else x[::2, ::2],
                               [p.window_low, p.window_high])
        if hi > lo:
            x = np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    if p.median_ksize > 1 and min(x.shape) >= p.median_ksize:
        x = cv2.medianBlur(np.ascontiguousarray(x), p.median_ksize)
    if p.hist_eq:
        x = _equalize(x)
    if p.clahe_clip > 0:
        x = _clahe(x, p.clahe_clip, p.clahe_tiles)
    if p.unsharp_amount > 0:
        blur = cv2.GaussianBlur(x, (0, 0), sigmaX=p.unsharp_radius, borderType=cv2.BORDER_REFLECT)
        x = np.clip(x + np.float32(p.unsharp_amount) * (x - blur), 0.0, 1.0)
    if p.gamma != 1.0:
        x = np.power(x, np.float32(p.gamma))
    if p.film_curve > 0:
        x = _film_curve(x, p.film_curve)
    if p.vignette > 0:
        x = x * _vignette_mask(x.shape, p.vignette)
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def enhance(img, params: EnhanceParams | str = "Balanced", bits: int | None = None) -> np.ndarray:
    """Enhance a grey-scale image; returns a new array of the input's dtype and data range.

    ``params`` is an :class:`EnhanceParams` or a name from :data:`ENHANCEMENT_PRESETS`. Integer
    input stays in ``0 .. 2**bits - 1`` (``bits`` inferred, e.g. 12-bit data in uint16 stays
    12-bit); float input is taken as [0, 1]. The input is not modified.
    """
    if isinstance(params, str):
        try:
            params = ENHANCEMENT_PRESETS[params]
        except KeyError:
            raise ValueError(f"unknown preset {params!r}; choose from "
                             f"{', '.join(ENHANCEMENT_PRESETS)}") from None
    a = _as_2d(img)
    if bits is None:
        bits = infer_bits(a)
    y = enhance_unit(to_unit(a, bits), params)
    if a.dtype.kind == "f":
        return y.astype(a.dtype)
    if a.dtype == np.bool_:
        return y >= 0.5
    return from_unit(y, a.dtype, bits)
