"""DICOM import (pydicom): :func:`read_dicom` opens a DICOM image as a :class:`DicomImage`.

It reads MONOCHROME1/2 (and colour, converted to luminance) files, 8-16 bits, with or without
window/VOI LUT, in any transfer syntax pydicom's installed handlers decode, checking the declared
size before decoding. Anything unreadable raises :class:`DicomError` with a one-line message.
"""
from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..imaging.imagefile import ImageReadError, check_inflated_size, check_size
from ..imaging.imaging import voi_linear
from ..imaging.pngio import DISCLAIMER
from ..jsonfile import parse_object

PARAMS_PREFIX = "cxrdesk-params: "
MAX_FRAMES = 1 << 16  # NumberOfFrames above this is a corrupt or hostile header (pixel limits: imagefile)


class DicomError(ImageReadError):
    """A DICOM file cannot be read or written; the message is one line."""


def _one_line(text: Any, limit: int = 200) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def parse_image_comments(text: str | None) -> dict:
    """The parameters dict from an ImageComments written by
    :func:`~cxrdesk.core.dicom.writer.image_comments` ({} if none)."""
    if not text:
        return {}
    for line in str(text).splitlines():
        if line.startswith(PARAMS_PREFIX):
            return parse_object(line[len(PARAMS_PREFIX):], default={})
    return {}


@dataclass
class Window:
    center: float
    width: float
    explanation: str = ""


