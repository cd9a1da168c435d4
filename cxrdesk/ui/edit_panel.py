"""Edit region panel: paint a region of the film shown and redraw it from text (issue 29).

The brush, eraser, size, undo, clear and "Lungs" act on a ``maskpaint.MaskLayer`` over the main
image view (a translucent overlay, never the pixels). "Edit region" sends the film and the mask to the
model worker (``GenerationWorker.edit``, on its thread); previews arrive on the worker's preview
signal, the result on ``editReady``: it goes into the history and opens in compare beside the
original, the redrawn region outlined on both.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox, QWidget)

from ..core.imaging import imaging
from ..core.generation.editing import DEFAULT_STRENGTH, lung_field_mask
from .layout import fit_scroll_width, scrolling_body
from .maskpaint import MAX_RADIUS, MIN_RADIUS, MaskLayer

EXAMPLES = ("clear lungs", "bilateral ground-glass opacities, COVID-19 pneumonia", "left pleural effusion",
            "right pleural effusion", "right upper lobe consolidation", "left lower lobe pneumonia")
NO_FILM = ("No film shown: generate one, open a PNG or DICOM (Ctrl+O) or pick one in the Dataset browser, "
           "then paint the region to redraw.")
NO_MASK = ("Nothing painted: paint the region to redraw with the brush (B), or press Lungs for both lung "
           "fields.")
NO_PROMPT = "Type what the region should show, e.g. 'clear lungs' or 'left pleural effusion'."
NO_MODEL = ("The model is not loaded, so nothing can be redrawn: open Model info and use 'Load model "
            "folder...' to choose one.")
BUSY = "A generation is running: wait for it to finish or cancel it (Esc), then edit."


class EditPanel(QWidget):
    """The Edit region dock and its actions; ``mw`` is the MainWindow (its view, history, worker)."""

    editDone = Signal(str, str)   # status ("done" | "cancelled" | "error"), message

    def __init__(self, mw, parent=None):
        super().__init__(parent)
        self.mw = mw
        self.layer = MaskLayer(self)
        self.layer.attach(mw.viewer.view)
        self.layer_b = MaskLayer(self)      # the compare pane: the outline only
        self.layer_b.attach(mw.viewer.view_b)
        self.job: int | None = None
        self._source = None                 # the Document being edited
        self._job_mask: np.ndarray | None = None
        self._doc = None                    # the document the mask belongs to
        self._showing_result = False
        self._pending = None
        self._build()
        self._build_actions()
        self.layer.changed.connect(self._mask_changed)
        self.layer.toolChanged.connect(self._tool_changed)
        mw.documentShown.connect(self._document_shown)
        self._mask_changed()

    # ================================================================== construction
    def _build(self) -> None:
        lay = scrolling_body(self)
        g = QGroupBox("Region")
        grid = QGridLayout(g)
        self.brush_button = QPushButton("Brush")
        self.brush_button.setCheckable(True)
        self.brush_button.setToolTip("Paint the region to redraw: left drag on the film (B). Right drag keeps "
                                     "window/level, the wheel zooms, middle drag pans")
        self.eraser_button = QPushButton("Eraser")
        self.eraser_button.setCheckable(True)
        self.eraser_button.setToolTip("Erase part of the painted region: left drag on the film (E)")
        self.brush_button.toggled.connect(lambda on: self.set_tool("brush" if on else ""))
        self.eraser_button.toggled.connect(lambda on: self.set_tool("eraser" if on else ""))
        grid.addWidget(self.brush_button, 0, 0)
        grid.addWidget(self.eraser_button, 0, 1)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(MIN_RADIUS, MAX_RADIUS)
        self.size_spin.setValue(self.layer.radius)
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Brush radius in pixels of the film ([ smaller, ] larger)")
        self.size_spin.valueChanged.connect(self.layer.set_radius)
        size_label = QLabel("Size")
        size_label.setToolTip(self.size_spin.toolTip())
        row = QHBoxLayout()
        row.addWidget(size_label)
        row.addWidget(self.size_spin, 1)
        grid.addLayout(row, 0, 2)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the last stroke, fill or clear (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Remove the whole painted region (Ctrl+Z brings it back)")
        self.clear_button.clicked.connect(self.clear_mask)
        self.lungs_button = QPushButton("Lungs")
        self.lungs_button.setToolTip("Paint both lung fields at once: the default lung-field mask of a frontal "
                                     "film, at this film's size (adjust it with the brush and eraser)")
        self.lungs_button.clicked.connect(self.fill_lungs)
        grid.addWidget(self.undo_button, 1, 0)
        grid.addWidget(self.clear_button, 1, 1)
        grid.addWidget(self.lungs_button, 1, 2)
        self.area_label = QLabel("")
        self.area_label.setWordWrap(True)
        self.area_label.setToolTip("How much of the film the painted region covers. It is drawn in translucent "
                                   "magenta over the film; the film itself is not changed")
        grid.addWidget(self.area_label, 2, 0, 1, 3)
        lay.addWidget(g)

        g = QGroupBox("Redraw the region as")
        form = QFormLayout(g)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.prompt_edit = QLineEdit()
        self.prompt_edit.setPlaceholderText("e.g. clear lungs, left pleural effusion")
        self.prompt_edit.setToolTip("What the painted region should show, in report language. Everything "
                                    "outside it stays exactly as it was (Enter or Ctrl+E redraws)")
        self.prompt_edit.setClearButtonEnabled(True)
        self.prompt_edit.returnPressed.connect(self.request_edit)
        form.addRow("Prompt", self.prompt_edit)
        self.example_box = QComboBox()
        self.example_box.addItem("Examples...")
        for ex in EXAMPLES:
            self.example_box.addItem(ex)
        self.example_box.setToolTip("Example region prompts: pick one to fill the prompt")
        self.example_box.activated.connect(self._example)
        form.addRow("", self.example_box)
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(0.05, 1.0)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setDecimals(2)
        self.strength_spin.setValue(DEFAULT_STRENGTH)
        self.strength_spin.setToolTip(f"How much the region is redrawn: 1 draws it anew from noise, lower keeps "
                                      f"more of its layout (default {DEFAULT_STRENGTH:g})")
        form.addRow("Strength", self.strength_spin)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 200)
        self.steps_spin.setValue(20)
        self.steps_spin.setToolTip("Denoising steps of the schedule; the strength decides how many of them run "
                                   "(20 steps at 0.85: 17)")
        form.addRow("Steps", self.steps_spin)
        seed_row = QHBoxLayout()
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2 ** 31 - 2)
        self.seed_spin.setValue(42)
        self.seed_spin.setToolTip("Seed of the noise: the same film, region, prompt and seed give the same edit")
        self.random_seed_check = QCheckBox("Random")
        self.random_seed_check.setChecked(True)
        self.random_seed_check.setToolTip("A new random seed for every edit (the seed used is in the history)")
        self.random_seed_check.toggled.connect(lambda on: self.seed_spin.setEnabled(not on))
        self.seed_spin.setEnabled(False)
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.random_seed_check)
        form.addRow("Seed", seed_row)
        lay.addWidget(g)

        row = QHBoxLayout()
        self.edit_button = QPushButton("Edit region")
        self.edit_button.setObjectName("primaryButton")
        self.edit_button.setToolTip("Redraw the painted region of the film shown from the prompt (Ctrl+E); "
                                    "the result opens beside the original")
        self.edit_button.clicked.connect(self.request_edit)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running edit within one step (Esc); nothing is saved")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.edit_button, 2)
        row.addWidget(self.cancel_button, 1)
        lay.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("idle")
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setToolTip("Progress of the running edit: step i/N")
        lay.addWidget(self.progress_bar)
        self.message_label = QLabel("")
        self.message_label.setObjectName("errorBanner")
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.message_label.hide()
        lay.addWidget(self.message_label)
        note = QLabel("An edited film is synthetic, like a generated one: its exports say so and record the "
                      "edit. Pixels beyond a narrow feathered edge around the region are the original's.")
        note.setWordWrap(True)
        note.setObjectName("attentionNote")
        lay.addWidget(note)
        lay.addStretch(1)
        fit_scroll_width(lay)

    def _build_actions(self) -> None:
        A = self.mw._action
        self.act_brush = A("Edit &brush", lambda on: self.set_tool("brush" if on else ""), "B",
                           "Paint the region to redraw on the film (B)", checkable=True)
        self.act_eraser = A("Edit &eraser", lambda on: self.set_tool("eraser" if on else ""), "E",
                            "Erase part of the painted region (E)", checkable=True)
        self.act_smaller = A("Smaller brush", lambda: self.size_spin.setValue(self._size_step(-1)), "[",
                             "Make the brush and eraser smaller ([)")
        self.act_larger = A("Larger brush", lambda: self.size_spin.setValue(self._size_step(1)), "]",
                            "Make the brush and eraser larger (])")
        self.act_undo = A("&Undo stroke", self.undo, QKeySequence.Undo,
                          "Undo the last stroke, fill or clear of the painted region (Ctrl+Z)")
        self.act_clear = A("Clear painted region", self.clear_mask, None, "Remove the whole painted region")
        self.act_lungs = A("Paint both &lung fields", self.fill_lungs, None,
                           "Paint the default lung-field mask at the film's size")
        self.act_edit = A("Edit &region", self.request_edit, "Ctrl+E",
                          "Redraw the painted region from the Edit panel's prompt (Ctrl+E)")
        self.act_cancel = A("Cancel edit", self.cancel, "Esc", "Stop the running edit within one step (Esc)")
        self.act_cancel.setEnabled(False)  # enabled only while an edit runs: Esc cancels a generation otherwise

    def actions_for_help(self) -> list:
        return [self.act_brush, self.act_eraser, self.act_smaller, self.act_larger, self.act_undo, self.act_edit,
                self.act_cancel]

    def menu_actions(self) -> list:
        return [self.act_brush, self.act_eraser, self.act_smaller, self.act_larger, self.act_undo, self.act_clear,
                self.act_lungs, None, self.act_edit, self.act_cancel]

    def connect_worker(self, host) -> None:
        self.host = host
        w = host.worker
        w.jobStarted.connect(self._on_started)
        w.progress.connect(self._on_progress)
        w.preview.connect(self._on_preview)
        w.editReady.connect(self._on_result)
        w.jobFinished.connect(self._on_finished)

    # ================================================================== painting
    def set_tool(self, tool: str) -> None:
        if tool and self.is_running():
            tool = ""
        if tool and not self.mw.single_layout_for("Painting a region"):  # the mask is on the main view
            tool = ""
        if tool and not self.mw.view.has_image():
            self._say(NO_FILM)
            tool = ""
        if tool and self.mw.view.is_measuring():
            self.mw.set_measuring(False)
        self.layer.set_tool(tool)
        self._tool_changed(self.layer.tool)

    def _tool_changed(self, tool: str) -> None:
        for widget, on in ((self.brush_button, tool == "brush"), (self.eraser_button, tool == "eraser"),
                           (self.act_brush, tool == "brush"), (self.act_eraser, tool == "eraser")):
            if widget.isChecked() != on:
                widget.blockSignals(True)
                widget.setChecked(on)
                widget.blockSignals(False)
        if tool:
            self.mw.statusBar().showMessage(f"{tool.capitalize()}: left drag on the film; [ and ] change the size, "
                                            "Ctrl+Z undoes a stroke; B / E again stops painting", 8000)

    def _size_step(self, direction: int) -> int:
        r = self.size_spin.value()
        step = max(1, int(round(r * 0.25)))
        return r + direction * step

    def undo(self) -> None:
        if self.is_running():
            return
        if not self.layer.undo():
            self.mw.statusBar().showMessage("Nothing to undo in the painted region", 3000)

    def clear_mask(self) -> None:
        if not self.is_running():
            self.layer.clear()
            self.layer.set_outline(None)

    def fill_lungs(self) -> None:
        if self.is_running() or not self.mw.single_layout_for("Painting a region"):
            return
        if not self.mw.view.has_image() or self.mw.doc is None:
            self._say(NO_FILM)
            return
        self.layer.fill(lung_field_mask(tuple(self.mw.doc.data.shape)))
        self.layer.set_outline(None)
        self.mw.statusBar().showMessage("Both lung fields painted (the default lung-field mask); adjust with the "
                                        "brush (B) and eraser (E)", 6000)

    def mask(self) -> np.ndarray | None:
        """The painted region at the film's size (bool), None when nothing is painted."""
        return None if self.layer.is_empty() else self.layer.mask.copy()

    def _mask_changed(self) -> None:
        a = self.layer.area()
        self.area_label.setText("Nothing painted yet" if a == 0 else f"Painted: {a * 100:.1f}% of the film")
        can = not self.is_running()
        self.undo_button.setEnabled(can and self.layer.can_undo())
        self.clear_button.setEnabled(can and a > 0)
        if a > 0:
            self.message_label.hide()

    def _document_shown(self) -> None:
        """A new film in the main view: the painted region belonged to the one before."""
        doc = self.mw.doc
        if self._showing_result or doc is self._doc:
            return
        self._doc = doc
        self.layer.set_outline(None)
        self.layer_b.set_outline(None)
        if self.layer.mask is None:
            return
        same = doc is not None and self.layer.mask.shape == tuple(doc.data.shape)
        self.layer.clear(undoable=same)
        if same:
            self.mw.statusBar().showMessage("Painted region cleared for the new film (Ctrl+Z brings it back)", 5000)

    # ================================================================== the edit
    def is_running(self) -> bool:
        return self.job is not None

    def _say(self, text: str) -> None:
        """A one-line message in the panel and the status bar (no dialog, no traceback)."""
        self.message_label.setText(text)
        self.message_label.show()
        self.mw.statusBar().showMessage(text, 10000)

    def _example(self, index: int) -> None:
        if index > 0:
            self.prompt_edit.setText(self.example_box.itemText(index))
        self.example_box.setCurrentIndex(0)

    def request_edit(self) -> bool:
        """Check what is needed and start the edit on the worker; False (with a message) when not."""
        mw = self.mw
        if self.is_running():
            return False
        if mw.running_job is not None or mw.host.worker.is_busy():
            self._say(BUSY)
            return False
        if not mw.single_layout_for("Edit region"):
            return False
        doc = mw.doc
        if doc is None or not mw.view.has_image():
            self._say(NO_FILM)
            return False
        mask = self.mask()
        if mask is None or mask.shape != tuple(doc.data.shape):
            self._say(NO_MASK)
            return False
        prompt = " ".join(self.prompt_edit.text().split())
        if not prompt:
            self._say(NO_PROMPT)
            self.prompt_edit.setFocus()
            return False
        if mw.model_state == "failed":
            self._say(NO_MODEL)
            return False
        data = doc.data
        image = imaging.to_unit(data, doc.bits if data.dtype.kind in "ui" else None)
        mw.job_id += 1  # one counter with generation: the main window ignores this job's signals
        self.job = mw.job_id
        self._source = doc
        self._job_mask = mask
        self._pending = None
        random_seed = self.random_seed_check.isChecked()
        job = {"job": self.job, "image": image, "mask": mask, "prompt": prompt,
               "strength": float(self.strength_spin.value()), "steps": int(self.steps_spin.value()),
               "seed": None if random_seed else int(self.seed_spin.value()), "random_seed": random_seed,
               "preview_every": 5}
        self.message_label.hide()
        self.set_tool("")
        self.layer.show_fill = False            # the previews show through; the outline marks the region
        self.layer.set_outline(mask)
        if mw.viewer.is_compare():
            mw.viewer.show_single()
        mw.view.clear_overlay()
        self._set_running(True)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat("loading the model..." if mw.model_state != "loaded" else "starting")
        mw.statusBar().showMessage("Redrawing the painted region..." if mw.model_state == "loaded" else
                                   "Loading the model, then redrawing the painted region...")
        self.host.requestEdit.emit(job)
        return True

    def cancel(self) -> None:
        if self.job is None:
            return
        self.host.worker.cancel(self.job)
        self.progress_bar.setFormat("cancelling...")
        self.mw.statusBar().showMessage("Cancelling the edit...")

    def _set_running(self, on: bool) -> None:
        self.edit_button.setEnabled(not on)
        self.act_edit.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        self.act_cancel.setEnabled(on)
        for w in (self.brush_button, self.eraser_button, self.lungs_button, self.act_brush, self.act_eraser,
                  self.act_lungs, self.act_undo, self.act_clear):
            w.setEnabled(not on)
        self.mw.act_generate.setEnabled(not on)
        self.mw.generator.generate_button.setEnabled(not on)
        self._mask_changed()

    def _on_started(self, job: int, batch: int, steps: int) -> None:
        if job != self.job:
            return
        self.progress_bar.setRange(0, steps)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("0/%d" % steps)

    def _on_progress(self, job, index, count, step, total, eta) -> None:
        if job != self.job:
            return
        for bar in (self.progress_bar, self.mw.progress):
            bar.setRange(0, total)
            bar.setValue(step)
            bar.setFormat(f"edit {step}/{total}" if bar is self.mw.progress else f"{step}/{total}  ~{eta:.0f} s left")

    def _on_preview(self, job, image, step, total, full=True) -> None:
        if job != self.job:
            return
        first = self._pending is None
        self._pending = (image, step, total, full)
        if first:
            QTimer.singleShot(0, self._flush_preview)  # only the newest preview is drawn

    def _flush_preview(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None or self.job is None:
            return
        image, step, total, full = pending
        kind = "" if full else " (fast approximation)"
        self.mw.view.set_image(image, keep_view=True, keep_window=True, synthetic=True,
                               caption=f"Edit preview - step {step}/{total}{kind}")
        self.mw.previewShown.emit(step, total)

    def _on_result(self, job, entry) -> None:
        if job != self.job:
            return
        from .mainwindow import Document

        mw, src, mask = self.mw, self._source, self._job_mask
        self._pending = None
        self._record_region(entry, mask)
        mw.history.add(entry)
        doc = Document(data=entry.image(), bits=12, title=f"Edited - seed {entry.seed}", kind="generated",
                       synthetic=True, params=dict(entry.params), entry=entry, path=entry.image_path)
        self._showing_result = True
        try:
            mw.set_document(doc, keep_window=src.bits == 12, keep_view=True)
        finally:
            self._showing_result = False
        self._doc = doc
        # the result in compare beside the original, the redrawn region outlined on both
        vb = mw.viewer.view_b
        vb.set_image(src.data, window=src.window, synthetic=src.synthetic, caption=f"Original: {src.title}",
                     bits=src.bits, spacing=src.spacing)
        prompt = entry.params.get("prompt", "")
        mw.view.set_caption(f"Edited: \u201c{prompt}\u201d (seed {entry.seed})")
        mw.viewer.show_compare(f"Edited: {prompt}", f"Original: {src.title}")
        mw.viewer._sync_window(mw.view, vb)
        mw.view.clear_overlay()
        if self.layer.mask is None or self.layer.mask.shape != mask.shape:
            self.layer.mask = mask.copy()     # kept: Edit region again redraws the same region
        self.layer.show_fill = False
        self.layer.set_outline(mask)
        self.layer_b.set_outline(mask)

    def _record_region(self, entry, mask) -> None:
        """The redrawn region joins the edited film's provenance (``params["edit"]["region"]``, run
        lengths: core.regions), in its history JSON and in its PNG exports, so that a quiz on the
        film can outline it on reveal."""
        from ..core.regions import encode_region

        if mask is None or not isinstance(entry.params.get("edit"), dict):
            return
        edit = dict(entry.params["edit"])
        edit["region"] = encode_region(mask)
        entry.params["edit"] = edit
        try:
            self.mw.store.update(entry)
        except OSError as exc:
            self.mw.statusBar().showMessage(f"The edited region could not be saved with the film: {exc}", 8000)

    def _on_finished(self, job: int, status: str, msg: str) -> None:
        if job != self.job:
            return
        mw = self.mw
        self.job = None
        self._pending = None
        self._set_running(False)
        for bar in (self.progress_bar, mw.progress):
            bar.setRange(0, 1)
            bar.setValue(1 if status == "done" else 0)
        if status == "done":
            self.progress_bar.setFormat("done")
            mw.progress.setFormat("done")
            mw.statusBar().showMessage(f"Edited: {msg}. Left: the edited film; right: the original, the redrawn "
                                       "region outlined on both (C returns to one image)", 10000)
        else:
            self.progress_bar.setFormat("cancelled" if status == "cancelled" else "failed")
            mw.progress.setFormat(self.progress_bar.format())
            self.layer.set_outline(None)
            self.layer.show_fill = True
            self.layer.view.update()
            if mw.doc is not None:
                mw._display(mw.doc, keep_window=True, keep_view=True)  # the film again, not the last preview
            if status == "cancelled":
                self._say(f"Edit cancelled: {msg}" if msg else "Edit cancelled; nothing was saved.")
            else:
                self._say(f"The region could not be redrawn: {msg}")
        self.editDone.emit(status, msg)

    # ================================================================== settings
    def save_settings(self, s) -> None:
        s.setValue("edit/strength", float(self.strength_spin.value()))
        s.setValue("edit/steps", int(self.steps_spin.value()))
        s.setValue("edit/radius", int(self.size_spin.value()))
        s.setValue("edit/prompt", self.prompt_edit.text())

    def restore_settings(self, s) -> None:
        def get(key, default, typ):
            try:
                return typ(s.value(key, default))
            except (TypeError, ValueError):
                return default

        self.strength_spin.setValue(get("edit/strength", DEFAULT_STRENGTH, float))
        self.steps_spin.setValue(get("edit/steps", 20, int))
        self.size_spin.setValue(get("edit/radius", 12, int))
        self.prompt_edit.setText(str(s.value("edit/prompt", "") or ""))
