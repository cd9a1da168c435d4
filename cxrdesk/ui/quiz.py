"""Quiz mode: a lesson's drawn films as unknowns, one at a time, full screen.

The trainee reads the film (right drag window/level, wheel zoom, M measure, I invert, F fit), calls it
normal or abnormal and picks the finding, may click where the finding is, then reveals: the answer, the
teaching note, whether the call scored under the rule shown on screen
(:data:`cxrdesk.core.lessons.SCORE_RULE`) and, where the film has one, the region an edit redrew
(outlined; the mark is said to be in it or not) or else the attention map of the finding's word (where
the model looked while drawing: not scored, it does not localise a finding). At the end the answers are
saved as one CSV per trainee. The film's prompt is never on screen before the reveal.
"""
from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QRadioButton,
                               QVBoxLayout, QWidget)

from ..core.lesson_export import write_quiz_results
from ..core.lessons import SCORE_RULE, Lesson, finding_choices, score_case
from ..core.regions import hit
from .imageview import ImageView
from .maskpaint import MaskLayer

PICK = "(pick the finding)"
MARK_TOLERANCE = 0.03  # a mark this close to the edited region (fraction of the film's width) is in it
ASK = ("Call the film normal or abnormal (and pick the finding); you may click on the film where you see "
       "it; then Reveal.")


def mark_items(x: float, y: float, width: int) -> list[dict]:
    """The trainee's mark as annotations: an arrow pointing at (x, y) from the upper left, labelled."""
    d = max(6.0, width * 0.08)
    return [{"kind": "arrow", "from": [x - d, y - d], "to": [x, y]},
            {"kind": "text", "at": [x - d, y - d - 3], "text": "your mark"}]


