"""DICOM Grayscale Softcopy Presentation State (GSPS) for an exported film: the view beside the pixels.

A GSPS (SOP class 1.2.840.10008.5.1.4.1.1.11.1) tells a DICOM viewer how to show an image it
references, without touching its pixels. :func:`build_presentation_state` writes one for a film
exported as DICOM (any image dataset with SOP class/instance, study, series, Rows and Columns):

- the same patient and study as the image, a series of its own (Modality ``PR``), instance number and
  series shared by the caller where it wants several presentation states in one series;
- Presentation State Relationship: ReferencedSeriesSequence / ReferencedImageSequence naming the
  image's SOP Class and Instance UIDs;
- Softcopy VOI LUT: the view's window (WindowCenter/WindowWidth, in the image's stored-pixel units;
  by default the image's first window, which cxrdesk's export writes as the current view);
- Softcopy Presentation LUT: PresentationLUTShape ``INVERSE`` for an inverted view, else ``IDENTITY``;
- Spatial Transformation (only when the view is flipped or turned): ImageRotation (clockwise,
  applied first) and ImageHorizontalFlip;
- Displayed Area: the whole image, scaled to fit, square pixels (its corners named as they are shown
  after the spatial transformation);
- Graphic Layer ``ANNOTATIONS`` and Graphic Annotation: each arrow as two POLYLINE graphic objects
  (the shaft from its tail to its tip, then the head: a filled closed triangle at the tip) and each
  text as a text object (anchored where it was placed, with a bounding box to its right), all in
  ``PIXEL`` units of the image (the top left corner of the top left pixel is 0\\0, the bottom right
  corner of the image Columns\\Rows: the coordinates the viewer keeps annotations in).

Annotations are the viewer's dicts (``cxrdesk.ui.viewtools``): ``{"kind": "arrow", "from": [x, y],
"to": [x, y]}`` and ``{"kind": "text", "at": [x, y], "text": "..."}``. No annotations give a
presentation state of the view alone (window, inversion, orientation) with no graphic annotation.
This module needs pydicom only (no Qt) and is checked with ``dciodvfy``.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .part10 import new_instance, part10_bytes

GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
LAYER = "ANNOTATIONS"
MAX_TEXT = 1024  # UnformattedTextValue is ST
# the viewer's annotation yellow (sRGB 255, 214, 10) as DICOM-scaled CIELab (L*, a*, b*)
YELLOW_CIELAB = (56812, 32551, 55028)
# orientation matrices (a, b, c, d) of the viewer: screen = [[a, b], [c, d]] @ image, y down
_QUARTER_CW = (0, -1, 1, 0)
_FLIP_H = (-1, 0, 0, 1)
_IDENTITY = (1, 0, 0, 1)


class PresentationStateError(ValueError):
    """A presentation state cannot be built from what was given; the message is one line."""


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------

def _mul(p: tuple, q: tuple) -> tuple:
    a, b, c, d = p
    e, f, g, h = q
    return (a * e + b * g, a * f + b * h, c * e + d * g, c * f + d * h)


def spatial_transform(matrix: Iterable[int] | None) -> tuple[int, bool]:
    """(ImageRotation in degrees clockwise, ImageHorizontalFlip) for a viewer orientation matrix:
    DICOM rotates first, then flips, so ``matrix`` = flip @ rotation."""
    m = tuple(int(v) for v in (matrix or _IDENTITY))
    rot = _IDENTITY
    for quarter in range(4):
        if rot == m:
            return 90 * quarter, False
        if _mul(_FLIP_H, rot) == m:
            return 90 * quarter, True
        rot = _mul(_QUARTER_CW, rot)
    raise PresentationStateError(f"not a flip or quarter turn: {list(m)}")


def displayed_corners(matrix: Iterable[int] | None, rows: int, columns: int) -> tuple[list[int], list[int]]:
    """DisplayedAreaTopLeftHandCorner and ...BottomRightHandCorner (column, row, from 1) of the whole
    image: the image pixels shown at the top left and the bottom right after the spatial
    transformation of ``matrix``."""
    a, b, c, d = tuple(int(v) for v in (matrix or _IDENTITY))
    corners = [(x, y) for x in (1, columns) for y in (1, rows)]

    def screen(p):  # where the pixel's centre goes, about the image centre
        dx, dy = p[0] - 0.5 - columns / 2, p[1] - 0.5 - rows / 2
        return (a * dx + b * dy) + (c * dx + d * dy)

    return list(min(corners, key=screen)), list(max(corners, key=screen))


def _text_height(rows: int, columns: int) -> float:
    """The height annotations' text is drawn at in an export of a film this size (viewer: 1/21 of
    the shorter side, at least 9 pixels); the arrow head scales with it."""
    return max(9.0, min(rows, columns) / 21.0)


def arrow_graphics(tail, tip, rows: int, columns: int) -> tuple[list[float], list[float]]:
    """The shaft (tail to tip) and the head (a closed triangle: tip, one barb, the other, tip) of an
    arrow, as flat x, y lists in the image's pixel coordinates."""
    x0, y0 = (float(v) for v in tail)
    x1, y1 = (float(v) for v in tip)
    n = math.hypot(x1 - x0, y1 - y0)
    shaft = [x0, y0, x1, y1]
    if n < 1e-6:
        return shaft, []
    ux, uy = (x1 - x0) / n, (y1 - y0) / n
    head = min(n * 0.6, 0.9 * _text_height(rows, columns))
    bx, by = x1 - ux * head, y1 - uy * head
    px, py = -uy * head * 0.45, ux * head * 0.45
    return shaft, [x1, y1, bx + px, by + py, bx - px, by - py, x1, y1]


