"""The Lesson panel: write or load a lesson, generate all its cases in the background, keep,
regenerate or drop each result, save the lesson and export the set (films as unknowns, answer key,
PPTX handout).

Generation goes through the main window's worker (one model, one thread): the panel sends one case
at a time as a job with an id from the window's counter, so the window ignores its signals, and the
next case when the worker reports the job finished. Nothing here calls the model.
"""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel,
                               QLineEdit, QProgressBar, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from ..core.lessons import Case, Lesson, LessonError, case_label, load_film, load_lesson, save_lesson
from .film_grid import FilmGrid
from .generator_panel import finding_words

COLUMNS = ("Prompt", "Answer", "Note", "Seed")
THUMB = 112


class LessonPanel(QWidget):
    """Lesson editor and batch generator. ``mw``: the main window (its job counter, viewer, status bar)."""

    generationDone = Signal(str)  # "done" | "cancelled" | "error"
    statusMessage = Signal(str)

    def __init__(self, mw=None, parent=None):
        super().__init__(parent)
        self.mw = mw
        self.host = None
        self.lesson = Lesson(title="New lesson", cases=[])
        self.results: list = []  # parallel to lesson.cases: HistoryEntry or None
        self.queue: list[int] = []  # case indices still to generate
        self.job: int | None = None
        self.job_case: int | None = None
        self._own_job_id = 0
        self._filling = False

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Title"))
        self.title_edit = QLineEdit(self.lesson.title)
        self.title_edit.setToolTip("The lesson's title (the handout's title slide)")
        row.addWidget(self.title_edit, 1)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.new_button = QPushButton("New")
        self.open_button = QPushButton("Open...")
        self.open_button.setToolTip("Open a lesson (.toml, .json) or a prompt list (.txt: one case per line)")
        self.save_button = QPushButton("Save...")
        self.save_button.setToolTip("Save the lesson as TOML or JSON (a plain file to share and keep in version control)")
        for b in (self.new_button, self.open_button, self.save_button):
            row.addWidget(b)
        lay.addLayout(row)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeaderItem(1).setToolTip("Shown on reveal; empty: the findings the prompt names, or Normal")
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.setColumnWidth(0, 200)
        self.table.setColumnWidth(1, 110)
        self.table.setColumnWidth(2, 120)
        self.table.setColumnWidth(3, 90)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setToolTip("One row per case: the prompt to draw, the answer shown on reveal, a teaching note, "
                              "and a seed to draw the same film every time (empty: a new film each run)")
        lay.addWidget(self.table, 2)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add case")
        self.film_button = QPushButton("Add film...")
        self.film_button.setToolTip("Add a case from a film made earlier (a PNG, e.g. an edited film)")
        self.remove_button = QPushButton("Remove")
        self.up_button = QPushButton("Up")
        self.down_button = QPushButton("Down")
        for b in (self.add_button, self.film_button, self.remove_button, self.up_button, self.down_button):
            row.addWidget(b)
        lay.addLayout(row)

        row = QHBoxLayout()
        row.addWidget(QLabel("Steps"))
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 200)
        self.steps_spin.setValue(20)
        row.addWidget(self.steps_spin)
        self.generate_button = QPushButton("Generate all")
        self.generate_button.setToolTip("Draw every case in the background (cases with a seed give the same film)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.generate_button, 1)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("idle")
        lay.addWidget(self.progress_bar)

        self.grid = FilmGrid(THUMB)
        self.grid.setToolTip("The results, captioned by case (double click or Enter: show in the viewer)")
        lay.addWidget(self.grid, 3)
        row = QHBoxLayout()
        self.keep_button = QPushButton("Keep")
        self.keep_button.setToolTip("Keep this film: its seed goes into the lesson, so it is drawn again the same")
        self.regen_button = QPushButton("Regenerate")
        self.regen_button.setToolTip("Draw this case again with a new seed")
        self.drop_button = QPushButton("Drop")
        self.drop_button.setToolTip("Remove this case from the lesson")
        for b in (self.keep_button, self.regen_button, self.drop_button):
            row.addWidget(b)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.unknown_check = QCheckBox("As unknowns")
        self.unknown_check.setChecked(True)
        self.unknown_check.setToolTip("No prompt or finding word in the files; the answers only in answers.csv")
        self.dicom_check = QCheckBox("DICOM")
        self.pptx_check = QCheckBox("Slides")
        self.pptx_check.setChecked(True)
        self.answers_combo = QComboBox()
        self.answers_combo.addItems(["answers after each film", "answers at the end"])
        self.quiz_button = QPushButton("Quiz...")
        self.quiz_button.setToolTip("Show the drawn cases as unknowns, full screen: trainees answer, reveal, score; "
                                    "results saved as CSV per trainee")
        self.export_button = QPushButton("Export set...")
        self.export_button.setToolTip("Write the films, answers.csv and optionally DICOM and a PPTX handout to a folder")
        for w in (self.unknown_check, self.dicom_check, self.pptx_check, self.answers_combo, self.quiz_button,
                  self.export_button):
            row.addWidget(w)
        lay.addLayout(row)
        for w, tip in ((self.new_button, "Start an empty lesson"),
                       (self.add_button, "Add a case (edit its prompt, answer, note and seed in the table)"),
                       (self.remove_button, "Remove the selected case"),
                       (self.up_button, "Move the selected case up"),
                       (self.down_button, "Move the selected case down"),
                       (self.steps_spin, "Sampling steps for every case (a lesson file may set its own)"),
                       (self.cancel_button, "Stop generating within one step; the cases drawn so far stay"),
                       (self.dicom_check, "Also write DICOM files (one series per case, 'case 01', ...)"),
                       (self.pptx_check, "Also write lesson.pptx: title slide, one film per slide, the answers"),
                       (self.answers_combo, "Where the handout shows the answers"),
                       (self.grid, self.grid.toolTip())):
            w.setToolTip(tip)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        lay.addWidget(self.message)

        self.new_button.clicked.connect(self.new_lesson)
        self.open_button.clicked.connect(self.open_dialog)
        self.save_button.clicked.connect(self.save_dialog)
        self.add_button.clicked.connect(lambda: self.add_case(Case(prompt="Normal chest radiograph")))
        self.film_button.clicked.connect(self.add_film_dialog)
        self.remove_button.clicked.connect(lambda: self.drop_case(self._table_row()))
        self.up_button.clicked.connect(lambda: self.move_case(self._table_row(), -1))
        self.down_button.clicked.connect(lambda: self.move_case(self._table_row(), +1))
        self.generate_button.clicked.connect(self.generate_all)
        self.cancel_button.clicked.connect(self.cancel)
        self.keep_button.clicked.connect(lambda: self.keep_case(self._grid_row()))
        self.regen_button.clicked.connect(lambda: self.regenerate_case(self._grid_row()))
        self.drop_button.clicked.connect(lambda: self.drop_case(self._grid_row()))
        self.export_button.clicked.connect(self.export_dialog)
        self.quiz_button.clicked.connect(self.start_quiz)
        self.table.itemChanged.connect(self._on_table_edited)
        self.title_edit.textEdited.connect(lambda t: setattr(self.lesson, "title", t.strip() or "Lesson"))
        self.grid.filmActivated.connect(self._show_in_viewer)
        self._refresh()

    # ================================================================== worker
    def connect_worker(self, host) -> None:
        self.host = host
        w = host.worker
        w.progress.connect(self._on_progress)
        w.resultReady.connect(self._on_result)
        w.jobFinished.connect(self._on_finished)

    def is_running(self) -> bool:
        return self.job is not None

    def _next_job_id(self) -> int:
        if self.mw is not None and hasattr(self.mw, "job_id"):
            self.mw.job_id += 1  # one counter with the window: it ignores this job's signals
            return self.mw.job_id
        self._own_job_id += 1
        return self._own_job_id

    def generate_all(self) -> None:
        self.generate_cases(list(range(len(self.lesson.cases))))

    def generate_cases(self, indices: list[int], new_seed: bool = False) -> None:
        if self.host is None or self.is_running():
            return
        self._sync_from_table()
        try:
            self.lesson.validate()
        except LessonError as exc:
            self._say(str(exc))
            return
        self.queue = [i for i in indices if 0 <= i < len(self.lesson.cases) and not self.lesson.cases[i].film]
        self._new_seed = set(indices) if new_seed else set()
        self._total = len(self.queue)
        if not self.queue:
            self._say("Nothing to generate: add a case with a prompt.")
            return
        self._set_running(True)
        self._submit_next()

    def _submit_next(self) -> None:
        if not self.queue:
            self.job = self.job_case = None
            self._set_running(False)
            self._say(f"Done: {self._total} case(s) drawn.")
            self.generationDone.emit("done")
            return
        i = self.queue.pop(0)
        c = self.lesson.cases[i]
        self.job, self.job_case = self._next_job_id(), i
        seed = None if (c.seed is None or i in self._new_seed) else int(c.seed)
        job = {"job": self.job, "prompt": c.prompt, "steps": int(self.lesson.steps or self.steps_spin.value()),
               "seed": seed, "random_seed": seed is None, "batch": 1, "size": 256, "preview_every": 1000,
               "attention_words": finding_words(c.prompt)}  # for the quiz's reveal (where the model looked)
        if self.lesson.guidance is not None:
            job["guidance_scale"] = float(self.lesson.guidance)
        done = self._total - len(self.queue) - 1
        self.progress_bar.setRange(0, self._total)
        self.progress_bar.setValue(done)
        self.progress_bar.setFormat(f"{case_label(i)}: {done}/{self._total}")
        self.host.requestGenerate.emit(job)

    def cancel(self) -> None:
        if self.job is None:
            return
        self.queue = []
        self.host.worker.cancel(self.job)
        self.progress_bar.setFormat("cancelling...")

    def _on_progress(self, job, index, count, step, total, eta) -> None:
        if job != self.job:
            return
        done = self._total - len(self.queue) - 1
        self.progress_bar.setRange(0, self._total * total)
        self.progress_bar.setValue(done * total + step)
        self.progress_bar.setFormat(f"{case_label(self.job_case)}: step {step}/{total} ({done + 1}/{self._total})")

    def _on_result(self, job, entry) -> None:
        if job != self.job or self.job_case is None:
            return
        self.results[self.job_case] = entry
        self._record_in_history(entry, self.job_case)
        self._refresh_grid()

    def _record_in_history(self, entry, i: int) -> None:
        """A case's film joins the window's History strip like any generated film, its provenance
        saying which lesson and case it was drawn for (kept in the result's JSON too)."""
        mw = self.mw
        entry.params["lesson"] = {"title": self.lesson.title, "case": i + 1}
        store = getattr(mw, "store", None)
        if store is not None:
            try:
                store.update(entry)
            except OSError as exc:  # the film is saved already; only its lesson note is missing on disk
                self._say(f"Case {i + 1}: the lesson note could not be saved with the film ({exc})")
        history = getattr(mw, "history", None)
        if history is not None:
            history.add(entry, select=False)

    def _on_finished(self, job, status, message) -> None:
        if job != self.job:
            return
        if status != "done":
            self.queue = []
            self.job = self.job_case = None
            self._set_running(False)
            self._say(("Cancelled" if status == "cancelled" else "Failed") + f": {message}")
            self.generationDone.emit(status)
            return
        self._submit_next()

    def _set_running(self, on: bool) -> None:
        for w in (self.generate_button, self.open_button, self.new_button, self.add_button, self.film_button,
                  self.remove_button,
                  self.up_button, self.down_button, self.keep_button, self.regen_button, self.drop_button,
                  self.export_button, self.quiz_button, self.table):
            w.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        if not on:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat("idle")

    # ================================================================== editing
    def set_lesson(self, lesson: Lesson) -> None:
        if self.is_running():
            return
        self.lesson = lesson
        self.results = [None] * len(lesson.cases)
        self._refresh()

    def new_lesson(self) -> None:
        self.set_lesson(Lesson(title="New lesson", cases=[]))

    def add_case(self, case: Case) -> None:
        self._sync_from_table()
        self.lesson.cases.append(case)
        self.results.append(None)
        self._refresh()
        self.table.selectRow(len(self.lesson.cases) - 1)

    def drop_case(self, i: int) -> None:
        if self.is_running() or not 0 <= i < len(self.lesson.cases):
            return
        self._sync_from_table()
        del self.lesson.cases[i]
        del self.results[i]
        self._refresh()

    def move_case(self, i: int, by: int) -> None:
        j = i + by
        if self.is_running() or not (0 <= i < len(self.lesson.cases) and 0 <= j < len(self.lesson.cases)):
            return
        self._sync_from_table()
        c, r = self.lesson.cases, self.results
        c[i], c[j] = c[j], c[i]
        r[i], r[j] = r[j], r[i]
        self._refresh()
        self.table.selectRow(j)

    def keep_case(self, i: int) -> None:
        """Fix the case's seed to the one its film was drawn with."""
        if not 0 <= i < len(self.results) or self.results[i] is None:
            return
        self.lesson.cases[i].seed = int(self.results[i].seed)
        self._refresh()
        self._say(f"{case_label(i).capitalize()} kept: seed {self.lesson.cases[i].seed} saved with the lesson.")

    def regenerate_case(self, i: int) -> None:
        if 0 <= i < len(self.lesson.cases):
            self.generate_cases([i], new_seed=True)

    def _table_row(self) -> int:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else len(self.lesson.cases) - 1

    def _grid_row(self) -> int:
        i = self.grid.current_data()
        return int(i) if i is not None else -1

    def _on_table_edited(self, item) -> None:
        if not self._filling:
            self._sync_from_table()
            self._refresh_grid()

    def _sync_from_table(self) -> None:
        """Table cells -> lesson cases (a bad seed is left as it was and shown again)."""
        for r, c in enumerate(self.lesson.cases):
            cells = [self.table.item(r, k).text() if self.table.item(r, k) else "" for k in range(len(COLUMNS))]
            if not c.film:
                c.prompt = cells[0].strip()
            c.answer, c.note = cells[1].strip(), cells[2].strip()
            s = cells[3].strip()
            if not s:
                c.seed = None
            elif s.isdigit() and int(s) < 2 ** 63:
                c.seed = int(s)

    def _refresh(self) -> None:
        self._filling = True
        try:
            self.title_edit.setText(self.lesson.title)
            self.table.setRowCount(len(self.lesson.cases))
            for r, c in enumerate(self.lesson.cases):
                values = [c.prompt or f"film: {c.film}", c.answer, c.note, "" if c.seed is None else str(c.seed)]
                for k, v in enumerate(values):
                    item = QTableWidgetItem(v)
                    if k == 0 and c.film:
                        item.setFlags(item.flags() & ~Qt.ItemIsEditable)
                    self.table.setItem(r, k, item)
            self.table.setVerticalHeaderLabels([str(i + 1) for i in range(len(self.lesson.cases))])
        finally:
            self._filling = False
        self._refresh_grid()

    def _refresh_grid(self) -> None:
        current = self._grid_row()
        self.grid.clear()
        for i, (c, e) in enumerate(zip(self.lesson.cases, self.results)):
            if e is None and not c.film:
                continue
            try:
                if c.film:
                    image, meta = load_film(self.lesson, c)
                    prompt, second = str(meta.get("prompt") or ""), "film"
                else:
                    image, prompt = e.image(), e.prompt
                    second = f"seed {e.seed}" + (" (kept)" if c.seed is not None and int(c.seed) == e.seed else "")
            except Exception:  # noqa: BLE001 - a result or film file gone: caption only
                image, prompt, second = None, c.prompt, "missing"
            item = self.grid.add_film(image, f"Case {i + 1}: {c.answer_text(prompt)}\n{second}",
                                      f"{c.prompt}\n{c.note}".strip(), i)
            if i == current:
                self.grid.setCurrentItem(item)

    def _show_in_viewer(self, i) -> None:
        i = int(i)
        if self.mw is not None and hasattr(self.mw, "show_entry") and self.results[i] is not None:
            self.mw.show_entry(self.results[i])

    def _all_drawn(self) -> bool:
        """True when every case has a film (drawn, or a film case); else says which are missing."""
        missing = [i + 1 for i, (c, e) in enumerate(zip(self.lesson.cases, self.results)) if e is None and not c.film]
        if missing or not self.lesson.cases:
            self._say("Generate every case first (missing: " + ", ".join(map(str, missing)) + ")." if missing
                      else "The lesson has no cases.")
            return False
        return True

    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.statusMessage.emit(text)

    # ================================================================== files
    def _ask(self, kind: str, title: str, start: str, filters: str) -> str:
        if os.environ.get("CXRDESK_NO_DIALOGS"):
            return ""
        if kind == "open":
            return QFileDialog.getOpenFileName(self, title, start, filters)[0]
        if kind == "save":
            return QFileDialog.getSaveFileName(self, title, start, filters)[0]
        return QFileDialog.getExistingDirectory(self, title, start)

    def open_dialog(self) -> None:
        path = self._ask("open", "Open lesson", str(Path.home()),
                         "Lessons (*.toml *.json *.txt);;All files (*)")
        if path:
            self.open_lesson(path)

    def open_lesson(self, path) -> bool:
        try:
            lesson = load_lesson(path)
        except LessonError as exc:
            self._say(str(exc))
            return False
        if lesson.steps:
            self.steps_spin.setValue(int(lesson.steps))
        self.set_lesson(lesson)
        self._say(f"Opened {Path(path).name}: {len(lesson.cases)} case(s).")
        return True

    def add_film_dialog(self) -> None:
        path = self._ask("open", "Add a film as a case", str(Path.home()), "PNG images (*.png)")
        if path:
            self.add_film(path)

    def add_film(self, path) -> bool:
        """Add a case from a PNG film (its recorded prompt gives the default answer)."""
        case = Case(film=str(Path(path).resolve()))
        try:
            load_film(self.lesson, case)
        except LessonError as exc:
            self._say(str(exc))
            return False
        self.add_case(case)
        return True

    def save_dialog(self) -> None:
        start = str(self.lesson.path) if self.lesson.path else str(Path.home() / "lesson.toml")
        path = self._ask("save", "Save lesson", start, "TOML (*.toml);;JSON (*.json)")
        if path:
            self.save_lesson(path if Path(path).suffix else path + ".toml")

    def save_lesson(self, path) -> bool:
        self._sync_from_table()
        try:
            save_lesson(self.lesson, path)
        except (LessonError, OSError) as exc:
            self._say(f"Not saved: {exc}")
            return False
        self._say(f"Saved {Path(path).name}.")
        return True

    def export_dialog(self) -> None:
        folder = self._ask("folder", "Export the lesson's films to a folder", str(Path.home()), "")
        if folder:
            self.export_set(folder)

    def export_set(self, folder) -> bool:
        """The drawn cases into ``folder``: case_NN.png, answers.csv, dicom/ and lesson.pptx as ticked."""
        from ..core.handout import HandoutCase, write_handout
        from ..core.lesson_export import answer_key_rows, export_case, write_answer_key

        self._sync_from_table()
        if not self._all_drawn():
            return False
        out = Path(folder)
        try:
            out.mkdir(parents=True, exist_ok=True)
            dicom_dir = out / "dicom" if self.dicom_check.isChecked() else None
            if dicom_dir is not None:
                dicom_dir.mkdir(exist_ok=True)
            rows, handout, study = [], [], None
            for i, (c, e) in enumerate(zip(self.lesson.cases, self.results)):
                image, params = load_film(self.lesson, c) if c.film else (e.image(), dict(e.params))
                row = export_case(out, i, image, params, unknown=self.unknown_check.isChecked(),
                                  dicom_dir=dicom_dir, study_uid=study)
                study = row["study_uid"] or study
                rows.append(row)
                handout.append(HandoutCase(image, c.answer_text(row["prompt"]), c.note))
            write_answer_key(out / "answers.csv", answer_key_rows(self.lesson, rows))
            if self.pptx_check.isChecked():
                write_handout(out / "lesson.pptx", self.lesson.title, handout,
                              answers="after" if self.answers_combo.currentIndex() == 0 else "end")
        except (LessonError, OSError, ValueError) as exc:
            self._say(f"Export failed: {exc}")
            return False
        self._say(f"Exported {len(rows)} case(s) to {out}" + (" as unknowns" if self.unknown_check.isChecked() else "")
                  + "; the answers are in answers.csv.")
        return True

    # ================================================================== quiz
    def start_quiz(self, full_screen: bool = True):
        """Open quiz mode over the drawn cases (every case must be drawn); returns the window."""
        from ..core.regions import decode_region
        from .paths import data_dir
        from .quiz import QuizWindow

        self._sync_from_table()
        if not self._all_drawn():
            return None
        films = []
        try:
            for i, (c, e) in enumerate(zip(self.lesson.cases, self.results)):
                if c.film:
                    image, meta = load_film(self.lesson, c)
                    edit = meta.get("edit") if isinstance(meta.get("edit"), dict) else {}
                    region = decode_region(edit.get("region"), tuple(image.shape))
                    films.append((i, c, image, str(meta.get("prompt") or ""), {"region": region}))
                else:
                    films.append((i, c, e.image(), e.prompt, {"attention": e.attention()}))
        except (LessonError, OSError) as exc:
            self._say(f"Cannot start the quiz: {exc}")
            return None
        self.quiz = QuizWindow(self.lesson, films, data_dir() / "quiz")
        self.quiz.finished.connect(lambda path: self._say(f"Quiz results saved: {path}" if path else "Quiz ended."))
        if full_screen:
            self.quiz.showFullScreen()
        else:
            self.quiz.show()
        return self.quiz
