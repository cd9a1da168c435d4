"""PNG export and import of generated images, with the generation parameters in text chunks.

The stored image of a generated result is a ``uint16`` array holding 12-bit values (0..4095).
A 16-bit PNG keeps those values exactly: each value is scaled to the full 16-bit range by bit
replication (``v << 4 | v >> 8``, the PNG specification's recommended scaling) and an ``sBIT``
chunk records the 12 significant bits, so ``v16 >> 4`` gives the stored value back and viewers
that know nothing of the 12 bits still show a normal image. An 8-bit PNG is a lossy
(rounded) copy.

Text chunks written (iTXt, UTF-8):

- ``Software``: ``cxrdesk <version>``
- ``Description``: the prompt
- ``Disclaimer``: ``SYNTHETIC - NOT FOR DIAGNOSIS``
- ``cxrdesk``: JSON with all generation parameters plus ``bits_stored``, ``window`` and
  ``window_applied``

An *unknown* (a quiz case, ``unknown=True``) keeps only :func:`unknown_metadata`: numbers and the
model's hash, never the prompt, the negative prompt, an edit's record or the model's name, and
its Description is "Unknown case" (plus the case's label), so the file does not give the answer.

Writes are atomic: a temporary file in the target folder, then :func:`os.replace`.

This module also holds the small pixel helpers shared with :mod:`cxrdesk.core.dicom.writer`
(conversion to stored values, linear window, the burned-in "SYNTHETIC" mark); it needs only
numpy and Pillow.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fsutil import atomic_write
from .imagefile import ImageReadError, open_pil
from .imaging import voi_linear
from ..jsonfile import parse_object

DISCLAIMER = "SYNTHETIC - NOT FOR DIAGNOSIS"
MAX12 = 4095
TEXT_KEY = "cxrdesk"


class ImageFormatError(ImageReadError):
    """An image array or file cannot be used (wrong shape, dtype, range, unreadable file)."""


# --------------------------------------------------------------------------------------------
# pixel helpers
# --------------------------------------------------------------------------------------------

def input_max(image: np.ndarray) -> float:
    """Full-scale value of an input array: 1.0 for float, 255 for uint8, 4095 for uint16."""
    if np.issubdtype(image.dtype, np.floating):
        return 1.0
    if image.dtype == np.uint8:
        return 255.0
    return float(MAX12)


def to_stored12(image: Any) -> np.ndarray:
    """Convert an HxW image to a contiguous uint16 array of 12-bit values (0..4095).

    Accepts uint16 (already 12-bit; values above 4095 are an error), uint8 (scaled by
    4095/255), float in [0, 1] (clipped, scaled by 4095), or other integer types holding
    12-bit values. A trailing singleton channel axis is dropped.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageFormatError(f"expected a 2-D grayscale image, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageFormatError("image contains NaN or infinite values")
        return np.ascontiguousarray(np.rint(np.clip(arr, 0.0, 1.0) * MAX12).astype(np.uint16))
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(np.rint(arr.astype(np.float32) * (MAX12 / 255.0)).astype(np.uint16))
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > MAX12):
            raise ImageFormatError(
                f"integer image values must be 12-bit (0..{MAX12}); got {int(arr.min())}..{int(arr.max())}")
        return np.ascontiguousarray(arr.astype(np.uint16))
    raise ImageFormatError(f"unsupported image dtype {arr.dtype}")


def scale_window(window: tuple[float, float] | None, image: Any) -> tuple[float, float] | None:
    """Convert a (center, width) given in the units of ``image`` to 12-bit units."""
    if window is None:
        return None
    c, w = float(window[0]), float(window[1])
    f = MAX12 / input_max(np.asarray(image))
    return (c * f, max(w * f, 1.0))


def to_16bit(stored12: np.ndarray) -> np.ndarray:
    """12-bit values to the full 16-bit range by bit replication (exactly invertible by >> 4)."""
    s = stored12.astype(np.uint16)
    return (s << 4) | (s >> 8)


def to_8bit(stored12: np.ndarray) -> np.ndarray:
    return np.rint(stored12.astype(np.float32) * (255.0 / MAX12)).astype(np.uint8)


