"""DICOM export (pydicom): one image as a single-frame **Secondary Capture Image**.

The file (SOP class 1.2.840.10008.5.1.4.1.1.7, the IOD every PACS and viewer accepts, checked clean
with ``dciodvfy``) has:

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
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..fsutil import atomic_write
from ..imaging.imaging import window_presets
from ..imaging.pngio import (DISCLAIMER, MAX12, burn_synthetic_mark, input_max, to_8bit, to_stored12,
                             unknown_metadata)
from .part10 import new_instance, part10_bytes
from .reader import PARAMS_PREFIX, DicomError, _one_line

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DEFAULT_PATIENT_NAME = "SYNTHETIC^CXRDESK"
DEFAULT_PATIENT_ID = "CXRDESK-SYNTHETIC"


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
    ds = new_instance(SECONDARY_CAPTURE, now)  # file meta and SOP Common
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


def write_dicom(path: str | os.PathLike, image: Any, metadata: dict | None = None, **kwargs) -> Path:
    """Export one image as a Secondary Capture DICOM file (atomic write); returns the path.

    Keyword arguments are those of :func:`build_dataset` (window, presets, context, bits,
    burn_mark, instance_number, unknown).
    """
    data = part10_bytes(build_dataset(image, metadata, **kwargs))
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
        data = part10_bytes(ds)
        out.append(atomic_write(folder / f"{prefix}{int(ds.InstanceNumber):04d}.dcm", lambda fh, d=data: fh.write(d)))
    return out