@dataclass
class DicomImage:
    """A DICOM image read by :func:`read_dicom`.

    ``pixels`` holds the stored values of the first frame (HxW, integer data units, before any
    modality rescale); ``windows`` the file's window center/width pairs (modality units).
    """

    path: str
    pixels: np.ndarray
    bits_stored: int
    bits_allocated: int
    signed: bool
    photometric: str
    windows: list[Window] = field(default_factory=list)
    has_voi_lut: bool = False
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    number_of_frames: int = 1
    transfer_syntax: str = ""
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    modality: str = ""
    patient_name: str = ""
    patient_id: str = ""
    patient_sex: str = ""
    patient_birth_date: str = ""
    study_date: str = ""
    study_description: str = ""
    series_description: str = ""
    body_part: str = ""
    image_comments: str = ""
    synthetic: bool | None = None
    burned_in_annotation: str = ""
    params: dict = field(default_factory=dict)
    # (row, column) mm per pixel: PixelSpacing, else ImagerPixelSpacing (at the detector: a projection
    # radiograph's anatomy is magnified there by some 5-15%); None when the file gives neither
    pixel_spacing: tuple[float, float] | None = None
    _meta: Any = field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pixels.shape[:2])  # type: ignore[return-value]

    @property
    def window(self) -> Window | None:
        """The first (default) window, if any."""
        return self.windows[0] if self.windows else None

    @property
    def value_range(self) -> tuple[int, int]:
        """The range BitsStored allows: (0, 2**b - 1) or signed (-2**(b-1), 2**(b-1) - 1)."""
        b = self.bits_stored
        if self.signed:
            return (-(1 << (b - 1)), (1 << (b - 1)) - 1)
        return (0, (1 << b) - 1)

    def normalized(self, mode: str = "auto") -> np.ndarray:
        """float32 HxW in [0, 1], bright = dense, MONOCHROME1 inverted.

        ``mode``: ``"range"`` scales the range BitsStored allows to [0, 1] (exact for files
        written by :func:`~cxrdesk.core.dicom.writer.write_dicom`: value / 4095); ``"minmax"``
        stretches the image's own min..max; ``"window"`` applies the VOI LUT or first window (falls
        back to ``"auto"``);
        ``"auto"`` (default) is ``"range"`` unless the image spans less than 1/8 of that range
        (files that declare more bits than they use), then ``"minmax"``.
        """
        try:
            return self._normalized(mode)
        except DicomError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt header must not crash callers
            raise DicomError(f"{Path(self.path).name}: cannot normalise pixel data ({_one_line(exc, 120)})") from None

    def _normalized(self, mode: str) -> np.ndarray:
        if mode not in ("auto", "range", "minmax", "window"):
            raise ValueError(f"unknown normalisation mode {mode!r}")
        x = self.pixels.astype(np.float64)
        y = None
        if mode == "window":
            if self.has_voi_lut and self._meta is not None:
                from pydicom.pixels import apply_modality_lut, apply_voi_lut

                src = self.pixels
                if self.rescale_slope != 1.0 or self.rescale_intercept != 0.0:
                    src = apply_modality_lut(src, self._meta)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    v = apply_voi_lut(src, self._meta, index=0, prefer_lut=True)
                v = np.asarray(v, dtype=np.float64)
                lo, hi = float(np.min(v)), float(np.max(v))
                seq = self._meta.VOILUTSequence[0]
                bits = int(seq.LUTDescriptor[2]) if "LUTDescriptor" in seq else 16
                top = float((1 << max(1, min(bits, 16))) - 1)
                y = v / top if hi <= top and lo >= 0 else (v - lo) / max(hi - lo, 1e-12)
            elif self.windows:
                w = self.windows[0]
                m = x * self.rescale_slope + self.rescale_intercept
                y = voi_linear(np.asarray(m, np.float64), w.center, w.width, 65535).astype(np.float64) / 65535.0
            else:
                mode = "auto"
        if y is None:
            lo_r, hi_r = self.value_range
            span_r = float(hi_r - lo_r)
            if mode == "auto":
                lo_d, hi_d = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
                mode = "minmax" if (hi_d - lo_d) < span_r / 8 and hi_d > lo_d else "range"
            # in place: the same arithmetic as (x - lo) / span without two more float64 copies
            if mode == "range":
                x -= lo_r
                x /= span_r
            else:
                lo_d, hi_d = float(x.min()), float(x.max())
                x -= lo_d
                if hi_d > lo_d:
                    x /= hi_d - lo_d
            y = x
        np.clip(y, 0.0, 1.0, out=y)
        if self.photometric == "MONOCHROME1":
            np.subtract(1.0, y, out=y)
        return np.ascontiguousarray(y, dtype=np.float32)

    def summary(self) -> list[str]:
        """Short text lines for display next to the image."""
        h, w = self.shape
        lines = [
            f"Patient: {self.patient_name or '-'}  ID: {self.patient_id or '-'}",
            f"Study: {self.study_description or '-'}  {self.study_date or ''}".rstrip(),
            f"Series: {self.series_description or '-'}",
            f"{self.modality or '?'}  {w}x{h}  {self.bits_stored}-bit  {self.photometric}",
        ]
        if self.synthetic:
            lines.insert(0, DISCLAIMER)
        if self.params.get("prompt"):
            lines.append(f"Prompt: {_one_line(self.params['prompt'], 200)}")
        return lines


def _s(ds, keyword: str) -> str:
    try:
        v = ds.get(keyword, "")
        if v is None:
            return ""
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            return "\\".join(str(x) for x in v)
        return str(v)
    except Exception:  # noqa: BLE001 - a bad value must not stop reading the image
        return ""


def _multi(v) -> list:
    if v is None:
        return []
    if isinstance(v, (str, bytes)):
        return [v]
    try:
        return list(v)
    except TypeError:
        return [v]


def _read_spacing(ds) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            v = [float(x) for x in _multi(ds.get(keyword))]
        except Exception:  # noqa: BLE001 - a bad value only means no physical scale
            continue
        if len(v) == 2 and all(np.isfinite(x) and 0 < x < 100 for x in v):
            return (v[0], v[1])
    return None


