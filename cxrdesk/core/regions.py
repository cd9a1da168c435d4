"""A film's region (e.g. the part an edit redrew) as plain JSON that travels in its provenance.

``encode_region(mask)`` gives ``{"shape": [h, w], "runs": [n0, n1, ...]}``: run lengths of the
row-major flattened mask, alternating outside / inside and starting outside (the first run may be
0). ``decode_region`` reads it back and refuses anything malformed (None, never an exception), since
a PNG's text chunk may come from anywhere. ``hit(mask, x, y, tolerance)`` says whether a point (image
coordinates, pixel edges at 0..w) lies in the region or within ``tolerance`` pixels of it.

Pure numpy (no Qt): the app, the CLI and the quiz share it.
"""
from __future__ import annotations

import math

import numpy as np

MAX_SIDE = 8192
MAX_RUNS = 400_000


def encode_region(mask) -> dict:
    """A boolean (or non-zero = inside) 2-D array as run lengths; ValueError for other shapes."""
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise ValueError("a region is a 2-D mask")
    flat = (m != 0).ravel().astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], edges, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"shape": [int(m.shape[0]), int(m.shape[1])], "runs": [int(r) for r in runs]}


def decode_region(obj, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """The boolean mask of ``obj`` (as ``encode_region`` wrote it), scaled (nearest neighbour) to
    ``shape`` where given and different; None when ``obj`` is not a well-formed, non-empty region."""
    if not isinstance(obj, dict):
        return None
    sh, runs = obj.get("shape"), obj.get("runs")
    if not (isinstance(sh, list) and len(sh) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                          and 0 < v <= MAX_SIDE for v in sh)):
        return None
    if not (isinstance(runs, list) and 0 < len(runs) <= MAX_RUNS and
            all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in runs)):
        return None
    h, w = sh
    if sum(runs) != h * w:
        return None
    values = np.arange(len(runs)) % 2 == 1
    m = np.repeat(values, runs).reshape(h, w)
    if not m.any():
        return None
    if shape is not None and tuple(shape) != (h, w):
        th, tw = int(shape[0]), int(shape[1])
        if th <= 0 or tw <= 0:
            return None
        rows = np.minimum((np.arange(th) + 0.5) * h / th, h - 1).astype(int)
        cols = np.minimum((np.arange(tw) + 0.5) * w / tw, w - 1).astype(int)
        m = m[rows][:, cols]
    return m


def hit(mask: np.ndarray, x: float, y: float, tolerance: float = 0.0) -> bool:
    """True when image point (x, y) is inside ``mask`` or within ``tolerance`` pixels of it."""
    h, w = mask.shape
    if not (math.isfinite(x) and math.isfinite(y)):
        return False
    r = max(0, int(math.ceil(tolerance)))
    cx, cy = int(math.floor(x)), int(math.floor(y))
    x0, x1, y0, y1 = max(0, cx - r), min(w, cx + r + 1), max(0, cy - r), min(h, cy + r + 1)
    if x0 >= x1 or y0 >= y1:
        return False
    yy, xx = np.nonzero(mask[y0:y1, x0:x1])
    if yy.size == 0:
        return False
    d2 = (xx + x0 + 0.5 - x) ** 2 + (yy + y0 + 0.5 - y) ** 2
    return bool(d2.min() <= (tolerance + 0.5) ** 2 + 1e-9)


def without_region(meta: dict | None) -> dict:
    """A copy of ``meta`` without ``edit.region``: for DICOM, whose ImageComments (the parameters as
    JSON) hold at most 10240 characters, where a region's runs would cut the parameters short."""
    out = dict(meta or {})
    edit = out.get("edit")
    if isinstance(edit, dict) and "region" in edit:
        out["edit"] = {k: v for k, v in edit.items() if k != "region"}
    return out