def burn_synthetic_mark(stored: np.ndarray, max_value: int = MAX12, text: str = "SYNTHETIC") -> np.ndarray:
    """Return a copy with a small white-on-black ``text`` mark burned into the top-left corner.

    The mark scales with the image (about 1/20 of its height) and is clipped to small images.
    """
    from PIL import Image, ImageDraw, ImageFont

    out = np.array(stored, copy=True)
    h, w = out.shape
    size = max(8, int(round(h / 22)))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), text, font=font)
    pad = max(1, size // 5)
    bw, bh = (x1 - x0) + 2 * pad, (y1 - y0) + 2 * pad
    mask = Image.new("L", (bw, bh), 0)
    ImageDraw.Draw(mask).text((pad - x0, pad - y0), text, font=font, fill=255)
    m = np.asarray(mask)
    margin = max(1, size // 3)
    bh_c, bw_c = min(bh, h - margin), min(bw, w - margin)
    if bh_c <= 0 or bw_c <= 0:
        return out
    region = out[margin:margin + bh_c, margin:margin + bw_c]
    mm = m[:bh_c, :bw_c]
    region[...] = 0  # dark box so the mark reads on any background
    region[mm >= 128] = max_value
    return out


# --------------------------------------------------------------------------------------------
# PNG
# --------------------------------------------------------------------------------------------

def _jsonable(meta: dict | None) -> dict:
    out = {}
    for k, v in (meta or {}).items():
        if isinstance(v, np.generic):
            v = v.item()
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            v = str(v)
        out[str(k)] = v
    return out


# What an unknown keeps of its generation parameters: numbers and the model's hash, no text that
# could name a finding (prompt, negative prompt, an edit's record, a model's or folder's name).
UNKNOWN_KEYS = ("seed", "steps", "guidance_scale", "guidance_interval", "guided_steps", "sampler",
                "width", "height", "native_size", "model_hash", "precision", "unet_engine")


def unknown_metadata(metadata: dict | None) -> dict:
    """The anonymised provenance of an unknown: the numeric :data:`UNKNOWN_KEYS`, the sampler's
    name, ``"unknown": True`` and the case's label (``"case"``: "case 01", ...) when given."""
    from ... import __version__

    meta = _jsonable(metadata)
    out: dict = {}
    for k in UNKNOWN_KEYS:
        v = meta.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, str, list)):
            continue
        if isinstance(v, str) and not (k in ("sampler", "model_hash", "precision", "unet_engine")
                                       and len(v) <= 64 and v.replace("+", "").replace("-", "").replace("_", "").isalnum()):
            continue
        if isinstance(v, list) and not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            continue
        out[k] = v
    case = meta.get("case")
    if isinstance(case, str) and case.strip():
        out["case"] = " ".join(case.split())[:32]
    out["unknown"] = True
    out["software"] = f"cxrdesk {__version__}"
    return out


