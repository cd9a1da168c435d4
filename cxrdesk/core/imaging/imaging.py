"""Window/level, enhancement presets and image metrics for grey-scale radiographs.

Pure numpy + OpenCV (``opencv-python-headless``): no Qt, no torch.

Conventions
-----------
* A *stored* image is a 2-D array in data units: ``uint16`` holding 12-bit values (0..4095) for
  generated images, ``uint8`` for 8-bit files, up to 16 bits for DICOM, or float in [0, 1].
* Window/level is a display transform (:func:`window_to_u8`); it is never baked into the stored
  image. Centers and widths are in data units, as DICOM WindowCenter/WindowWidth.
* Processing (:func:`enhance`) and metrics work on float images in [0, 1]; :func:`to_unit` and
  :func:`from_unit` convert. The nominal range of an integer image is ``0 .. 2**bits - 1`` where
  ``bits`` is given or inferred by :func:`infer_bits` (a ``uint16`` image whose values all fit in
  12 bits is a 12-bit image; the common case of 12-bit data in a 16-bit container).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

__all__ = [
    "infer_bits", "to_unit", "from_unit",
    "window_to_u8", "window_range", "window_from_range", "full_window", "auto_window",
    "window_presets", "drag_window", "drag_sensitivity", "measurement_lines",
    "EnhanceParams", "ENHANCEMENT_PRESETS", "enhance",
    "image_metrics", "ssim", "psnr", "compare", "compare_presets", "mean_pairwise_ssim",
]


# --------------------------------------------------------------------------------------------
# data units <-> [0, 1]
# --------------------------------------------------------------------------------------------

def _as_2d(img) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grey-scale image, got shape {a.shape}")
    return a


def infer_bits(img) -> int:
    """Bits of the nominal data range of ``img``.

    ``uint8``/``int8`` -> 8; ``bool`` -> 1; ``uint16`` -> 12 when every value fits in 12 bits
    (12-bit data in a 16-bit container, as generated images and most DX DICOM), else 16; other
    integer types -> enough bits for the maximum (at least 8); floats -> 0 (already [0, 1]).
    """
    a = np.asarray(img)
    if a.dtype == np.bool_:
        return 1
    if a.dtype.kind == "f":
        return 0
    if a.dtype.kind not in "ui":
        raise ValueError(f"unsupported image dtype {a.dtype}")
    if a.dtype.itemsize == 1:
        return 8
    mx = int(a.max()) if a.size else 0
    if a.dtype == np.uint16:
        return 12 if mx <= 4095 else 16
    return max(8, int(mx).bit_length())


def _common_bits(*imgs) -> int:
    bits = [infer_bits(a) for a in imgs]
    if any(b == 0 for b in bits) and any(b != 0 for b in bits):
        raise ValueError("cannot compare a float [0, 1] image with an integer image; convert first")
    return max(bits)


def to_unit(img, bits: int | None = None) -> np.ndarray:
    """Return a new float32 array in [0, 1].

    Integer data is divided by ``2**bits - 1`` (``bits`` inferred if None). Float data is taken
    as already in [0, 1] unless ``bits`` is given, in which case it is in data units too. Values
    are clipped to [0, 1]; NaN becomes 0. Negative integer data (signed DICOM) must be rescaled
    by the caller first.
    """
    a = _as_2d(img)
    if bits is None:
        bits = infer_bits(a)
    if a.dtype.kind == "i" and a.size and int(a.min()) < 0:
        raise ValueError("negative data values: rescale signed data before converting to [0, 1]")
    x = a.astype(np.float32, copy=True)
    if bits:
        x *= np.float32(1.0 / (2 ** bits - 1))
    if a.dtype.kind == "f":
        np.nan_to_num(x, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(x, 0.0, 1.0, out=x)
    return x


def from_unit(x, dtype=np.uint16, bits: int | None = None) -> np.ndarray:
    """Convert a [0, 1] float array to ``dtype`` in data units.

    Integer dtypes: ``round(x * (2**bits - 1))`` with ``bits`` defaulting to the dtype's full
    width (8 for uint8, 16 for uint16). Float dtypes: values stay in [0, 1] unless ``bits`` is
    given (then scaled to data units, the inverse of :func:`to_unit`).
    """
    dt = np.dtype(dtype)
    y = np.clip(np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0), 0.0, 1.0)
    if dt.kind == "f":
        return (y * (2 ** bits - 1) if bits else y).astype(dt)
    if dt.kind not in "ui":
        raise ValueError(f"unsupported dtype {dt}")
    if bits is None:
        bits = 8 * dt.itemsize - (1 if dt.kind == "i" else 0)
    if bits > 8 * dt.itemsize - (1 if dt.kind == "i" else 0):
        raise ValueError(f"{bits} bits do not fit in {dt}")
    return np.rint(y * (2 ** bits - 1)).astype(dt)


# --------------------------------------------------------------------------------------------
# window / level (display only)
# --------------------------------------------------------------------------------------------

def window_range(center: float, width: float) -> tuple[float, float]:
    """Data values (lo, hi) that a DICOM LINEAR window maps to black and to white."""
    width = max(float(width), 1.0)
    half = (width - 1.0) / 2.0
    return float(center) - 0.5 - half, float(center) - 0.5 + half


def window_from_range(lo: float, hi: float) -> tuple[float, float]:
    """(center, width) of the DICOM LINEAR window mapping ``lo`` to black and ``hi`` to white.

    Inverse of :func:`window_range`; useful for histogram widgets that work with levels.
    """
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise ValueError(f"bad window range {lo}..{hi}")
    width = hi - lo + 1.0
    return lo + 0.5 + (width - 1.0) / 2.0, width


def voi_linear(x: np.ndarray, center: float, width: float, out_max: int = 255,
               invert: bool = False) -> np.ndarray:
    """The DICOM PS3.3 C.11.2.1.2.1 LINEAR VOI function: values (float64) to 0..out_max (uint8 up
    to 255, else uint16), rounded half up; NaN gives 0. The one window of the display, the PNG export
    and the DICOM reader."""
    c = float(center)
    w = float(width)
    if not (math.isfinite(c) and math.isfinite(w)):
        raise ValueError(f"window center/width must be finite, got {center}, {width}")
    w = max(w, 1.0)  # the standard requires width >= 1; width 1 is a threshold at c - 0.5
    top = float(out_max)
    if w == 1.0:
        y = np.where(x <= c - 0.5, 0.0, top)
    else:
        y = ((x - (c - 0.5)) / (w - 1.0) + 0.5) * top
    y = np.clip(y, 0.0, top)
    y = np.where(np.isnan(x), 0.0, y)
    out = np.floor(y + 0.5).astype(np.uint8 if out_max <= 255 else np.uint16)  # round half up, same on every path
    if invert:
        np.subtract(out_max, out, out=out)
    return out


@functools.lru_cache(maxsize=64)
def _lut(center: float, width: float, invert: bool, start: int, size: int) -> np.ndarray:
    lut = voi_linear(np.arange(start, start + size, dtype=np.float64), center, width, 255, invert)
    lut.setflags(write=False)
    return lut


def window_to_u8(img, center: float, width: float, invert: bool = False) -> np.ndarray:
    """Map data units to 8-bit display values with the DICOM linear VOI function.

    Values ``<= c - 0.5 - (w-1)/2`` -> 0, ``>= c - 0.5 + (w-1)/2`` -> 255, linear in between,
    rounded to nearest. ``invert`` gives the MONOCHROME1 look (255 - value). Widths below 1 are
    treated as 1 (a threshold). Integer input goes through a cached lookup table; float input is
    computed directly with the same arithmetic (NaN -> 0). Input is not modified.
    """
    a = _as_2d(img)
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    if a.dtype.kind in "ui":
        if a.dtype.itemsize == 1:
            start = 0 if a.dtype.kind == "u" else -128
            lut = _lut(float(center), float(width), bool(invert), start, 256)
            if a.dtype.kind == "u":
                return cv2.LUT(a, lut) if a.flags.c_contiguous else lut[a]
            return lut[a.astype(np.int16) + 128]
        if a.dtype.itemsize == 2:
            start = 0 if a.dtype.kind == "u" else -32768
            lut = _lut(float(center), float(width), bool(invert), start, 65536)
            idx = a if a.dtype.kind == "u" else (a.astype(np.int32) + 32768)
            return lut[idx]
        if a.size:
            mn, mx = int(a.min()), int(a.max())
            if mx - mn < (1 << 20):
                lut = _lut(float(center), float(width), bool(invert), mn, mx - mn + 1)
                return lut[(a.astype(np.int64) - mn)]
    return voi_linear(a.astype(np.float64), center, width, 255, invert)


def full_window(bits: int = 12) -> tuple[float, float]:
    """Window showing the whole ``0 .. 2**bits - 1`` range: 0 -> black, max -> white."""
    return float(2 ** (bits - 1)), float(2 ** bits)


def auto_window(img, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Percentile window: the ``low``-th percentile maps to black, the ``high``-th to white."""
    a = _as_2d(img)
    if a.size == 0:
        raise ValueError("empty image")
    sample = a if a.size <= 4_000_000 else a[:: 2, :: 2]
    lo, hi = np.nanpercentile(sample.astype(np.float64), [low, high])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("image has no finite values")
    return window_from_range(lo, max(lo, hi))


