"""Image view (W/L drag, zoom, pan, readout), presets, compare linking, enhancement panel."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QLabel  # noqa: E402

from cxrdesk.core.imaging import enhancement, imaging, metrics  # noqa: E402
from cxrdesk.ui.imageview import ImageView  # noqa: E402
from cxrdesk.ui.mainwindow import Document, MainWindow  # noqa: E402


def ramp(h=200, w=240, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 4095, w)[None, :] * np.ones((h, 1))
    x = x + rng.normal(0, 60, (h, w))
    return np.clip(x, 0, 4095).astype(np.uint16)


def drag(view, button, start: QPoint, end: QPoint, steps: int = 5) -> None:
    s, e = QPointF(start), QPointF(end)
    QApplication.sendEvent(view, QMouseEvent(QEvent.MouseButtonPress, s, view.mapToGlobal(s), button, button,
                                             Qt.NoModifier))
    for k in range(1, steps + 1):
        p = s + (e - s) * (k / steps)
        QApplication.sendEvent(view, QMouseEvent(QEvent.MouseMove, p, view.mapToGlobal(p), Qt.NoButton, button,
                                                 Qt.NoModifier))
    QApplication.sendEvent(view, QMouseEvent(QEvent.MouseButtonRelease, e, view.mapToGlobal(e), button,
                                             Qt.NoButton, Qt.NoModifier))


def wheel(view, pos: QPoint, clicks: int = 1) -> None:
    p = QPointF(pos)
    ev = QWheelEvent(p, view.mapToGlobal(p), QPoint(0, 0), QPoint(0, 120 * clicks), Qt.NoButton, Qt.NoModifier,
                     Qt.NoScrollPhase, False)
    QApplication.sendEvent(view, ev)


@pytest.fixture
def view(qtbot):
    v = ImageView()
    qtbot.addWidget(v)
    v.resize(480, 400)
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.fixture
def window(qtbot):
    w = MainWindow(model=None, preload=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def show_doc(w, data, title="test", synthetic=True, **kw):
    w.set_document(Document(data=data, bits=12, title=title, kind="generated" if synthetic else "file",
                            synthetic=synthetic, **kw))


def test_right_drag_changes_window_in_data_units(view):
    img = ramp()
    keep = img.copy()
    view.set_image(img, synthetic=True)
    assert view.window() == imaging.full_window(12)
    before = view.grab().toImage()
    changes = []
    view.windowChanged.connect(lambda c, w: changes.append((c, w)))
    c0, w0 = view.window()
    drag(view, Qt.RightButton, QPoint(200, 200), QPoint(100, 260))  # left: narrower; down: higher center
    c1, w1 = view.window()
    sens = imaging.drag_sensitivity(12, 512.0)
    assert w1 == pytest.approx(w0 - 100 * sens)
    assert c1 == pytest.approx(c0 + 60 * sens)
    assert changes and changes[-1] == (c1, w1)
    np.testing.assert_array_equal(view.image(), keep)  # display transform only
    assert view.grab().toImage() != before  # and the displayed pixels did change
    # the overlay text shows the current values
    assert f"W {w1:.0f}" in _overlay_text(view)


def _overlay_text(view) -> str:
    c, w = view.window()
    return f"W {w:.0f}  C {c:.0f}"


def test_left_drag_pans_and_wheel_zooms(view):
    view.set_image(ramp())
    assert view.is_fit()
    s0 = view.scale()
    wheel(view, QPoint(240, 200), 2)
    assert view.scale() == pytest.approx(s0 * 1.25 ** 2)
    assert not view.is_fit()
    p0 = view.widget_to_image(QPointF(240, 200))
    drag(view, Qt.LeftButton, QPoint(240, 200), QPoint(200, 180))
    p1 = view.widget_to_image(QPointF(240, 200))
    assert p1.x() - p0.x() == pytest.approx(40 / view.scale())
    assert p1.y() - p0.y() == pytest.approx(20 / view.scale())
    view.zoom_1to1()
    assert view.scale() == 1.0
    view.zoom_to_fit()
    assert view.is_fit() and view.scale() == pytest.approx(s0)


def test_pixel_readout_in_data_units(view, qtbot):
    img = ramp()
    view.set_image(img)
    seen = []
    view.pixelHovered.connect(seen.append)
    target = view.image_to_widget(QPointF(120.5, 50.5))
    QApplication.sendEvent(view, QMouseEvent(QEvent.MouseMove, target, view.mapToGlobal(target), Qt.NoButton,
                                             Qt.NoButton, Qt.NoModifier))
    assert seen and seen[-1] == (120, 50, int(img[50, 120]))


def test_presets_invert_reset_and_shortcuts(window, qtbot):
    w = window
    show_doc(w, ramp())
    presets = imaging.window_presets(12)
    for name, act in w.act_presets.items():
        act.trigger()
        assert w.view.window() == presets[name]
    w.view.setFocus()
    qtbot.keyClick(w.view, Qt.Key_I)
    assert w.view.inverted()
    qtbot.keyClick(w.view, Qt.Key_R)
    assert w.view.window() == imaging.full_window(12)
    w.view.zoom_by(2.0)
    qtbot.keyClick(w.view, Qt.Key_F)
    assert w.view.is_fit()
    qtbot.keyClick(w.view, Qt.Key_1)
    assert w.view.scale() == 1.0
    # status bar shows the window
    assert w.wl_label.text() == "W 4096  C 2048"


def test_single_key_shortcuts_do_not_fire_while_typing(window, qtbot):
    w = window
    show_doc(w, ramp())
    w.generator.prompt_edit.setPlainText("")
    w.generator.prompt_edit.setFocus()
    qtbot.keyClicks(w.generator.prompt_edit, "fir")
    assert w.generator.prompt_edit.toPlainText() == "fir"
    assert not w.view.inverted() and w.view.window() == imaging.full_window(12)


def test_synthetic_marker_drawn_on_generated_images(window):
    w = window
    show_doc(w, np.full((64, 64), 1000, np.uint16), synthetic=True)
    img = w.view.grab().toImage()
    # a red label in the top-right corner
    reds = 0
    for x in range(img.width() - 200, img.width() - 10, 4):
        c = img.pixelColor(x, 18)
        reds += c.red() > 150 and c.green() < 90
    assert reds > 10
    show_doc(w, np.full((64, 64), 1000, np.uint16), synthetic=False)
    img = w.view.grab().toImage()
    reds = sum(img.pixelColor(x, 18).red() > 150 and img.pixelColor(x, 18).green() < 90
               for x in range(img.width() - 200, img.width() - 10, 4))
    assert reds == 0


def test_side_by_side_compare_links_zoom_pan_and_window(window, qtbot):
    w = window
    a = ramp(200, 200, 1)
    b = ramp(400, 400, 2)  # a different size: linked in relative terms
    show_doc(w, b, title="first", synthetic=False)
    show_doc(w, a, title="second")
    w.act_compare.setChecked(True)
    assert w.viewer.is_compare()
    va, vb = w.viewer.view, w.viewer.view_b
    np.testing.assert_array_equal(vb.image(), b)
    drag(va, Qt.RightButton, QPoint(100, 100), QPoint(160, 70))
    assert vb.window() == pytest.approx(va.window())
    wheel(va, QPoint(80, 80), 2)
    st_a, st_b = va.view_state(), vb.view_state()
    assert st_b["rel"] == pytest.approx(st_a["rel"])
    assert (st_b["px"], st_b["py"]) == pytest.approx((st_a["px"], st_a["py"]))
    drag(vb, Qt.LeftButton, QPoint(100, 100), QPoint(60, 90))
    assert va.view_state()["px"] == pytest.approx(vb.view_state()["px"])
    w.act_invert.trigger()
    assert va.inverted() and vb.inverted()
    w.act_compare.setChecked(False)
    assert not w.viewer.is_compare()


def test_enhancement_presets_preview_apply_revert(window, qtbot):
    w = window
    img = ramp(128, 128, 3)
    show_doc(w, img)
    e = w.enhance
    for name, params in enhancement.ENHANCEMENT_PRESETS.items():
        e.select_preset(name)
        assert e.params() == params, name
    e.select_preset("High Contrast")
    # moving a slider makes it Custom and is reflected in the parameters
    e.sliders["unsharp_amount"].slider.setValue(e.sliders["unsharp_amount"].slider.value() + 4)
    assert e.preset_box.currentText() == "Custom"
    assert e.params().unsharp_amount == pytest.approx(enhancement.ENHANCEMENT_PRESETS["High Contrast"].unsharp_amount + 0.2)
    e.select_preset("Sharp Detail")
    with qtbot.waitSignal(e.previewReady, timeout=20000) as blk:
        e.preview_check.setChecked(True)
    orig, enh, desc = blk.args
    np.testing.assert_array_equal(orig, img)
    np.testing.assert_array_equal(enh, enhancement.enhance(img, "Sharp Detail"))
    assert w.viewer.is_compare()
    np.testing.assert_array_equal(w.viewer.view_b.image(), enh)
    assert "SSIM" in e.metrics_label.text() and "%" in e.metrics_label.text()
    # live: a slider change recomputes
    with qtbot.waitSignal(e.previewReady, timeout=20000) as blk:
        e.sliders["gamma"].slider.setValue(e.sliders["gamma"].slider.value() + 30)
    assert not np.array_equal(blk.args[1], enh)
    e.preview_check.setChecked(False)
    assert not w.viewer.is_compare()
    qtbot.mouseClick(e.apply_button, Qt.LeftButton)
    assert w.doc.enhancement is not None and w.doc.original is not None
    assert not np.array_equal(w.view.image(), img)
    np.testing.assert_array_equal(w.doc.original, img)
    qtbot.mouseClick(e.revert_button, Qt.LeftButton)
    np.testing.assert_array_equal(w.view.image(), img)
    assert w.doc.enhancement is None


def test_preset_compare_grid_shows_metric_changes(window, qtbot):
    w = window
    img = ramp(96, 96, 4)
    show_doc(w, img)
    w.enhance.show_grid()
    grid = w.enhance._grid
    qtbot.waitUntil(lambda: hasattr(grid, "results"), timeout=20000)
    assert set(grid.results) == set(enhancement.ENHANCEMENT_PRESETS)
    for name in enhancement.ENHANCEMENT_PRESETS:
        text = grid.tiles[name].text.text()
        assert "contrast" in text and "%" in text and "SSIM" in text and "PSNR" in text
        expected = metrics.compare(img, enhancement.enhance(img, name))
        assert grid.results[name][1]["ssim"] == pytest.approx(expected["ssim"])
    grid.tiles["Radiographic Film"].clicked.emit("Radiographic Film")
    assert w.enhance.preset_box.currentText() == "Radiographic Film"
    grid.close()


def test_model_panel_fits_a_narrow_dock_with_long_values(qtbot):
    """A long folder path must not set the panel's minimum width (it used to cut every value off on
    the right of a narrow dock): it is elided in the middle, with the full path in text() and tooltip."""
    from cxrdesk.ui.model_panel import ModelPanel
    panel = ModelPanel()
    qtbot.addWidget(panel)
    folder = "/home/instructor/" + "/".join(f"teaching-models-folder-{k}" for k in range(6)) + "/cxr-model"
    panel.set_info({"name": "m", "folder": folder, "params": {"unet": 11_450_500}, "guidance": 6.0,
                    "load_seconds": 7.61, "warm_up_seconds": 2.35, "device": "cpu", "torch_threads": 2})
    panel.resize(280, 700)
    panel.show()
    qtbot.waitExposed(panel)
    label = panel.fields["folder"]
    assert panel.minimumSizeHint().width() <= 280
    assert label.width() <= 280
    shown = QLabel.text(label)  # what is drawn
    assert shown != folder and "\u2026" in shown
    assert shown.startswith("/home/") and shown.endswith("cxr-model")
    assert label.text() == folder and folder in label.toolTip()
    assert panel.fields["load"].text() == "7.61 s + 2.35 s warm-up"
    assert panel.fields["unet"].text() == QLabel.text(panel.fields["unet"]) == "11.5 M"  # short: not elided
    panel.set_info({"name": "m", "load_seconds": 3.5, "warm_up_seconds": 0.4, "unet_engine": "onnxruntime"})
    assert panel.fields["load"].text() == "3.50 s + 0.40 s warm-up (ONNX Runtime)"


def _clipboard_grey():
    from PySide6.QtGui import QGuiApplication, QImage

    img = QGuiApplication.clipboard().image().convertToFormat(QImage.Format_Grayscale8)
    h, w = img.height(), img.width()
    return np.array(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())[:, :w].copy()


def test_copy_image_as_shown_with_a_synthetic_mark(window, qtbot):
    from PySide6.QtGui import QGuiApplication

    w = window
    img = ramp()
    show_doc(w, img, synthetic=False)
    w.act_presets["Lung"].trigger()
    w.view.set_inverted(True)
    w.view.setFocus()
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(w.view, Qt.Key_C, Qt.ControlModifier)
    c, wd = w.view.window()
    shown = imaging.window_to_u8(img, c, wd, True)
    np.testing.assert_array_equal(_clipboard_grey(), shown)  # a real image: exactly as shown, no mark
    assert "Copied" in w.statusBar().currentMessage()

    show_doc(w, img, synthetic=True)
    assert w.copy_image()
    got = _clipboard_grey()
    shown = imaging.window_to_u8(img, *w.view.window(), w.view.inverted())
    assert got.shape == shown.shape
    differs = got != shown
    ys, xs = np.nonzero(differs)
    # the mark: a small black box with white text in the top-left corner, the rest untouched
    assert differs.any() and ys.max() < img.shape[0] // 4 and xs.max() < img.shape[1] * 0.6
    box = got[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert (box == 255).sum() > 20 and (box == 0).sum() > 20
    assert "SYNTHETIC" in w.statusBar().currentMessage()


def test_ctrl_c_in_the_prompt_copies_text_not_the_image(window, qtbot):
    from PySide6.QtGui import QGuiApplication

    w = window
    show_doc(w, ramp())
    QGuiApplication.clipboard().clear()
    edit = w.generator.prompt_edit
    edit.setPlainText("small left pleural effusion")
    edit.setFocus()
    edit.selectAll()
    qtbot.keyClick(edit, Qt.Key_C, Qt.ControlModifier)
    assert QGuiApplication.clipboard().text() == "small left pleural effusion"
    assert QGuiApplication.clipboard().image().isNull()
    # a read-only report with selected text: its text too, not the image
    from PySide6.QtGui import QTextCursor

    QGuiApplication.clipboard().clear()
    w.dock_dataset.show()
    w.dock_dataset.raise_()
    report = w.dataset.details
    report.setPlainText("Findings: blunted left costophrenic angle.")
    report.setFocus()
    cursor = report.textCursor()
    cursor.select(QTextCursor.Document)
    report.setTextCursor(cursor)
    qtbot.keyClick(report, Qt.Key_C, Qt.ControlModifier)
    assert QGuiApplication.clipboard().text() == "Findings: blunted left costophrenic angle."
    assert QGuiApplication.clipboard().image().isNull()
    # nothing selected there: Ctrl+C copies the image
    cursor.clearSelection()
    report.setTextCursor(cursor)
    qtbot.keyClick(report, Qt.Key_C, Qt.ControlModifier)
    assert not QGuiApplication.clipboard().image().isNull()


def test_copy_without_an_image_says_so(window):
    assert not window.copy_image()
    assert not window.act_copy.isEnabled()
    assert "Nothing to copy" in window.statusBar().currentMessage()


def test_presentation_mode_shows_only_the_image_and_restores_the_layout(window, qtbot):
    w = window
    show_doc(w, ramp())
    docks = [d for d in (w.dock_generator, w.dock_dataset, w.dock_history) if d.isVisible()]
    assert docks and w.menuBar().isVisible()
    w.view.zoom_by(2.0)
    w.view.setFocus()
    qtbot.keyClick(w.view, Qt.Key_F11)
    assert w.is_presenting() and w.act_present.isChecked()
    assert w.windowState() & Qt.WindowFullScreen
    assert not any(d.isVisible() for d in docks)
    assert not w.menuBar().isVisible() and not w.statusBar().isVisible()
    assert w.view.is_fit() and "F11 or Esc" in w.view.notice()
    assert w.view.text_scale() > 1.0  # text over the image readable from the back of the room
    # settings saved now keep the layout to come back to, not the full-screen one
    w._save_settings()
    assert w.settings.value("window/state") == w._presentation[0]
    # shortcuts still work; Esc does not leave while a generation runs (it cancels that instead)
    qtbot.keyClick(w.view, Qt.Key_I)
    assert w.view.inverted()
    w.running_job = 12345
    qtbot.keyClick(w.view, Qt.Key_Escape)
    assert w.is_presenting()
    w.running_job = None
    qtbot.keyClick(w.view, Qt.Key_Escape)
    assert not w.is_presenting() and not w.act_present.isChecked()
    assert not w.windowState() & Qt.WindowFullScreen
    assert all(d.isVisible() for d in docks) and w.menuBar().isVisible() and w.statusBar().isVisible()
    assert w.view.notice() == "" and w.view.text_scale() == 1.0
    # F11 toggles both ways
    qtbot.keyClick(w.view, Qt.Key_F11)
    assert w.is_presenting()
    qtbot.keyClick(w.view, Qt.Key_F11)
    assert not w.is_presenting()


def test_measure_two_lines_gives_their_ratio_and_new_images_clear_them(window, qtbot):
    w = window
    img = ramp(200, 240)
    show_doc(w, img)
    v = w.view
    v.setFocus()
    qtbot.keyClick(v, Qt.Key_M)
    assert w.act_measure.isChecked() and v.is_measuring()
    to_w = lambda x, y: v.image_to_widget(QPointF(x, y)).toPoint()  # noqa: E731
    before = v.grab().toImage()
    drag(v, Qt.LeftButton, to_w(60, 100), to_w(120, 100))     # "heart": 60 px
    drag(v, Qt.LeftButton, to_w(20, 120), to_w(220, 120))     # "chest": 200 px
    (a0, a1), (b0, b1) = v.measurements()
    assert abs(a1[0] - a0[0] - 60) < 1.5 and abs(b1[0] - b0[0] - 200) < 1.5
    labels, ratio = v.measurement_text()
    assert ratio.startswith("ratio 0.30")
    assert "cardiothoracic" in w.statusBar().currentMessage()
    assert v.grab().toImage() != before  # the lines are drawn
    np.testing.assert_array_equal(v.image(), img)  # on top of the image, never into it
    # the view did not pan: left drag measures while measuring
    assert v.is_fit()
    # a click is not a line; a third line replaces the oldest
    drag(v, Qt.LeftButton, to_w(50, 50), to_w(50, 50), steps=1)
    assert len(v.measurements()) == 2
    drag(v, Qt.LeftButton, to_w(10, 10), to_w(10, 110))
    assert len(v.measurements()) == 2 and abs(v.measurements()[1][1][1] - v.measurements()[1][0][1] - 100) < 1.5
    qtbot.keyClick(v, Qt.Key_Delete)
    assert v.measurements() == []
    # M again: left drag pans as before
    drag(v, Qt.LeftButton, to_w(60, 100), to_w(120, 100))
    qtbot.keyClick(v, Qt.Key_M)
    assert not v.is_measuring() and len(v.measurements()) == 1
    drag(v, Qt.LeftButton, QPoint(200, 200), QPoint(150, 200))
    assert not v.is_fit() and len(v.measurements()) == 1
    # another image: the lines belong to the old one
    show_doc(w, ramp(200, 240, 5))
    assert v.measurements() == []


def test_measurements_in_mm_from_a_dicoms_pixel_spacing(window, qtbot, tmp_path):
    import pydicom

    from cxrdesk.core.dicom import writer
    w = window
    ds = writer.build_dataset(ramp(100, 100), {"prompt": "x", "seed": 1})
    ds.ImagerPixelSpacing = [0.5, 0.5]
    path = tmp_path / "spaced.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).ImagerPixelSpacing == [0.5, 0.5]
    with qtbot.waitSignal(w.documentShown, timeout=10000):
        w.open_file(str(path))
    w.act_measure.setChecked(True)
    v = w.view
    drag(v, Qt.LeftButton, v.image_to_widget(QPointF(10, 50)).toPoint(), v.image_to_widget(QPointF(90, 50)).toPoint())
    labels, _ = v.measurement_text()
    assert len(labels) == 1 and labels[0].endswith(" mm") and abs(float(labels[0].split()[0]) - 40.0) < 1.0


def test_page_keys_step_through_the_results_also_in_presentation(window, qtbot):
    w = window
    assert not w.show_adjacent(1) and "No results" in w.statusBar().currentMessage()
    images = [ramp(64, 64, seed) for seed in range(3)]
    for k, img in enumerate(images):
        w.history.add(w.store.save(img, {"prompt": f"p{k}", "seed": k, "steps": 3}))
    assert w.history.position() == (3, 3)
    w.generator.prompt_edit.setFocus()
    w.act_present.trigger()  # takes the focus to the image, whose Page keys step through the results
    assert w.view.hasFocus()
    qtbot.keyClick(w.view, Qt.Key_PageUp)
    np.testing.assert_array_equal(w.view.image(), images[1])
    assert w.history.position() == (2, 3) and w.view.notice() == "2 / 3"
    qtbot.keyClick(w.view, Qt.Key_PageUp)
    qtbot.keyClick(w.view, Qt.Key_PageUp)  # past the first: stays, and says so
    np.testing.assert_array_equal(w.view.image(), images[0])
    assert "first" in w.view.notice()
    qtbot.keyClick(w.view, Qt.Key_PageDown)
    np.testing.assert_array_equal(w.view.image(), images[1])
    assert w.doc.synthetic and w.doc.entry.seed == 1
    w.set_presentation(False)
    # with the focus in a form field, Page Down is that field's (a spin box pages its value)
    spin = w.generator.steps_spin
    spin.setFocus()
    before = spin.value()
    qtbot.keyClick(spin, Qt.Key_PageDown)
    assert spin.value() < before and w.history.position() == (2, 3)


def test_copy_view_keeps_lines_and_the_synthetic_label(window, qtbot):
    from PySide6.QtGui import QGuiApplication

    w = window
    assert not w.copy_view()
    show_doc(w, np.full((64, 64), 1000, np.uint16), synthetic=True)
    w.act_measure.setChecked(True)
    v = w.view
    drag(v, Qt.LeftButton, v.image_to_widget(QPointF(5, 30)).toPoint(), v.image_to_widget(QPointF(60, 30)).toPoint())
    qtbot.keyClick(v, Qt.Key_C, Qt.ControlModifier | Qt.ShiftModifier)
    img = QGuiApplication.clipboard().image()
    assert (img.width(), img.height()) == (w.viewer.width(), w.viewer.height())
    reds = sum(img.pixelColor(x, 18).red() > 150 and img.pixelColor(x, 18).green() < 90
               for x in range(img.width() - 200, img.width() - 10, 4))
    assert reds > 10  # the SYNTHETIC label
    y = int(v.mapTo(w.viewer, v.image_to_widget(QPointF(30, 30)).toPoint()).y())
    x = int(v.mapTo(w.viewer, v.image_to_widget(QPointF(30, 30)).toPoint()).x())
    c = img.pixelColor(x, y)
    assert c.blue() > 150 and c.red() < 150  # the (cyan) measurement line, on a grey image


def test_p_reveals_the_prompt_and_the_next_image_hides_it(window, qtbot):
    w = window
    images = [ramp(64, 64, seed) for seed in range(2)]
    for k, img in enumerate(images):
        w.history.add(w.store.save(img, {"prompt": f"small left pleural effusion {k}", "seed": k, "steps": 3}))
    w.show_entry(w.history.entries()[1])
    w.view.setFocus()
    hidden = w.view.grab().toImage()
    qtbot.keyClick(w.view, Qt.Key_P)
    assert w.act_reveal.isChecked() and "small left pleural effusion 1" in w.view.reveal()
    assert w.view.grab().toImage() != hidden  # drawn over the image
    qtbot.keyClick(w.view, Qt.Key_PageUp)      # the next case: its answer is hidden again
    assert w.view.reveal() == "" and not w.act_reveal.isChecked()
    qtbot.keyClick(w.view, Qt.Key_P)
    assert "effusion 0" in w.view.reveal()
    qtbot.keyClick(w.view, Qt.Key_P)
    assert w.view.reveal() == ""
    # an image without a prompt: nothing to show, and the status bar says why
    show_doc(w, ramp(), synthetic=False)
    qtbot.keyClick(w.view, Qt.Key_P)
    assert w.view.reveal() == "" and not w.act_reveal.isChecked()
    assert "no prompt" in w.statusBar().currentMessage()
