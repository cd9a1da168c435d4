"""Viewer layouts of issue 33 (item 10): 1x1, 1x2 and 2x2 viewports in the main window, each with its own
window/level, a click making one active (the History strip, the Dataset browser's compare and the tools act
on it), linked window/level on request, keyboard shortcuts and tooltips, the layout remembered in the
settings."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from cxrdesk.ui.mainwindow import Document, MainWindow  # noqa: E402
from tests.test_ui_app import make_window  # noqa: E402, F401
from tests.test_ui_view import drag, ramp  # noqa: E402


@pytest.fixture
def window(make_window):
    return make_window()  # no model


def film(level: int, shape=(48, 64)) -> np.ndarray:
    a = np.full(shape, level, np.uint16)
    a[4:10, 4:10] = 4095
    return a


def show(w, data, title="t", synthetic=False):
    w.set_document(Document(data=data, bits=12, title=title, kind="generated" if synthetic else "file",
                            synthetic=synthetic))


def click(qtbot, view):
    qtbot.mouseClick(view, Qt.LeftButton, pos=QPoint(view.width() // 2, view.height() // 2))


def history_click(qtbot, w, row: int):
    lst = w.history.list
    qtbot.mouseClick(lst.viewport(), Qt.LeftButton, pos=lst.visualItemRect(lst.item(row)).center())


def test_layout_keys_show_viewports_and_a_click_makes_one_active(window, qtbot):
    w = window
    v = w.viewer
    assert v.layout_name() == "1x1" and not v.pane_b.isVisible()
    first = film(500)
    show(w, first, "first")
    qtbot.keyClick(w.view, Qt.Key_2, Qt.AltModifier)
    assert v.layout_name() == "1x2" and w.act_layouts["1x2"].isChecked()
    assert v.pane_b.isVisible() and not v.panes[2].isVisible()
    assert v.active() == 0 and w.doc.title == "first"  # the film stays in the first viewport
    assert v.pane_b.title.text() == "2: empty" and not v.view_b.has_image()
    # a click on the second viewport makes it active: a new film goes there, the first one stays
    click(qtbot, v.view_b)
    assert v.active() == 1 and w.view is v.view_b and v.panes[1].is_active() and not v.panes[0].is_active()
    second = film(2500)
    show(w, second, "second")
    np.testing.assert_array_equal(v.view.image(), first)
    np.testing.assert_array_equal(v.view_b.image(), second)
    assert w.slot_doc(0).title == "first" and w.slot_doc(1).title == "second"
    assert v.pane_b.title.text().startswith("2: second")
    # 2x2: four viewports; Ctrl+Tab steps the active one round
    qtbot.keyClick(w.view, Qt.Key_4, Qt.AltModifier)
    assert v.layout_name() == "2x2" and all(p.isVisible() for p in v.panes)
    qtbot.keyClick(w.view, Qt.Key_Tab, Qt.ControlModifier)
    assert v.active() == 2
    w.act_prev_viewport.trigger()
    w.act_prev_viewport.trigger()
    assert v.active() == 0
    # back to one viewport with the second one active: its film fills the view, nothing is lost
    click(qtbot, v.view_b)
    qtbot.keyClick(w.view, Qt.Key_1, Qt.AltModifier)
    assert v.layout_name() == "1x1" and not v.pane_b.isVisible() and v.active() == 0
    np.testing.assert_array_equal(w.view.image(), second)
    w.act_layouts["1x2"].trigger()
    imgs = [v.view.image(), v.view_b.image()]
    assert {int(i[20, 40]) for i in imgs} == {500, 2500}


def test_each_viewport_has_its_own_window_unless_linked(window, qtbot):
    w = window
    v = w.viewer
    w.set_layout("1x2")
    show(w, film(500), "a")
    click(qtbot, v.view_b)
    show(w, film(2500), "b")
    a0, b0 = v.view.window(), v.view_b.window()
    w.act_presets["Lung"].trigger()  # the active viewport only
    assert v.view_b.window() != b0 and v.view.window() == a0
    w.act_invert.trigger()
    assert v.view_b.inverted() and not v.view.inverted()
    drag(v.view, Qt.RightButton, QPoint(60, 60), QPoint(120, 90))  # right drag on the other one: its own
    assert v.view.window() != a0
    assert v.active() == 0  # the press made it active
    b1 = v.view_b.window()
    assert v.view_b.window() == b1
    # linked (Alt+L): the other viewport follows window/level and inversion
    qtbot.keyClick(w.view, Qt.Key_L, Qt.AltModifier)
    assert w.act_link_wl.isChecked() and v.link_window
    assert v.view_b.window() == pytest.approx(v.view.window())
    assert v.view_b.inverted() == v.view.inverted()
    drag(v.view, Qt.RightButton, QPoint(60, 60), QPoint(20, 40))
    assert v.view_b.window() == pytest.approx(v.view.window())
    w.act_invert.trigger()
    assert v.view_b.inverted() == v.view.inverted()
    # unlinked again: independent
    w.act_link_wl.trigger()
    before = v.view_b.window()
    w.act_presets["Bone"].trigger()
    assert v.view_b.window() == before


def test_history_and_page_keys_open_into_the_active_viewport(window, qtbot):
    w = window
    images = [ramp(64, 64, seed) for seed in range(3)]
    for k, img in enumerate(images):
        w.history.add(w.store.save(img, {"prompt": f"p{k}", "seed": k, "steps": 3}), select=False)
    w.set_layout("2x2")
    v = w.viewer
    history_click(qtbot, w, 0)
    np.testing.assert_array_equal(v.view.image(), images[0])
    click(qtbot, v.view_d)
    history_click(qtbot, w, 2)
    np.testing.assert_array_equal(v.view_d.image(), images[2])
    np.testing.assert_array_equal(v.view.image(), images[0])
    assert not v.view_b.has_image() and not v.view_c.has_image()
    assert w.doc.entry.seed == 2 and v.panes[3].title.text().startswith("4: Generated - seed 2")
    qtbot.keyClick(v.view_d, Qt.Key_PageUp)  # previous result, into the same viewport
    np.testing.assert_array_equal(v.view_d.image(), images[1])
    np.testing.assert_array_equal(v.view.image(), images[0])


def test_compare_in_a_grid_puts_the_other_film_in_the_next_viewport(window, qtbot, tmp_path):
    import cv2

    w = window
    v = w.viewer
    real = np.full((32, 40), 90, np.uint8)
    path = tmp_path / "real.png"
    cv2.imwrite(str(path), real)
    w.set_layout("1x2")
    gen = film(2000)
    show(w, gen, "Generated - seed 1", synthetic=True)
    w.compare_with_generated(str(path))
    qtbot.waitUntil(lambda: w.slot_doc(1) is not None, timeout=20000)
    assert v.layout_name() == "1x2" and not v.is_compare() and v.active() == 0
    np.testing.assert_array_equal(v.view.image(), gen)
    assert v.view_b.image().shape == (32, 40) and not v.view_b.is_synthetic() and v.view.is_synthetic()
    # C in a grid: the previous image beside the current one
    show(w, film(700), "third")
    w.act_compare.trigger()
    assert not w.act_compare.isChecked() and v.layout_name() == "1x2"
    np.testing.assert_array_equal(v.view_b.image(), gen)


def test_tools_for_one_film_leave_the_grid_with_the_active_film(window, qtbot):
    w = window
    v = w.viewer
    w.set_layout("2x2")
    show(w, film(500), "a")
    click(qtbot, v.view_c)
    third = film(3000)
    show(w, third, "c")
    w.edit_panel.act_brush.trigger()  # painting a region is done on one film
    assert v.layout_name() == "1x1" and w.edit_panel.layer.tool == "brush"
    np.testing.assert_array_equal(v.view.image(), third)
    assert "1 x 1" in v.view.notice()
    w.edit_panel.set_tool("")
    w.set_layout("2x2")  # the films are all still there
    shown = sorted(int(x.image()[20, 40]) for x in v.views if x.has_image())
    assert shown == [500, 3000]


def test_annotations_and_measuring_follow_the_active_viewport(window, qtbot):
    w = window
    v = w.viewer
    w.set_layout("1x2")
    show(w, film(500), "a")
    click(qtbot, v.view_b)
    show(w, film(2500), "b")
    w.act_measure.trigger()
    assert v.view_b.is_measuring() and not v.view.is_measuring()
    click(qtbot, v.view)
    assert v.view.is_measuring() and not v.view_b.is_measuring()
    w.act_measure.trigger()
    w.act_arrow.trigger()
    drag(v.view, Qt.LeftButton, QPoint(40, 40), QPoint(90, 90))
    assert len(w.slot_doc(0).annotations) == 1 and w.slot_doc(1).annotations == []


def test_layout_and_link_remembered_tooltips_and_help(make_window, qtbot, monkeypatch):
    w = make_window()
    w.set_layout("2x2")
    w.act_link_wl.trigger()
    for a in (*w.act_layouts.values(), w.act_next_viewport, w.act_prev_viewport, w.act_link_wl):
        assert a.toolTip() and a.shortcuts(), a.text()
        key = a.shortcuts()[0].toString()
        assert key in a.toolTip()
    view_menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&View")
    layout_menu = next(a.menu() for a in view_menu.actions() if a.menu() and a.text() == "&Layout")
    assert w.act_layouts["2x2"] in layout_menu.actions() and w.act_link_wl in layout_menu.actions()
    shown = {}
    monkeypatch.setattr("cxrdesk.ui.mainwindow.show_html",
                        lambda parent, title, text: shown.update(text=text))
    w.show_shortcuts()
    assert "Alt+4" in shown["text"] and "Ctrl+Tab" in shown["text"] and "Alt+L" in shown["text"]
    w.close()
    again = make_window()
    assert again.viewer.layout_name() == "2x2" and again.act_layouts["2x2"].isChecked()
    assert again.act_link_wl.isChecked() and again.viewer.link_window
    again.set_layout("1x1")
    again.close()
    third = MainWindow(preload=False)
    qtbot.addWidget(third)
    assert third.viewer.layout_name() == "1x1"
    third.close()


def test_a_generated_film_goes_to_the_active_viewport(make_window, tiny_model_dir, qtbot):
    from tests.test_ui_app import GEN_TIMEOUT, _set_quick

    w = make_window(tiny_model_dir)
    v = w.viewer
    w.set_layout("1x2")
    first = film(500, (64, 64))
    show(w, first, "first")
    click(qtbot, v.view_b)
    _set_quick(w, steps=2)
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT) as blocker:
        qtbot.mouseClick(w.generator.generate_button, Qt.LeftButton)
        # while it runs the layout stays (its previews and film have a place to go), and the user is told
        assert not w.set_layout("2x2") and v.layout_name() == "1x2" and w.act_layouts["1x2"].isChecked()
        assert "running" in w.statusBar().currentMessage()
        click(qtbot, v.view)  # looking at the other film meanwhile
    assert blocker.args[0] == "done"
    entry = w.history.entries()[-1]
    assert v.active() == 1 and w.doc.entry is entry
    np.testing.assert_array_equal(v.view_b.image(), entry.image())
    np.testing.assert_array_equal(v.view.image(), first)
    assert v.pane_b.title.text().startswith("2: Generated - seed")
    # the worker prepares its faster graphs after the first film: let it finish before the window closes
    qtbot.waitUntil(w.host.worker.warm_ready.is_set, timeout=GEN_TIMEOUT)


def test_the_enhancement_preview_of_a_viewports_film_goes_to_one_film(window, qtbot):
    from cxrdesk.core.imaging import enhancement

    w = window
    v = w.viewer
    w.set_layout("1x2")
    show(w, film(500), "a")
    click(qtbot, v.view_b)
    b = ramp(64, 64, 5)
    show(w, b, "b")
    e = w.enhance
    e.select_preset("Sharp Detail")
    with qtbot.waitSignal(e.previewReady, timeout=20000):
        e.preview_check.setChecked(True)
    # the active film, alone beside its enhanced preview; the preview stays on
    assert v.layout_name() == "1x1" and v.is_compare() and e.preview_check.isChecked()
    np.testing.assert_array_equal(v.view.image(), b)
    np.testing.assert_array_equal(v.view_b.image(), enhancement.enhance(b, "Sharp Detail"))
    assert "1 x 1" in w.statusBar().currentMessage()
    # back to 1x2: the preview ends, both films are there again
    w.act_layouts["1x2"].trigger()
    assert not e.preview_check.isChecked() and not v.is_compare()
    assert sorted(int(x.image()[20, 40]) > 1000 for x in (v.view, v.view_b)) == [False, True]


def _drop(view, mime) -> bool:
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    import warnings

    pos = QPoint(view.width() // 2, view.height() // 2)
    with warnings.catch_warnings():  # PySide6 marks this constructor deprecated; Qt has no other
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(view, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(QPointF(pos), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(view, drop)
    return drop.isAccepted()


def test_a_history_thumbnail_dragged_onto_a_viewport_shows_there(window, qtbot):
    from PySide6.QtCore import QMimeData

    from cxrdesk.ui.history_strip import ENTRY_MIME

    w = window
    v = w.viewer
    images = [ramp(64, 64, seed) for seed in range(2)]
    for k, img in enumerate(images):
        w.history.add(w.store.save(img, {"prompt": f"p{k}", "seed": k, "steps": 3}), select=False)
    lst = w.history.list
    assert lst.dragEnabled() and "drag onto a viewport" in lst.toolTip()
    mime = lst.mimeData([lst.item(1)])  # what a drag of the second thumbnail carries
    assert bytes(mime.data(ENTRY_MIME)).decode() == w.history.entries()[1].id
    w.set_layout("2x2")
    assert _drop(v.view_d, mime)
    assert v.active() == 3
    np.testing.assert_array_equal(v.view_d.image(), images[1])
    assert not v.view.has_image()
    # other drags are refused; in 1x1 a drop shows the film in the one viewport
    other = QMimeData()
    other.setText("not a result")
    assert not _drop(v.view_c, other) and not v.view_c.has_image()
    w.set_layout("1x1")
    assert _drop(v.view, lst.mimeData([lst.item(0)]))
    np.testing.assert_array_equal(v.view.image(), images[0])
