"""Stored values, [0, 1] conversion and window/level for grey-scale radiographs.

Pure numpy + OpenCV (``opencv-python-headless``): no Qt, no torch.

Conventions
-----------
* A *stored* image is a 2-D array in data units: ``uint16`` holding 12-bit values (0..4095) for
  generated images, ``uint8`` for 8-bit files, up to 16 bits for DICOM, or float in [0, 1].
* Window/level is a display transform (:func:`window_to_u8`); it is never baked into the stored
  image. Centers and widths are in data units, as DICOM WindowCenter/WindowWidth.
* Processing (:mod:`~cxrdesk.core.imaging.enhancement`) and metrics
  (:mod:`~cxrdesk.core.imaging.metrics`) work on float images in [0, 1]; :func:`to_unit` and
  :func:`from_unit` convert. The nominal range of an integer image is ``0 .. 2**bits - 1`` where
  ``bits`` is given or inferred by :func:`infer_bits` (a ``uint16`` image whose values all fit in
  12 bits is a 12-bit image; the common case of 12-bit data in a 16-bit container).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "infer_bits", "to_unit", "from_unit",
    "window_to_u8", "window_range", "window_from_range", "full_window", "auto_window",
    "window_presets", "drag_window", "drag_sensitivity", "measurement_lines",
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
