"""Generator panel: prompt, examples, parameters, run controls, per-step metrics, highlighting."""
from __future__ import annotations

import json
import random
import re

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QProgressBar,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from .layout import fit_scroll_width, scrolling_body
from ..core.data.findings import mentioned_findings, rare_findings, rare_note, weak_findings, weak_note
from ..core.generation.pipeline import MAX_STEPS, SIZES
from ..core.generation.sampling import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, MAX_GUIDANCE, SAMPLERS
from .chart import MetricsChart
from .paths import resource_path

# A sharp preview is a full VAE decode, about as long as a UNet step on a CPU: every 5th step (4 per
# 20-step image) instead of every 2nd made a generation in the app 17% faster (2.45 s vs 2.95 s on
# the 2-core development machine).
SHARP_PREVIEW_EVERY = 5
MODEL_DEFAULT_TEXT = "model's default"  # "Prompt adherence" before a model is loaded
# Version 2 of the saved settings: the defaults became DPM++ 2M Karras and a sharp preview every 5
# steps; version 3: the sampler the model recommends ("auto"). Older files saved the defaults of
# their day whether or not the user had chosen them: (version before which, key, old default).
SETTINGS_VERSION = 3
OLD_DEFAULTS = [(2, "generator/sampler", "dpm++"), (2, "generator/preview_every", 2),
                (3, "generator/sampler", "dpm++-karras")]
SAMPLER_LABELS = {"auto": "Model's choice", "dpm++-karras": "DPM++ 2M Karras", "dpm++": "DPM++ 2M", "ddim": "DDIM", "euler": "Euler"}
SAMPLER_TIPS = {"auto": "The sampler the model was tuned with (default; Model info names it)",
                "dpm++-karras": "DPM++ 2M with Karras noise levels: the best images at 15-25 steps for models "
                                "trained without a zero terminal SNR schedule",
                "dpm++": "DPM++ 2M, evenly spaced noise levels: fast, good results at 15-25 steps",
                "ddim": "DDIM: deterministic, needs a few more steps",
                "euler": "Euler: simple first-order sampler"}
# Fast mode (issue 28): the model folder's distilled student draws a film in its own few steps (one
# UNet call each). The switch remembers the user's choice ("generator/mode"); Fast is the default
# wherever the loaded model has a student. Drafts while typing need a student too.
FAST_KEY, DRAFT_KEY, KEEP_KEY = "Ctrl+Shift+F", "Ctrl+Shift+D", "Ctrl+K"
DRAFT_PAUSE_MS = 600  # a pause in typing this long draws a draft
DRAFT_PREVIEW_EVERY = 1000  # a draft's steps show the near-free approximation; one VAE decode, the film
FAST_TIP = ("Fast: the model's distilled student draws the film in {steps} steps, one network call each "
            "(several times quicker than Full); the sampler and the negative prompt do not apply ({key})")
FULL_TIP = ("Full: the model itself, guided, in the steps and with the sampler below; slower, the "
            "reference quality ({key})")
NOT_IN_FAST = ("Not used in Fast mode: the distilled student draws with its own sampler (Model info names "
               "it) in its own steps. Switch to Full ({key}) to choose it.")
NEGATIVE_NOT_IN_FAST = ("Not used in Fast mode: the distilled student draws without a negative prompt. "
                        "Switch to Full ({key}) to use one; the text is kept.")
DRAFT_TIP = ("Draw a quick draft film with the distilled student after a short pause in typing the prompt "
             "(the next keystroke stops it). A draft is shown as DRAFT and not saved: Keep ({keep}) puts it "
             "in the History, Generate draws the film as set here. ({key})")
NEGATIVE_TIP = "Findings or qualities the image should not show, e.g. 'effusion, tubes'"
STEPS_TIP = "Denoising steps: more is slower; 15-30 is usually enough with DPM++"
SAMPLER_TIP = "Sampler (noise scheduler) used for denoising"
ATTENTION_NOTE = ("Attention map: where the model looked for the chosen word while it drew the film. "
                  "It is NOT a localisation of a finding (the map for 'effusion' may light up the "
                  "shoulders): read the film, not the map.")
_STOP = set("""a an the and or of in on at to with without for from by is are was were be been no not
there this that these those it its as into than then both left right upper lower middle mild
moderate small large normal study chest radiograph radiography film view pa ap frontal lateral
consistent compatible seen pattern otherwise size visible noted evidence suggest suggests
possible likely may within also which""".split())


def load_examples() -> list[dict]:
    """The project's example prompts (``resources/example_prompts.json``)."""
    try:
        data = json.loads(resource_path("example_prompts.json").read_text(encoding="utf-8"))
        return [p for p in data.get("prompts", []) if p.get("prompt")]
    except (OSError, ValueError):
        return [{"title": "Normal study", "prompt": "Normal PA chest radiograph. The lungs are clear."}]


