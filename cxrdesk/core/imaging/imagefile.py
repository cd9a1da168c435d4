"""The one bounded reader for user image files (PNG, JPEG, TIFF, BMP, PGM) and the size limits that
the DICOM importer (:mod:`cxrdesk.core.dicom.reader`) applies too.

A small file can claim a huge image: a 140 KB PNG of 12000x12000 pixels, a PNG "bomb" of a few
hundred KB, an RLE or deflated DICOM of a few MB that decodes to gigabytes. Every reader of user
images therefore reads the header first - the width, height, samples per pixel and bytes per sample
the file declares - and refuses the file with one clear line (:class:`ImageTooLargeError`) before
anything is decoded when the image has more than :data:`MAX_PIXELS` pixels or would decode to more
than :data:`MAX_DECODED_BYTES` bytes. The limits leave room for any radiograph (a 43x43 cm detector at
0.1 mm is 4300x4300 = 18.5 M pixels) and keep the peak memory of reading and exporting any file
well under 1.5 GB.

Callers: :func:`cxrdesk.core.imaging.pngio.read_png` (:func:`open_pil`), :func:`cxrdesk.core.data.datasets.load_gray`
and ``cxrdesk enhance`` / ``metrics`` (:func:`read_grey`), :func:`cxrdesk.core.dicom.reader.read_dicom`
(:func:`check_size`, :func:`check_inflated_size`). Needs numpy and Pillow (OpenCV for
:func:`read_grey`); no Qt.
"""
from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAX_PIXELS = 20_000_000              # one frame: e.g. 4470x4470
MAX_DECODED_BYTES = 128 * 1024 ** 2  # one frame, all samples, as decoded
# bytes per sample Pillow's modes decode to (modes not listed: 1)
_MODE_BYTES = {"I": 4, "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


class ImageReadError(ValueError):
    """An image file cannot be read; the message is one line and names the file."""


class ImageTooLargeError(ImageReadError):
    """An image file declares more pixels or decoded bytes than the limits allow."""


def check_size(name: str, width: int, height: int, samples: int = 1, bytes_per_sample: int = 1) -> None:
    """Raise :class:`ImageTooLargeError` when one frame of ``width`` x ``height`` pixels with
    ``samples`` samples of ``bytes_per_sample`` bytes exceeds :data:`MAX_PIXELS` or
    :data:`MAX_DECODED_BYTES`; call it with what the header declares, before decoding."""
    width, height = int(width), int(height)
    pixels = width * height
    decoded = pixels * max(int(samples), 1) * max(int(bytes_per_sample), 1)
    if pixels > MAX_PIXELS or decoded > MAX_DECODED_BYTES:
        raise ImageTooLargeError(
            f"{name}: image too large ({width}x{height} pixels, {decoded / 1024 ** 2:.0f} MB decoded; "
            f"the limit is {MAX_PIXELS / 1e6:.0f} M pixels and {MAX_DECODED_BYTES // 1024 ** 2} MB)")


def check_inflated_size(name: str, fh: BinaryIO, limit: int = MAX_DECODED_BYTES + (16 << 20)) -> int:
    """Inflate the raw deflate stream from ``fh`` (a deflated DICOM's data set) chunk by chunk,
    keeping nothing, and raise :class:`ImageTooLargeError` as soon as it exceeds ``limit`` bytes.
    Returns the inflated size."""
    z = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while True:
        chunk = fh.read(1 << 20)
        if not chunk:
            break
        while chunk:
            total += len(z.decompress(chunk, 1 << 22))
            chunk = z.unconsumed_tail
            if total > limit:
                raise ImageTooLargeError(f"{name}: compressed data set too large (inflates to more than "
                                         f"{limit // 1024 ** 2} MB)")
        if z.eof:
            break
    return total


def _bytes_per_sample(im) -> int:
    n = _MODE_BYTES.get(im.mode)
    if n is not None:
        return n
    # 16-bit colour PNG/TIFF open as 8-bit modes in Pillow, but OpenCV decodes all 16 bits
    rawmodes = " ".join(str(t[3]) for t in (getattr(im, "tile", None) or [])[:1] if len(t) > 3)
    return 2 if "16" in rawmodes else 1


def open_pil(path: str | os.PathLike):
    """Open ``path`` with Pillow (header only) and check its declared size; returns the (lazy)
    ``PIL.Image``. Raises :class:`ImageTooLargeError` or :class:`ImageReadError`,
    ``FileNotFoundError`` for a missing file."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"{p.name}: image too large (more than {MAX_PIXELS / 1e6:.0f} M pixels)") from None
    except IsADirectoryError:
        raise ImageReadError(f"{p.name}: is a folder, not a file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{p.name}: cannot read image ({_one_line(exc)})") from None
    try:
        samples = max(len(im.getbands()), 3 if im.mode == "P" else 1)  # OpenCV expands a palette to BGR
        check_size(p.name, im.width, im.height, samples, _bytes_per_sample(im))
    except BaseException:
        im.close()
        raise
    return im


def read_grey(path: str | os.PathLike) -> np.ndarray:
    """Decode an 8/16-bit image file to a grey ``uint8``/``uint16`` HxW array (colour converted to
    grey, alpha dropped), after :func:`open_pil` has checked its declared size. Raises
    :class:`ImageReadError` (one line) for anything unreadable or too large."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p.name}: no such file" if not p.is_dir() else f"{p.name}: is a folder, not a file")
    try:
        open_pil(p).close()
        data = np.fromfile(p, dtype=np.uint8)  # not cv2.imread: it fails on non-ASCII paths on Windows
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except ImageReadError:
        raise
    except (OSError, cv2.error, MemoryError) as exc:
        raise ImageReadError(f"{p.name}: cannot read image ({_one_line(exc)})") from None
    if img is None:
        raise ImageReadError(f"{p.name}: cannot decode image")
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[..., :3]
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY) if img.shape[2] == 3 else img[..., 0]
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{p.name}: {img.dtype} images are not supported (8- or 16-bit grey only)")
    return np.ascontiguousarray(img)


def _one_line(exc: BaseException, limit: int = 120) -> str:
    s = " ".join(str(exc).split()) or type(exc).__name__
    return s if len(s) <= limit else s[: limit - 3] + "..."