def write_png(path: str | os.PathLike, image: Any, metadata: dict | None = None, *,
              bits: int = 16, window: tuple[float, float] | None = None,
              apply_window: bool = False, burn_mark: bool = False, unknown: bool = False,
              paint=None) -> Path:
    """Write ``image`` as a grayscale PNG with the generation parameters in text chunks.

    ``image``: uint16 12-bit, uint8 or float [0, 1] (HxW). ``bits``: 16 (exact 12-bit copy)
    or 8. ``window``: the view's (center, width) in the units of ``image``; recorded in the
    text chunks, and applied to the pixels when ``apply_window`` is true (the PNG then shows
    what the view showed, at full 8/16-bit contrast). ``burn_mark`` burns a small "SYNTHETIC"
    mark into the pixels. ``unknown``: a quiz case, its metadata reduced to
    :func:`unknown_metadata` (no prompt or finding word in any text chunk). ``paint``: a function
    given the final pixels (uint8/uint16) returning them drawn on (the app's annotations, as on
    screen). Returns the path written.
    """
    from PIL import Image, PngImagePlugin

    from ... import __version__

    if bits not in (8, 16):
        raise ImageFormatError("PNG bits must be 8 or 16")
    stored = to_stored12(image)
    win12 = scale_window(window, image)
    if burn_mark:
        stored = burn_synthetic_mark(stored)
    out_max = 255 if bits == 8 else 65535
    if apply_window and win12 is not None:
        pix = voi_linear(stored.astype(np.float64), win12[0], win12[1], out_max)
    else:
        pix = to_8bit(stored) if bits == 8 else to_16bit(stored)
    if paint is not None:
        pix = paint(pix)
    meta = unknown_metadata(metadata) if unknown else _jsonable(metadata)
    meta.update({
        "bits_stored": 12 if (bits == 16 and not (apply_window and win12 is not None)) else bits,
        "window": [round(win12[0], 3), round(win12[1], 3)] if win12 is not None else None,
        "window_units": "12-bit",
        "window_applied": bool(apply_window and win12 is not None),
        "burned_in_mark": bool(burn_mark),
        "synthetic": True,
    })
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Software", f"cxrdesk {__version__}")
    if unknown:
        info.add_itxt("Description", "Unknown " + meta["case"] if meta.get("case") else "Unknown case")
    elif meta.get("prompt"):
        info.add_itxt("Description", str(meta["prompt"]))
    info.add_itxt("Disclaimer", DISCLAIMER)
    info.add_itxt(TEXT_KEY, json.dumps(meta, ensure_ascii=False, sort_keys=True))
    if bits == 16 and meta["bits_stored"] == 12:
        info.add(b"sBIT", bytes([12]))
    im = Image.fromarray(pix)
    return atomic_write(path, lambda fh: im.save(fh, format="PNG", pnginfo=info))


def write_plain_png(path: str | os.PathLike, pixels: np.ndarray) -> Path:
    """Write an 8/16-bit grey array as a PNG without cxrdesk's text chunks (a picture of a real,
    non-synthetic image as the view shows it), atomically like :func:`write_png`."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(pixels))
    return atomic_write(path, lambda fh: im.save(fh, format="PNG"))


@dataclass
class PngImage:
    """A PNG read back: ``pixels`` as uint16 12-bit values, plus what the text chunks said."""

    pixels: np.ndarray
    metadata: dict = field(default_factory=dict)
    text: dict = field(default_factory=dict)
    source_bits: int = 8

    @property
    def window(self) -> tuple[float, float] | None:
        """The window recorded at export, in 12-bit units (None when absent or applied)."""
        w = self.metadata.get("window")
        if self.metadata.get("window_applied") or not isinstance(w, (list, tuple)) or len(w) != 2:
            return None
        try:
            return (float(w[0]), float(w[1]))
        except (TypeError, ValueError):
            return None


def read_png(path: str | os.PathLike) -> PngImage:
    """Read a PNG (ours or any other) as 12-bit stored values plus its text-chunk metadata.

    Colour images are converted to grayscale. 16-bit images are reduced by ``>> 4`` (exact for
    files written by :func:`write_png`), 8-bit ones scaled by 4095/255.
    """
    path = Path(path)
    try:
        with open_pil(path) as im:  # checks the declared size before decoding
            im.load()
            text = dict(getattr(im, "text", {}) or {})
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im)
                src_bits = 16
            else:
                arr = np.asarray(im if im.mode == "L" else im.convert("L"))
                src_bits = 8
    except FileNotFoundError:
        raise
    except ImageReadError as exc:
        raise ImageFormatError(str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageFormatError(f"{path.name}: cannot read image ({' '.join(str(exc).split())[:120]})") from None
    if src_bits == 16:
        if arr.dtype != np.uint16:
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        pixels = arr >> 4
    else:  # 8-bit values scaled by 4095/255, through a table (no float copy of the image)
        pixels = np.rint(np.arange(256) * (MAX12 / 255.0)).astype(np.uint16)[arr]
    meta = parse_object(text.get(TEXT_KEY) or "", default={})
    if not meta.get("prompt") and text.get("Description") and not meta.get("unknown"):
        meta["prompt"] = text["Description"]
    if not meta and text.get("parameters"):  # other tools' convention: free text
        meta["parameters"] = text["parameters"]
    return PngImage(pixels=pixels, metadata=meta, text=text, source_bits=src_bits)
