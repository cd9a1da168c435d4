"""Edit a film in the app (issue 29): brush, eraser, undo, Lungs on the image view; the Edit region
panel runs Pipeline.edit on the model worker; the result opens in compare, outlined, in the history."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QApplication, QComboBox, QLineEdit  # noqa: E402

from cxrdesk.core.generation.editing import DEFAULT_STRENGTH, feather_weights, lung_field_mask  # noqa: E402
from cxrdesk.ui import edit_panel as ep  # noqa: E402
from cxrdesk.ui.mainwindow import Document  # noqa: E402
from tests.test_ui_app import GEN_TIMEOUT, make_window  # noqa: E402, F401 - a fixture


def film(h=240, w=200, seed=0) -> np.ndarray:
    """A smooth 12-bit film with some texture (uint16)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = 0.6 + 0.3 * np.sin(6 * xx) * np.cos(5 * yy) + 0.03 * rng.standard_normal((h, w))
    return np.round(np.clip(img, 0, 1) * 4095).astype(np.uint16)


def show(w, data, synthetic=False):
    w.set_document(Document(data=data, bits=12, title="a test film", kind="file", synthetic=synthetic))


def focus_view(qtbot, w):
    """The window active and the view focused, so that the window's shortcuts reach their actions."""
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    w.view.setFocus()


def _mouse(view, kind, pos: QPointF, button=Qt.LeftButton):
    buttons = Qt.NoButton if kind == QEvent.MouseButtonRelease else button
    ev = QMouseEvent(kind, pos, view.mapToGlobal(pos), button if kind != QEvent.MouseMove else Qt.NoButton,
                     buttons, Qt.NoModifier)
    QApplication.sendEvent(view, ev)


def stroke(view, points):
    """A left drag through ``points`` (image coordinates)."""
    pts = [view.image_to_widget(QPointF(x, y)) for x, y in points]
    _mouse(view, QEvent.MouseButtonPress, pts[0])
    for p in pts[1:]:
        _mouse(view, QEvent.MouseMove, p)
    _mouse(view, QEvent.MouseButtonRelease, pts[-1])


@pytest.fixture
def window(make_window, tiny_model_dir):
    w = make_window(tiny_model_dir)
    w.dock_edit.show()
    w.dock_edit.raise_()
    return w


# ------------------------------------------------------------------------------ painting
def test_brush_eraser_size_undo_clear_and_lungs_paint_a_mask_not_the_pixels(make_window, qtbot):
    w = make_window()  # no model needed to paint
    e = w.edit_panel
    data = film()
    show(w, data)
    v = w.view
    before = v.rendered()
    assert e.mask() is None and "Nothing painted" in e.area_label.text()
    # B: the brush; a drag paints a band of the brush's width along the stroke
    focus_view(qtbot, w)
    qtbot.keyClick(v, Qt.Key_B)
    assert e.layer.tool == "brush" and e.brush_button.isChecked() and e.act_brush.isChecked()
    e.size_spin.setValue(6)
    stroke(v, [(40, 100), (80, 100), (120, 100)])
    m = e.mask()
    assert m is not None and m.shape == data.shape
    assert m[100, 40:121].all() and m[94:107, 80].all() and not m[90, 80] and not m[100, 150]
    # the mask is an overlay: the film's pixels and its rendering are untouched
    np.testing.assert_array_equal(v.image(), data)
    np.testing.assert_array_equal(v.rendered(), before)
    shot = v.grab().toImage()
    c = shot.pixelColor(v.image_to_widget(QPointF(80.5, 100.5)).toPoint())
    assert c.red() > c.green() + 20  # tinted magenta where painted
    # [ and ]: brush size
    qtbot.keyClick(v, Qt.Key_BracketRight)
    assert e.size_spin.value() > 6 and e.layer.radius == e.size_spin.value()
    qtbot.keyClick(v, Qt.Key_BracketLeft)
    qtbot.keyClick(v, Qt.Key_BracketLeft)
    assert e.layer.radius < 6
    # E: the eraser takes out part of the band
    qtbot.keyClick(v, Qt.Key_E)
    assert e.layer.tool == "eraser" and not e.brush_button.isChecked() and e.eraser_button.isChecked()
    stroke(v, [(80, 90), (80, 110)])
    assert not e.mask()[100, 80] and e.mask()[100, 40]
    # Ctrl+Z undoes one stroke at a time
    qtbot.keyClick(v, Qt.Key_Z, Qt.ControlModifier)
    assert e.mask()[100, 80]
    qtbot.keyClick(v, Qt.Key_Z, Qt.ControlModifier)
    assert e.mask() is None
    # Lungs: the default lung-field mask at the film's size; Clear; undo brings it back
    qtbot.mouseClick(e.lungs_button, Qt.LeftButton)
    np.testing.assert_array_equal(e.mask(), lung_field_mask(data.shape))
    assert "of the film" in e.area_label.text()
    qtbot.mouseClick(e.clear_button, Qt.LeftButton)
    assert e.mask() is None
    qtbot.mouseClick(e.undo_button, Qt.LeftButton)
    np.testing.assert_array_equal(e.mask(), lung_field_mask(data.shape))
    # the painted region belongs to its film: another film clears it (Ctrl+Z restores it)
    show(w, film(seed=1))
    assert e.mask() is None
    qtbot.keyClick(v, Qt.Key_E)  # the eraser off again: left drag pans as before
    assert e.layer.tool == ""


