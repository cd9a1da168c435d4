"""Quiz mode: a lesson's drawn films as unknowns, one at a time, full screen.

The trainee reads the film (right drag window/level, wheel zoom, M measure, I invert, F fit), calls it
normal or abnormal and picks the finding, then reveals: the answer, the teaching note and whether the
call scored under the rule shown on screen (:data:`cxrdesk.core.lessons.SCORE_RULE`). At the end the
answers are saved as one CSV per trainee. The film's prompt is never on screen before the reveal.
"""
from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton,
                               QVBoxLayout, QWidget)

from ..core.lessons import SCORE_RULE, Lesson, finding_choices, score_case, write_quiz_results
from .imageview import ImageView

PICK = "(pick the finding)"


class QuizWindow(QWidget):
    """``cases``: [(case index, Case, stored 12-bit image, prompt)] in quiz order."""

    finished = Signal(str)  # the CSV written ("" when none)

    def __init__(self, lesson: Lesson, films: list[tuple], results_dir: str | Path, parent=None):
        super().__init__(parent, Qt.Window)
        self.setWindowTitle(f"Quiz - {lesson.title} (synthetic images, not for diagnosis)")
        self.lesson = lesson
        self.films = films
        self.results_dir = Path(results_dir)
        self.pos = 0
        self.rows: list[dict] = []
        self.revealed = False
        self.saved_path = ""

        self.view = ImageView()
        self.view.setToolTip("Right drag: window/level; wheel: zoom; M: measure; I: invert; F: fit")
        top = QHBoxLayout()
        self.case_label = QLabel("")
        self.case_label.setStyleSheet("font-size: 18pt; font-weight: bold")
        top.addWidget(self.case_label)
        top.addStretch(1)
        top.addWidget(QLabel("Trainee"))
        self.trainee_edit = QLineEdit()
        self.trainee_edit.setPlaceholderText("your name")
        self.trainee_edit.setToolTip("Your name: the results file is named after it")
        top.addWidget(self.trainee_edit)
        self.score_label = QLabel("")
        self.score_label.setStyleSheet("font-size: 14pt")
        top.addWidget(self.score_label)

        answer = QHBoxLayout()
        self.normal_radio = QRadioButton("Normal")
        self.abnormal_radio = QRadioButton("Abnormal")
        self.normal_radio.setToolTip("Call the film normal (N)")
        self.abnormal_radio.setToolTip("Call the film abnormal and pick the finding (A)")
        self.call_group = QButtonGroup(self)
        self.call_group.addButton(self.normal_radio)
        self.call_group.addButton(self.abnormal_radio)
        self.finding_combo = QComboBox()
        self.finding_combo.addItems([PICK] + finding_choices(lesson, [f[3] for f in films]))
        self.finding_combo.setToolTip("The finding you see (for an abnormal call)")
        self.reveal_button = QPushButton("Reveal (Space)")
        self.reveal_button.setToolTip("Lock your answer and show the case's answer and note")
        self.next_button = QPushButton("Next (Enter)")
        self.next_button.setToolTip("The next film; after the last, save your results")
        self.measure_button = QPushButton("Measure (M)")
        self.measure_button.setCheckable(True)
        self.measure_button.setToolTip("Draw lines on the film (mm where known, else pixels)")
        self.close_button = QPushButton("End quiz (Esc)")
        self.close_button.setToolTip("Stop here and save the answers so far")
        for w in (self.normal_radio, self.abnormal_radio, self.finding_combo, self.reveal_button, self.next_button):
            answer.addWidget(w)
        answer.addStretch(1)
        answer.addWidget(self.measure_button)
        answer.addWidget(self.close_button)
        self.reveal_label = QLabel("")
        self.reveal_label.setWordWrap(True)
        self.reveal_label.setStyleSheet("font-size: 16pt")
        self.rule_label = QLabel(SCORE_RULE)
        self.rule_label.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.view, 1)
        lay.addLayout(answer)
        lay.addWidget(self.reveal_label)
        lay.addWidget(self.rule_label)

        self.reveal_button.clicked.connect(self.reveal)
        self.next_button.clicked.connect(self.next_case)
        self.close_button.clicked.connect(self.end)
        self.measure_button.toggled.connect(self.view.set_measuring)
        self.abnormal_radio.toggled.connect(lambda on: self.finding_combo.setEnabled(on and not self.revealed))
        for key, slot in (("Space", self.reveal), ("Return", self.next_case), ("Enter", self.next_case),
                          ("Escape", self.end), ("N", lambda: self.normal_radio.setChecked(True)),
                          ("A", lambda: self.abnormal_radio.setChecked(True)),
                          ("M", self.measure_button.toggle), ("F", self.view.zoom_to_fit),
                          ("I", lambda: self.view.set_inverted(not self.view.inverted()))):
            QShortcut(QKeySequence(key), self, activated=slot)
        self._show_case()

    # ------------------------------------------------------------------------------------------
    def score(self) -> tuple[int, int]:
        return sum(1 for r in self.rows if r["correct"] == "yes"), len(self.rows)

    def _show_case(self) -> None:
        i, case, image, _prompt = self.films[self.pos]
        self.revealed = False
        self.case_label.setText(f"Case {self.pos + 1} of {len(self.films)}")
        self.view.set_image(image, synthetic=True, caption=f"Case {self.pos + 1} - unknown")
        self.call_group.setExclusive(False)
        self.normal_radio.setChecked(False)
        self.abnormal_radio.setChecked(False)
        self.call_group.setExclusive(True)
        self.finding_combo.setCurrentIndex(0)
        self.finding_combo.setEnabled(False)
        for w in (self.normal_radio, self.abnormal_radio):
            w.setEnabled(True)
        self.reveal_button.setEnabled(True)
        self.next_button.setEnabled(False)
        self.reveal_label.setText("Call the film normal or abnormal (and pick the finding), then Reveal.")
        got, n = self.score()
        self.score_label.setText(f"Score {got}/{n}")

    def answer(self, normal: bool, finding: str = "") -> None:
        """Set the trainee's call (for keyboard-free driving and tests)."""
        (self.normal_radio if normal else self.abnormal_radio).setChecked(True)
        if not normal:
            k = self.finding_combo.findText(finding)
            self.finding_combo.setCurrentIndex(max(0, k))

    def reveal(self) -> None:
        if self.revealed:
            return
        if not (self.normal_radio.isChecked() or self.abnormal_radio.isChecked()):
            self.reveal_label.setText("First call the film normal or abnormal.")
            return
        i, case, _image, prompt = self.films[self.pos]
        normal = self.normal_radio.isChecked()
        finding = "" if normal or self.finding_combo.currentIndex() == 0 else self.finding_combo.currentText()
        ok = score_case(case, normal, finding, prompt)
        self.revealed = True
        self.rows.append({"trainee": self.trainee(), "case": i + 1, "called": "normal" if normal else "abnormal",
                          "finding": finding, "correct": "yes" if ok else "no", "answer": case.answer_text(prompt),
                          "note": case.note, "time": _dt.datetime.now().isoformat(timespec="seconds")})
        for w in (self.normal_radio, self.abnormal_radio, self.finding_combo, self.reveal_button):
            w.setEnabled(False)
        self.next_button.setEnabled(True)
        verdict = "Correct" if ok else "Not scored"
        text = f"{verdict}. Answer: {case.answer_text(prompt)}"
        if case.note:
            text += f"\n{case.note}"
        self.reveal_label.setText(text)
        got, n = self.score()
        self.score_label.setText(f"Score {got}/{n}")

    def next_case(self) -> None:
        if not self.revealed:
            return
        if self.pos + 1 >= len(self.films):
            self.end()
            return
        self.pos += 1
        self._show_case()

    def trainee(self) -> str:
        return " ".join(self.trainee_edit.text().split()) or "trainee"

    def results_path(self) -> Path:
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", self.trainee()).strip("_")[:40] or "trainee"
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return self.results_dir / f"quiz-{name}-{stamp}.csv"

    def end(self) -> None:
        """Save the answers so far (one CSV per trainee, in the results folder) and close."""
        if self.rows and not self.saved_path:
            for r in self.rows:
                r["trainee"] = self.trainee()
            got, n = self.score()
            try:
                self.results_dir.mkdir(parents=True, exist_ok=True)
                self.saved_path = str(write_quiz_results(self.results_path(), self.rows + [
                    {"trainee": self.trainee(), "case": "score", "correct": f"{got}/{n}"}]))
            except OSError as exc:
                self.reveal_label.setText(f"Results not saved: {exc}")
                return
        self.finished.emit(self.saved_path)
        self.close()
