"""The window's DICOM export writes a presentation state of the view beside the film when it has
annotations (issue 33, item 10): the export dialog's checkbox, the files, and Send to PACS."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pydicom = pytest.importorskip("pydicom")

from PySide6.QtCore import QPointF, Qt

from cxrdesk.core.dicom.presentation import GSPS
from cxrdesk.ui.mainwindow import Document, ExportDialog
from tests.test_ui_app import make_window  # noqa: F401 - a fixture: windows closed after the test
from tests.test_ui_classroom import accept_with


@pytest.fixture
def window(make_window):  # noqa: F811 - the imported fixture
    return make_window()  # no model


def show_film(w):
    film = (np.arange(48 * 64).reshape(48, 64) * 7 % 4096).astype(np.uint16)
    w.set_document(Document(data=film, bits=12, title="t", kind="generated", synthetic=True))
    return film


def draw_arrow(w, qtbot, a=(10, 12), b=(40, 30)):
    """Draw an arrow with the mouse, as a teacher does: the Arrow tool, a left drag on the film."""
    v = w.view
    w.act_arrow.trigger()
    pa, pb = v.image_to_widget(QPointF(*a)), v.image_to_widget(QPointF(*b))
    qtbot.mousePress(v, Qt.LeftButton, pos=pa.toPoint())
    qtbot.mouseMove(v, pos=pb.toPoint())
    qtbot.mouseRelease(v, Qt.LeftButton, pos=pb.toPoint())
    w.act_arrow.trigger()
    (arrow,) = [x for x in v.annotations() if x["kind"] == "arrow"]
    return arrow


def test_dicom_export_writes_the_presentation_state_beside_the_film(window, qtbot, tmp_path, monkeypatch):
    w = window
    show_film(w)
    v = w.view
    # no annotations: the checkbox is there, off, with a tooltip
    dlg = ExportDialog("DICOM", w.settings, w, annotations=len(v.annotations()))
    assert not dlg.presentation.isChecked() and dlg.presentation.toolTip()
    accept_with(monkeypatch, tmp_path / "plain.dcm")
    w.export_dicom_dialog()
    assert (tmp_path / "plain.dcm").exists() and not (tmp_path / "plain_pr.dcm").exists()

    arrow = draw_arrow(w, qtbot)
    v.add_annotation({"kind": "text", "at": [6.0, 40.0], "text": "RLL"})
    w.act_presets["Lung"].trigger()
    w.act_invert.trigger()
    w.act_rot_cw.trigger()
    dlg = ExportDialog("DICOM", w.settings, w, annotations=len(v.annotations()))
    assert dlg.presentation.isChecked()  # on by default when there are annotations
    accept_with(monkeypatch, tmp_path / "case.dcm")
    w.export_dicom_dialog()
    img, pr = pydicom.dcmread(tmp_path / "case.dcm"), pydicom.dcmread(tmp_path / "case_pr.dcm")
    assert "case_pr.dcm" in w.statusBar().currentMessage()
    np.testing.assert_array_equal(img.pixel_array, w.doc.data)  # the film's pixels stay clean
    assert img.BurnedInAnnotation == "NO"
    assert pr.SOPClassUID == GSPS and pr.StudyInstanceUID == img.StudyInstanceUID
    ref = pr.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == img.SOPInstanceUID and ref.ReferencedSOPClassUID == img.SOPClassUID
    c, wd = v.window()
    (voi,) = pr.SoftcopyVOILUTSequence
    assert float(voi.WindowCenter) == pytest.approx(c, abs=0.01) and float(voi.WindowWidth) == pytest.approx(wd, abs=0.01)
    assert pr.PresentationLUTShape == "INVERSE"
    assert int(pr.ImageRotation) == 90 and pr.ImageHorizontalFlip == "N"
    (ann,) = pr.GraphicAnnotationSequence
    shaft = ann.GraphicObjectSequence[0]
    assert shaft.GraphicAnnotationUnits == "PIXEL"
    assert list(shaft.GraphicData) == pytest.approx(arrow["from"] + arrow["to"], abs=1e-3)
    assert ann.TextObjectSequence[0].UnformattedTextValue == "RLL"
    assert list(ann.TextObjectSequence[0].AnchorPoint) == pytest.approx([6.0, 40.0])

    # unticked: the film alone; a second export with it goes to the same presentation series
    accept_with(monkeypatch, tmp_path / "bare.dcm", presentation=False)
    w.export_dicom_dialog()
    assert not (tmp_path / "bare_pr.dcm").exists()
    accept_with(monkeypatch, tmp_path / "again.dcm")
    w.export_dicom_dialog()
    pr2 = pydicom.dcmread(tmp_path / "again_pr.dcm")
    assert pr2.SeriesInstanceUID == pr.SeriesInstanceUID and int(pr2.InstanceNumber) == int(pr.InstanceNumber) + 1
    assert pr2.SOPInstanceUID != pr.SOPInstanceUID


def test_an_8bit_export_gets_the_window_in_its_own_units(window, tmp_path):
    w = window
    show_film(w)
    w.view.add_annotation({"kind": "arrow", "from": [1, 1], "to": [20, 20]})
    out = w.export_dicom(str(tmp_path / "e.dcm"), bits=8)  # presentation None: written (annotations)
    img, pr = pydicom.dcmread(out), pydicom.dcmread(tmp_path / "e_pr.dcm")
    assert float(pr.SoftcopyVOILUTSequence[0].WindowWidth) == float(img.WindowWidth[0])
    assert float(img.WindowWidth[0]) <= 256 and pr.PresentationLUTShape == "IDENTITY"


def test_send_to_pacs_sends_the_presentation_state_too(window, qtbot, monkeypatch):
    pytest.importorskip("pynetdicom")
    import socket

    from PySide6.QtWidgets import QDialog

    from cxrdesk.ui import pacs_dialog
    from cxrdesk.ui.pacs_dialog import PacsDialog, _queue

    w = window
    show_film(w)
    w.view.add_annotation({"kind": "arrow", "from": [1, 1], "to": [20, 20]})
    seen = {}
    monkeypatch.setattr(PacsDialog, "exec", lambda dlg: seen.setdefault("dlg", dlg) and QDialog.Rejected)
    w.send_to_pacs()
    dlg = seen["dlg"]
    assert dlg.presentation_note.isVisibleTo(dlg)
    # send to a closed port: both files fail and both are queued for a retry
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sent = []
    real = pacs_dialog._send_image

    def spy(*args):
        report = real(*args)
        sent.extend(r.path for r in report.results)
        return report

    monkeypatch.setattr(pacs_dialog, "_send_image", spy)
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.host.setText("127.0.0.1")
    dlg.port.setValue(port)
    dlg.timeout.setValue(2)
    before = len(_queue())
    qtbot.mouseClick(dlg.send_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dlg.echo_button.isEnabled(), timeout=30000)
    assert "0 of 2 sent" in dlg.status.text()
    assert [p.rsplit("/", 1)[-1] for p in sent] == ["synthetic.dcm", "synthetic_pr.dcm"]
    assert len(_queue()) == before + 2
    classes = {pydicom.dcmread(it["file"], stop_before_pixels=True).SOPClassUID for it in _queue().items()[-2:]}
    assert GSPS in classes