def test_shortcuts_are_listed_and_every_edit_control_has_a_tooltip(make_window, qtbot, monkeypatch):
    w = make_window()
    w.dock_edit.show()
    w.dock_edit.raise_()
    keys = {a.text(): [s.toString() for s in a.shortcuts()] for a in w.actions()}
    assert keys["Edit &brush"] == ["B"] and keys["Edit &eraser"] == ["E"]
    assert keys["Smaller brush"] == ["["] and keys["Larger brush"] == ["]"]
    assert keys["&Undo stroke"] == ["Ctrl+Z"] and keys["Edit &region"] == ["Ctrl+E"]
    shown = []
    monkeypatch.setattr("cxrdesk.ui.mainwindow.show_html", lambda *a: shown.append(a[2]))
    w.show_shortcuts()
    for text in ("Edit brush", "Edit eraser", "Smaller brush", "Larger brush", "Undo stroke", "Edit region",
                 "Cancel edit"):
        assert text in shown[0]
    missing = [f"{type(x).__name__} {getattr(x, 'text', lambda: '')()!r}"
               for cls in (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit)
               for x in w.edit_panel.findChildren(cls)
               if not x.toolTip() and not isinstance(x.parent(), (QComboBox, QAbstractSpinBox, QLineEdit))]
    assert not missing, missing
    assert w.edit_panel.strength_spin.value() == pytest.approx(DEFAULT_STRENGTH)


# ------------------------------------------------------------------------------ messages
def test_no_film_empty_mask_whole_film_and_no_model_are_one_line_messages(window, qtbot, make_window, tmp_path):
    w, e = window, window.edit_panel
    e.prompt_edit.setText("clear lungs")
    assert not e.request_edit()
    assert e.message_label.text() == ep.NO_FILM and e.message_label.isVisibleTo(e)
    show(w, film())
    focus_view(qtbot, w)
    qtbot.keyClick(w.view, Qt.Key_E, Qt.ControlModifier)  # Ctrl+E with nothing painted
    assert e.message_label.text() == ep.NO_MASK and not e.is_running()
    # the whole film painted: the core's one line, no traceback
    e.layer.fill(np.ones(film().shape, bool))
    e.steps_spin.setValue(2)
    with qtbot.waitSignal(e.editDone, timeout=GEN_TIMEOUT) as blocker:
        assert e.request_edit()
    status, msg = blocker.args
    assert status == "error" and "whole film" in msg
    text = e.message_label.text()
    assert "whole film" in text and "\n" not in text and "Traceback" not in text
    assert w.history.entries() == [] and not w.viewer.is_compare()
    np.testing.assert_array_equal(w.view.image(), film())
    # no model
    w2 = make_window(tmp_path / "no-model-here")
    w2.load_model()
    qtbot.waitUntil(lambda: w2.model_state == "failed", timeout=GEN_TIMEOUT)
    show(w2, film())
    w2.edit_panel.layer.fill(lung_field_mask(film().shape))
    w2.edit_panel.prompt_edit.setText("clear lungs")
    assert not w2.edit_panel.request_edit()
    assert w2.edit_panel.message_label.text() == ep.NO_MODEL