def finding_words(prompt: str, limit: int = 12) -> list[str]:
    """Candidate words for attention maps: the prompt's content words, in order, no repeats."""
    out: list[str] = []
    for w in re.findall(r"[A-Za-z][A-Za-z\-]{2,}", prompt or ""):
        lw = w.lower().strip("-")
        if lw in _STOP or lw in out or len(lw) < 3:
            continue
        out.append(lw)
        if len(out) >= limit:
            break
    return out


class GeneratorPanel(QWidget):
    generateRequested = Signal(dict)
    cancelRequested = Signal()
    highlightChanged = Signal(str)  # word, "" = off
    realFilmsRequested = Signal(list)  # the prompt's findings (dataset labels)
    draftRequested = Signal(dict)      # a draft's job parameters (after a pause in typing)
    draftStopRequested = Signal()      # a keystroke: a running draft is out of date
    keepDraftRequested = Signal()
    discardDraftRequested = Signal()
    message = Signal(str)              # a one-line note for the status bar

    def __init__(self, parent=None):
        super().__init__(parent)
        self.examples = load_examples()
        self._rng = random.Random()
        # fast mode: what the loaded model offers (None until it is loaded) and what the user prefers
        self.student: dict | None = None
        self.student_note = ""
        self.model_known = False
        self.prefer_fast = True
        self.draft_choice: bool | None = None  # None: drafts follow the model (on with a student)
        self._full_steps = 20          # the Full steps while the box shows the student's
        self._steps_fast = False       # the steps box shows the student's steps
        self._draft_seed = self._rng.randrange(0, 2 ** 31 - 2)  # one per session: drafts differ by the text only
        self._quiet = False            # the prompt is being filled in by the program (no draft)
        self._draft_timer = QTimer(self)
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(DRAFT_PAUSE_MS)
        self._draft_timer.timeout.connect(self._draft_due)
        lay = scrolling_body(self)

        # --- prompt ------------------------------------------------------------------------
        g = QGroupBox("Prompt")
        gl = QVBoxLayout(g)
        row = QHBoxLayout()
        self.example_box = QComboBox()
        self.example_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.example_box.setMinimumContentsLength(12)
        self.example_box.addItem("Example prompts...")
        for ex in self.examples:
            self.example_box.addItem(ex.get("title", ex["prompt"][:40]))
        self.example_box.setToolTip("Example prompts written by the project: pick one to fill the prompt box")
        self.example_box.activated.connect(self._example_chosen)
        self.random_button = QPushButton("Random example")
        self.random_button.setToolTip("Fill the prompt with a randomly chosen example")
        self.random_button.clicked.connect(self.random_example)
        row.addWidget(self.example_box, 1)
        row.addWidget(self.random_button)
        gl.addLayout(row)
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setPlaceholderText("Describe the radiograph in report language, e.g. "
                                            "'Small left pleural effusion. Heart size normal.'")
        self.prompt_edit.setToolTip("Radiology text the image is generated from (Ctrl+Enter generates)")
        self.prompt_edit.setTabChangesFocus(True)
        self.prompt_edit.setFixedHeight(86)
        self.prompt_edit.textChanged.connect(self._prompt_changed)
        gl.addWidget(self.prompt_edit)
        self.negative_edit = QLineEdit()
        self.negative_edit.setPlaceholderText("Negative prompt (optional): what to steer away from")
        self.negative_edit.setToolTip(NEGATIVE_TIP)
        gl.addWidget(self.negative_edit)
        self.label_counts: dict = {}
        self.rare_label = QLabel("")
        self.rare_label.setObjectName("caveatNote")
        self.rare_label.setWordWrap(True)
        self.findings_check: dict | None = None
        self.rare_label.setToolTip("From the model folder's training-film counts and findings check: a finding "
                                   "the model saw few films of, or drew poorly when checked, is best taught "
                                   "with real films")
        self.rare_label.hide()
        gl.addWidget(self.rare_label)
        self.real_button = QPushButton("Real films with this finding")
        self.real_button.clicked.connect(lambda: self.realFilmsRequested.emit(prompt_findings(self.prompt_text())))
        gl.addWidget(self.real_button)
        self._update_real_button()
        lay.addWidget(g)

        # --- parameters --------------------------------------------------------------------
        g = QGroupBox("Parameters")
        form = QFormLayout(g)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        mode_row = QHBoxLayout()
        mode_row.setSpacing(0)
        self.fast_button = QPushButton("Fast")
        self.full_button = QPushButton("Full")
        self.mode_group = QButtonGroup(self)
        for b in (self.fast_button, self.full_button):
            b.setCheckable(True)
            b.setObjectName("modeButton")
            self.mode_group.addButton(b)
            mode_row.addWidget(b)
        self.mode_group.setExclusive(True)
        self.fast_button.clicked.connect(lambda: self.set_fast(True))
        self.full_button.clicked.connect(lambda: self.set_fast(False))
        mode_row.addStretch(1)
        form.addRow("Mode", mode_row)
        self.mode_note = QLabel("")
        self.mode_note.setObjectName("modeNote")
        self.mode_note.setWordWrap(True)
        self.mode_note.setToolTip("What the Generate button draws with")
        form.addRow("", self.mode_note)
        self.draft_check = QCheckBox("Draft while typing")
        self.draft_check.toggled.connect(self._draft_toggled)
        form.addRow("", self.draft_check)
        self.act_fast = QAction("&Fast generation (distilled)", self)
        self.act_fast.setCheckable(True)
        self.act_fast.setShortcut(QKeySequence(FAST_KEY))
        self.act_fast.triggered.connect(self.toggle_fast)
        self.act_draft = QAction("&Draft while typing", self)
        self.act_draft.setCheckable(True)
        self.act_draft.setShortcut(QKeySequence(DRAFT_KEY))
        self.act_draft.triggered.connect(lambda on: self.draft_check.setChecked(on) if self.draft_check.isEnabled()
                                         else self._draft_unavailable())
        self.act_keep_draft = QAction("&Keep the draft", self)
        self.act_keep_draft.setShortcut(QKeySequence(KEEP_KEY))
        self.act_keep_draft.setToolTip("Save the draft on screen in the History, as a film drawn in Fast mode "
                                       f"({KEEP_KEY})")
        self.act_keep_draft.setStatusTip(self.act_keep_draft.toolTip())
        self.act_keep_draft.triggered.connect(lambda: self.keepDraftRequested.emit())
        self.act_keep_draft.setEnabled(False)
        self.size_box = QComboBox()
        for s in SIZES:
            self.size_box.addItem(f"{s} x {s}", s)
        self.size_box.setToolTip("Output resolution. The model draws at its native size; larger sizes "
                                 "are upsampled (noted in the image's parameters).")
        form.addRow("Resolution", self.size_box)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, MAX_STEPS)
        self.steps_spin.setValue(20)
        self.steps_spin.setToolTip(STEPS_TIP)
        form.addRow("Steps", self.steps_spin)
        self.guidance_spin = QDoubleSpinBox()
        self.guidance_spin.setRange(0.0, MAX_GUIDANCE)
        self.guidance_spin.setSingleStep(0.5)
        self.guidance_spin.setDecimals(1)
        self.guidance_spin.setValue(DEFAULT_GUIDANCE)
        # The spin box follows the loaded model's recommended guidance until the user picks another
        # value; that choice is kept across models and runs. Until a model is loaded it shows "model's
        # default" (and a job asks for the model's value), not a number the model may not use.
        self._model_guidance = DEFAULT_GUIDANCE
        self.guidance_custom = False
        self.model_guidance_known = False
        self._show_model_default(True)
        self.guidance_spin.valueChanged.connect(self._guidance_edited)
        self._guidance_tooltip()
        form.addRow("Prompt adherence", self.guidance_spin)
        self.sampler_box = QComboBox()
        for s in SAMPLERS:
            self.sampler_box.addItem(SAMPLER_LABELS.get(s, s), s)
            self.sampler_box.setItemData(self.sampler_box.count() - 1, SAMPLER_TIPS.get(s, s), Qt.ToolTipRole)
        self.sampler_box.setToolTip(SAMPLER_TIP)
        form.addRow("Sampler", self.sampler_box)
        seed_row = QHBoxLayout()
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2 ** 31 - 2)
        self.seed_spin.setValue(42)
        self.seed_spin.setToolTip("Seed of the random noise: the same seed and parameters give the same image")
        self.random_seed_check = QCheckBox("Random")
        self.random_seed_check.setChecked(True)
        self.random_seed_check.setToolTip("Pick a new random seed for every run (the seed used is shown)")
        self.random_seed_check.toggled.connect(lambda on: self.seed_spin.setEnabled(not on))
        self.seed_spin.setEnabled(False)
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.random_seed_check)
        form.addRow("Seed", seed_row)
        self.seed_used_label = QLabel("-")
        self.seed_used_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.seed_used_label.setToolTip("The seed of the last generated image (select to copy)")
        form.addRow("Seed used", self.seed_used_label)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 32)
        self.batch_spin.setValue(1)
        self.batch_spin.setToolTip("Number of images per run (consecutive seeds)")
        form.addRow("Batch count", self.batch_spin)
        self.preview_spin = QSpinBox()
        self.preview_spin.setRange(1, 50)
        self.preview_spin.setValue(SHARP_PREVIEW_EVERY)
        self.preview_spin.setSuffix(" steps")
        self.preview_spin.setToolTip("A quick approximate preview appears after every step; a sharp preview "
                                     "(one VAE decode, about as long as a step) every N steps, and the quality "
                                     "chart uses those. 1 = sharp every step (slower on a CPU); raise it on "
                                     "slow machines. Fast films (a few steps in under a second) get only the "
                                     "quick previews, and the film itself.")
        form.addRow("Sharp preview every", self.preview_spin)
        self.attention_check = QCheckBox("Record attention maps")
        self.attention_check.setChecked(True)
        self.attention_check.setToolTip("Record the model's cross-attention for the prompt's words, for the "
                                        "highlighting overlay (small extra cost)")
        form.addRow("", self.attention_check)
        lay.addWidget(g)

        # --- run ---------------------------------------------------------------------------
        row = QHBoxLayout()
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("primaryButton")
        self.generate_button.setToolTip("Generate image(s) from the prompt (Ctrl+Enter)")
        self.generate_button.clicked.connect(self.request_generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running generation within one step (Esc)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancelRequested)
        row.addWidget(self.generate_button, 2)
        row.addWidget(self.cancel_button, 1)
        lay.addLayout(row)
        self.draft_bar = QWidget()
        self.draft_bar.setObjectName("draftBar")
        row = QHBoxLayout(self.draft_bar)
        row.setContentsMargins(0, 0, 0, 0)
        self.draft_label = QLabel("")
        self.draft_label.setObjectName("draftState")
        self.draft_label.setWordWrap(True)
        self.draft_label.setToolTip("A draft is a quick film of the prompt as typed, drawn in Fast mode; it is "
                                    "not in the History unless you keep it")
        self.keep_button = QPushButton("Keep")
        self.keep_button.setToolTip("Keep the draft: save it in the History like a film drawn in Fast mode "
                                    f"({KEEP_KEY})")
        self.keep_button.clicked.connect(lambda: self.keepDraftRequested.emit())
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Take the draft off the view: the film shown before it comes back (Esc)")
        self.discard_button.clicked.connect(lambda: self.discardDraftRequested.emit())
        row.addWidget(self.draft_label, 1)
        row.addWidget(self.keep_button)
        row.addWidget(self.discard_button)
        self.draft_bar.hide()
        lay.addWidget(self.draft_bar)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("idle")
        self.progress_bar.setToolTip("Denoising progress: step i/N and estimated time remaining")
        lay.addWidget(self.progress_bar)
        self.error_label = QLabel("")
        self.error_label.setObjectName("errorBanner")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.error_label.hide()
        lay.addWidget(self.error_label)

        # --- metrics -----------------------------------------------------------------------
        g = QGroupBox("Quality over the run")
        gl = QVBoxLayout(g)
        self.chart = MetricsChart()
        gl.addWidget(self.chart)
        self.final_label = QLabel("Final image: -")
        self.final_label.setWordWrap(True)
        self.final_label.setToolTip("Metrics of the final image: RMS contrast, sharpness (variance of the "
                                    "Laplacian, 8-bit scale) and entropy (bits)")
        gl.addWidget(self.final_label)
        lay.addWidget(g)

        # --- highlighting ------------------------------------------------------------------
        g = QGroupBox("Highlighting")
        gl = QVBoxLayout(g)
        row = QHBoxLayout()
        self.highlight_check = QCheckBox("Show attention for")
        self.highlight_check.setToolTip("Overlay where the model looked for the chosen word while drawing "
                                        "(its cross-attention, averaged over the steps); not where a finding "
                                        "is (H)")
        self.word_box = QComboBox()
        self.word_box.setToolTip("A word from the prompt; attention is averaged over all denoising steps")
        self.word_box.setMinimumContentsLength(10)
        row.addWidget(self.highlight_check)
        row.addWidget(self.word_box, 1)
        gl.addLayout(row)
        note = QLabel(ATTENTION_NOTE)
        note.setObjectName("attentionNote")
        note.setWordWrap(True)
        gl.addWidget(note)
        self.highlight_check.toggled.connect(self._highlight)
        self.word_box.currentIndexChanged.connect(self._highlight)
        self.set_attention_words([])
        lay.addWidget(g)
        lay.addStretch(1)
        self._apply_mode()
        fit_scroll_width(lay)

    # ------------------------------------------------------------------ prompt helpers
    def _example_chosen(self, index: int) -> None:
        if index <= 0:
            return
        self.use_example(self.examples[index - 1])
        with QSignalBlocker(self.example_box):
            self.example_box.setCurrentIndex(0)

    def use_example(self, ex: dict) -> None:
        self.prompt_edit.setPlainText(ex["prompt"])
        self.negative_edit.setText(ex.get("negative", ""))

    def random_example(self) -> None:
        current = self.prompt_edit.toPlainText().strip()
        choices = [e for e in self.examples if e["prompt"] != current] or self.examples
        self.use_example(self._rng.choice(choices))

    def set_prompt(self, text: str) -> None:
        self.prompt_edit.setPlainText(text)
        self.prompt_edit.setFocus()

    def prompt_text(self) -> str:
        return self.prompt_edit.toPlainText()

    def _prompt_changed(self) -> None:
        self.error_label.hide()
        self._update_rare()
        self._update_real_button()
        if self._quiet or not self.drafting():
            return
        self.draftStopRequested.emit()  # a draft of the text before this keystroke is out of date
        self._draft_timer.start()       # restarted by every keystroke: a draft after a pause

    # ------------------------------------------------------------------ fast mode and drafts
    def set_student(self, student: dict | None, note: str = "") -> None:
        """The loaded model's distilled student (``info["student"]``: {"steps", "distill_steps"}) or None
        with the one-line reason (``info["student_note"]``)."""
        self.model_known = True
        self.student = dict(student) if isinstance(student, dict) else None
        self.student_note = str(note or "")
        self._apply_mode()

    def fast_available(self) -> bool:
        return self.student is not None

    def is_fast(self) -> bool:
        """Generate draws with the student: it is preferred and the loaded model has one."""
        return self.prefer_fast and self.fast_available()

    def job_fast(self):
        """A job's ``fast``: True / False, or "auto" before the model is loaded (the worker then uses the
        student where the model turns out to have one)."""
        if not self.model_known:
            return "auto" if self.prefer_fast else False
        return self.is_fast()

    def set_fast(self, on: bool) -> None:
        """The user's choice of Fast (True) or Full; remembered, and used whenever a model has a student."""
        self.prefer_fast = bool(on)
        self._apply_mode()

    def toggle_fast(self) -> None:
        if self.model_known and not self.fast_available():
            self._apply_mode()
            self.message.emit(f"Fast mode is not available: {self.student_note}")
            return
        self.set_fast(not self.prefer_fast)
        self.message.emit("Fast mode: the distilled student, " + f"{self.student['steps']} steps" if self.is_fast()
                          else "Fast mode (used once the model is loaded, if it has a distilled student)"
                          if self.prefer_fast else "Full mode: the model itself, with the steps and sampler set")

    def _apply_mode(self) -> None:
        fast, known, avail = self.is_fast(), self.model_known, self.fast_available()
        key = FAST_KEY
        steps = self.student["steps"] if avail else 4
        for b, on in ((self.fast_button, self.prefer_fast and (avail or not known)),
                      (self.full_button, not (self.prefer_fast and (avail or not known)))):
            with QSignalBlocker(b):
                b.setChecked(on)
        self.fast_button.setEnabled(avail or not known)
        if known and not avail:
            self.fast_button.setToolTip(f"Fast mode is not available: {self.student_note}")
            note = "Full: this model has no distilled student (Fast is off; Model info says why)."
        elif not known:
            self.fast_button.setToolTip("Fast: drawn by the model's distilled student in a few steps, where the model "
                                        f"has one (known once it is loaded) ({key})")
            note = ("Fast if the model has a distilled student (known once it is loaded)." if self.prefer_fast
                    else "Full: the model itself, with the steps and sampler below.")
        else:
            self.fast_button.setToolTip(FAST_TIP.format(steps=steps, key=key))
            note = (f"Fast: the distilled student, {steps} steps." if fast
                    else "Full: the model itself, with the steps and sampler below.")
        self.full_button.setToolTip(FULL_TIP.format(key=key))
        self.mode_note.setText(note)
        with QSignalBlocker(self.act_fast):
            self.act_fast.setChecked(self.prefer_fast and (avail or not known))
        self.act_fast.setToolTip(self.fast_button.toolTip() if (known and not avail) else
                                 f"Switch between Fast (the distilled student) and Full generation ({key})")
        self.act_fast.setStatusTip(self.act_fast.toolTip())
        # the steps box shows the student's steps in Fast mode; the Full steps come back on leaving it
        if fast and not self._steps_fast:
            self._full_steps = self.steps_spin.value()
        if fast:
            with QSignalBlocker(self.steps_spin):
                self.steps_spin.setValue(int(steps))
        elif self._steps_fast:
            with QSignalBlocker(self.steps_spin):
                self.steps_spin.setValue(self._full_steps)
        self._steps_fast = fast
        self.steps_spin.setEnabled(not fast)
        self.steps_spin.setToolTip(f"Fast mode draws in the distilled student's own {steps} steps. Switch to Full "
                                   f"({key}) to choose the steps." if fast else STEPS_TIP)
        self.sampler_box.setEnabled(not fast)
        self.sampler_box.setToolTip(NOT_IN_FAST.format(key=key) if fast else SAMPLER_TIP)
        self.negative_edit.setEnabled(not fast)
        self.negative_edit.setToolTip(NEGATIVE_NOT_IN_FAST.format(key=key) if fast else NEGATIVE_TIP)
        self._follow_recommended_guidance()  # the student's own guidance in Fast mode, where it has one
        self._apply_draft()

    # drafts ----------------------------------------------------------------------------------
    def _draft_wanted(self) -> bool:
        return self.fast_available() if self.draft_choice is None else self.draft_choice

    def _apply_draft(self) -> None:
        avail = self.fast_available()
        with QSignalBlocker(self.draft_check):
            self.draft_check.setChecked(avail and self._draft_wanted())
        self.draft_check.setEnabled(avail)
        tip = DRAFT_TIP.format(keep=KEEP_KEY, key=DRAFT_KEY)
        if not avail:
            why = self.student_note if self.model_known else "known once the model is loaded"
            tip = f"Drafts need the model's distilled student ({why}). " + tip
        self.draft_check.setToolTip(tip)
        with QSignalBlocker(self.act_draft):
            self.act_draft.setChecked(self.draft_check.isChecked())
        self.act_draft.setToolTip(tip)
        self.act_draft.setStatusTip(tip)
        if not self.drafting():
            self._draft_timer.stop()

    def _draft_toggled(self, on: bool) -> None:
        self.draft_choice = bool(on)
        with QSignalBlocker(self.act_draft):
            self.act_draft.setChecked(on)
        if not on:
            self._draft_timer.stop()
            self.draftStopRequested.emit()
        self.message.emit("Drafts while typing: on (a pause in typing draws a quick draft)" if on
                          else "Drafts while typing: off")

    def _draft_unavailable(self) -> None:
        with QSignalBlocker(self.act_draft):
            self.act_draft.setChecked(False)
        why = self.student_note if self.model_known else "the model is not loaded yet"
        self.message.emit(f"Drafts while typing need a distilled student: {why}")

    def drafting(self) -> bool:
        """Drafts are drawn while typing: the option is on and the model has a student."""
        return self.fast_available() and self.draft_check.isChecked()

    def _draft_due(self) -> None:
        if self.drafting() and self.prompt_edit.toPlainText().strip():
            self.draftRequested.emit(self.draft_params())

    def draft_params(self) -> dict:
        """A draft's job: the prompt as typed, Fast, one film. The seed is the one set here, or with
        Random one seed for the whole session, so that successive drafts differ by the text alone."""
        p = self.job_params()
        p.update(fast=True, draft=True, steps=int(self.student["steps"]) if self.student else 4, batch=1,
                 negative_prompt="", preview_every=DRAFT_PREVIEW_EVERY, random_seed=False,
                 seed=self._draft_seed if self.random_seed_check.isChecked() else int(self.seed_spin.value()))
        return p

    def set_draft_state(self, text: str, shown: bool) -> None:
        """The draft line under Generate ("" hides it); Keep works while a draft is ``shown``."""
        self.draft_label.setText(text)
        self.draft_bar.setVisible(bool(text))
        self.keep_button.setEnabled(shown)
        self.discard_button.setEnabled(shown)
        self.act_keep_draft.setEnabled(shown)

    def stop_timers(self) -> None:
        self._draft_timer.stop()

    def _update_real_button(self) -> None:
        found = prompt_findings(self.prompt_text())
        self.real_button.setEnabled(bool(found))
        self.real_button.setToolTip(
            "Open the Dataset browser filtered to real films labelled " + " + ".join(found) +
            ", to show next to a generated one" if found else
            "Open the Dataset browser filtered to real films with the prompt's findings (this prompt names "
            "none the datasets label)")

    def set_label_counts(self, counts: dict | None, findings_check: dict | None = None) -> None:
        """The loaded model's training-film count per finding label and its findings check (empty or
        None: unknown, no hint)."""
        self.label_counts = dict(counts or {})
        self.findings_check = findings_check
        self._update_rare()

    def _update_rare(self) -> None:
        prompt = self.prompt_edit.toPlainText()
        rare = rare_findings(prompt, self.label_counts)
        notes = [rare_note(rare) + " Try several seeds."] if rare else []
        notes += [weak_note(f) + " Compare with real films." for f in weak_findings(prompt, self.findings_check)]
        if notes:
            self.rare_label.setText("\n".join(notes))
        self.rare_label.setVisible(bool(notes))

    # ------------------------------------------------------------------ parameters
    def job_params(self) -> dict:
        prompt = self.prompt_edit.toPlainText().strip()
        fast = self.job_fast()
        return {
            "prompt": prompt,
            "fast": fast,
            "negative_prompt": "" if fast is True else self.negative_edit.text().strip(),
            "size": int(self.size_box.currentData()),
            "steps": int(self.steps_spin.value()),
            "guidance_scale": None if self._guidance_unknown() else float(self.guidance_spin.value()),
            "sampler": str(self.sampler_box.currentData()),
            "seed": None if self.random_seed_check.isChecked() else int(self.seed_spin.value()),
            "random_seed": self.random_seed_check.isChecked(),
            "batch": int(self.batch_spin.value()),
            "preview_every": int(self.preview_spin.value()),
            "attention_words": finding_words(prompt) if self.attention_check.isChecked() else [],
        }

    def set_params(self, params: dict, fixed_seed: bool = True) -> None:
        """Refill the form from a result's parameters ("reuse parameters"); a film drawn in Fast mode
        sets the switch to Fast (its steps are the student's, the Full steps stay), others to Full."""
        if "fast" in params:
            self.set_fast(bool(params.get("fast")))
        if "prompt" in params:
            self._quiet = True  # filled in, not typed: no draft
            try:
                self.prompt_edit.setPlainText(str(params["prompt"]))
            finally:
                self._quiet = False
        if "negative_prompt" in params and not params.get("fast"):
            self.negative_edit.setText(str(params.get("negative_prompt") or ""))
        size = params.get("size", params.get("width"))
        if size is not None:
            i = self.size_box.findData(int(size))
            if i >= 0:
                self.size_box.setCurrentIndex(i)
        if params.get("steps") is not None and not params.get("fast"):
            if self._steps_fast:
                self._full_steps = int(params["steps"])  # shown when the switch goes back to Full
            else:
                self.steps_spin.setValue(int(params["steps"]))
        if params.get("guidance_scale") is not None:
            self.guidance_spin.setValue(float(params["guidance_scale"]))
        if params.get("sampler") is not None:
            i = self.sampler_box.findData(str(params["sampler"]))
            if i >= 0:
                self.sampler_box.setCurrentIndex(i)
        if params.get("seed") is not None and int(params["seed"]) >= 0:
            self.seed_spin.setValue(int(params["seed"]))
            if fixed_seed:
                self.random_seed_check.setChecked(False)
        if params.get("random_seed") is not None and not fixed_seed:
            self.random_seed_check.setChecked(bool(params["random_seed"]))
        if params.get("batch") is not None:
            self.batch_spin.setValue(int(params["batch"]))
        if params.get("preview_every") is not None:
            self.preview_spin.setValue(int(params["preview_every"]))

    # ------------------------------------------------------------------ guidance
    def _show_model_default(self, on: bool) -> None:
        """Before a model is loaded: "model's default" in the spin box (its minimum, one step below 0)."""
        with QSignalBlocker(self.guidance_spin):
            self.guidance_spin.setSpecialValueText(MODEL_DEFAULT_TEXT if on else "")  # else 0 would read so
            if on:
                self.guidance_spin.setMinimum(-self.guidance_spin.singleStep())
                self.guidance_spin.setValue(self.guidance_spin.minimum())
            else:
                self.guidance_spin.setMinimum(0.0)

    def _guidance_unknown(self) -> bool:
        return self.guidance_spin.value() < 0

    @property
    def recommended_guidance(self) -> float:
        """The guidance the loaded model recommends for the current mode: its student's own in Fast mode
        where the student's record names one, else the model's."""
        if self.is_fast() and "guidance" in (self.student or {}):
            return float(self.student["guidance"])
        return self._model_guidance

    def set_recommended_guidance(self, value: float) -> None:
        """The loaded model's recommended guidance: shown unless the user chose their own."""
        self._model_guidance = float(value)
        self.model_guidance_known = True
        if self._guidance_unknown():
            self._show_model_default(False)
        self._follow_recommended_guidance()

    def _follow_recommended_guidance(self) -> None:
        """Show the current mode's recommended guidance unless the user chose their own."""
        if self.model_guidance_known and not self.guidance_custom and not self._guidance_unknown():
            with QSignalBlocker(self.guidance_spin):  # following the model is not a user's choice
                self.guidance_spin.setValue(self.recommended_guidance)
        self._guidance_tooltip()

    def _guidance_edited(self, value: float) -> None:
        if value < 0 and value != self.guidance_spin.minimum():
            self.guidance_spin.setValue(0.0)  # typed between "model's default" and 0
            return
        if value < 0:  # stepped back down to "model's default"
            self.guidance_custom = False
        elif self.guidance_spin.minimum() < 0:
            self._show_model_default(False)  # the user's own value: numbers only from now on
            self.guidance_custom = True
        else:
            self.guidance_custom = abs(value - self.recommended_guidance) > 1e-6
        self._guidance_tooltip()

    def _guidance_tooltip(self) -> None:
        own = (f" You chose {self.guidance_spin.value():g}; set it back to {self.recommended_guidance:g} to "
               "follow the model again." if self.guidance_custom else "")
        rec = (f"The loaded model recommends {self.recommended_guidance:g}." if self.model_guidance_known else
               "The model's own recommended value is used; it is shown here once the model is loaded.")
        self.guidance_spin.setToolTip(
            "Prompt adherence (classifier-free guidance scale): higher follows the text more strictly but can "
            f"look harsher; 1 = no guidance. {rec}" + own)

    def request_generate(self) -> None:
        if not self.generate_button.isEnabled():
            return
        params = self.job_params()
        if not params["prompt"]:
            self.show_error("The prompt is empty: describe the radiograph, or pick an example prompt.")
            self.prompt_edit.setFocus()
            return
        self.error_label.hide()
        self._draft_timer.stop()  # the film asked for on purpose; no draft of the same text after it
        self.generateRequested.emit(params)

    # ------------------------------------------------------------------ run state
    def set_running(self, running: bool) -> None:
        self.generate_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress_bar.setRange(0, 0)
            self.progress_bar.setFormat("starting...")
        else:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)

    def set_loading(self, text: str) -> None:
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat(text)

    def set_progress(self, index: int, count: int, step: int, total: int, eta: float) -> None:
        self.progress_bar.setRange(0, total * count)
        self.progress_bar.setValue(index * total + step)
        img = f"image {index + 1}/{count}, " if count > 1 else ""
        self.progress_bar.setFormat(f"{img}step {step}/{total} - {_eta(eta)} left")

    def set_idle_text(self, text: str) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1 if text.startswith("done") else 0)
        self.progress_bar.setFormat(text)

    def show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.show()

    def set_seed_used(self, seed: int) -> None:
        self.seed_used_label.setText(str(seed))

    def set_final_metrics(self, m: dict | None) -> None:
        if not m:
            self.final_label.setText("Final image: -")
            return
        self.final_label.setText(f"Final image: contrast {m.get('contrast', 0):.3f}, "
                                 f"sharpness {m.get('sharpness', 0):.1f}, entropy {m.get('entropy', 0):.2f} bits")

    # ------------------------------------------------------------------ highlighting
    def set_attention_words(self, words: list[str], keep: str | None = None) -> None:
        cur = keep if keep is not None else self.word_box.currentText()
        with QSignalBlocker(self.word_box):
            self.word_box.clear()
            for w in words:
                self.word_box.addItem(w)
            if cur and cur in words:
                self.word_box.setCurrentText(cur)
            elif words:
                # prefer a finding word over anatomy ("effusion" over "pleural")
                self.word_box.setCurrentIndex(_best_word(words))
        has = bool(words)
        self.word_box.setEnabled(has)
        self.highlight_check.setEnabled(has)
        if not has:
            self.word_box.addItem("(no attention maps)")
        self._highlight()

    def current_highlight(self) -> str:
        if self.highlight_check.isChecked() and self.word_box.isEnabled():
            return self.word_box.currentText()
        return ""

    def _highlight(self, *_):
        self.highlightChanged.emit(self.current_highlight())

    # ------------------------------------------------------------------ settings
    def save_settings(self, s) -> None:
        s.setValue("generator/settings_version", SETTINGS_VERSION)
        s.setValue("generator/prompt", self.prompt_edit.toPlainText())
        s.setValue("generator/negative", self.negative_edit.text())
        s.setValue("generator/size", int(self.size_box.currentData()))
        s.setValue("generator/steps", self._full_steps if self._steps_fast else self.steps_spin.value())
        s.setValue("generator/mode", "fast" if self.prefer_fast else "full")
        s.setValue("generator/draft", "auto" if self.draft_choice is None else "on" if self.draft_choice else "off")
        s.setValue("generator/guidance", self.guidance_spin.value())
        s.setValue("generator/guidance_custom", self.guidance_custom)
        s.setValue("generator/sampler", self.sampler_box.currentData())
        s.setValue("generator/seed", self.seed_spin.value())
        s.setValue("generator/random_seed", self.random_seed_check.isChecked())
        s.setValue("generator/batch", self.batch_spin.value())
        s.setValue("generator/preview_every", self.preview_spin.value())
        s.setValue("generator/attention", self.attention_check.isChecked())

    def restore_settings(self, s) -> None:
        def get(key, default, typ):
            v = s.value(key, default)
            try:
                if typ is bool:
                    return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
                return typ(v)
            except (TypeError, ValueError):
                return default

        # An older settings file stored the defaults of its day as if chosen; where a value still
        # equals that old default, today's default replaces it (once: saving writes the new version).
        version = get("generator/settings_version", 1, int)
        for before, key, old in OLD_DEFAULTS:
            if version < before and str(s.value(key, "")) == str(old):
                s.remove(key)
        prompt = get("generator/prompt", "", str)
        if not prompt and self.examples:
            prompt = self.examples[0]["prompt"]
        # a guidance the user chose is kept; otherwise the spin box follows the model that loads
        custom = get("generator/guidance_custom", False, bool)
        self.set_params({
            "prompt": prompt, "negative_prompt": get("generator/negative", "", str),
            "size": get("generator/size", 256, int), "steps": get("generator/steps", 20, int),
            "guidance_scale": get("generator/guidance", self.recommended_guidance, float) if custom else None,
            "sampler": get("generator/sampler", DEFAULT_SAMPLER, str), "seed": get("generator/seed", 42, int),
            "batch": get("generator/batch", 1, int),
            "preview_every": get("generator/preview_every", SHARP_PREVIEW_EVERY, int),
        }, fixed_seed=False)
        self.guidance_custom = custom  # also when the value happens to equal the default
        self._guidance_tooltip()
        self.random_seed_check.setChecked(get("generator/random_seed", True, bool))
        self.attention_check.setChecked(get("generator/attention", True, bool))
        # fast mode (settings files before it have neither key: Fast where the model has a student, drafts
        # with it); a value this version does not know counts as missing
        self.prefer_fast = get("generator/mode", "fast", str) != "full"
        draft = get("generator/draft", "auto", str)
        self.draft_choice = {"on": True, "off": False}.get(draft)
        self._apply_mode()


_FINDINGS = ("effusion", "pneumonia", "consolidation", "cardiomegaly", "edema", "oedema", "fibrosis",
             "pneumothorax", "atelectasis", "emphysema", "nodule", "mass", "hernia", "opacity",
             "opacities", "infiltrate", "covid-19", "ground-glass")


_NORMAL_PROMPT = re.compile(r"\bnormal (?:chest|study|frontal|pa|radiograph)|\bclear lungs|lungs are clear|"
                            r"no acute|unremarkable", re.I)


def prompt_findings(prompt: str) -> list[str]:
    """The dataset labels a prompt asks for (``captions.mentioned_findings``); a prompt for a normal
    film, with no finding, asks for "No Finding"."""
    found = mentioned_findings(prompt or "")
    if not found and _NORMAL_PROMPT.search(prompt or ""):
        return ["No Finding"]
    return found


def _best_word(words: list[str]) -> int:
    for f in _FINDINGS:
        if f in words:
            return words.index(f)
    return 0


def _eta(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m} min {s:02d} s"