def _text_box(x: float, y: float, text: str, rows: int, columns: int) -> tuple[list[float], list[float]]:
    """A bounding box for ``text`` placed at (x, y) as the viewer draws it (its left edge at x, centred
    on y), the width estimated, kept inside the image."""
    h = _text_height(rows, columns) + 4
    w = min(float(columns), 0.62 * (h - 4) * len(text) + 8)
    left = min(max(0.0, x), columns - w)
    top = min(max(0.0, y - h / 2), rows - h) if rows > h else 0.0
    return [left, top], [left + w, min(float(rows), top + h)]


def _point(item: dict, key: str) -> tuple[float, float]:
    v = item.get(key)
    try:
        x, y = (float(t) for t in v)
    except (TypeError, ValueError):
        raise PresentationStateError(f"annotation {item.get('kind')!r}: {key!r} is not an (x, y) point") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PresentationStateError(f"annotation {item.get('kind')!r}: {key!r} is not finite")
    return x, y


# --------------------------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------------------------

def _image_dataset(image):
    """The referenced image as a pydicom dataset (a path is read without its pixels)."""
    if isinstance(image, (str, os.PathLike)):
        import pydicom

        try:
            return pydicom.dcmread(str(image), stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001
            raise PresentationStateError(f"cannot read the image {image}: {' '.join(str(exc).split())[:160]}") from None
    return image


def _first(v) -> float | None:
    """The first value of a (possibly multi-valued) DS, or None."""
    from pydicom.multival import MultiValue

    if isinstance(v, (MultiValue, list, tuple)):
        v = v[0] if len(v) else None
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def _number(v: float):
    from pydicom.valuerep import DSfloat

    v = round(float(v), 2)
    return DSfloat(int(v) if v == int(v) else v, auto_format=True)


def _ref_image(img) -> Any:
    from pydicom.dataset import Dataset

    r = Dataset()
    r.ReferencedSOPClassUID = img.SOPClassUID
    r.ReferencedSOPInstanceUID = img.SOPInstanceUID
    return r


def build_presentation_state(image, annotations: Iterable[dict] | None = (), *,
                             window: tuple[float, float] | None = None, inverted: bool = False,
                             orientation: Iterable[int] | None = None, series_uid: str | None = None,
                             series_number: int | None = None, instance_number: int = 1,
                             label: str = "CXRDESK VIEW", description: str | None = None):
    """The GSPS (a ``pydicom.FileDataset``) for ``image`` (a dataset or a DICOM file's path).

    ``annotations``: the viewer's arrows and texts in the image's pixel coordinates. ``window``:
    (center, width) in the image's stored-pixel units (None: the image's first WindowCenter/Width,
    or no VOI LUT when it has none). ``inverted``: the view shows the negative. ``orientation``: the
    viewer's orientation matrix (None: as stored). ``series_uid`` / ``series_number`` /
    ``instance_number``: where the presentation state is filed (default: a new series numbered one
    above the image's). ``label``: ContentLabel (upper case, 16 characters at most).
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    from ... import __version__

    img = _image_dataset(image)
    for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns"):
        if not str(img.get(k, "") or ""):
            raise PresentationStateError(f"the image has no {k}: a presentation state cannot reference it")
    rows, columns = int(img.Rows), int(img.Columns)
    items = list(annotations or [])
    rotation, flip = spatial_transform(orientation)
    if window is None:
        c, w = _first(img.get("WindowCenter")), _first(img.get("WindowWidth"))
        window = (c, w) if c is not None and w is not None else None
    if window is not None and not (math.isfinite(float(window[0])) and float(window[1]) >= 1):
        raise PresentationStateError(f"bad window {window!r}: a finite center and a width of at least 1")

    now = _dt.datetime.now()
    ds = new_instance(GSPS, now)  # file meta and SOP Common
    # Patient and General Study: the image's
    for k in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
              "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription"):
        setattr(ds, k, img.get(k, ""))
    # General Series / Presentation Series
    ds.Modality = "PR"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = int(series_number if series_number is not None else int(img.get("SeriesNumber") or 0) + 1)
    ds.SeriesDate = now.strftime("%Y%m%d")
    ds.SeriesTime = now.strftime("%H%M%S")
    ds.SeriesDescription = (str(img.get("SeriesDescription", "") or "") + " (view)").strip()[-64:]
    if img.get("BodyPartExamined"):
        ds.BodyPartExamined = img.BodyPartExamined
    # General Equipment
    ds.Manufacturer = "cxrdesk"
    ds.SoftwareVersions = str(__version__)[:64]
    # Presentation State Identification
    ds.InstanceNumber = int(instance_number)
    ds.ContentLabel = "".join(ch if ch.isalnum() else "_" for ch in label.upper())[:16] or "VIEW"
    ds.ContentDescription = (description or (
        f"cxrdesk view: window{', inverted' if inverted else ''}, {len(items)} annotation(s)"))[:64]
    ds.PresentationCreationDate = now.strftime("%Y%m%d")
    ds.PresentationCreationTime = now.strftime("%H%M%S")
    ds.ContentCreatorName = ""
    # Presentation State Relationship
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = img.SeriesInstanceUID
    ref_series.ReferencedImageSequence = Sequence([_ref_image(img)])
    ds.ReferencedSeriesSequence = Sequence([ref_series])
    # Displayed Area: the whole film, scaled to fit, square pixels
    area = Dataset()
    area.DisplayedAreaTopLeftHandCorner, area.DisplayedAreaBottomRightHandCorner = displayed_corners(
        orientation, rows, columns)
    area.PresentationSizeMode = "SCALE TO FIT"
    area.PresentationPixelAspectRatio = [1, 1]
    ds.DisplayedAreaSelectionSequence = Sequence([area])
    # Softcopy VOI LUT
    if window is not None:
        voi = Dataset()
        voi.WindowCenter = _number(window[0])
        voi.WindowWidth = _number(max(float(window[1]), 1.0))
        voi.WindowCenterWidthExplanation = "CURRENT VIEW"
        ds.SoftcopyVOILUTSequence = Sequence([voi])
    # Softcopy Presentation LUT
    ds.PresentationLUTShape = "INVERSE" if inverted else "IDENTITY"
    # Spatial Transformation
    if rotation or flip:
        ds.ImageRotation = rotation
        ds.ImageHorizontalFlip = "Y" if flip else "N"
    # Graphic Layer and Graphic Annotation
    graphics, texts = _annotation_objects(items, rows, columns)
    if graphics or texts:
        layer = Dataset()
        layer.GraphicLayer = LAYER
        layer.GraphicLayerOrder = 1
        layer.GraphicLayerRecommendedDisplayGrayscaleValue = 0xFFFF
        layer.GraphicLayerRecommendedDisplayCIELabValue = list(YELLOW_CIELAB)
        layer.GraphicLayerDescription = "Arrows and text drawn over the film in cxrdesk"
        ds.GraphicLayerSequence = Sequence([layer])
        ann = Dataset()
        ann.ReferencedImageSequence = Sequence([_ref_image(img)])
        ann.GraphicLayer = LAYER
        if texts:
            ann.TextObjectSequence = Sequence(texts)
        if graphics:
            ann.GraphicObjectSequence = Sequence(graphics)
        ds.GraphicAnnotationSequence = Sequence([ann])
    return ds


def _annotation_objects(items: list[dict], rows: int, columns: int) -> tuple[list, list]:
    """(graphic objects, text objects) for the viewer's annotations."""
    from pydicom.dataset import Dataset

    def polyline(points: list[float], filled: bool) -> Dataset:
        g = Dataset()
        g.GraphicAnnotationUnits = "PIXEL"
        g.GraphicDimensions = 2
        g.NumberOfGraphicPoints = len(points) // 2
        g.GraphicData = [float(v) for v in points]
        g.GraphicType = "POLYLINE"
        if filled:
            g.GraphicFilled = "Y"
        return g

    graphics, texts = [], []
    for it in items:
        kind = it.get("kind") if isinstance(it, dict) else None
        if kind == "arrow":
            shaft, head = arrow_graphics(_point(it, "from"), _point(it, "to"), rows, columns)
            graphics.append(polyline(shaft, False))
            if head:
                graphics.append(polyline(head, True))
        elif kind == "text":
            x, y = _point(it, "at")
            text = " ".join(str(it.get("text") or "").split())[:MAX_TEXT]
            if not text:
                raise PresentationStateError("a text annotation has no text")
            t = Dataset()
            tl, br = _text_box(x, y, text, rows, columns)
            t.BoundingBoxAnnotationUnits = "PIXEL"
            t.AnchorPointAnnotationUnits = "PIXEL"
            t.UnformattedTextValue = text
            t.BoundingBoxTopLeftHandCorner = tl
            t.BoundingBoxBottomRightHandCorner = br
            t.BoundingBoxTextHorizontalJustification = "LEFT"
            t.AnchorPoint = [x, y]
            t.AnchorPointVisibility = "N"
            texts.append(t)
        else:
            raise PresentationStateError(f"not an arrow or text annotation: {it!r:.80}")
    return graphics, texts


def presentation_path(image_path: str | os.PathLike) -> Path:
    """Where the presentation state of ``case.dcm`` goes: ``case_pr.dcm`` beside it."""
    p = Path(image_path)
    return p.with_name(f"{p.stem}_pr{p.suffix or '.dcm'}")


def write_presentation_state(path: str | os.PathLike, image, annotations: Iterable[dict] | None = (),
                             **kwargs) -> Path:
    """Write :func:`build_presentation_state` to ``path`` (atomically); returns the path."""
    from ..fsutil import atomic_write

    data = part10_bytes(build_presentation_state(image, annotations, **kwargs))
    return atomic_write(path, lambda fh: fh.write(data))
