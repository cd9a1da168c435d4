"""Open image files for the view, in data units, through the core readers (no Qt here).

PNG goes through :func:`cxrdesk.core.imaging.pngio.read_png` (12-bit stored values; the window and
parameters that cxrdesk wrote come back), DICOM through :func:`cxrdesk.core.dicom.reader.read_dicom`
(stored values and the file's window when the data are plain MONOCHROME2, otherwise the
normalised image as 12-bit), anything else through :func:`cxrdesk.core.data.datasets.load_gray`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.imaging import imaging
from ..core.fsutil import has_dicm_magic


class ImageOpenError(Exception):
    """A file cannot be shown; the message is one line."""


@dataclass
class LoadedImage:
    path: str
    data: np.ndarray                      # stored values (uint8/uint16) in data units
    bits: int
    window: tuple[float, float] | None = None
    synthetic: bool = False
    params: dict = field(default_factory=dict)
    kind: str = "image"                   # "png" | "dicom" | "image"
    info: list = field(default_factory=list)
    spacing: tuple[float, float] | None = None   # (row, column) mm per pixel (DICOM)

    @property
    def name(self) -> str:
        return Path(self.path).name


def _is_dicom(p: Path) -> bool:
    if p.suffix.lower() in (".dcm", ".dicom"):
        return True
    if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
        return False
    return has_dicm_magic(p)


def load_stored(path: str) -> LoadedImage:
    """Read ``path`` for display. Raises :class:`ImageOpenError` with a readable message."""
    p = Path(path)
    if not p.is_file():
        raise ImageOpenError(f"{p.name}: no such file")
    try:
        if _is_dicom(p):
            return _load_dicom(p)
        if p.suffix.lower() == ".png":
            from ..core.imaging.pngio import TEXT_KEY, read_png

            img = read_png(p)
            if TEXT_KEY in (img.text or {}):  # written by cxrdesk: exact 12-bit values + window
                meta = dict(img.metadata or {})
                return LoadedImage(str(p), img.pixels, 12, window=img.window,
                                   synthetic=bool(meta.get("synthetic")), params=meta, kind="png")
        from ..core.data.datasets import load_gray

        # any other image keeps its own data units: 8-bit files read 0..255, 16-bit 0..65535
        x = load_gray(p)
        v8 = x * 255.0
        if np.all(np.abs(v8 - np.rint(v8)) < 1e-3):
            return LoadedImage(str(p), np.rint(v8).astype(np.uint8), 8, kind="image")
        return LoadedImage(str(p), imaging.from_unit(x, np.uint16), 16, kind="image")
    except ImageOpenError:
        raise
    except MemoryError:
        raise ImageOpenError(f"{p.name}: image too large to open") from None
    except Exception as exc:  # noqa: BLE001 - every reader error becomes one line
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if p.name not in msg:
            msg = f"{p.name}: {msg}"
        raise ImageOpenError(msg) from None


def _load_dicom(p: Path) -> LoadedImage:
    from ..core.dicom.reader import read_dicom

    d = read_dicom(p)
    plain = (d.photometric == "MONOCHROME2" and not d.signed and d.rescale_slope == 1.0
             and d.rescale_intercept == 0.0 and not d.has_voi_lut and d.pixels.dtype.kind == "u")
    if plain:
        data = d.pixels if d.pixels.dtype.itemsize <= 2 else d.pixels.astype(np.uint16)
        bits = max(1, min(16, int(d.bits_stored)))
        if int(data.max(initial=0)) >= 2 ** bits:
            bits = max(8, int(data.max()).bit_length())
        window = (d.window.center, d.window.width) if d.window else None
    else:
        data = imaging.from_unit(d.normalized(), np.uint16, bits=12)
        bits = 12
        window = None
    return LoadedImage(str(p), np.ascontiguousarray(data), bits, window=window, synthetic=bool(d.synthetic),
                       params=dict(d.params or {}), kind="dicom", info=d.summary(),
                       spacing=d.pixel_spacing)
