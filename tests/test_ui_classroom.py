"""What a classroom trial of the viewer asked for (issue 33): smooth magnified films, notices at the
edge, R resets inversion, a dataset browser that opens where it should and is captioned with findings,
"real films with this finding", DICOM patient/study/series fields, PNG export as on screen, a plainly
labelled attention overlay, a model panel that starts with a summary for instructors."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtWidgets import QDialog, QFileDialog, QLineEdit  # noqa: E402

from cxrdesk.core.imaging import imaging  # noqa: E402
from cxrdesk.ui.dataset_panel import RecordRole  # noqa: E402
from cxrdesk.ui.generator_panel import prompt_findings  # noqa: E402
from cxrdesk.ui.imageview import NOTICE_MS, ImageView, overlay_caption  # noqa: E402
from cxrdesk.ui.mainwindow import Document, ExportDialog, MainWindow  # noqa: E402
from cxrdesk.ui.model_panel import ModelPanel  # noqa: E402
from cxrdesk.ui.paths import data_dir  # noqa: E402
from tests.test_ui_app import make_window  # noqa: E402, F401 - a fixture: windows closed after the test


@pytest.fixture
def window(make_window):
    return make_window()  # no model: these tests need none


def film(h=64, w=64, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, (h, w)).astype(np.uint16)


def show_doc(w, data, synthetic=True, **kw):
    w.set_document(Document(data=data, bits=12, title="test", kind="generated" if synthetic else "file",
                            synthetic=synthetic, **kw))


def grey_levels(view: ImageView, y: int, x0: int, x1: int) -> int:
    img = view.grab().toImage()
    return len({img.pixelColor(x, y).red() for x in range(x0, x1)})


# ---------------------------------------------------------------------------------------- item 2
def test_magnified_film_is_smooth_unless_pixels_are_asked_for(make_window, qtbot):
    w = make_window()
    stripes = np.zeros((32, 32), np.uint16)
    stripes[:, ::2] = 4095  # one-pixel stripes: nearest neighbour gives two greys, bicubic many
    show_doc(w, stripes)
    v = w.view
    v.zoom_by(12.0 / v.scale())  # a 12x magnification about the centre
    assert v.scale() == pytest.approx(12.0)
    cx, cy = v.width() // 2, v.height() // 2
    assert not w.act_pixels.isChecked() and not v.shows_pixels()
    assert grey_levels(v, cy, cx - 48, cx + 48) > 8
    # View > Show pixels: each image pixel a square of one grey
    assert w.act_pixels in w.menuBar().actions()[3].menu().actions()
    w.act_pixels.trigger()
    assert v.shows_pixels() and w.viewer.view_b.shows_pixels()
    assert grey_levels(v, cy, cx - 48, cx + 48) <= 2
    # at 1:1 the film is drawn exactly either way
    w.act_pixels.trigger()
    v.zoom_1to1()
    img = v.grab().toImage()
    tl = v.image_to_widget(QPointF(0, 0))
    row = [img.pixelColor(int(tl.x()) + k, int(tl.y()) + 3).red() for k in range(8)]
    assert row == [255, 0] * 4
    # the choice is saved with the settings
    w.act_pixels.trigger()
    w.close()
    assert make_window().act_pixels.isChecked()


# ---------------------------------------------------------------------------------------- item 10 (part)
def test_magnifier_shows_the_film_larger_under_the_cursor(window, qtbot):
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    w = window
    dot = np.zeros((64, 64), np.uint16)
    dot[30:34, 30:34] = 4095
    show_doc(w, dot)
    v = w.view
    at = v.image_to_widget(QPointF(32, 32))
    QApplication.sendEvent(v, QMouseEvent(QEvent.MouseMove, at, v.mapToGlobal(at), Qt.NoButton, Qt.NoButton,
                                          Qt.NoModifier))

    def white_run() -> int:  # white pixels along the row through the cursor
        img = v.grab().toImage()
        # white, not the red frame of a synthetic film at the view's edges
        return sum(min(img.pixelColor(x, int(at.y())).getRgb()[:3]) > 128 for x in range(v.width()))

    plain = white_run()
    assert plain == pytest.approx(4 * v.scale(), rel=0.15)
    v.setFocus()
    qtbot.keyClick(v, Qt.Key_L)
    assert w.act_magnifier.isChecked() and v.magnifier()
    assert white_run() == pytest.approx(3 * plain, rel=0.15)
    qtbot.keyClick(v, Qt.Key_L)
    assert not v.magnifier() and white_run() == plain


# ---------------------------------------------------------------------------------------- item 3
def test_notices_sit_at_the_bottom_edge_above_the_other_boxes(window, qtbot):
    w = window
    show_doc(w, film(256, 256))
    v = w.view
    w.act_present.trigger()
    assert "F11 or Esc" in v.notice()
    assert v._notice_timer.interval() == NOTICE_MS <= 2500  # brief
    v.grab()
    r = v.notice_rect()
    middle = QRectF(v.width() * 0.25, v.height() * 0.25, v.width() * 0.5, v.height() * 0.5)
    assert not r.isEmpty() and r.top() > v.height() * 0.75 and not r.intersects(middle)
    w.set_presentation(False)
    # with an attention overlay and two measurement lines, the notice goes above their labels
    v.set_overlay(np.linspace(0, 1, 256 * 256).reshape(256, 256), "effusion")
    v._lines = [(QPointF(20, 20), QPointF(120, 20)), (QPointF(20, 60), QPointF(220, 60))]
    v.show_notice("2 / 3")
    v.grab()
    r = v.notice_rect()
    assert r.bottom() < v.height() - 2 * v.fontMetrics().height()
    assert r.top() > v.height() / 2
    # a narrow view: lifted above the corner boxes rather than over them
    v.clear_overlay()
    v.clear_measurements()
    w.viewer.setFixedWidth(300)
    qtbot.waitUntil(lambda: v.width() <= 300)
    v.show_notice("A long notice that needs most of the width of this narrow view")
    v.grab()
    corner, _ = v._box_rect("W 4096  C 2048\nZoom 100%", "bottom-left")
    assert not v.notice_rect().intersects(corner) and v.notice_rect().top() > v.height() / 2
    # the placeholder keeps the middle; its notice is at the bottom too
    v.set_image(None)
    v.show_notice("Generation cancelled")
    v.grab()
    assert v.notice_rect().top() > v.height() * 0.6


# ---------------------------------------------------------------------------------------- item 4
def test_r_resets_window_and_inversion_and_the_preset_message(window, qtbot):
    w = window
    show_doc(w, film())
    w.act_presets["Bone"].trigger()
    assert "Bone" in w.statusBar().currentMessage()
    w.view.setFocus()
    qtbot.keyClick(w.view, Qt.Key_I)
    assert w.view.inverted()
    qtbot.keyClick(w.view, Qt.Key_R)
    assert not w.view.inverted() and w.view.window() == imaging.full_window(12)
    assert "Bone" not in w.statusBar().currentMessage()
    assert "inversion" in w.act_reset_wl.text() and "R" in w.act_reset_wl.toolTip()
    # both panes when comparing
    show_doc(w, film(seed=1))
    w.act_compare.trigger()
    assert w.viewer.is_compare()
    w.act_presets["Lung"].trigger()
    w.act_invert.trigger()
    assert w.viewer.view_b.inverted()
    w.act_reset_wl.trigger()
    for v in (w.view, w.viewer.view_b):
        assert not v.inverted() and v.window() == v.default_window()


# ---------------------------------------------------------------------------------------- item 5
def test_dataset_browser_opens_the_configured_dataset_captioned_with_findings(qtbot, make_window, dataset_dir,
                                                                              monkeypatch):
    monkeypatch.delenv("CXRDESK_DATASET", raising=False)
    w = make_window()
    d = w.dataset
    assert d.start_folder() == str(data_dir())  # nothing open, nothing before: cxrdesk's data folder
    w.close()
    monkeypatch.setenv("CXRDESK_DATASET", str(dataset_dir))
    w = make_window()
    d = w.dataset
    qtbot.waitUntil(lambda: d.model.rowCount() == 7, timeout=30000)
    assert d.start_folder() == str(dataset_dir)
    caps = [d.model.data(d.model.index(r), Qt.DisplayRole) for r in range(6)]
    assert caps == ["No finding", "Effusion", "Pneumonia", "Cardiomegaly", "Effusion, Cardiomegaly", "No finding"]
    assert "img04.png" in d.model.data(d.model.index(4), Qt.ToolTipRole)  # the file name stays at hand
    assert d.list.wordWrap()
    # the label filter is wide enough to read its longest entry
    longest = max((d.label_box.itemText(i) for i in range(d.label_box.count())), key=len)
    assert d.label_box.width() >= d.label_box.fontMetrics().horizontalAdvance(longest)
    # the last dataset is saved and comes back without the variable
    w.close()
    monkeypatch.delenv("CXRDESK_DATASET")
    w = make_window()
    qtbot.waitUntil(lambda: w.dataset.model.rowCount() == 7, timeout=30000)


def test_real_films_with_the_prompts_findings_in_one_click(qtbot, window, dataset_dir, monkeypatch):
    w = window
    g, d = w.generator, w.dataset
    assert prompt_findings("Normal chest radiograph. No pleural effusion.") == ["No Finding"]
    g.set_prompt("Clear lungs.")
    g.set_prompt("Cardiomegaly with bilateral effusions. No pneumothorax.")
    assert g.real_button.isEnabled() and "Cardiomegaly + Effusion" in g.real_button.toolTip()
    # no dataset open yet: the folder dialog (starting in the data folder) asks for one
    asked = []

    def choose(parent, title, start):
        asked.append(start)
        return str(dataset_dir)

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(choose))
    with qtbot.waitSignal(d.folderOpened, timeout=30000):
        g.real_button.click()
    assert asked == [str(data_dir())]
    assert d.proxy.rowCount() == 1 and d.proxy.data(d.proxy.index(0, 0), RecordRole).uid == "u4"
    assert d.label_box.currentText() == "Cardiomegaly + Effusion (1)"
    assert "1 of 7 images shown" in d.folder_label.text()
    assert w.dock_dataset.isVisible()
    # a dataset open: the filter changes at once; one finding selects its label entry
    g.set_prompt("Small left pleural effusion.")
    g.real_button.click()
    assert d.label_box.currentData() == "Effusion" and d.proxy.rowCount() == 2
    assert not any(isinstance(d.label_box.itemData(i), list) for i in range(d.label_box.count()))
    g.set_prompt("A chest radiograph")
    assert not g.real_button.isEnabled()


# ---------------------------------------------------------------------------------------- items 6, 7
def accept_with(monkeypatch, path, **fields):
    """Make the export dialogs accept at once (after filling ``fields``) and the file dialog answer."""
    def exec_(dlg):
        for key, value in fields.items():
            if key == "bits":
                dlg.bits.setCurrentIndex(dlg.bits.findData(value))
                continue
            widget = getattr(dlg, key, None) or dlg.identity[key]
            widget.setText(value) if isinstance(widget, QLineEdit) else widget.setChecked(value)
        return QDialog.Accepted

    monkeypatch.setattr(ExportDialog, "exec", exec_)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), "")))


def test_dicom_export_dialog_names_patient_study_and_series(window, tmp_path, monkeypatch):
    pydicom = pytest.importorskip("pydicom")
    from cxrdesk.core.dicom import writer
    w = window
    show_doc(w, film())
    dlg = ExportDialog("DICOM", w.settings, w)
    assert set(dlg.identity) == {"patient_name", "patient_id", "study_description", "series_description"}
    assert dlg.identity["patient_name"].placeholderText() == writer.DEFAULT_PATIENT_NAME
    assert all(e.text() == "" and e.toolTip() for e in dlg.identity.values())
    # defaults: still synthetic
    accept_with(monkeypatch, tmp_path / "a.dcm")
    w.export_dicom_dialog()
    a = pydicom.dcmread(tmp_path / "a.dcm")
    assert str(a.PatientName) == writer.DEFAULT_PATIENT_NAME and a.PatientID == writer.DEFAULT_PATIENT_ID
    # a case of its own: a new study, the disclaimer kept in front of the series description
    accept_with(monkeypatch, tmp_path / "b.dcm", patient_name="TEACHING^CASE01", patient_id="CASE01",
                study_description="Lecture 3: effusions", series_description="case 1")
    w.export_dicom_dialog()
    b = pydicom.dcmread(tmp_path / "b.dcm")
    assert str(b.PatientName) == "TEACHING^CASE01" and b.PatientID == "CASE01"
    assert b.StudyDescription == "Lecture 3: effusions"
    assert b.SeriesDescription.startswith(writer.DISCLAIMER) and b.SeriesDescription.endswith("case 1")
    assert b.StudyInstanceUID != a.StudyInstanceUID and b.SyntheticData == "YES"
    # the fields are remembered; the same case again goes into the same series
    dlg = ExportDialog("DICOM", w.settings, w)
    assert dlg.identity["patient_id"].text() == "CASE01"
    w.export_dicom_dialog()
    c = pydicom.dcmread(tmp_path / "b.dcm")
    assert c.SeriesInstanceUID == b.SeriesInstanceUID and int(c.InstanceNumber) == int(b.InstanceNumber) + 1


def test_png_export_looks_like_the_screen_by_default(window, tmp_path, monkeypatch):
    from PIL import Image

    from cxrdesk.core.imaging.pngio import read_png

    w = window
    stored = film(48, 40)
    show_doc(w, stored)
    w.act_presets["Lung"].trigger()
    w.act_invert.trigger()
    dlg = ExportDialog("PNG", w.settings, w)
    assert dlg.as_shown.isChecked() and not dlg.full_range.isChecked()
    accept_with(monkeypatch, tmp_path / "s.png", bits=8)
    w.export_png_dialog()
    pixels = np.asarray(Image.open(tmp_path / "s.png"))
    np.testing.assert_array_equal(pixels, w.view.rendered())  # window and inversion, as on screen
    assert read_png(tmp_path / "s.png").metadata.get("inverted") is True
    # the full range on request (and remembered)
    accept_with(monkeypatch, tmp_path / "full.png", full_range=True, bits=16)
    w.export_png_dialog()
    np.testing.assert_array_equal(read_png(tmp_path / "full.png").pixels, stored)
    assert ExportDialog("PNG", w.settings, w).full_range.isChecked()


# ---------------------------------------------------------------------------------------- item 8
def test_attention_overlay_says_what_it_is(window):
    w = window
    v = w.view
    show_doc(w, film())
    plain_tip = v.toolTip()
    v.set_overlay(np.random.default_rng(0).random((64, 64)), "effusion")
    caption = overlay_caption("effusion")
    assert "where the model looked for 'effusion' while drawing" in caption.lower()
    assert "not the location of a finding" in caption.lower()
    assert "not a localisation of a finding" in v.toolTip() and "looked for this word" in v.toolTip()
    v.grab()  # drawn with the overlay without trouble
    v.clear_overlay()
    assert v.toolTip() == plain_tip
    for tip in (w.act_highlight.toolTip(), w.generator.highlight_check.toolTip()):
        assert "looked for" in tip and "not where" in tip


# ---------------------------------------------------------------------------------------- item 9
CHECK = {"findings": [
    {"label": "No Finding", "expected": "normal", "n": 16, "real_n": 40,
     "generated": {"normal": 1.0, "covid": 0.0, "other": 0.0}, "real": {"normal": 0.8, "covid": 0.0, "other": 0.2}},
    {"label": "Pneumonia", "expected": "other", "n": 16, "real_n": 39,
     "generated": {"normal": 0.0, "covid": 1.0, "other": 0.0}, "real": {"normal": 0.2, "covid": 0.0, "other": 0.8}},
]}
CARD = ("# m (v1: UNet step 10100, DPM++ 2M Karras)\n\n| component | details |\n| --- | --- |\n"
        "| UNet | " + "a_very_long_unbreakable_cell_" * 8 + " |\n\n```\n" + "torchrun --nproc 2 " * 20 + "\n```\n")


def test_model_panel_starts_with_a_summary_for_instructors(qtbot):
    p = ModelPanel()
    qtbot.addWidget(p)
    p.resize(330, 800)
    p.show()
    qtbot.waitExposed(p)
    p.set_info({"name": "m", "native_size": 256, "model_card": CARD, "findings_check": CHECK,
                "training": {"label_counts": {"No Finding": 900, "Pneumonia": 500, "Cardiomegaly": 13}}})
    text = p.summary.text()
    assert p.summary.isVisible() and p.summary.wordWrap()
    assert "Draws well:</b> normal films" in text
    assert "pneumonia (the films look COVID-19-like)" in text
    assert "Cannot draw</b> (under 100 training films each): cardiomegaly" in text
    assert "Reading the warnings" in text and "not where a finding is" in text
    # the summary comes first; the components and the card follow
    components = p.form.parentWidget()
    assert p.summary.mapTo(p, p.summary.rect().topLeft()).y() < components.mapTo(p, components.rect().topLeft()).y()
    # nothing runs off the panel: table and code wrap to the card's width
    qtbot.waitUntil(lambda: p.card.horizontalScrollBar().maximum() == 0)
    assert p.card.document().idealWidth() <= p.card.viewport().width()
    p.set_info({"name": "t", "random_weights": True})
    assert "random weights" in p.summary.text()


# ---------------------------------------------------------------------------------------- item 11 (part)
def test_shortcut_list_fits_the_screen_and_ok_gives_the_image_its_keys_back(window, qtbot):
    """F1's list was a message box taller than a 1000-pixel screen (seen under Xvfb with openbox): its
    OK button was off the screen. It fits now, scrolling where it must; OK gives the image its focus back."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QDialogButtonBox, QTextBrowser

    w = window
    show_doc(w, film(), params={"prompt": "right pleural effusion"})
    w.activateWindow()
    w.view.setFocus()
    qtbot.waitUntil(w.view.hasFocus)
    seen = {}

    def look_and_close():
        dlg = QApplication.activeModalWidget()
        if dlg is None:
            QTimer.singleShot(50, look_and_close)
            return
        avail = dlg.screen().availableGeometry()
        ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.Ok)
        seen.update(title=dlg.windowTitle(), size=dlg.size(), avail=avail,
                    ok_on_screen=avail.contains(ok.mapToGlobal(ok.rect().bottomRight())),
                    text=dlg.findChild(QTextBrowser).toPlainText())
        qtbot.mouseClick(ok, Qt.LeftButton)

    QTimer.singleShot(0, look_and_close)
    w.act_keys.trigger()  # F1
    assert seen["title"] == "Keyboard shortcuts"
    assert seen["size"].height() <= seen["avail"].height() and seen["size"].width() <= seen["avail"].width()
    assert seen["ok_on_screen"]
    assert "Show the prompt" in seen["text"] and "Right drag" in seen["text"]
    qtbot.waitUntil(w.view.hasFocus)
    qtbot.keyClick(w.view, Qt.Key_P)  # the image's keys work at once
    assert w.act_reveal.isChecked()
