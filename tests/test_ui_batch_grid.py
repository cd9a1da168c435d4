"""A batch (Batch count > 1) in the real main window, offscreen, with the tiny model: its films as a
grid captioned by prompt and seed; click or arrows + Enter show one in the active viewport; Esc
closes; a cancelled batch shows the films finished so far; one film shows no grid."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from tests.test_ui_lessons import GEN_TIMEOUT, window  # noqa: E402,F401 - the window with the tiny model

PROMPT = "Large right pleural effusion with a meniscus and mediastinal shift to the left"


def _batch(qtbot, w, n, seed=21, steps=2):
    g = w.generator
    g.prompt_edit.setPlainText(PROMPT)
    g.steps_spin.setValue(steps)
    g.random_seed_check.setChecked(False)
    g.seed_spin.setValue(seed)
    g.batch_spin.setValue(n)
    g.preview_spin.setValue(steps)
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT) as blocker:
        qtbot.mouseClick(g.generate_button, Qt.LeftButton)
    return blocker.args


def _click(qtbot, grid, row):
    rect = grid.visualItemRect(grid.item(row))
    qtbot.mouseClick(grid.viewport(), Qt.LeftButton, pos=rect.center())


def test_batch_shows_a_captioned_grid_click_and_keys_open_films(qtbot, window):
    w = window
    assert not w.act_batch_grid.isEnabled()  # nothing to show yet
    status, msg = _batch(qtbot, w, 3)
    assert status == "done", msg
    d = w.batch_grid
    assert d is not None and d.isVisible() and d.parent() is w
    grid = d.grid
    entries = w.history.entries()
    assert [e.seed for e in entries] == [21, 22, 23]
    assert grid.count() == 3 and d.windowTitle() == "Batch: 3 films"
    captions = [grid.item(i).text() for i in range(3)]
    for cap, seed in zip(captions, (21, 22, 23)):
        assert cap.endswith(f" \u00b7 seed {seed}") and cap.startswith("Large right pleural")
        assert "\u2026" in cap and len(cap) < len(PROMPT)  # the prompt shortened, the seed kept whole
    assert all(PROMPT in grid.item(i).toolTip() and "Click or Enter" in grid.item(i).toolTip() for i in range(3))
    assert "3 films of the batch, seeds 21-23" in d.header.text()
    assert all(not grid.item(i).icon().isNull() for i in range(3))
    assert grid.currentRow() == 2  # the film on screen (the last) is the current thumbnail
    for wid in (grid, d.show_button, d.close_button):
        assert wid.toolTip()

    # a click shows that film in the active viewport (here the second of a 1x2 layout)
    w.set_layout("1x2")
    w.viewer.set_active(1)
    _click(qtbot, grid, 0)
    assert w.viewer.active() == 1 and w.doc.entry.id == entries[0].id
    np.testing.assert_array_equal(w.viewer.views[1].image(), entries[0].image())
    assert d.isVisible()  # the grid stays open for the next film

    # keyboard: arrows move, Enter shows (and does not close the dialog)
    grid.setFocus()
    grid.setCurrentRow(0)
    qtbot.keyClick(grid, Qt.Key_Right)
    assert grid.currentRow() == 1
    qtbot.keyClick(grid, Qt.Key_Return)
    assert w.doc.entry.id == entries[1].id and d.isVisible()
    np.testing.assert_array_equal(w.view.image(), entries[1].image())
    qtbot.keyClick(grid, Qt.Key_Left)
    qtbot.keyClick(grid, Qt.Key_Enter)
    assert w.doc.entry.id == entries[0].id
    grid.setCurrentRow(2)
    qtbot.mouseClick(d.show_button, Qt.LeftButton)
    assert w.doc.entry.id == entries[2].id

    # Esc closes; Generate > Show the last batch opens it again, on the film shown
    qtbot.keyClick(grid, Qt.Key_Escape)
    assert not d.isVisible()
    assert w.act_batch_grid.isEnabled() and w.act_batch_grid.shortcut().toString() == "Ctrl+Shift+B"
    w.act_batch_grid.trigger()
    assert d.isVisible() and grid.count() == 3 and grid.currentRow() == 2


def test_cancelled_batch_shows_the_films_finished_so_far(qtbot, window):
    w = window
    worker = w.host.worker
    # cancel on the worker's thread the moment the first film is saved: the second never finishes
    worker.resultReady.connect(lambda job, entry: worker.cancel(job), Qt.DirectConnection)
    status, msg = _batch(qtbot, w, 4, seed=40)
    assert status == "cancelled", msg
    d = w.batch_grid
    assert d is not None and d.isVisible()
    assert d.grid.count() == 1 and d.grid.item(0).text().endswith("seed 40")
    assert d.header.text().startswith("Cancelled: the 1 of 4 films finished before it")
    assert d.windowTitle() == "Batch: 1 film of 4"
    assert [e.seed for e in w.history.entries()] == [40]
    assert w.doc is not None and w.doc.entry.seed == 40  # the finished film stays on screen


def test_one_film_shows_no_grid(qtbot, window, monkeypatch):
    from PySide6.QtGui import QAction

    w = window
    owners = [a.text() for a in w.findChildren(QAction) if "Ctrl+Shift+B" in [k.toString() for k in a.shortcuts()]]
    assert owners == ["Show the last &batch"]  # the key is its own
    shown = []
    monkeypatch.setattr("cxrdesk.ui.mainwindow.show_html", lambda *a: shown.append(a[2]))
    w.show_shortcuts()
    assert "Show the last batch" in shown[0]
    status, msg = _batch(qtbot, w, 1)
    assert status == "done", msg
    assert w.batch_grid is None and not w.act_batch_grid.isEnabled()
    w.show_batch_grid()  # asked for anyway: a message, no dialog
    assert w.batch_grid is None and "No batch yet" in w.statusBar().currentMessage()


def test_lesson_grid_is_the_same_widget_with_enter(qtbot, window):
    from cxrdesk.ui.film_grid import FilmGrid, shorten

    assert isinstance(window.lesson_panel.grid, FilmGrid)
    assert shorten("Small right pleural effusion", 100) == "Small right pleural effusion"
    assert shorten("Small right pleural effusion", 16) == "Small right\u2026"
    assert shorten("  a\n b  ", 10) == "a b"
    grid = FilmGrid(32)
    qtbot.addWidget(grid)
    opened = []
    grid.filmActivated.connect(opened.append)
    grid.add_film(np.zeros((16, 16), np.uint16), "one", "tip", 1)
    grid.add_film(None, "two (file missing)", "tip", 2)
    grid.setCurrentRow(1)
    qtbot.keyClick(grid, Qt.Key_Return)
    _click(qtbot, grid, 0)  # not open_on_click: a single click only selects
    assert opened == [2] and grid.current_data() == 1
    qtbot.mouseDClick(grid.viewport(), Qt.LeftButton, pos=grid.visualItemRect(grid.item(0)).center())
    assert opened == [2, 1]
