"""DICOM export and import (pydicom).

Export writes a single-frame **Secondary Capture Image** (SOP class 1.2.840.10008.5.1.4.1.1.7),
the IOD every PACS and viewer accepts, checked clean with ``dciodvfy``:

- MONOCHROME2, BitsAllocated 16 / BitsStored 12 / HighBit 11 (or 8/8/7 with ``bits=8``),
  explicit VR little endian, uncompressed;
- ImageType ``DERIVED\\SECONDARY``, ConversionType ``SYN`` (synthetic image), SyntheticData
  (0008,001C) ``YES``, Modality ``OT`` (never a DX acquisition), BodyPartExamined ``CHEST``,
  PatientOrientation ``L\\F`` (a PA chest as conventionally displayed);
- BurnedInAnnotation ``NO``, or ``YES`` when the "SYNTHETIC" mark is burned into the pixels;
- WindowCenter/WindowWidth: the view's current window first, then presets, each named in
  WindowCenterWidthExplanation;
- a clearly synthetic patient (``SYNTHETIC^CXRDESK`` by default), fresh UIDs, SeriesDescription
  ``SYNTHETIC - NOT FOR DIAGNOSIS``, the prompt and generation parameters in ImageComments (a
  readable header plus one ``cxrdesk-params: {json}`` line), no private tags;
- an *unknown* (a quiz case, ``unknown=True``) keeps only :func:`cxrdesk.core.imaging.pngio.unknown_metadata`
  in ImageComments (no prompt, no model name, no edit record), so no attribute gives the answer.

A batch lands as one series when the caller passes one :class:`SeriesContext` to every export.

Import (:func:`read_dicom`) opens MONOCHROME1/2 (and colour, converted to luminance) files,
8-16 bits, with or without window/VOI LUT, in any transfer syntax pydicom's installed handlers
decode. Anything unreadable raises :class:`DicomError` with a one-line message.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import os
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..fsutil import atomic_write
from ..imaging.imagefile import ImageReadError, check_inflated_size, check_size
from ..imaging.imaging import voi_linear, window_presets
from ..imaging.pngio import (DISCLAIMER, MAX12, burn_synthetic_mark, input_max, to_8bit, to_stored12,
                             unknown_metadata)
from ..jsonfile import parse_object

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DEFAULT_PATIENT_NAME = "SYNTHETIC^CXRDESK"
DEFAULT_PATIENT_ID = "CXRDESK-SYNTHETIC"
PARAMS_PREFIX = "cxrdesk-params: "
MAX_FRAMES = 1 << 16  # NumberOfFrames above this is a corrupt or hostile header (pixel limits: imagefile)

class DicomError(ImageReadError):
    """A DICOM file cannot be read or written; the message is one line."""


def _one_line(text: Any, limit: int = 200) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# study / series grouping
# --------------------------------------------------------------------------------------------

@dataclass
class SeriesContext:
    """Shared study/series identity: pass one to every export of a batch to get one series.

    Instance numbers are handed out in order (thread-safe). Create with :meth:`new`.
    """

    study_uid: str
    series_uid: str
    patient_name: str = DEFAULT_PATIENT_NAME
    patient_id: str = DEFAULT_PATIENT_ID
    study_id: str = "1"
    series_number: int = 1
    study_description: str = "SYNTHETIC CHEST X-RAY (cxrdesk)"
    series_description: str = DISCLAIMER
    created: _dt.datetime = field(default_factory=_dt.datetime.now)
    _next: int = field(default=1, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def new(cls, patient_name: str = DEFAULT_PATIENT_NAME, patient_id: str = DEFAULT_PATIENT_ID,
            study_description: str | None = None, series_description: str | None = None,
            study_uid: str | None = None, series_number: int = 1) -> "SeriesContext":
        """A fresh series (in a fresh study unless ``study_uid`` is given)."""
        from pydicom.uid import generate_uid

        now = _dt.datetime.now()
        kw = {}
        if study_description:
            kw["study_description"] = study_description
        if series_description:
            desc = series_description if DISCLAIMER in series_description else f"{DISCLAIMER} {series_description}"
            kw["series_description"] = desc[:64]
        return cls(study_uid=study_uid or generate_uid(), series_uid=generate_uid(),
                   patient_name=patient_name or DEFAULT_PATIENT_NAME,
                   patient_id=patient_id or DEFAULT_PATIENT_ID,
                   study_id=now.strftime("%y%m%d%H%M")[-10:], series_number=int(series_number),
                   created=now, **kw)

    def next_instance_number(self) -> int:
        with self._lock:
            n = self._next
            self._next += 1
            return n


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------

def _ds_number(v: float) -> Any:
    from pydicom.valuerep import DSfloat

    v = round(float(v), 2)
    if v == int(v):
        v = int(v)
    return DSfloat(v, auto_format=True)


def _lo(text: Any, limit: int = 64) -> str:
    """A value safe for LO/SH: one line, no backslash, within ``limit`` characters."""
    return _one_line(str(text).replace("\\", "/"), limit)


def image_comments(metadata: dict | None) -> str:
    """The ImageComments text: a readable header, the prompt, and a JSON parameters line."""
    from ... import __version__

    meta = {}
    for k, v in (metadata or {}).items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, str) and len(v) > 3000:
            v = v[:3000]
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            v = str(v)
        meta[str(k)] = v
    lines = [f"{DISCLAIMER}. Synthetic image generated by cxrdesk {__version__} from a text prompt."]
    if meta.get("prompt"):
        lines.append("Prompt: " + _one_line(meta["prompt"], 3000))
    lines.append(PARAMS_PREFIX + json.dumps(meta, ensure_ascii=False, sort_keys=True))
    text = "\n".join(lines)
    return text[:10240]


def parse_image_comments(text: str | None) -> dict:
    """The parameters dict from an ImageComments written by :func:`image_comments` ({} if none)."""
    if not text:
        return {}
    for line in str(text).splitlines():
        if line.startswith(PARAMS_PREFIX):
            return parse_object(line[len(PARAMS_PREFIX):], default={})
    return {}


def default_presets(bits: int = 12) -> list[tuple[float, float, str]]:
    """Window presets (center, width, explanation) in ``bits``-bit units: those the view offers
    (:func:`cxrdesk.core.imaging.imaging.window_presets`)."""
    return [(float(c), float(w), str(name).upper()) for name, (c, w) in window_presets(bits).items()]


def _windows(window, presets, image, out_max: float) -> list[tuple[float, float, str]]:
    """Window list in output units: the current window first, then presets (deduplicated)."""
    f = out_max / input_max(np.asarray(image))
    out: list[tuple[float, float, str]] = []
    if window is not None:
        out.append((float(window[0]) * f, max(float(window[1]) * f, 1.0), "CURRENT VIEW"))
    if presets is None:
        preset_list = default_presets(8 if out_max <= 255 else 12)
    else:
        preset_list = [(float(c) * f, max(float(w) * f, 1.0), str(e)) for c, w, e in presets]
    for c, w, e in preset_list:
        if any(abs(c - c0) < 0.5 and abs(w - w0) < 0.5 for c0, w0, _ in out):
            continue
        out.append((c, w, e))
    return out


def build_dataset(image: Any, metadata: dict | None = None, *, window: tuple[float, float] | None = None,
                  presets: Iterable[tuple[float, float, str]] | None = None,
                  context: SeriesContext | None = None, bits: int = 12, burn_mark: bool = False,
                  instance_number: int | None = None, unknown: bool = False):
    """Build the Secondary Capture dataset (a ``pydicom.FileDataset``) for one image.

    ``image``: HxW uint16 holding 12-bit values, uint8, or float in [0, 1]. ``metadata``: the
    generation parameters (prompt, negative_prompt, seed, steps, guidance_scale, sampler,
    model, model_hash, width, height, upscale, ...). ``window``: the view's (center, width) in
    the units of ``image``; ``presets``: (center, width, explanation) in the same units (default
    :func:`default_presets`). ``context``: shared study/series (a fresh one if None). ``bits``:
    12 or 8. ``burn_mark``: burn a small "SYNTHETIC" mark into the pixels. ``unknown``: a quiz
    case, ``metadata`` reduced to :func:`~cxrdesk.core.imaging.pngio.unknown_metadata` (the caller gives the
    context a series description that does not name the answer, e.g. "case 01").
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    from ... import __version__

    if bits not in (8, 12):
        raise DicomError("DICOM export bits must be 12 or 8")
    stored = to_stored12(image)
    if burn_mark:
        stored = burn_synthetic_mark(stored)
    if bits == 8:
        pix = to_8bit(stored)
        out_max = 255.0
    else:
        pix = stored
        out_max = float(MAX12)
    ctx = context or SeriesContext.new()
    meta = unknown_metadata(metadata) if unknown else dict(metadata or {})
    now = _dt.datetime.now()
    sop_uid = generate_uid()

    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = f"CXRDESK_{__version__}"[:16]
    ds = FileDataset(None, {}, file_meta=fm, preamble=b"\0" * 128)

    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    # Patient (synthetic, no real identity)
    ds.PatientName = _lo(ctx.patient_name)
    ds.PatientID = _lo(ctx.patient_id)
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # General Study
    ds.StudyInstanceUID = ctx.study_uid
    ds.StudyDate = ctx.created.strftime("%Y%m%d")
    ds.StudyTime = ctx.created.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = _lo(ctx.study_id, 16)
    ds.AccessionNumber = ""
    ds.StudyDescription = _lo(ctx.study_description)
    # General Series
    ds.Modality = "OT"
    ds.SeriesInstanceUID = ctx.series_uid
    ds.SeriesNumber = int(ctx.series_number)
    ds.SeriesDate = ctx.created.strftime("%Y%m%d")
    ds.SeriesTime = ctx.created.strftime("%H%M%S")
    ds.SeriesDescription = _lo(ctx.series_description)
    ds.BodyPartExamined = "CHEST"
    # General Equipment / SC Equipment
    ds.Manufacturer = "cxrdesk"
    ds.SoftwareVersions = _lo(__version__)
    ds.ConversionType = "SYN"
    ds.SecondaryCaptureDeviceManufacturer = "cxrdesk"
    model = meta.get("model") or meta.get("model_name")
    if model:
        ds.SecondaryCaptureDeviceManufacturerModelName = _lo(model)
    ds.SecondaryCaptureDeviceSoftwareVersions = _lo(__version__)
    # General Image / SC Image
    ds.InstanceNumber = int(instance_number if instance_number is not None else ctx.next_instance_number())
    ds.PatientOrientation = ["L", "F"]
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "SECONDARY"]
    what = ("Synthetic image: a film edited by cxrdesk {v}, a region redrawn from a text prompt"
            if isinstance(meta.get("edit"), dict) else "Synthetic image generated from a text prompt by cxrdesk {v}")
    ds.DerivationDescription = _one_line(
        what.format(v=__version__) + (f" (model {model})" if model else "") + ". " + DISCLAIMER, 1024)
    ds.ImageComments = image_comments(meta)
    ds.BurnedInAnnotation = "YES" if burn_mark else "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.SyntheticData = "YES"
    ds.DateOfSecondaryCapture = now.strftime("%Y%m%d")
    ds.TimeOfSecondaryCapture = now.strftime("%H%M%S")
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pix.shape[0]), int(pix.shape[1])
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    raw = pix.astype("<u2" if bits == 12 else np.uint8).tobytes()
    if len(raw) % 2:
        raw += b"\0"
    ds.PixelData = raw
    ds["PixelData"].VR = "OW" if bits == 12 else "OB"
    # VOI LUT (window values in stored-pixel units; no modality rescale)
    wins = _windows(window, presets, image, out_max)
    if wins:
        ds.WindowCenter = [_ds_number(c) for c, _, _ in wins]
        ds.WindowWidth = [_ds_number(w) for _, w, _ in wins]
        ds.WindowCenterWidthExplanation = [_lo(e) or "WINDOW" for _, _, e in wins]
    return ds