# ------------------------------------------------------------------------------ the edit
def test_edit_region_previews_then_compare_history_and_synthetic_exports(window, qtbot, tmp_path):
    w, e = window, window.edit_panel
    data = film()
    show(w, data)
    original_doc = w.doc
    focus_view(qtbot, w)
    qtbot.keyClick(w.view, Qt.Key_B)
    e.size_spin.setValue(14)
    stroke(w.view, [(60, 80), (100, 110), (140, 150)])
    mask = e.mask()
    e.prompt_edit.setText("left pleural effusion")
    e.steps_spin.setValue(2)
    e.strength_spin.setValue(1.0)
    e.random_seed_check.setChecked(False)
    e.seed_spin.setValue(11)
    previews = []
    w.previewShown.connect(lambda s, t: previews.append((s, t)))
    with qtbot.waitSignal(e.editDone, timeout=GEN_TIMEOUT) as blocker:
        qtbot.mouseClick(e.edit_button, Qt.LeftButton)
        assert e.is_running() and e.cancel_button.isEnabled() and not e.edit_button.isEnabled()
        assert w.edit_panel.layer.tool == ""  # no painting while the region is redrawn
    status, msg = blocker.args
    assert status == "done", msg
    assert previews and all(t == 2 for _, t in previews)
    # the history gains an edited film
    entries = w.history.entries()
    assert len(entries) == 1
    entry = entries[0]
    assert entry.params["edit"]["derived_from"] == "an edited film" and entry.seed == 11
    assert entry.params["edit"]["mask_area"] == pytest.approx(mask.mean(), abs=1e-3)
    assert w.history.list.item(0).text().startswith("edited, seed 11")
    assert "an edited film" in w.history.list.item(0).toolTip()
    # shown in compare: left the edited film, right the original; both outlined
    assert w.viewer.is_compare() and w.act_compare.isChecked()
    result = w.view.image()
    np.testing.assert_array_equal(result, entry.image())
    np.testing.assert_array_equal(w.viewer.view_b.image(), data)
    assert w.doc.title.startswith("Edited") and w.doc.synthetic and w.doc.exportable
    assert w.prev_doc is original_doc
    assert e.layer.has_outline() and e.layer_b.has_outline() and not e.layer.show_fill
    # beyond the feather: the original's pixels exactly; inside: redrawn
    far = feather_weights(mask, entry.params["edit"]["feather_px"]) == 0
    assert far.mean() > 0.5
    np.testing.assert_array_equal(result[far], data[far])
    assert np.abs(result[mask].astype(int) - data[mask]).mean() > 20
    # the exports are synthetic, and say the film was edited
    from cxrdesk.core.imaging.pngio import read_png

    png = w.export_png(str(tmp_path / "edited.png"), bits=16, apply_window=False)
    assert isinstance(read_png(png).metadata.get("edit"), dict)
    import pydicom

    dcm = pydicom.dcmread(w.export_dicom(str(tmp_path / "edited.dcm")))
    assert "edited" in dcm.DerivationDescription and dcm.ImageType[0] == "DERIVED"
    # shown again from the history strip: labelled as edited
    show(w, film(seed=2))
    w.show_entry(entry)
    assert w.doc.title.startswith("Edited")


def test_cancel_an_edit_with_escape(window, qtbot):
    w, e = window, window.edit_panel
    data = film()
    show(w, data)
    qtbot.mouseClick(e.lungs_button, Qt.LeftButton)
    e.prompt_edit.setText("clear lungs")
    e.steps_spin.setValue(200)
    e.strength_spin.setValue(1.0)
    with qtbot.waitSignal(w.previewShown, timeout=GEN_TIMEOUT):
        e.request_edit()
    assert not w.act_cancel.isEnabled() and e.act_cancel.isEnabled()  # Esc belongs to the edit
    assert not w.generator.generate_button.isEnabled()
    with qtbot.waitSignal(e.editDone, timeout=GEN_TIMEOUT) as blocker:
        focus_view(qtbot, w)
        qtbot.keyClick(w.view, Qt.Key_Escape)
    assert blocker.args[0] == "cancelled"
    assert w.history.entries() == []
    assert not w.viewer.is_compare() and not e.is_running()
    np.testing.assert_array_equal(w.view.image(), data)  # the film again, not the last preview
    assert "cancelled" in e.message_label.text().lower()
    np.testing.assert_array_equal(e.mask(), lung_field_mask(data.shape))  # the region is kept for another try
    assert e.edit_button.isEnabled() and w.generator.generate_button.isEnabled()