def _read_windows(ds) -> list[Window]:
    out: list[Window] = []
    try:
        centers = _multi(ds.get("WindowCenter"))
        widths = _multi(ds.get("WindowWidth"))
        expl = _multi(ds.get("WindowCenterWidthExplanation"))
    except Exception:  # noqa: BLE001
        return out
    for i, (c, w) in enumerate(zip(centers, widths)):
        try:
            cf, wf = float(c), float(w)
        except (TypeError, ValueError):
            continue
        if not (np.isfinite(cf) and np.isfinite(wf)) or wf < 1:
            continue
        e = str(expl[i]) if i < len(expl) else ""
        out.append(Window(cf, wf, e))
    return out


def read_dicom(path: str | os.PathLike) -> DicomImage:
    """Open a DICOM image file. Raises :class:`DicomError` (one line) for anything unreadable."""
    name = Path(path).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _read(Path(path))
    except DicomError:
        raise
    except FileNotFoundError:
        raise DicomError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DicomError(f"{name}: is a folder, not a file") from None
    except PermissionError:
        raise DicomError(f"{name}: permission denied") from None
    except MemoryError:
        raise DicomError(f"{name}: image too large to load") from None
    except Exception as exc:  # noqa: BLE001 - corrupt files raise all sorts of errors inside pydicom
        raise DicomError(f"{name}: corrupt or unsupported DICOM file ({type(exc).__name__}: {_one_line(exc, 120)})") from None


def _check_deflated(path: Path) -> None:
    """For a Deflated Explicit VR Little Endian file, check how large the data set inflates to
    before pydicom inflates all of it into memory (a 1 MB file can hold gigabytes of zeros)."""
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    with open(path, "rb") as fh:
        try:
            read_preamble(fh, True)
            ts = _read_file_meta_info(fh).get("TransferSyntaxUID")
        except Exception:  # noqa: BLE001 - no readable file meta: pydicom will not inflate either
            return
        if ts == DeflatedExplicitVRLittleEndian:
            try:
                check_inflated_size(path.name, fh)
            except ImageReadError as exc:
                raise DicomError(str(exc)) from None
            except zlib.error as exc:
                raise DicomError(f"{path.name}: corrupt deflated data set ({_one_line(exc, 80)})") from None


