"""Issue 30, the rest: a lesson's films join the History strip with their lesson and case; the quiz's
"click where the finding is": a mark on the film, and on reveal the region an edit redrew outlined (the
mark said to be in it or not, in the CSV too) or else the attention map of the finding's word (not
scored); the region travels with an edited film (history JSON, PNG export) through core.regions."""
from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402

from cxrdesk.core.lessons import Case, Lesson  # noqa: E402
from cxrdesk.core.regions import decode_region, encode_region, hit  # noqa: E402
from tests.test_ui_app import GEN_TIMEOUT, make_window  # noqa: E402, F401 - a fixture


def pngio():
    """core's PNG module, wherever the move into packages (issue 32) has put it."""
    try:
        from cxrdesk.core.imaging import pngio as mod
    except ImportError:
        from cxrdesk.core import pngio as mod
    return mod


def region_mask(shape=(64, 64)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[30:50, 8:24] = True  # the viewer's lower left: the patient's right base
    return m


def click_at(qtbot, view, x: float, y: float) -> None:
    p = view.image_to_widget(QPointF(x, y))
    qtbot.mouseClick(view, Qt.LeftButton, pos=QPoint(int(p.x()), int(p.y())))


# ------------------------------------------------------------------------------------ core.regions
def test_region_round_trip_scaling_and_refusals():
    m = region_mask()
    m[0, 0] = True  # a run starting inside
    enc = encode_region(m)
    np.testing.assert_array_equal(decode_region(enc), m)
    big = decode_region(enc, (128, 128))
    assert big.shape == (128, 128) and big[80, 30] and not big[20, 100]
    assert hit(m, 15.5, 40.5) and not hit(m, 40.5, 10.5)
    assert hit(m, 26.0, 40.0, tolerance=3) and not hit(m, 30.0, 40.0, tolerance=3)
    for bad in (None, "x", {}, {"shape": [64, 64]}, {"shape": [64, 64], "runs": [5, 5]},
                {"shape": [0, 4], "runs": [0]}, {"shape": [2, 2], "runs": [-1, 5]},
                {"shape": [2, 2], "runs": [4]},  # empty region
                {"shape": [2, True], "runs": [1, 1]}, {"shape": [2, 2], "runs": [1.5, 2.5]}):
        assert decode_region(bad) is None, bad


# ------------------------------------------------------------------------------------ the quiz
def _edited_film(tmp_path, name: str, level: int):
    write_png = pngio().write_png
    img = np.full((64, 64), level, np.uint16)
    params = {"prompt": "Left pleural effusion", "seed": 3, "steps": 2,
              "edit": {"derived_from": "an edited film", "strength": 0.85, "region": encode_region(region_mask())}}
    path = tmp_path / name
    write_png(path, img, params, bits=16)
    return path


def test_quiz_mark_and_the_edited_region_on_reveal(make_window, qtbot, tmp_path):
    w = make_window()  # a films-only lesson: no model needed
    p = w.lesson_panel
    p.set_lesson(Lesson("Edited films", [Case(film=str(_edited_film(tmp_path, "a.png", 1500))),
                                         Case(film=str(_edited_film(tmp_path, "b.png", 2500))),
                                         Case(film=str(_edited_film(tmp_path, "c.png", 3000)))]))
    q = p.start_quiz(full_screen=False)
    assert q is not None
    qtbot.waitExposed(q)
    assert "click on the film" in q.reveal_label.text() and "Left click: mark" in q.view.toolTip()
    # case 1: a click inside the region marks it; a second click moves the mark
    click_at(qtbot, q.view, 50, 5)
    click_at(qtbot, q.view, 15.5, 40.5)
    assert q.mark == pytest.approx((15.5, 40.5), abs=0.6)
    assert [a["kind"] for a in q.view.annotations()] == ["arrow", "text"]
    assert q.view.annotations()[0]["to"] == pytest.approx(list(q.mark))
    assert not q.region_layer.has_outline()  # nothing before the reveal
    q.answer(normal=False, finding="Effusion")
    q.reveal()
    assert q.region_layer.has_outline()
    assert "Outlined: the region the edit redrew. Your mark is in it." in q.reveal_label.text()
    assert q.rows[-1]["location"] == "in the edited region"
    click_at(qtbot, q.view, 50, 5)  # after the reveal a click changes nothing
    assert q.mark == pytest.approx((15.5, 40.5), abs=0.6)
    # case 2: the outline is gone, a mark outside the region says so
    q.next_case()
    assert not q.region_layer.has_outline() and q.mark is None and q.view.annotations() == []
    click_at(qtbot, q.view, 55, 10)
    q.answer(normal=False, finding="Effusion")
    q.reveal()
    assert "Your mark is outside it." in q.reveal_label.text()
    # case 3: measuring takes the clicks; Backspace clears a mark; no mark is said too
    q.next_case()
    q.measure_button.setChecked(True)
    click_at(qtbot, q.view, 15.5, 40.5)
    assert q.mark is None
    q.measure_button.setChecked(False)
    click_at(qtbot, q.view, 15.5, 40.5)
    assert q.mark is not None
    q.activateWindow()  # the quiz's keys are its window's shortcuts
    qtbot.waitUntil(q.isActiveWindow)
    qtbot.keyClick(q.view, Qt.Key_Backspace)
    assert q.mark is None and q.view.annotations() == []
    q.answer(normal=True)
    q.reveal()
    assert "You did not mark a place." in q.reveal_label.text()
    with qtbot.waitSignal(q.finished) as blocker:
        q.next_case()
    with open(blocker.args[0], encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["location"] for r in rows[:3]] == ["in the edited region", "outside the edited region", "not marked"]
    assert rows[0]["mark"].split() == ["15.5", "40.5"] and rows[2]["mark"] == ""


def test_quiz_shows_the_attention_map_of_the_finding_on_reveal_not_before(qtbot, tmp_path):
    from cxrdesk.ui.quiz import QuizWindow

    c = Case(prompt="Small right pleural effusion")
    heat = np.zeros((64, 64), np.float32)
    heat[40:60, 5:25] = 1.0
    films = [(0, c, np.full((64, 64), 1200, np.uint16), c.prompt,
              {"attention": {"effusion": heat, "small": heat[::-1]}})]
    q = QuizWindow(Lesson("t", [c]), films, tmp_path)
    qtbot.addWidget(q)
    q.show()
    qtbot.waitExposed(q)
    assert not q.view.has_overlay()
    click_at(qtbot, q.view, 10, 50)
    q.answer(normal=False, finding="Effusion")
    q.reveal()
    assert q.view.has_overlay() and not q.region_layer.has_outline()
    text = q.reveal_label.text()
    assert "where the model looked for 'effusion'" in text and "not where the finding is" in text
    assert q.rows[-1]["location"] == "marked (no region to check)"
    q.close()


# ------------------------------------------------------------------------------------ lesson films in the history
def test_a_lessons_films_join_the_history_strip_with_their_case(make_window, tiny_model_dir, qtbot, tmp_path):
    w = make_window(tiny_model_dir)
    p = w.lesson_panel
    lesson = tmp_path / "week2.toml"
    lesson.write_text('title = "Week 2"\nsteps = 2\n[[cases]]\nprompt = "Cardiomegaly"\nseed = 4\n'
                      '[[cases]]\nprompt = "Normal chest radiograph"\nseed = 6\n', encoding="utf-8")
    assert p.open_lesson(lesson)
    before = w.doc
    with qtbot.waitSignal(p.generationDone, timeout=GEN_TIMEOUT) as blocker:
        qtbot.mouseClick(p.generate_button, Qt.LeftButton)
    assert blocker.args[0] == "done"
    entries = w.history.entries()
    assert [e.id for e in entries] == [r.id for r in p.results]
    assert [e.params["lesson"] for e in entries] == [{"title": "Week 2", "case": 1}, {"title": "Week 2", "case": 2}]
    assert w.history.list.item(0).text().startswith("case 1, seed 4")
    assert "lesson \u201cWeek 2\u201d, case 2" in w.history.list.item(1).toolTip()
    assert w.doc is before  # not pushed into the viewer
    # the provenance is on disk: a later session's strip reads it back
    again = w.store.load(entries[0].image_path[:-4] + ".json")
    assert again.params["lesson"] == {"title": "Week 2", "case": 1} and again.seed == 4
    # and the strip shows it like any result
    w.show_entry(entries[1])
    np.testing.assert_array_equal(w.view.image(), entries[1].image())
    assert "case 2" in w.doc.title
    qtbot.waitUntil(w.host.worker.warm_ready.is_set, timeout=GEN_TIMEOUT)


def test_an_edit_records_its_region_in_the_history_and_the_png_export(make_window, tiny_model_dir, qtbot, tmp_path):
    from cxrdesk.ui.mainwindow import Document

    read_png = pngio().read_png

    w = make_window(tiny_model_dir)
    e = w.edit_panel
    data = np.full((64, 64), 1800, np.uint16)
    w.set_document(Document(data=data, bits=12, title="a film", kind="file"))
    mask = region_mask()
    e.layer.fill(mask)
    e.prompt_edit.setText("right pleural effusion")
    e.steps_spin.setValue(2)
    with qtbot.waitSignal(e.editDone, timeout=GEN_TIMEOUT) as blocker:
        assert e.request_edit()
    assert blocker.args[0] == "done", blocker.args[1]
    entry = w.history.entries()[-1]
    np.testing.assert_array_equal(decode_region(entry.params["edit"]["region"], mask.shape), mask)
    again = w.store.load(entry.image_path[:-4] + ".json")
    np.testing.assert_array_equal(decode_region(again.params["edit"]["region"]), mask)
    png = w.export_png(str(tmp_path / "edited.png"), bits=16, apply_window=False)
    np.testing.assert_array_equal(decode_region(read_png(png).metadata["edit"]["region"]), mask)
    import pydicom

    from cxrdesk.core.dicom.reader import parse_image_comments  # DICOM: without it (ImageComments' limit)

    params = parse_image_comments(pydicom.dcmread(w.export_dicom(str(tmp_path / "edited.dcm"))).ImageComments)
    assert params["prompt"] == "right pleural effusion" and "region" not in params["edit"]
    qtbot.waitUntil(w.host.worker.warm_ready.is_set, timeout=GEN_TIMEOUT)