class QuizWindow(QWidget):
    """``films``: [(case index, Case, stored 12-bit image, prompt[, extras])] in quiz order; ``extras``
    (optional dict): ``region`` - a boolean mask at the image's size (the region an edit redrew),
    ``attention`` - {word: map in [0, 1]} recorded while the film was drawn."""

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
        self.view.base_tip = ("Left click: mark where the finding is (optional; Backspace removes the mark)  |  "
                              "Right drag: window/level  |  Wheel: zoom  |  Middle drag: pan  |  M: measure  |  "
                              "I: invert  |  F: fit")
        self.view.setToolTip(self.view.base_tip)
        self.mark: tuple[float, float] | None = None   # the trainee's click, image coordinates
        self.view.textRequested.connect(self._marked)
        self.region_layer = MaskLayer(self)  # the edited region's outline, on reveal
        self.region_layer.attach(self.view)
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
        self.measure_button.toggled.connect(self._set_measuring)
        self.abnormal_radio.toggled.connect(lambda on: self.finding_combo.setEnabled(on and not self.revealed))
        for key, slot in (("Space", self.reveal), ("Return", self.next_case), ("Enter", self.next_case),
                          ("Escape", self.end), ("N", lambda: self.normal_radio.setChecked(True)),
                          ("A", lambda: self.abnormal_radio.setChecked(True)),
                          ("M", self.measure_button.toggle), ("F", self.view.zoom_to_fit),
                          ("Backspace", self.clear_mark),
                          ("I", lambda: self.view.set_inverted(not self.view.inverted()))):
            QShortcut(QKeySequence(key), self, activated=slot)
        self._show_case()

    # ------------------------------------------------------------------------------------------
    def score(self) -> tuple[int, int]:
        return sum(1 for r in self.rows if r["correct"] == "yes"), len(self.rows)

    def film(self, pos: int | None = None) -> tuple:
        """(case index, Case, image, prompt, extras) of the film at ``pos`` (default: the current one)."""
        f = self.films[self.pos if pos is None else pos]
        return (*f[:4], dict(f[4]) if len(f) > 4 and isinstance(f[4], dict) else {})

    # ------------------------------------------------------------------ the mark
    def _set_measuring(self, on: bool) -> None:
        self.view.set_measuring(on)
        self.view.set_annotating("" if (on or self.revealed) else "text")  # a click marks, unless measuring

    def _marked(self, at) -> None:
        if self.revealed:
            return
        self.set_mark(at.x(), at.y())

    def set_mark(self, x: float, y: float) -> None:
        """Mark where the trainee sees the finding (image coordinates); a new mark replaces the old."""
        if self.revealed or not self.view.has_image():
            return
        h, w = self.view.image().shape
        x, y = min(max(float(x), 0.0), float(w)), min(max(float(y), 0.0), float(h))
        self.mark = (x, y)
        self.view.set_annotations(mark_items(x, y, w))

    def clear_mark(self) -> None:
        if self.revealed:
            return
        self.mark = None
        self.view.set_annotations([])

    def _location(self, region) -> str:
        """Where the mark is against the film's edited region, in words for the CSV and the reveal."""
        if region is None:
            return "no region to check" if self.mark is None else "marked (no region to check)"
        if self.mark is None:
            return "not marked"
        tol = MARK_TOLERANCE * region.shape[1]
        return "in the edited region" if hit(region, *self.mark, tolerance=tol) else "outside the edited region"

    # ------------------------------------------------------------------ cases
    def _show_case(self) -> None:
        i, case, image, _prompt, _extras = self.film()
        self.revealed = False
        self.case_label.setText(f"Case {self.pos + 1} of {len(self.films)}")
        self.view.set_image(image, synthetic=True, caption=f"Case {self.pos + 1} - unknown")
        self.view.clear_overlay()
        self.region_layer.set_outline(None)
        self.mark = None
        self.view.set_annotations([])
        self._set_measuring(self.measure_button.isChecked())
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
        self.reveal_label.setText(ASK)
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
        i, case, image, prompt, extras = self.film()
        normal = self.normal_radio.isChecked()
        finding = "" if normal or self.finding_combo.currentIndex() == 0 else self.finding_combo.currentText()
        ok = score_case(case, normal, finding, prompt)
        region = extras.get("region")
        if region is not None and tuple(region.shape) != tuple(image.shape):
            region = None
        location = self._location(region)
        self.revealed = True
        self.view.set_annotating("")
        self.rows.append({"trainee": self.trainee(), "case": i + 1, "called": "normal" if normal else "abnormal",
                          "finding": finding, "correct": "yes" if ok else "no", "answer": case.answer_text(prompt),
                          "note": case.note, "time": _dt.datetime.now().isoformat(timespec="seconds"),
                          "mark": "" if self.mark is None else f"{self.mark[0]:.1f} {self.mark[1]:.1f}",
                          "location": location})
        for w in (self.normal_radio, self.abnormal_radio, self.finding_combo, self.reveal_button):
            w.setEnabled(False)
        self.next_button.setEnabled(True)
        verdict = "Correct" if ok else "Not scored"
        text = f"{verdict}. Answer: {case.answer_text(prompt)}"
        if region is not None:
            self.region_layer.set_outline(region)
            text += ("\nOutlined: the region the edit redrew. " +
                     {"not marked": "You did not mark a place.", "in the edited region": "Your mark is in it.",
                      "outside the edited region": "Your mark is outside it."}[location])
        else:
            word = _attention_word(extras.get("attention") or {}, case.answer_text(prompt))
            if word:
                self.view.set_overlay(extras["attention"][word], word)
                text += (f"\nShown: where the model looked for '{word}' while drawing; not where the finding is "
                         "(a mark is not scored against it).")
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

    def trainee(self) -> str:  # noqa: D102
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


def _attention_word(maps: dict, answer: str) -> str:
    """The recorded attention word that names the answer's finding ("" when none does)."""
    low = answer.lower()
    for word in sorted(maps, key=len, reverse=True):
        if len(word) > 3 and word.lower() in low:
            return word
    return ""