# Preset windows as fractions of the full range, from which centers and widths in data units
# follow for any bit depth. Reasoning: in a MONOCHROME2 chest radiograph air/lung is dark and
# bone bright. Measured on 300 normalised frontal radiographs (full range, like the generator's
# training data): the lung fields' 5th-95th percentiles lie at ~21-61 % of the range (median
# 35 %), the mediastinum/heart at ~59-84 % (median 75 %), the whole image's 99.5th percentile at
# ~93 % (spine, clavicles, rib cortices and dense soft tissue overlap at the top).
# * Lung 8-68 %: spreads the parenchyma, vessels and fissures over the grey scale; the
#   mediastinum saturates white.
# * Mediastinum 40-90 %: heart borders, retrocardiac region, hila, tubes and lines; lungs go
#   black, only the densest bone saturates.
# * Bone 35-100 %: bone overlaps everything (ribs over aerated lung sit at ~35-65 %, spine and
#   clavicles reach the top), so the window starts inside the lung band and keeps the top of
#   the range; dropping the air/dark-lung part gives ribs ~1.5x the full-range contrast and
#   nothing bright saturates. Radiograph grey levels vary with exposure and processing far
#   more than CT numbers: these are starting points; :func:`auto_window` fits the image.
_PRESET_RANGES = {
    "Lung": (0.08, 0.68),
    "Mediastinum": (0.40, 0.90),
    "Bone": (0.35, 1.00),
}