def _read(path: Path) -> DicomImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = path.name
    if not path.is_file():
        if path.is_dir():
            raise DicomError(f"{name}: is a folder, not a file")
        raise DicomError(f"{name}: no such file")
    _check_deflated(path)
    try:
        ds = pydicom.dcmread(str(path))
    except InvalidDicomError:
        # files without the 128-byte preamble + "DICM" (older ACR-NEMA style); keep them only
        # if they really are image datasets
        try:
            ds = pydicom.dcmread(str(path), force=True)
        except Exception:  # noqa: BLE001
            raise DicomError(f"{name}: not a DICOM file") from None
        if "PixelData" not in ds or "Rows" not in ds:
            raise DicomError(f"{name}: not a DICOM file")
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise DicomError(f"{name}: float pixel data is not supported")
        raise DicomError(f"{name}: DICOM file without an image (no pixel data)")
    ts = ""
    try:
        ts = str(ds.file_meta.TransferSyntaxUID)
    except Exception:  # noqa: BLE001
        ts = ""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits_alloc = int(ds.BitsAllocated)
        bits_stored = int(ds.get("BitsStored", bits_alloc) or bits_alloc)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DicomError(f"{name}: incomplete image description ({_one_line(exc, 80)})") from None
    if rows < 1 or cols < 1:
        raise DicomError(f"{name}: empty image ({rows}x{cols})")
    if not 1 <= frames <= MAX_FRAMES:
        raise DicomError(f"{name}: malformed image description ({frames} frames)")
    if bits_alloc not in (1, 8, 16, 32) or not (1 <= bits_stored <= bits_alloc):
        raise DicomError(f"{name}: unsupported bit depth (allocated {bits_alloc}, stored {bits_stored})")
    if spp not in (1, 3):
        raise DicomError(f"{name}: unsupported samples per pixel ({spp})")
    try:  # what the header declares, before anything is decoded (only the first frame is)
        check_size(name, cols, rows, spp, max(bits_alloc // 8, 1))
    except ImageReadError as exc:
        raise DicomError(str(exc)) from None
    try:
        ds.pixel_array_options(index=0)
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raw_msg = str(exc)
        msg = _one_line(raw_msg, 120)
        tsname = _one_line(ts, 70) or "?"
        if "missing dependencies" in raw_msg or "No pixel data decoders" in raw_msg:
            raise DicomError(f"{name}: no installed decoder for transfer syntax {tsname} "
                             "(install pylibjpeg/pylibjpeg-libjpeg or gdcm to read it)") from None
        if isinstance(exc, NotImplementedError) or "Unable to decode the pixel data as" in raw_msg:
            raise DicomError(f"{name}: unsupported transfer syntax {tsname}") from None
        raise DicomError(f"{name}: corrupt pixel data ({msg})") from None
    arr = np.asarray(arr)
    if spp == 3:
        # colour (RGB, or YBR already converted to RGB by pydicom): use the luminance
        if arr.ndim == 4:
            arr = arr[0]
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise DicomError(f"{name}: unexpected colour pixel layout {arr.shape}")
        lum = arr[..., 0] * np.float32(0.299)  # float32, one channel at a time: no 24-byte/pixel copy
        lum += arr[..., 1] * np.float32(0.587)
        lum += arr[..., 2] * np.float32(0.114)
        arr = np.rint(lum, out=lum).astype(np.uint16 if bits_alloc > 8 else np.uint8)
        del lum
    if arr.ndim == 3 and arr.shape[0] == frames and frames > 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise DicomError(f"{name}: unexpected pixel array shape {arr.shape}")
    if arr.size == 0:
        raise DicomError(f"{name}: empty image")
    try:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
            slope, intercept = 1.0, 0.0
    except (TypeError, ValueError):
        slope, intercept = 1.0, 0.0
    has_voi = False
    try:
        has_voi = "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0 and "LUTData" in ds.VOILUTSequence[0]
    except Exception:  # noqa: BLE001
        has_voi = False
    comments = _s(ds, "ImageComments")
    synth = _s(ds, "SyntheticData").upper()
    # keep the header (without the pixel data) for VOI LUT use
    meta = None
    try:
        del ds.PixelData
        meta = ds
    except Exception:  # noqa: BLE001
        meta = None
    img = DicomImage(
        path=str(path), pixels=np.ascontiguousarray(arr), bits_stored=bits_stored, bits_allocated=bits_alloc,
        signed=signed, photometric=photometric,
        windows=_read_windows(ds), has_voi_lut=bool(has_voi), rescale_slope=slope, rescale_intercept=intercept,
        number_of_frames=frames, transfer_syntax=ts, sop_class_uid=_s(ds, "SOPClassUID"),
        sop_instance_uid=_s(ds, "SOPInstanceUID"), study_instance_uid=_s(ds, "StudyInstanceUID"),
        series_instance_uid=_s(ds, "SeriesInstanceUID"), modality=_s(ds, "Modality"),
        patient_name=_s(ds, "PatientName"), patient_id=_s(ds, "PatientID"), patient_sex=_s(ds, "PatientSex"),
        patient_birth_date=_s(ds, "PatientBirthDate"), study_date=_s(ds, "StudyDate"),
        study_description=_s(ds, "StudyDescription"), series_description=_s(ds, "SeriesDescription"),
        body_part=_s(ds, "BodyPartExamined"), image_comments=comments,
        synthetic=(True if synth == "YES" else False if synth == "NO" else None),
        burned_in_annotation=_s(ds, "BurnedInAnnotation"), params=parse_image_comments(comments),
        pixel_spacing=_read_spacing(ds), _meta=meta)
    # validate once here so that callers get DicomError now rather than later
    img.normalized("range")
    return img
