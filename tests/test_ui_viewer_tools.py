"""Viewer tools of issue 33: flip and rotate on screen, arrow and text annotations over the film (kept
with the result, drawn into exports as on screen), and a start that shows the first film sooner
(faster graphs prepared after it; "model's default" adherence until a model is loaded)."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402

from cxrdesk.ui import viewtools  # noqa: E402
from cxrdesk.ui.generator_panel import MODEL_DEFAULT_TEXT  # noqa: E402
from cxrdesk.ui.mainwindow import Document  # noqa: E402
from tests.test_ui_app import GEN_TIMEOUT, _generate, _set_quick, make_window  # noqa: E402, F401


@pytest.fixture
def window(make_window):
    return make_window()  # no model


def marker_film() -> np.ndarray:
    """A 40x60 film, dark, with one bright block near the top-left corner."""
    a = np.full((40, 60), 300, np.uint16)
    a[2:8, 3:12] = 4095
    return a


def show(w, data, synthetic=False):
    w.set_document(Document(data=data, bits=12, title="t", kind="generated" if synthetic else "file",
                            synthetic=synthetic))


def screen_grey(v, ix: float, iy: float) -> int:
    """The grey on screen where image point (ix, iy) is drawn."""
    p = v.image_to_widget(QPointF(ix, iy))
    return v.grab().toImage().pixelColor(int(p.x()), int(p.y())).red()


# ------------------------------------------------------------------------------------ orientation
def test_orientation_matrices_match_numpy():
    a = np.arange(12).reshape(3, 4)
    assert np.array_equal(viewtools.oriented(a, viewtools.FLIP_H), a[:, ::-1])
    assert np.array_equal(viewtools.oriented(a, viewtools.FLIP_V), a[::-1])
    assert np.array_equal(viewtools.oriented(a, viewtools.ROTATE_CW), np.rot90(a, -1))
    assert np.array_equal(viewtools.oriented(a, viewtools.ROTATE_CCW), np.rot90(a, 1))
    m = viewtools.IDENTITY
    for _ in range(4):
        m = viewtools.compose(viewtools.ROTATE_CW, m)
    assert m == viewtools.IDENTITY
    # a point follows its pixel: the centre of pixel (x=1, y=0) after a clockwise turn
    x, y = viewtools.orient_point(1.5, 0.5, viewtools.ROTATE_CW, a.shape)
    assert np.rot90(a, -1)[int(y), int(x)] == a[0, 1]


def test_flip_and_rotate_are_display_only(window, qtbot):
    w = window
    film = marker_film()
    show(w, film)
    v = w.view
    stored = v.image().copy()
    tl = v.image_to_widget(QPointF(6, 4))
    w.act_flip_h.trigger()
    assert v.orientation() == viewtools.FLIP_H
    # the bright block is now drawn at the top right; the stored film is unchanged
    p = v.image_to_widget(QPointF(6, 4))
    assert p.x() > v.width() / 2 > tl.x() and abs(p.y() - tl.y()) < 1
    assert screen_grey(v, 6, 4) > 200 and v.grab().toImage().pixelColor(int(tl.x()), int(tl.y())).red() < 100
    np.testing.assert_array_equal(v.image(), stored)
    # a quarter turn swaps the fitted shape; mapping both ways round-trips
    w.act_flip_h.trigger()
    w.act_rot_cw.trigger()
    r = v.image_rect()
    assert r.height() > r.width()  # 60 wide film now stands
    q = v.widget_to_image(v.image_to_widget(QPointF(13.25, 7.5)))
    assert (q.x(), q.y()) == pytest.approx((13.25, 7.5))
    assert screen_grey(v, 6, 4) > 200 and screen_grey(v, 40, 30) < 100
    # magnified (the bicubic path) and rotated: still drawn where the mapping says
    v.zoom_by(4.0)
    assert screen_grey(v, 30, 20) < 100
    v.set_view_state({"fit": False, "rel": 3.0, "px": 0.12, "py": 0.12})
    assert screen_grey(v, 7, 5) > 200
    # Copy image is as shown: oriented
    assert w.copy_image()
    img = QGuiApplication.clipboard().image()
    assert (img.width(), img.height()) == (40, 60)
    w.act_orient_reset.trigger()
    assert v.orientation() == viewtools.IDENTITY
    w.act_rot_ccw.trigger()
    w.act_flip_v.trigger()
    assert v.orientation() == viewtools.compose(viewtools.FLIP_V, viewtools.ROTATE_CCW)
    # a new image comes in its own orientation
    show(w, marker_film())
    assert v.orientation() == viewtools.IDENTITY


def test_compare_panes_turn_together(window, qtbot):
    w = window
    show(w, marker_film())
    show(w, marker_film()[::-1].copy())
    w.act_compare.trigger()
    assert w.viewer.is_compare()
    w.act_rot_cw.trigger()
    assert w.view.orientation() == w.viewer.view_b.orientation() == viewtools.ROTATE_CW


# ------------------------------------------------------------------------------------ annotations
def drag(qtbot, v, a: QPointF, b: QPointF) -> None:
    pa, pb = v.image_to_widget(a).toPoint(), v.image_to_widget(b).toPoint()
    qtbot.mousePress(v, Qt.LeftButton, pos=pa)
    qtbot.mouseMove(v, pos=(pa + pb) / 2)
    qtbot.mouseMove(v, pos=pb)
    qtbot.mouseRelease(v, Qt.LeftButton, pos=pb)


def test_arrow_and_text_annotations_stay_out_of_the_pixels(window, qtbot, monkeypatch):
    w = window
    film = np.full((64, 64), 800, np.uint16)
    show(w, film)
    v = w.view
    before = v.grab().toImage()
    v.setFocus()
    qtbot.keyClick(v, Qt.Key_A)
    assert w.act_arrow.isChecked() and v.annotating() == "arrow"
    drag(qtbot, v, QPointF(10, 50), QPointF(40, 20))
    (arrow,) = v.annotations()
    assert arrow["kind"] == "arrow"
    assert arrow["to"] == pytest.approx([40, 20], abs=0.6) and arrow["from"] == pytest.approx([10, 50], abs=0.6)
    assert v.grab().toImage() != before  # drawn over the view ...
    np.testing.assert_array_equal(v.image(), film)  # ... never into the film
    assert v.rendered().max() == v.rendered().min()
    # text: a click asks for the label
    monkeypatch.setattr("PySide6.QtWidgets.QInputDialog.getText", lambda *a, **k: ("RLL", True))
    w.act_text.trigger()
    assert not w.act_arrow.isChecked() and v.annotating() == "text"
    qtbot.mouseClick(v, Qt.LeftButton, pos=v.image_to_widget(QPointF(12, 12)).toPoint())
    assert [a["kind"] for a in v.annotations()] == ["arrow", "text"] and v.annotations()[1]["text"] == "RLL"
    assert w.doc.annotations == v.annotations()  # kept with the document
    # measuring and annotating exclude each other
    w.act_measure.trigger()
    assert v.is_measuring() and not v.annotating() and not w.act_text.isChecked()
    w.act_measure.trigger()
    # Backspace (on the image) removes the last, Shift+Del clears
    v.setFocus()
    qtbot.keyClick(v, Qt.Key_Backspace)
    assert [a["kind"] for a in v.annotations()] == ["arrow"]
    w.act_clear_annotations.trigger()
    assert v.annotations() == [] and w.doc.annotations == []


def test_annotations_are_saved_with_a_result_and_come_back(window, qtbot, tmp_path):
    w = window
    entry = w.store.save(np.full((64, 64), 1000, np.uint16), {"prompt": "Small left pleural effusion", "seed": 3,
                                                              "steps": 2})
    w.history.add(entry)
    w.show_entry(entry)
    w.view.add_annotation({"kind": "arrow", "from": [5, 5], "to": [30, 30]})
    w.view.add_annotation({"kind": "text", "at": [4, 40], "text": "effusion"})
    saved = json.loads((tmp_path / "x").parent.joinpath(
        entry.image_path.replace(".png", "_annotations.json")).read_text())
    assert [a["kind"] for a in saved["items"]] == ["arrow", "text"]
    show(w, marker_film())
    assert w.view.annotations() == []
    w.show_entry(entry)  # e.g. Page Up back to it, or after a restart
    assert [a["kind"] for a in w.view.annotations()] == ["arrow", "text"]
    # a damaged file gives no annotations, no error
    from pathlib import Path

    Path(entry.image_path.replace(".png", "_annotations.json")).write_text('{"items": [{"kind": "arrow"}, 7]}')
    w.show_entry(entry)
    assert w.view.annotations() == []


def test_png_export_as_on_screen_applies_orientation_and_annotations(window, qtbot, tmp_path):
    from cxrdesk.core.imaging.pngio import read_png

    w = window
    film = np.full((64, 96), 1000, np.uint16)
    film[:8, :8] = 4095
    show(w, film, synthetic=True)
    v = w.view
    v.set_window(2048, 4096)
    v.add_annotation({"kind": "arrow", "from": [60, 50], "to": [80, 30]})
    w.act_rot_cw.trigger()
    out = w.export_png(str(tmp_path / "shown.png"), bits=8, apply_window=True)
    png = read_png(out)
    assert png.pixels.shape == (96, 64)  # turned as on screen
    assert png.pixels[:8, -8:].min() > 3000  # the bright corner went to the top right
    assert png.pixels.max() > png.pixels[20, 20] + 500 and (png.pixels > 3500).sum() > 64  # the arrow, in white
    meta = png.metadata
    assert meta["annotations"]["drawn_in"] is True and meta["view_orientation"]["applied"] is True
    # the full stored range: the film as stored, annotations and orientation only recorded
    full = read_png(w.export_png(str(tmp_path / "full.png"), bits=16, apply_window=False))
    np.testing.assert_array_equal(full.pixels, film)
    assert full.metadata["annotations"]["drawn_in"] is False
    assert full.metadata["annotations"]["items"] == v.annotations()
    np.testing.assert_array_equal(v.image(), film)


def test_help_lists_the_viewer_tools(window, qtbot, monkeypatch):
    shown = {}
    monkeypatch.setattr("cxrdesk.ui.mainwindow.show_html",
                        lambda parent, title, text: shown.update(text=text))
    window.show_shortcuts()
    for words in ("Flip horizontally", "Rotate 90", "Original orientation", "Arrow", "Text label",
                  "Remove the last annotation", "Clear annotations", "Shift+H", "Shift+R"):
        assert words in shown["text"], words
    for a in (window.act_flip_h, window.act_arrow, window.act_text, window.act_rot_cw):
        assert "(" in a.toolTip() and "on screen" in a.toolTip() or "over the film" in a.toolTip()


# ------------------------------------------------------------------------------------ start-up
def test_adherence_says_models_default_until_a_model_is_loaded(make_window, qtbot, tiny_model_dir, tmp_path):
    from tests.fixtures import model_copy_recommending

    g7 = model_copy_recommending(tiny_model_dir, tmp_path / "g7", 7.0)
    w = make_window(tmp_path / "missing")
    spin = w.generator.guidance_spin
    assert spin.text() == MODEL_DEFAULT_TEXT and w.generator.job_params()["guidance_scale"] is None
    assert "once the model is loaded" in spin.toolTip()
    w.model_panel.loadFolderRequested.emit(str(g7))
    qtbot.waitUntil(lambda: w.model_state == "loaded", timeout=GEN_TIMEOUT)
    assert spin.text() == "7.0" and w.generator.job_params()["guidance_scale"] == 7.0
    spin.setValue(0.0)  # 0 is a number, not the placeholder
    assert spin.text() == "0.0" and w.generator.job_params()["guidance_scale"] == 0.0


def test_first_film_does_not_wait_for_the_faster_graphs(make_window, qtbot, tiny_model_dir):
    w = make_window()
    w.host.worker.model_path = str(tiny_model_dir)
    _set_quick(w, steps=2, seed=5)
    assert w.generator.job_params()["guidance_scale"] is None  # the model's own, when it comes
    status, msg = _generate(qtbot, w)  # the model loads with this job
    assert status == "done", msg
    first = w.history.entries()[-1]
    assert first.params["unet_engine"] == "eager" and first.params["guidance_scale"] == w.model_info["guidance"]
    qtbot.waitUntil(w.host.worker.warm_ready.is_set, timeout=GEN_TIMEOUT)
    qtbot.waitUntil(lambda: "warm-up" in w.model_panel.fields["load"].text())
    status, msg = _generate(qtbot, w)
    assert status == "done", msg
    assert w.history.entries()[-1].params["unet_engine"] != "eager"