def window_presets(bits: int = 12) -> dict[str, tuple[float, float]]:
    """Radiograph window presets ``name -> (center, width)`` in data units of ``bits``-bit data.

    Keys: "Full range", "Lung", "Mediastinum", "Bone" (in that order). For 12 bits:
    Full range (2048, 4096), Lung (1556, 2458), Mediastinum (2662, 2048), Bone (2765, 2662).
    """
    if not 1 <= int(bits) <= 16:
        raise ValueError(f"bits must be 1..16, got {bits}")
    n = 2 ** int(bits)
    out = {"Full range": full_window(int(bits))}
    for name, (lo, hi) in _PRESET_RANGES.items():
        out[name] = (float(round((lo + hi) / 2 * n)), float(max(1, round((hi - lo) * n))))
    return out


def drag_window(center: float, width: float, dx: float, dy: float,
                sensitivity: float = 1.0, min_width: float = 1.0) -> tuple[float, float]:
    """New (center, width) after a window/level mouse drag of (dx, dy) screen pixels.

    Cornerstone/OHIF/Weasis convention: horizontal motion changes the width (right = wider,
    less contrast), vertical motion changes the center (down = higher center, darker image).
    ``sensitivity`` is data units per pixel (see :func:`drag_sensitivity`). Width stays >= 1.
    """
    s = float(sensitivity)
    return float(center) + float(dy) * s, max(float(min_width), 1.0, float(width) + float(dx) * s)


def drag_sensitivity(bits: int = 12, pixels: float = 512.0) -> float:
    """Data units per pixel so that a drag of ``pixels`` spans the full ``bits`` range."""
    return 2.0 ** bits / float(pixels)


def measurement_lines(lines: Sequence[tuple[tuple[float, float], tuple[float, float]]],
                      spacing: tuple[float, float] | None = None) -> tuple[list[str], str]:
    """Labels for lines drawn on an image (image pixel coordinates, ((x0, y0), (x1, y1)) each).

    Returns one label per line ("123 px", or "45.6 mm" with a (row, column) pixel ``spacing`` in mm)
    and, for two lines, their ratio shorter / longer: the cardiothoracic ratio when one line spans
    the heart's widest transverse diameter and the other the chest's widest inner diameter (above
    0.5 on a PA film suggests cardiomegaly). "" for fewer or more than two lines.
    """
    lengths = []
    for (x0, y0), (x1, y1) in lines:
        dx, dy = float(x1) - float(x0), float(y1) - float(y0)
        if spacing:
            dx, dy = dx * float(spacing[1]), dy * float(spacing[0])
        lengths.append(math.hypot(dx, dy))
    unit = "mm" if spacing else "px"
    labels = [f"{v:.1f} {unit}" if spacing else f"{v:.0f} {unit}" for v in lengths]
    ratio = ""
    if len(lengths) == 2 and max(lengths) > 0:
        ratio = f"ratio {min(lengths) / max(lengths):.2f} (shorter / longer)"
    return labels, ratio


# --------------------------------------------------------------------------------------------
# enhancement
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

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