def dataset_bytes(ds) -> bytes:
    """Encode a dataset built by :func:`build_dataset` as a DICOM Part 10 file in memory."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom(path: str | os.PathLike, image: Any, metadata: dict | None = None, **kwargs) -> Path:
    """Export one image as a Secondary Capture DICOM file (atomic write); returns the path.

    Keyword arguments are those of :func:`build_dataset` (window, presets, context, bits,
    burn_mark, instance_number, unknown).
    """
    data = dataset_bytes(build_dataset(image, metadata, **kwargs))
    return atomic_write(path, lambda fh: fh.write(data))


def export_series(folder: str | os.PathLike, images: Iterable[tuple[Any, dict | None]], *,
                  context: SeriesContext | None = None, prefix: str = "IMG", **kwargs) -> list[Path]:
    """Export a batch into ``folder`` as one series: files ``{prefix}0001.dcm``, ... ."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ctx = context or SeriesContext.new()
    out = []
    for image, meta in images:
        ds = build_dataset(image, meta, context=ctx, **kwargs)
        data = dataset_bytes(ds)
        out.append(atomic_write(folder / f"{prefix}{int(ds.InstanceNumber):04d}.dcm", lambda fh, d=data: fh.write(d)))
    return out


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------

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
        written by :func:`write_dicom`: value / 4095); ``"minmax"`` stretches the image's own
        min..max; ``"window"`` applies the VOI LUT or first window (falls back to ``"auto"``);
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
