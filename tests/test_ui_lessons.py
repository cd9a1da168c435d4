"""The Lesson panel in the real main window, offscreen, with the tiny model: open, generate all in the
background, keep / regenerate / drop, reorder, save, export as unknowns with a handout."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from cxrdesk.core.lesson_export import read_answer_key  # noqa: E402
from cxrdesk.core.lessons import load_lesson  # noqa: E402
from cxrdesk.ui.mainwindow import MainWindow  # noqa: E402

GEN_TIMEOUT = 180_000  # ms; generous for a loaded 2-core machine, never a timing assertion


@pytest.fixture
def window(qtbot, tiny_model_dir):
    w = MainWindow(model=str(tiny_model_dir), preload=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def _run_all(qtbot, panel, how=None):
    with qtbot.waitSignal(panel.generationDone, timeout=GEN_TIMEOUT) as blocker:
        (how or (lambda: qtbot.mouseClick(panel.generate_button, Qt.LeftButton)))()
    return blocker.args[0]


def test_lesson_panel_generate_keep_regenerate_drop_save_export(qtbot, window, tmp_path):
    w = window
    p = w.lesson_panel
    assert w.dock_lesson.windowTitle() == "Lesson"
    lesson = tmp_path / "week1.toml"
    lesson.write_text('title = "Week 1"\nsteps = 2\n'
                      '[[cases]]\nprompt = "Small right pleural effusion"\nseed = 5\nnote = "Angles."\n'
                      '[[cases]]\nprompt = "Cardiomegaly"\n'
                      '[[cases]]\nprompt = "Normal chest radiograph"\n', encoding="utf-8")
    assert p.open_lesson(lesson)
    assert p.table.rowCount() == 3 and p.title_edit.text() == "Week 1"
    assert p.table.item(0, 3).text() == "5"
    shown_before = w.doc
    assert _run_all(qtbot, p) == "done"
    assert all(e is not None for e in p.results) and p.grid.count() == 3
    assert p.results[0].seed == 5 and p.results[0].prompt == "Small right pleural effusion"
    captions = [p.grid.item(i).text() for i in range(3)]
    assert captions[0].startswith("Case 1: Effusion") and "(kept)" in captions[0]
    assert captions[1].startswith("Case 2: Cardiomegaly") and captions[2].startswith("Case 3: Normal")
    assert w.doc is shown_before  # the lesson's films went to the panel's grid, not the viewer
    assert not p.is_running() and p.generate_button.isEnabled()

    # keep case 2's film: its seed goes into the lesson
    p.grid.setCurrentRow(1)
    qtbot.mouseClick(p.keep_button, Qt.LeftButton)
    kept = p.results[1].seed
    assert p.lesson.cases[1].seed == kept and p.table.item(1, 3).text() == str(kept)
    # regenerate case 3 with a new seed: only that case is drawn again
    old3, old1 = p.results[2], p.results[0]
    p.grid.setCurrentRow(2)
    assert _run_all(qtbot, p, lambda: qtbot.mouseClick(p.regen_button, Qt.LeftButton)) == "done"
    assert p.results[2] is not old3 and p.results[0] is old1
    # drop case 1, move the (new) case 2 up, edit an answer in the table
    p.grid.setCurrentRow(0)
    qtbot.mouseClick(p.drop_button, Qt.LeftButton)
    assert [c.prompt for c in p.lesson.cases] == ["Cardiomegaly", "Normal chest radiograph"]
    p.table.selectRow(1)
    qtbot.mouseClick(p.up_button, Qt.LeftButton)
    assert [c.prompt for c in p.lesson.cases] == ["Normal chest radiograph", "Cardiomegaly"]
    assert p.results[1].prompt == "Cardiomegaly"
    p.table.item(1, 1).setText("Enlarged heart")
    assert p.lesson.cases[1].answer == "Enlarged heart"
    assert p.grid.item(1).text().startswith("Case 2: Enlarged heart")

    saved = tmp_path / "saved.json"
    assert p.save_lesson(saved)
    back = load_lesson(saved)
    assert [(c.prompt, c.answer, c.seed) for c in back.cases] == [
        ("Normal chest radiograph", "", None), ("Cardiomegaly", "Enlarged heart", kept)]

    out = tmp_path / "export"
    p.unknown_check.setChecked(True)
    p.dicom_check.setChecked(True)
    p.pptx_check.setChecked(True)
    assert p.export_set(out), p.message.text()
    key = read_answer_key(out / "answers.csv")
    assert [r["answer"] for r in key] == ["Normal", "Enlarged heart"]
    from PIL import Image
    for f in ("case_01.png", "case_02.png"):
        text = " ".join(Image.open(out / f).text.values()).lower()
        assert "cardiomegaly" not in text and "normal chest" not in text and "enlarged" not in text
    from pptx import Presentation
    assert len(Presentation(out / "lesson.pptx").slides) == 5

    # quiz mode opens over the drawn cases, the answers hidden until the reveal
    quiz = p.start_quiz(full_screen=False)
    qtbot.addWidget(quiz)
    assert quiz is not None and len(quiz.films) == 2 and quiz.case_label.text() == "Case 1 of 2"
    assert "Enlarged heart" in [quiz.finding_combo.itemText(i) for i in range(quiz.finding_combo.count())]
    assert "enlarged" not in quiz.reveal_label.text().lower()
    quiz.close()


def test_lesson_panel_errors_and_cancel(qtbot, window, tmp_path):
    p = window.lesson_panel
    bad = tmp_path / "bad.toml"
    bad.write_text("title = 'x'\n[[cases]]\npromt = 'a'\n")
    assert not p.open_lesson(bad)
    assert "unknown key 'promt'" in p.message.text()
    p.new_lesson()
    assert p.table.rowCount() == 0
    qtbot.mouseClick(p.generate_button, Qt.LeftButton)
    assert "no cases" in p.message.text() and not p.is_running()
    assert not p.export_set(tmp_path / "e")
    for _ in range(3):
        qtbot.mouseClick(p.add_button, Qt.LeftButton)
    p.steps_spin.setValue(50)

    def start_then_cancel():
        qtbot.mouseClick(p.generate_button, Qt.LeftButton)
        assert p.is_running() and p.cancel_button.isEnabled()
        qtbot.mouseClick(p.cancel_button, Qt.LeftButton)
    assert _run_all(qtbot, p, start_then_cancel) == "cancelled"
    assert not p.is_running() and p.generate_button.isEnabled()
    assert sum(e is not None for e in p.results) < 3
    # the main window still generates afterwards (the cancel did not stick to its jobs)
    window.generator.steps_spin.setValue(2)
    with qtbot.waitSignal(window.jobDone, timeout=GEN_TIMEOUT) as blocker:
        qtbot.mouseClick(window.generator.generate_button, Qt.LeftButton)
    assert blocker.args[0] == "done"


def test_quiz_window_answer_reveal_score_csv(qtbot, tmp_path):
    import csv

    import numpy as np

    from cxrdesk.core.lessons import SCORE_RULE, Case, Lesson
    from cxrdesk.ui.quiz import QuizWindow

    cases = [Case(prompt="Small right pleural effusion", note="Blunted angle."), Case(prompt="Normal chest radiograph"),
             Case(prompt="Left lower lobe pneumonia")]
    films = [(i, c, np.full((64, 64), 1000 + 500 * i, np.uint16), c.prompt) for i, c in enumerate(cases)]
    q = QuizWindow(Lesson("Week 1", cases), films, tmp_path / "quiz")
    qtbot.addWidget(q)
    q.show()
    qtbot.waitExposed(q)
    on_screen = lambda: " ".join(w.text() for w in q.findChildren(type(q.case_label)))  # noqa: E731
    assert SCORE_RULE in on_screen()
    assert "effusion" not in on_screen().lower()  # no answer before the reveal
    assert q.view.has_image()
    q.trainee_edit.setText("Dr Ann Smith")
    q.reveal()  # no call yet: nothing is scored
    assert q.rows == [] and "First call" in q.reveal_label.text()
    q.answer(normal=False, finding="Effusion")
    qtbot.mouseClick(q.reveal_button, Qt.LeftButton)
    assert "Correct. Answer: Effusion" in q.reveal_label.text() and "Blunted angle." in q.reveal_label.text()
    assert q.score_label.text() == "Score 1/1" and not q.normal_radio.isEnabled()
    qtbot.mouseClick(q.next_button, Qt.LeftButton)
    assert q.case_label.text() == "Case 2 of 3"
    q.answer(normal=False, finding="Pneumothorax")  # a normal film called abnormal
    q.reveal()
    assert q.reveal_label.text().startswith("Not scored. Answer: Normal")
    q.next_case()
    q.answer(normal=False, finding="Pneumonia")
    q.reveal()
    with qtbot.waitSignal(q.finished) as blocker:
        q.next_case()  # after the last case: saved and closed
    path = blocker.args[0]
    assert path and "quiz-Dr_Ann_Smith-" in path
    with open(path, encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["case"], r["called"], r["finding"], r["correct"]) for r in rows] == [
        ("1", "abnormal", "Effusion", "yes"), ("2", "abnormal", "Pneumothorax", "no"), ("3", "abnormal", "Pneumonia", "yes"),
        ("score", "", "", "2/3")]
    assert all(r["trainee"] == "Dr Ann Smith" for r in rows)


def test_every_lesson_and_quiz_control_has_a_tooltip(qtbot, tmp_path):
    import numpy as np
    from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit

    from cxrdesk.core.lessons import Case, Lesson
    from cxrdesk.ui.lesson_panel import LessonPanel
    from cxrdesk.ui.quiz import QuizWindow

    panel = LessonPanel()
    c = Case(prompt="Cardiomegaly")
    quiz = QuizWindow(Lesson("t", [c]), [(0, c, np.zeros((32, 32), np.uint16), c.prompt)], tmp_path)
    missing = []
    for top in (panel, quiz):
        qtbot.addWidget(top)
        for cls in (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit):
            for wid in top.findChildren(cls):
                if wid.objectName().startswith("qt_") or (
                        isinstance(wid, QLineEdit) and isinstance(wid.parent(), (QComboBox, QAbstractSpinBox))):
                    continue
                if not wid.toolTip():
                    missing.append(f"{type(wid).__name__} {getattr(wid, 'text', lambda: '')()!r}")
    assert not missing, missing


def test_film_cases_need_no_generation(qtbot, tmp_path):
    import numpy as np

    from cxrdesk.core.imaging.pngio import write_png
    from cxrdesk.ui.lesson_panel import LessonPanel

    film = tmp_path / "edited.png"
    write_png(film, np.full((64, 64), 0.3, np.float32), {"prompt": "Left apical pneumothorax", "seed": 3})
    p = LessonPanel()
    qtbot.addWidget(p)
    assert not p.add_film(tmp_path / "none.png") and "not found" in p.message.text()
    assert p.add_film(film)
    assert p.grid.count() == 1 and p.grid.item(0).text() == "Case 1: Pneumothorax\nfilm"
    assert not p.table.item(0, 0).flags() & Qt.ItemIsEditable
    p.pptx_check.setChecked(False)
    assert p.export_set(tmp_path / "out"), p.message.text()
    assert read_answer_key(tmp_path / "out" / "answers.csv")[0]["answer"] == "Pneumothorax"
    from PIL import Image
    assert "pneumothorax" not in " ".join(Image.open(tmp_path / "out" / "case_01.png").text.values()).lower()
    quiz = p.start_quiz(full_screen=False)
    qtbot.addWidget(quiz)
    assert len(quiz.films) == 1 and quiz.films[0][3] == "Left apical pneumothorax"
    assert p.save_lesson(tmp_path / "l.toml")
    from cxrdesk.core.lessons import load_lesson
    assert load_lesson(tmp_path / "l.toml").cases[0].film == str(film.resolve())
