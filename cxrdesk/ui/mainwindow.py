"""The main window: docks around a shared image view, menus, status bar, the generation worker."""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices, QGuiApplication, QIcon, QKeySequence
from PySide6.QtWidgets import (QApplication, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDockWidget,
                               QFileDialog, QFormLayout, QLabel, QLineEdit, QMainWindow, QMessageBox,
                               QPlainTextEdit, QProgressBar, QRadioButton, QTextBrowser, QTextEdit, QVBoxLayout,
                               QWidget)

from .. import __version__
from ..core.imaging import imaging
from ..core.generation.sampling import DEFAULT_GUIDANCE
from ..core.regions import without_region
from .dataset_panel import DatasetPanel
from .drafts import DraftController
from .edit_panel import EditPanel
from .enhance_panel import EnhancePanel
from .generator_panel import GeneratorPanel
from .history import HistoryEntry, HistoryStore
from .history_strip import HistoryStrip
from .imageview import grey_qimage
from .imageio import LoadedImage, load_stored
from .lesson_panel import LessonPanel
from .model_panel import ModelPanel
from .paths import data_dir, resource_path, results_dir, settings_path
from .tasks import run_task
from .viewer import LAYOUT_NAMES, LAYOUTS, ViewerArea
from . import viewtools
from .worker import WorkerHost

log = logging.getLogger("cxrdesk.ui")
DISCLAIMER = "SYNTHETIC - NOT FOR DIAGNOSIS"
PRESENTATION_TEXT_SCALE = 1.6  # text over the image, read from the back of a classroom
PRESET_KEYS = {"Full range": "Ctrl+1", "Lung": "Ctrl+2", "Mediastinum": "Ctrl+3", "Bone": "Ctrl+4"}


@dataclasses.dataclass
class Document:
    """What the main view shows: the stored image and what it is."""

    data: np.ndarray
    bits: int
    title: str
    kind: str                      # "generated" | "file"
    synthetic: bool = False
    params: dict = dataclasses.field(default_factory=dict)
    entry: HistoryEntry | None = None
    path: str = ""
    window: tuple[float, float] | None = None
    original: np.ndarray | None = None        # before an applied enhancement
    spacing: tuple[float, float] | None = None   # (row, column) mm per pixel, when the file gives it
    enhancement: dict | None = None
    annotations: list = dataclasses.field(default_factory=list)  # arrows and text over the view (viewtools)

    @property
    def source(self) -> np.ndarray:
        return self.original if self.original is not None else self.data

    @property
    def exportable(self) -> bool:
        """Full export (12-bit PNG with parameters, DICOM SC): synthetic 12-bit images only."""
        return self.synthetic and self.bits == 12 and self.data.dtype == np.uint16


class ExportDialog(QDialog):
    """Options of a PNG or DICOM export. PNG: as on screen (the current window and inversion, the
    default) or the full stored range. DICOM: also the patient, study and series the file is filed
    under (empty: the synthetic defaults, as ``cxrdesk export`` without its options), and whether a
    presentation state goes beside the file (on by default when the view has ``annotations``)."""

    IDENTITY = (  # (key, label, tooltip); the SeriesContext field of the same name
        ("patient_name", "Patient name", "Patient name as a PACS lists it, DICOM style Family^Given (e.g. "
                                         "TEACHING^CASE01). Empty: the synthetic default. Never a real patient's name"),
        ("patient_id", "Patient ID", "Patient ID (empty: the synthetic default)"),
        ("study_description", "Study description", "Study description (empty: the default shown)"),
        ("series_description", "Series description",
         "Text after 'SYNTHETIC - NOT FOR DIAGNOSIS', which every series description starts with"),
    )

    def __init__(self, kind: str, settings: QSettings, parent=None, annotations: int = 0):
        super().__init__(parent)
        self.kind = kind
        self.s = settings
        self.setWindowTitle(f"Export {kind}")
        form = QFormLayout(self)
        k = f"export/{kind.lower()}"
        self.bits = QComboBox()
        if kind == "PNG":
            self.bits.addItem("16-bit (exact 12-bit values)", 16)
            self.bits.addItem("8-bit", 8)
        else:
            self.bits.addItem("12-bit (BitsStored 12)", 12)
            self.bits.addItem("8-bit", 8)
        self.bits.setToolTip("Pixel depth of the exported file")
        form.addRow("Depth", self.bits)
        self.as_shown = QRadioButton("As on screen: the current window (and inversion) applied")
        self.as_shown.setToolTip("The PNG looks like the view (default); the window is also recorded as metadata")
        self.full_range = QRadioButton("Full range: the stored values, the window recorded as metadata")
        self.full_range.setToolTip("For further processing: pixels as stored (12-bit values in a 16-bit PNG); "
                                   "a viewer shows the whole range unless it reads the recorded window")
        self.apply_window = self.as_shown  # checked = the window is applied to the pixels
        if kind == "PNG":
            form.addRow(self.as_shown)
            form.addRow(self.full_range)
        (self.as_shown if str(settings.value(f"{k}_range", "window")) != "full" else self.full_range).setChecked(True)
        self.identity: dict[str, QLineEdit] = {}
        if kind == "DICOM":
            from ..core.dicom.writer import DISCLAIMER as SERIES_DEFAULT, SeriesContext

            for key, label, tip in self.IDENTITY:
                edit = QLineEdit(str(settings.value(f"{k}_{key}", "") or ""))
                edit.setMaxLength(64)  # a DICOM LO / PN component group
                default = getattr(SeriesContext, key)
                edit.setPlaceholderText("(text after the SYNTHETIC notice)" if default == SERIES_DEFAULT else default)
                edit.setClearButtonEnabled(True)
                edit.setMinimumWidth(edit.fontMetrics().horizontalAdvance("M" * 24))
                edit.setToolTip(tip)
                edit.setObjectName(key)
                self.identity[key] = edit
                form.addRow(label, edit)
        self.burn = QCheckBox("Burn a 'SYNTHETIC' mark into the pixels")
        self.burn.setToolTip("Writes a small visible mark into the image itself, so that it stays marked "
                             "wherever it is copied")
        form.addRow(self.burn)
        self.presentation = QCheckBox("Also write a presentation state (annotations, window, inversion, "
                                      "orientation) as NAME_pr.dcm")
        self.presentation.setToolTip(
            "A DICOM Grayscale Softcopy Presentation State beside the image: the arrows and text as "
            "graphics a PACS viewer draws over the film (the pixels stay clean), with the current "
            "window, inversion and flip/rotation. Sent with the image to a PACS too")
        self.presentation.setChecked(annotations > 0)
        if kind == "DICOM":
            form.addRow(self.presentation)
        note = QLabel("The current window/level is stored as " +
                      ("WindowCenter/WindowWidth." if kind == "DICOM" else "metadata.") +
                      f" The file is marked {DISCLAIMER}.")
        note.setWordWrap(True)
        form.addRow(note)
        bb = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        form.addRow(bb)
        i = self.bits.findData(int(settings.value(f"{k}_bits", self.bits.itemData(0))))
        self.bits.setCurrentIndex(max(0, i))
        self.burn.setChecked(str(settings.value(f"{k}_burn", "false")).lower() == "true")

    def values(self) -> dict:
        k = f"export/{self.kind.lower()}"
        self.s.setValue(f"{k}_bits", int(self.bits.currentData()))
        self.s.setValue(f"{k}_range", "window" if self.as_shown.isChecked() else "full")
        self.s.setValue(f"{k}_burn", self.burn.isChecked())
        out = {"bits": int(self.bits.currentData()), "apply_window": self.as_shown.isChecked(),
               "burn_mark": self.burn.isChecked()}
        if self.kind == "DICOM":
            out["presentation"] = self.presentation.isChecked()
        if self.identity:
            ident = {key: " ".join(e.text().split()) for key, e in self.identity.items()}
            for key, v in ident.items():
                self.s.setValue(f"{k}_{key}", v)
            out["identity"] = ident
        return out


class MainWindow(QMainWindow):
    """cxrdesk's main window. ``model``: model folder (None = embedded default)."""

    documentShown = Signal()
    previewShown = Signal(int, int)          # step, total
    jobDone = Signal(str, str)               # status ("done" | "cancelled" | "error"), message

    def __init__(self, model: str | None = None, preload: bool = True, parent=None):
        super().__init__(parent)
        self.t_created = time.perf_counter()
        self.setWindowTitle("cxrdesk - synthetic chest X-rays for teaching (not for diagnosis)")
        icon = resource_path("cxrdesk.svg")
        if icon.exists():
            self.setWindowIcon(QIcon(str(icon)))
        self.settings = QSettings(str(settings_path()), QSettings.IniFormat)
        self.store = HistoryStore(results_dir())
        self.model_arg = model
        self._docs: list[Document | None] = [None] * 4  # per viewport (viewer.views); doc = the active one's
        self._run_slot = 0  # the viewport a running generation draws into
        self._job_batch = 1  # the running job's batch count
        self._last_batch = None  # (entries, batch count, status) of the last batch of more than one film
        self.batch_grid = None  # BatchGridDialog, made when a batch first ends
        self.prev_doc: Document | None = None
        self.job_id = 0
        self.running_job: int | None = None
        self.preview_count = 0
        self.model_info: dict | None = None
        self.model_state = "not loaded"
        self._pending_preview = None
        self._series = None
        self._series_identity: dict = {}
        self._pr_series: list | None = None  # [image series UID, presentation-state series UID, last instance]
        self._job_entries: list[HistoryEntry] = []
        self._presentation = None  # (state, geometry, maximized) from before presentation mode

        self.viewer = ViewerArea()
        self.view.set_placeholder("Generate an image (Ctrl+Enter), open a file (Ctrl+O)\n"
                                  "or pick one in the Dataset browser.\n\n"
                                  "Generated images are synthetic and not for diagnosis.")
        self.setCentralWidget(self.viewer)

        self.generator = GeneratorPanel()
        self.enhance = EnhancePanel()
        self.dataset = DatasetPanel()
        self.model_panel = ModelPanel()
        self.history = HistoryStrip()
        # side panels take the full height; the history strip sits under the image only
        self.setCorner(Qt.BottomLeftCorner, Qt.LeftDockWidgetArea)
        self.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)
        self.dock_generator = self._dock("Generator", self.generator, Qt.LeftDockWidgetArea)
        self.dock_enhance = self._dock("Enhancement", self.enhance, Qt.LeftDockWidgetArea)
        self.edit_panel = EditPanel(self)  # brush/eraser on the view, redraw a region (issue 29)
        self.dock_edit = self._dock("Edit region", self.edit_panel, Qt.LeftDockWidgetArea)
        self.dock_dataset = self._dock("Dataset browser", self.dataset, Qt.RightDockWidgetArea)
        self.dock_model = self._dock("Model info", self.model_panel, Qt.RightDockWidgetArea)
        self.lesson_panel = LessonPanel(self)  # a lesson's cases, drawn through the worker (issue 30)
        self.dock_lesson = self._dock("Lesson", self.lesson_panel, Qt.RightDockWidgetArea)
        self.dock_history = self._dock("History", self.history, Qt.BottomDockWidgetArea)
        self._layout_done = False  # docks are tabified on first show (see showEvent)
        self.setDockOptions(QMainWindow.AnimatedDocks | QMainWindow.AllowTabbedDocks | QMainWindow.AllowNestedDocks)

        self._build_status()
        self._build_actions()
        self._build_menus()
        self._connect_panels()
        QApplication.instance().focusChanged.connect(self._on_focus_changed)

        self.host = WorkerHost(self.store, model)
        w = self.host.worker
        w.loadingStarted.connect(self._on_loading)
        w.modelLoaded.connect(self._on_loaded)
        w.modelFailed.connect(self._on_load_failed)
        w.jobStarted.connect(self._on_job_started)
        w.progress.connect(self._on_progress)
        w.preview.connect(self._on_preview)
        w.stepMetrics.connect(self._on_step_metrics)
        w.resultReady.connect(self._on_result)
        w.jobFinished.connect(self._on_job_finished)
        self.lesson_panel.connect_worker(self.host)
        self.lesson_panel.statusMessage.connect(lambda t: self.statusBar().showMessage(t, 8000))
        w.warmedUp.connect(self._on_warmed_up)
        self.edit_panel.connect_worker(self.host)
        self.drafts = DraftController(self)  # drafts while typing (issue 28), on the same worker
        self.generator.message.connect(lambda t: self.statusBar().showMessage(t, 6000))

        self.resize(1440, 900)
        self._restore_settings()
        self._update_actions()
        self._preload = preload  # the model starts loading as soon as the window is on screen (showEvent)

    # ================================================================== viewports
    @property
    def view(self):
        """The active viewport's image view (the main view in the 1x1 layout): what tools act on."""
        return self.viewer.active_view()

    @property
    def doc(self) -> Document | None:
        """The document of the active viewport."""
        return self._docs[self.viewer.active()]

    @doc.setter
    def doc(self, d: Document | None) -> None:
        self._docs[self.viewer.active()] = d

    def slot_doc(self, k: int) -> Document | None:
        """The document viewport ``k`` holds (also while a layout hides it)."""
        return self._docs[k]

    # ================================================================== construction
    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName("dock_" + title.lower().replace(" ", "_"))
        d.setWidget(widget)
        d.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable |
                      QDockWidget.DockWidgetClosable)
        self.addDockWidget(area, d)
        return d

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.pixel_label = QLabel("")
        self.pixel_label.setToolTip("Pixel under the cursor: position and stored value (data units)")
        self.wl_label = QLabel("")
        self.wl_label.setToolTip("Current window width / center in data units (right drag to change)")
        self.device_label = QLabel("Device: -")
        self.device_label.setToolTip("Where the model runs (CPU or CUDA)")
        self.model_label = QLabel("Model: not loaded")
        self.model_label.setToolTip("Loaded model and the hash of its weights")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.progress.setToolTip("Progress of the running generation")
        for w_ in (self.pixel_label, self.wl_label, self.device_label, self.model_label, self.progress):
            sb.addPermanentWidget(w_)
        for v in self.viewer.views:  # every viewport; the handlers act for the active one
            v.pixelHovered.connect(self._on_pixel)
            v.windowChanged.connect(lambda c, w, v=v: self._on_window_changed(v, c, w))
            v.measurementsChanged.connect(lambda v=v: v is self.view and self._on_measured())
            v.annotationsChanged.connect(lambda v=v: self._on_annotated(v))
            v.textRequested.connect(lambda at, v=v: self._ask_annotation_text(at, v))

    def _action(self, text: str, slot, shortcut=None, tip: str = "", checkable: bool = False) -> QAction:
        a = QAction(text, self)
        if shortcut:
            if isinstance(shortcut, (list, tuple)):
                a.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                a.setShortcut(QKeySequence(shortcut))
        a.setToolTip(tip or text)
        a.setStatusTip(tip or text)
        a.setCheckable(checkable)
        if checkable:
            a.toggled.connect(slot)
        else:
            a.triggered.connect(lambda *_: slot())
        self.addAction(a)  # shortcuts work wherever the focus is in the window
        return a

    def _build_actions(self) -> None:
        A = self._action
        self.act_open = A("&Open image or DICOM...", self.open_file_dialog, QKeySequence.Open,
                          "Open a PNG, JPEG or DICOM file in the viewer")
        self.act_export_png = A("Export &PNG...", self.export_png_dialog, QKeySequence.Save,
                                "Export the image as PNG (generated images keep their 12-bit values and parameters)")
        self.act_export_dicom = A("Export &DICOM...", self.export_dicom_dialog, "Ctrl+Shift+S",
                                  "Export a generated image as a DICOM Secondary Capture (synthetic)")
        self.act_pacs = A("Send to PAC&S...", self.send_to_pacs, "Ctrl+Shift+P",
                          "Send a generated image to a PACS (DICOM C-STORE)")
        self.act_copy = A("&Copy image", self.copy_image, QKeySequence.Copy,
                          "Copy the image as shown (window, inversion, enhancement) to the clipboard, e.g. for "
                          "a slide; generated images carry a burned-in SYNTHETIC mark (Ctrl+C)")
        self.act_copy_view = A("Copy &view", self.copy_view, "Ctrl+Shift+C",
                               "Copy the image area as it is on screen, with measurement lines, the attention "
                               "overlay, the text and the SYNTHETIC label (Ctrl+Shift+C)")
        self.act_data = A("Open &results folder", self.open_data_folder, None,
                          "Open the folder where results, settings and logs are kept")
        self.act_quit = A("&Quit", self.close, QKeySequence.Quit, "Quit cxrdesk")
        self.act_generate = A("&Generate", self.generator.request_generate, ["Ctrl+Return", "Ctrl+Enter"],
                              "Generate from the prompt (Ctrl+Enter)")
        self.act_cancel = A("&Cancel generation", self.cancel_generation, "Esc",
                            "Stop the running generation within one step; with none running, take a draft "
                            "off the view (Esc)")
        self.act_presets = {}
        for name, key in PRESET_KEYS.items():
            self.act_presets[name] = A(f"{name} window", lambda n=name: self.apply_window_preset(n), key,
                                       f"Window preset: {name}")
        self.act_invert = A("&Invert", self.toggle_invert, "I", "Invert grey scale (I)")
        self.act_reset_wl = A("&Reset window/level and inversion", self.reset_window, "R",
                              "Back to the image's own window, not inverted (R)")
        self.act_fit = A("Zoom to &fit", self.view_fit, "F", "Zoom to fit (F)")
        self.act_1to1 = A("Zoom &1:1", self.view_1to1, "1", "One image pixel per screen pixel (1)")
        self.act_pixels = A("Show pi&xels when magnified", self.set_show_pixels, None,
                            "Off (default): a magnified film is drawn smoothly (bicubic). On: each image pixel "
                            "is drawn as a square (nearest neighbour), to show the film's resolution",
                            checkable=True)
        self.act_magnifier = A("Ma&gnifier", self.set_magnifier, "L",
                               "A round loupe under the cursor shows the film three times larger than the view (L)",
                               checkable=True)
        self.act_compare = A("Side-by-side &compare", self.toggle_compare, "C",
                             "Compare the current image with the previous one, linked zoom/pan/W-L (C)",
                             checkable=True)
        self.act_highlight = A("Attention &highlight", self.toggle_highlight, "H",
                               "Overlay where the model looked for the chosen word while drawing: not where "
                               "a finding is (H)")
        self.act_prev = A("Pre&vious result", lambda: self.show_adjacent(-1), "PgUp",
                          "Show the previous result of the history strip (Page Up, as a presentation clicker sends)")
        self.act_next = A("Ne&xt result", lambda: self.show_adjacent(1), "PgDown",
                          "Show the next result of the history strip (Page Down, as a presentation clicker sends)")
        # only with the focus on the image: lists and spin boxes keep their page keys
        for a in (self.act_prev, self.act_next):
            self.removeAction(a)
            a.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            self.viewer.addAction(a)
        self.act_present = A("&Presentation mode", self.set_presentation, "F11",
                             "Full screen with only the image, for a projector; F11 or Esc leaves (F11)",
                             checkable=True)
        self.act_reveal = A("Show the &prompt", self.set_reveal, "P",
                            "Show the prompt an image was generated from over it, e.g. as the answer after a class "
                            "has described the film; hidden again for the next image (P)", checkable=True)
        self.act_measure = A("&Measure", self.set_measuring, "M",
                             "Measure: left drag draws a line, in mm where the file gives the pixel size, else in "
                             "pixels; two lines give their ratio, e.g. the cardiothoracic ratio (M)", checkable=True)
        self.act_clear_measure = A("Clear m&easurements", self.clear_measurements, "Del",
                                   "Remove the measurement lines (Del)")
        self.act_flip_h = A("Flip &horizontally", lambda: self.reorient(viewtools.FLIP_H), "Shift+H",
                            "Mirror the view left-right; on screen only, the stored film is unchanged (Shift+H)")
        self.act_flip_v = A("Flip &vertically", lambda: self.reorient(viewtools.FLIP_V), "Shift+V",
                            "Mirror the view top-bottom; on screen only (Shift+V)")
        self.act_rot_cw = A("Rotate 90\u00b0 clock&wise", lambda: self.reorient(viewtools.ROTATE_CW), "Shift+R",
                            "Turn the view a quarter clockwise; on screen only (Shift+R)")
        self.act_rot_ccw = A("Rotate 90\u00b0 a&nticlockwise", lambda: self.reorient(viewtools.ROTATE_CCW), "Shift+L",
                             "Turn the view a quarter anticlockwise; on screen only (Shift+L)")
        self.act_orient_reset = A("&Original orientation", lambda: self.reorient(None), "Shift+O",
                                  "Undo flips and rotations (Shift+O)")
        self.act_arrow = A("&Arrow", lambda on: self.set_annotating("arrow" if on else ""), "A",
                           "Annotate: left drag draws an arrow, its head where the drag ends; drawn over the film, "
                           "never into it; kept with the result (A)", checkable=True)
        self.act_text = A("&Text label", lambda on: self.set_annotating("text" if on else ""), "T",
                          "Annotate: click where a text label goes and type it; drawn over the film, never into it; "
                          "kept with the result (T)", checkable=True)
        self.act_undo_annotation = A("Remove the last a&nnotation", self.remove_last_annotation, "Backspace",
                                     "Remove the arrow or text added last (Backspace, on the image)")
        self.act_clear_annotations = A("Clear annotations", self.clear_annotations, "Shift+Del",
                                       "Remove every arrow and text label of this image (Shift+Del)")
        self.removeAction(self.act_undo_annotation)  # Backspace only on the image: fields keep it
        self.act_undo_annotation.setShortcutContext(Qt.WidgetWithChildrenShortcut)
        self.viewer.addAction(self.act_undo_annotation)
        self.act_layouts = {}
        layout_group = QActionGroup(self)
        for name, key in (("1x1", "Alt+1"), ("1x2", "Alt+2"), ("2x2", "Alt+4")):
            tip = {"1x1": "One film fills the view (the active viewport's) (Alt+1)",
                   "1x2": "Two viewports side by side, e.g. a generated film beside a real one; click one to make "
                          "it active: the History strip and the Dataset browser open into it (Alt+2)",
                   "2x2": "Four viewports, e.g. four films of a lesson; click one to make it active: the History "
                          "strip and the Dataset browser open into it (Alt+4)"}[name]
            a = A(f"&{LAYOUT_NAMES[name]}", lambda on, n=name: on and self.set_layout(n), key, tip, checkable=True)
            layout_group.addAction(a)
            self.act_layouts[name] = a
        self.act_layouts["1x1"].setChecked(True)
        self.act_next_viewport = A("Ne&xt viewport", lambda: self.step_viewport(1), "Ctrl+Tab",
                                   "Make the next viewport of a 1x2 or 2x2 layout the active one (Ctrl+Tab; a click "
                                   "on a viewport does the same)")
        self.act_prev_viewport = A("Previous viewport", lambda: self.step_viewport(-1), ["Ctrl+Shift+Tab", "Ctrl+Backtab"],
                                   "Make the previous viewport the active one (Ctrl+Shift+Tab)")
        self.act_link_wl = A("&Link window/level across viewports", self.set_link_window, "Alt+L",
                             "On: window/level and inversion changed in one viewport follow in the others (in "
                             "fractions of each film's range); off: each viewport keeps its own (Alt+L)",
                             checkable=True)
        self.act_about = A("&About cxrdesk", self.show_about, None, "About cxrdesk")
        self.act_card = A("&Model card", self.show_model_card, None, "Show the model card")
        self.act_keys = A("&Keyboard shortcuts", self.show_shortcuts, "F1", "List the keyboard shortcuts")
        self.act_batch_grid = A("Show the last &batch", self.show_batch_grid, "Ctrl+Shift+B",
                                "The films of the last batch (Batch count above 1) as a grid, captioned by prompt "
                                "and seed; click one to show it (Ctrl+Shift+B)")

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        for a in (self.act_open, None, self.act_export_png, self.act_export_dicom, self.act_pacs, None,
                  self.act_data, None, self.act_quit):
            m.addSeparator() if a is None else m.addAction(a)
        m = mb.addMenu("&Edit")
        m.addAction(self.act_copy)
        m.addAction(self.act_copy_view)
        for a in (None, *self.edit_panel.menu_actions()):
            m.addSeparator() if a is None else m.addAction(a)
        m = mb.addMenu("&Generate")
        m.addAction(self.act_generate)
        m.addAction(self.act_cancel)
        m.addAction(self.act_batch_grid)
        m.addSeparator()
        for a in self._fast_actions():
            m.addAction(a)
        m.setToolTipsVisible(True)
        m = mb.addMenu("&View")
        sub = m.addMenu("Window &presets")
        for a in self.act_presets.values():
            sub.addAction(a)
        for a in (self.act_invert, self.act_reset_wl, None, self.act_fit, self.act_1to1, self.act_pixels,
                  self.act_magnifier, None,
                  self.act_compare, self.act_highlight, self.act_reveal, self.act_measure,
                  self.act_clear_measure, self.act_prev, self.act_next, self.act_present, None):
            m.addSeparator() if a is None else m.addAction(a)
        sub = m.addMenu("&Layout")
        for a in (*self.act_layouts.values(), None, self.act_next_viewport, self.act_prev_viewport, None,
                  self.act_link_wl):
            sub.addSeparator() if a is None else sub.addAction(a)
        sub.setToolTipsVisible(True)
        sub = m.addMenu("&Orientation")
        for a in (self.act_flip_h, self.act_flip_v, self.act_rot_cw, self.act_rot_ccw, self.act_orient_reset):
            sub.addAction(a)
        sub = m.addMenu("&Annotate")
        for a in (self.act_arrow, self.act_text, self.act_undo_annotation, self.act_clear_annotations):
            sub.addAction(a)
        m.addSeparator()
        panels = m.addMenu("Pa&nels")
        for d in (self.dock_generator, self.dock_enhance, self.dock_edit, self.dock_dataset, self.dock_model,
                  self.dock_history):
            panels.addAction(d.toggleViewAction())
        panels.addAction(self.dock_lesson.toggleViewAction())
        m = mb.addMenu("&Help")
        for a in (self.act_keys, self.act_card, None, self.act_about):
            m.addSeparator() if a is None else m.addAction(a)

    def _connect_panels(self) -> None:
        g = self.generator
        g.generateRequested.connect(self.start_generation)
        g.cancelRequested.connect(self.cancel_generation)
        g.highlightChanged.connect(self._update_overlay)
        g.realFilmsRequested.connect(self.show_real_films)
        e = self.enhance
        e.previewReady.connect(self._on_enhance_preview)
        e.previewStopped.connect(self._on_enhance_preview_stopped)
        e.applyRequested.connect(self._on_enhance_apply)
        e.revertRequested.connect(self._on_enhance_revert)
        d = self.dataset
        d.showRequested.connect(lambda path, rec: self.open_file(path, record=rec))
        d.compareRequested.connect(self.compare_with_generated)
        d.usePromptRequested.connect(self._use_prompt)
        self.model_panel.loadFolderRequested.connect(self.load_model)
        self.model_panel.loadNowRequested.connect(lambda: self.load_model())
        h = self.history
        h.showRequested.connect(self.show_entry)
        h.reuseRequested.connect(self.reuse_entry)
        h.loadEarlierRequested.connect(self.load_earlier_results)
        self.viewer.compareChanged.connect(self._compare_changed)
        self.viewer.activeChanged.connect(self._on_active_changed)
        self.viewer.entryDropped.connect(self._on_entry_dropped)
        self.viewer.layoutChanged.connect(self._on_layout_changed)

    # ================================================================== model
    def load_model(self, path: str | None = None) -> None:
        """Load the model in the worker thread (``path`` None = the one given at start)."""
        if self.model_state == "loading":
            return
        if self.model_state == "loaded" and not path:
            return
        if self.host.worker.is_busy():
            self.statusBar().showMessage("Wait for the running generation to finish before changing the model", 5000)
            return
        self.host.requestLoad.emit(path)

    def _on_loading(self, what: str) -> None:
        self.model_state = "loading"
        self.model_label.setText("Model: loading...")
        self.model_panel.set_loading(what)
        self.progress.setRange(0, 0)
        self.progress.setFormat("loading model")
        if self.running_job is not None:
            self.generator.set_loading("loading the model...")
        self.statusBar().showMessage(f"Loading {what} ...")

    def _on_loaded(self, info: dict) -> None:
        self.model_state = "loaded"
        self.model_info = info
        self.model_panel.set_info(info)
        self.generator.set_recommended_guidance(info.get("guidance", DEFAULT_GUIDANCE))
        self.generator.set_student(info.get("student"), info.get("student_note", ""))
        self.generator.set_label_counts((info.get("training") or {}).get("label_counts"),
                                        info.get("findings_check"))
        dev = str(info.get("device", "cpu")).upper()
        self.device_label.setText(f"Device: {'CUDA' if dev.startswith('CUDA') else 'CPU'}")
        warn = "  [random weights]" if info.get("random_weights") else ""
        self.model_label.setText(f"Model: {info.get('name', '?')} ({info.get('hash', '')}){warn}")
        if self.running_job is None:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("ready")
        self.statusBar().showMessage(f"Model loaded in {info.get('load_seconds', 0):.1f} s", 5000)

    def _on_warmed_up(self, extra: dict) -> None:
        """The faster graphs are ready (after the first film when one was asked for): Model info says so."""
        if self.model_info is not None:
            self.model_info.update(extra)
            self.model_panel.set_info(self.model_info)

    def _on_load_failed(self, msg: str) -> None:
        if "no default model is installed" in msg:
            msg = "no model is installed with this copy of cxrdesk; choose a model folder"
        self.model_state = "failed"
        self.model_label.setText("Model: not loaded")
        self.model_panel.set_failed(msg)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("no model")
        self.generator.show_error(f"The model could not be loaded: {msg}\n"
                                  "Open Model info and use 'Load model folder...' to choose one.")
        self.statusBar().showMessage(f"Model could not be loaded: {msg}", 10000)
        self.dock_model.raise_()

    # ================================================================== generation
    def start_generation(self, params: dict) -> None:
        if self.running_job is not None:
            return
        if self.edit_panel.is_running():
            self.statusBar().showMessage("An edit is running: wait for it or cancel it (Esc)", 6000)
            return
        self.drafts.stop()  # a running draft gives way (within one step)
        if self.drafts.slot() == self.viewer.active():
            self.drafts.put_back(display=False)  # the film comes where the draft was; the one under it is kept
        self.job_id += 1
        job = dict(params)
        job["job"] = self.job_id
        self.running_job = self.job_id
        self.preview_count = 0
        self._last_preview_step = 0
        self._had_full_preview = False
        self._job_entries = []
        self._job_total = int(params.get("steps", 20))
        self._job_batch = int(params.get("batch", 1))
        self._run_slot = self.viewer.active()  # previews and the film go to this viewport
        self.generator.set_running(True)
        self.generator.chart.clear(self._job_total)
        self.generator.set_final_metrics(None)
        self.progress.setRange(0, 0)
        self.progress.setFormat("starting")
        self.act_cancel.setEnabled(True)
        self.view.clear_measurements()  # they belong to the image being replaced
        self.view.set_annotations([])
        if self.enhance.preview_check.isChecked():
            self.enhance.preview_check.setChecked(False)
        self.viewer.show_single()
        self._save_settings()  # nothing is lost if something goes wrong during the run
        self.statusBar().showMessage("Generating..." if self.model_state == "loaded" else
                                     "Loading the model, then generating...")
        self.t_generate = time.perf_counter()
        self.t_first_preview = None
        self.host.requestGenerate.emit(job)

    def cancel_generation(self) -> None:
        if self.running_job is None:  # Esc with a draft on screen: take it off
            if self.is_presenting():
                self.set_presentation(False)
            else:
                self.drafts.discard()
            return
        self.host.worker.cancel(self.running_job)
        self.generator.progress_bar.setFormat("cancelling...")
        self.statusBar().showMessage("Cancelling...")

    def _on_job_started(self, job: int, batch: int, steps: int) -> None:
        if job != self.running_job:
            return
        if steps != self._job_total:  # Fast asked for before the model was known: the student's steps
            self._job_total = steps
            self.generator.chart.clear(steps)
        self._job_batch = batch
        self.generator.set_progress(0, batch, 0, steps, 0.0)
        self.progress.setRange(0, batch * steps)
        self.progress.setValue(0)

    def _on_progress(self, job, index, count, step, total, eta) -> None:
        if job != self.running_job:
            return
        self.generator.set_progress(index, count, step, total, eta)
        self.progress.setRange(0, count * total)
        self.progress.setValue(index * total + step)
        self.progress.setFormat(f"{step}/{total}" + (f" ({index + 1}/{count})" if count > 1 else ""))

    def _on_preview(self, job, image, step, total, full=True) -> None:
        if job != self.running_job:
            return
        if step <= self._last_preview_step:  # the next image of a batch
            self._had_full_preview = False
        self._last_preview_step = step
        if full:
            self._had_full_preview = True
        elif self._had_full_preview:
            return  # once a sharp decode is on screen, don't flick back to a blurry fast preview
        first = self._pending_preview is None
        self._pending_preview = (image, step, total, full)
        if first:
            QTimer.singleShot(0, self._flush_preview)  # coalesce: only the newest preview is drawn

    def _flush_preview(self) -> None:
        pending, self._pending_preview = self._pending_preview, None
        if pending is None or self.running_job is None:
            return
        image, step, total, full = pending
        if self.t_first_preview is None:
            self.t_first_preview = time.perf_counter() - self.t_generate
        self.preview_count += 1
        kind = "" if full else " (fast approximation)"
        self.viewer.views[self._run_slot].set_image(image, keep_view=True, keep_window=True, synthetic=True,
                                                    caption=f"Preview - step {step}/{total}{kind}")
        self.previewShown.emit(step, total)

    def _on_step_metrics(self, job, index, m) -> None:
        if job != self.running_job:
            return
        if m.get("step", 0) <= (self.generator.chart.points[-1]["step"] if self.generator.chart.points else 0):
            self.generator.chart.clear(self._job_total)  # next image of the batch
        self.generator.chart.add(m)

    def _on_result(self, job, entry: HistoryEntry) -> None:
        if self.lesson_panel.job is not None and job == self.lesson_panel.job:
            return  # a lesson's case: shown in the Lesson panel's grid
        self._pending_preview = None
        self._job_entries.append(entry)
        self.history.add(entry)
        self.viewer.set_active(self._run_slot)  # the film goes where its previews were drawn
        self.show_entry(entry, from_run=True)

    def _on_job_finished(self, job: int, status: str, msg: str) -> None:
        if job != self.running_job:
            return
        self.running_job = None
        self._pending_preview = None
        self.generator.set_running(False)
        self.progress.setRange(0, 1)
        if status == "done":
            self.progress.setValue(1)
            self.progress.setFormat("done")
            self.generator.set_idle_text(f"done: {msg}")
            self.statusBar().showMessage(f"Done: {msg}", 8000)
        elif status == "cancelled":
            self.progress.setValue(0)
            self.progress.setFormat("cancelled")
            self.generator.set_idle_text(f"cancelled ({msg})")
            self.statusBar().showMessage(f"Generation cancelled ({msg})", 8000)
            self._restore_after_cancel()
        else:
            self.progress.setValue(0)
            self.progress.setFormat("error")
            self.generator.set_idle_text("failed")
            self.generator.show_error(f"Generation failed: {msg}")
            self.statusBar().showMessage(f"Generation failed: {msg}", 10000)
            self._restore_after_cancel()
        if self._job_batch > 1 and self._job_entries:  # a batch: its films as a grid (so far, if stopped)
            self._last_batch = (list(self._job_entries), self._job_batch, status)
            if not self.is_presenting():  # not over a projected film: Ctrl+Shift+B shows it later
                self.show_batch_grid()
        self._update_actions()
        self.jobDone.emit(status, msg)

    def show_batch_grid(self) -> None:
        """The last batch's films as a grid (a non-modal dialog); a click or Enter shows one in the
        active viewport."""
        if self._last_batch is None:
            self.statusBar().showMessage("No batch yet: set Batch count above 1 in the Generator", 6000)
            return
        from .batch_grid import BatchGridDialog

        if self.batch_grid is None:
            self.batch_grid = BatchGridDialog(self)
            self.batch_grid.showRequested.connect(self.show_entry)
        entries, batch, status = self._last_batch
        shown = self.doc.entry if self.doc is not None else None
        self.batch_grid.set_batch(entries, batch, status, shown=shown)
        self.batch_grid.present()


    def _restore_after_cancel(self) -> None:
        """A cancelled or failed run leaves its last preview: go back to the current document."""
        self.viewer.set_active(self._run_slot)
        if self.doc is not None:
            self._display(self.doc, keep_view=True)
        else:
            self.view.set_image(None)
            self.view.set_placeholder("Generation cancelled.\nNothing was saved from the unfinished run.")

    # ================================================================== documents
    def show_entry(self, entry: HistoryEntry, from_run: bool = False) -> None:
        try:
            data = entry.image()
        except Exception as exc:  # noqa: BLE001
            self.statusBar().showMessage(f"Cannot show this result: {exc}", 8000)
            return
        p = entry.params
        what = "Edited" if isinstance(p.get("edit"), dict) else "Generated (fast)" if p.get("fast") else "Generated"
        lesson = p.get("lesson")
        if isinstance(lesson, dict) and lesson.get("case"):  # drawn by the Lesson panel
            what = f"Lesson case {lesson.get('case')}"
        doc = Document(data=data, bits=12, title=f"{what} - seed {entry.seed}", kind="generated",
                       synthetic=True, params=dict(p), entry=entry, path=entry.image_path,
                       annotations=_load_annotations(entry))
        self.set_document(doc, keep_window=True, keep_view=from_run)
        self.generator.set_seed_used(entry.seed)
        self.generator.set_final_metrics(entry.metrics)
        if not from_run:
            self.generator.chart.set_points(entry.step_metrics, p.get("steps"))
            self.history.select_entry(entry)
        self.generator.set_attention_words(sorted(entry.attention_words, key=_prompt_order(entry.prompt)))

    def reuse_entry(self, entry: HistoryEntry) -> None:
        self.generator.set_params(entry.params, fixed_seed=True)
        self.dock_generator.raise_()
        self.statusBar().showMessage(f"Parameters of seed {entry.seed} copied to the Generator", 5000)

    def set_document(self, doc: Document, keep_window: bool = False, keep_view: bool = False) -> None:
        if self.drafts.slot() == self.viewer.active():
            self.drafts.put_back(display=False)  # a draft never becomes the previous film
        if self.doc is not None and (self.doc.entry is None or doc.entry is None or self.doc.entry.id != doc.entry.id):
            self.prev_doc = self.doc
        new_image = self.doc is not doc
        self.doc = doc
        if new_image and self.act_reveal.isChecked():
            self.set_reveal(False)  # each image's answer is asked for anew
        if self.enhance.preview_check.isChecked():
            self.enhance.preview_check.setChecked(False)
        self.viewer.show_single()
        self._display(doc, keep_window=keep_window, keep_view=keep_view)
        self._update_title(self.viewer.active())
        self.enhance.set_source(doc.source, doc.title, enhanced=doc.original is not None)
        self._update_actions()
        self.documentShown.emit()

    def _display(self, doc: Document, keep_window: bool = False, keep_view: bool = False, view=None) -> None:
        """Show ``doc`` in ``view`` (default: the active viewport)."""
        v = self.view if view is None else view
        caption = doc.title
        if doc.enhancement:
            caption += f"  [enhanced: {doc.enhancement.get('preset', 'custom')}]"
        v.set_image(doc.data, window=None if keep_window else doc.window, keep_window=keep_window,
                    keep_view=keep_view, synthetic=doc.synthetic, caption=caption, bits=doc.bits,
                    spacing=doc.spacing)
        v.set_annotations(doc.annotations)
        if v is self.view:
            self._update_overlay()

    def _update_overlay(self, *_):
        word = self.generator.current_highlight()
        doc = self.doc
        if word and doc is not None and doc.entry is not None and not self.viewer.is_compare():
            maps = doc.entry.attention()
            if word in maps and maps[word].shape == doc.data.shape:
                self.view.set_overlay(maps[word], word)
                return
        self.view.clear_overlay()

    def toggle_highlight(self) -> None:
        self.generator.highlight_check.setChecked(not self.generator.highlight_check.isChecked())

    # ------------------------------------------------------------------ files
    def open_file_dialog(self) -> None:
        start = str(self.settings.value("paths/open", str(Path.home())))
        path, _ = QFileDialog.getOpenFileName(self, "Open image or DICOM", start,
                                              "Images and DICOM (*.png *.jpg *.jpeg *.dcm *.dicom *.tif *.tiff *.bmp);;"
                                              "All files (*)")
        if path:
            self.settings.setValue("paths/open", str(Path(path).parent))
            self.open_file(path)

    def open_file(self, path: str, record=None, then=None) -> None:
        """Load ``path`` in the background and show it; ``then(doc)`` instead of showing."""
        self.statusBar().showMessage(f"Opening {Path(path).name} ...")

        def done(img: LoadedImage):
            doc = self._doc_from_loaded(img, record)
            if then is not None:
                then(doc)
            else:
                self.set_document(doc)
                self.statusBar().showMessage(f"Opened {img.name}", 5000)

        def failed(msg: str):
            self.dataset.report_unreadable(path, msg)
            if record is None:
                self._error("Cannot open image", msg)
            else:  # a dataset file: listed as skipped in the browser, no dialog
                self.statusBar().showMessage(f"Cannot open: {msg}", 10000)

        run_task(load_stored, path, owner=self, done=done, error=failed)

    def _doc_from_loaded(self, img: LoadedImage, record=None) -> Document:
        title = img.name
        if record is not None and record.labels:
            title += "  -  " + ", ".join(record.labels)
        if img.synthetic:
            title = "Synthetic: " + title
        return Document(data=img.data, bits=img.bits, title=title, kind="file", synthetic=img.synthetic,
                        params=img.params, path=img.path, window=img.window, spacing=img.spacing)

    def compare_with_generated(self, path: str, record=None) -> None:
        gen = self.doc if (self.doc is not None and self.doc.kind == "generated") else None
        if gen is None:
            entries = self.history.entries()
            if entries:
                e = entries[-1]
                gen = Document(data=e.image(), bits=12, title=f"Generated - seed {e.seed}", kind="generated",
                               synthetic=True, params=dict(e.params), entry=e)
        if gen is None:
            self.statusBar().showMessage("Generate an image first, then compare it with a real one", 8000)
            self.generator.show_error("Nothing to compare yet: generate an image first.")
            return

        if self.viewer.is_grid():  # a generated film beside a real one: the real one in the next viewport
            if self.doc is not gen:
                self.set_document(gen, keep_window=True)
            slot = self.viewer.active()

            def into_next(real: Document):
                k = self._next_slot(slot)
                self.show_in_slot(k, real)
                self.statusBar().showMessage(f"Real film in viewport {k + 1}, beside the generated one in viewport "
                                             f"{slot + 1}", 8000)

            self.open_file(path, record=record, then=into_next)
            return

        def show(real: Document):
            if self.doc is not gen:
                self.set_document(gen, keep_window=True)
            self.view_b_doc = real
            self.viewer.view_b.set_image(real.data, window=real.window, synthetic=real.synthetic,
                                         caption=real.title, bits=real.bits)
            # short titles, so the pane keeps them whole: the image itself carries the DISCLAIMER badge
            self.viewer.show_compare(f"Synthetic: {gen.title}", f"Real: {real.title}")
            self.viewer._sync_window(self.view, self.viewer.view_b)
            self.act_compare.setChecked(True)
            self.statusBar().showMessage("Comparing: zoom, pan and window/level are linked; C returns to one image",
                                         8000)

        self.open_file(path, record=record, then=show)

    def toggle_compare(self, on: bool) -> None:
        if on and self.viewer.is_grid():  # the layout shows several films already: the previous one goes beside
            _set_checked(self.act_compare, False)
            if self.doc is None or self.prev_doc is None:
                self.statusBar().showMessage("Compare needs two images: show another image first", 6000)
                return
            k = self._next_slot(self.viewer.active())
            self.show_in_slot(k, self.prev_doc)
            self.statusBar().showMessage(f"Previous image in viewport {k + 1}", 6000)
            return
        if on and not self.viewer.is_compare():
            if self.doc is None or self.prev_doc is None:
                self.statusBar().showMessage("Side-by-side needs two images: show another image first", 6000)
                self.act_compare.setChecked(False)
                return
            other = self.prev_doc
            self.viewer.view_b.set_image(other.data, window=other.window, synthetic=other.synthetic,
                                         caption=other.title, bits=other.bits)
            self.viewer.show_compare(self.doc.title, f"Previous: {other.title}")
            self.viewer._sync_window(self.view, self.viewer.view_b)
            self.view.clear_overlay()
        elif not on and self.viewer.is_compare():
            self.viewer.show_single()
            if self.doc is not None:
                self._display(self.doc, keep_window=True, keep_view=True)

    # ------------------------------------------------------------------ layouts and viewports
    def set_layout(self, name: str) -> bool:
        """1x1, 1x2 or 2x2 viewports (remembered in the settings). Going to 1x1 shows the active
        viewport's film; the films of hidden viewports are kept for the next grid layout."""
        if name not in LAYOUTS:
            return False
        if name == self.viewer.layout_name():
            self._check_layout_action()
            return True
        busy = ("A generation is running" if self.running_job is not None else
                "An edit is running" if self.edit_panel.is_running() else "")
        if busy:
            self._check_layout_action()
            self.statusBar().showMessage(f"{busy}: change the layout when it has finished", 6000)
            return False
        n = LAYOUTS[name]
        if self.viewer.is_compare():
            self.toggle_compare(False)
        if n > 1 and self.enhance.preview_check.isChecked():  # a 1x1 preview goes on (it may ask for 1x1)
            self.enhance.preview_check.setChecked(False)
        k = self.viewer.active()
        if k >= n:  # the active film stays on screen
            self._swap_slots(k, n - 1 if n > 1 else 0)
        was_grid = self.viewer.is_grid()
        self.viewer.set_layout(name)
        if not was_grid:
            self.edit_panel.layer_b.set_outline(None)  # an edit's outline belonged to the compare pane
            for i in range(1, n):  # the compare pane showed another film meanwhile
                d, v = self._docs[i], self.viewer.views[i]
                if d is None:
                    v.set_image(None)
                elif v.image() is not d.data:
                    self._display(d, view=v)
        for i in range(n):
            self._update_title(i)
        return True

    def single_layout_for(self, what: str) -> bool:
        """Tools that need the 1x1 layout (compare pane, edit painting) call this first: it shows the
        active film alone and says so. False when the layout cannot change now."""
        if not self.viewer.is_grid():
            return True
        if not self.set_layout("1x1"):
            return False
        self.statusBar().showMessage(f"{what} works on one film: the layout is 1 x 1 now (Alt+2 / Alt+4 "
                                     "go back; the other viewports keep their films)", 8000)
        self.view.show_notice(f"Layout 1 x 1: {what[0].lower() + what[1:]} works on one film", 3000)
        return True

    def _swap_slots(self, i: int, j: int) -> None:
        """Exchange the films of viewports ``i`` and ``j`` with their window, inversion, zoom and
        orientation; ``j`` becomes the active viewport."""
        if i != j:
            vi, vj = self.viewer.views[i], self.viewer.views[j]
            states = [(v.window(), v.inverted(), v.orientation(), v.view_state(), v.measurements())
                      if v.has_image() else None for v in (vi, vj)]
            self._docs[i], self._docs[j] = self._docs[j], self._docs[i]
            for v, d, st in ((vi, self._docs[i], states[1]), (vj, self._docs[j], states[0])):
                if d is None:
                    v.set_image(None)
                    continue
                self._display(d, view=v)
                if st is not None and v.image().shape == d.data.shape:
                    (c, w), inv, m, vs, _ = st
                    v.set_window(c, w)
                    v.set_inverted(inv, emit=False)
                    v.set_orientation(m)
                    v.set_view_state(vs)
            self._update_title(i)
        self.viewer.set_active(j)
        self._update_title(j)

    def _next_slot(self, k: int) -> int:
        """The viewport after ``k``: the first empty one after it where there is one."""
        n = self.viewer.count()
        order = [(k + d) % n for d in range(1, n)]
        empty = [i for i in order if self._docs[i] is None]
        return (empty or order)[0]

    def show_in_slot(self, k: int, doc: Document) -> None:
        """Show ``doc`` in viewport ``k`` without making it active (the active one: as set_document)."""
        if k == self.viewer.active():
            self.set_document(doc)
            return
        self._docs[k] = doc
        self._display(doc, view=self.viewer.views[k])
        self._update_title(k)

    def _on_entry_dropped(self, k: int, eid: str) -> None:
        """A History strip thumbnail dropped on viewport ``k``: that viewport becomes active and shows it."""
        entry = next((e for e in self.history.entries() if e.id == eid), None)
        if entry is None:
            return
        if self.running_job is not None and k == self._run_slot:
            self.statusBar().showMessage("A generation is drawing into this viewport: drop the film on another "
                                         "one, or wait", 6000)
            return
        self.viewer.set_active(k)
        self.show_entry(entry)
        self.view.setFocus()

    def step_viewport(self, delta: int) -> None:
        if not self.viewer.is_grid():
            self.statusBar().showMessage("One viewport: choose the 1 x 2 (Alt+2) or 2 x 2 (Alt+4) layout", 5000)
            return
        self.viewer.step_active(delta)
        self.view.setFocus()

    def set_link_window(self, on: bool) -> None:
        """Link window/level and inversion across the viewports of a grid layout (saved in the settings)."""
        self.viewer.link_window = bool(on)
        _set_checked(self.act_link_wl, on)
        if on and self.viewer.is_grid():
            self.viewer.sync_window_from(self.view)
        if self.isVisible():
            self.statusBar().showMessage("Window/level linked across the viewports" if on else
                                         "Each viewport keeps its own window/level", 5000)

    def _update_title(self, k: int) -> None:
        if not self.viewer.is_grid():
            return
        d = self._docs[k]
        active = k == self.viewer.active()
        text = f"{k + 1}: {d.title}" if d is not None else f"{k + 1}: empty"
        tip = (f"Viewport {k + 1}" + (" (active: the tools, the History strip and the Dataset browser act on "
                                       "it)" if active else " (click to make it the active one)"))
        self.viewer.set_title(k, text + ("  ●" if active else ""), tip)

    def _check_layout_action(self) -> None:
        for name, a in self.act_layouts.items():
            _set_checked(a, name == self.viewer.layout_name())

    def _on_layout_changed(self, name: str) -> None:
        self._check_layout_action()
        self.settings.setValue("view/layout", name)
        self.act_next_viewport.setEnabled(name != "1x1")
        self.act_prev_viewport.setEnabled(name != "1x1")
        if self.isVisible():
            self.statusBar().showMessage(f"Layout {LAYOUT_NAMES[name]}" + (
                f"; viewport {self.viewer.active() + 1} is active (click another, or Ctrl+Tab)" if name != "1x1" else ""),
                5000)

    def _on_active_changed(self, k: int) -> None:
        """Another viewport is active: the tools, panels and status bar follow it."""
        for i in range(len(self.viewer.views)):
            self._update_title(i)
        measuring, annotating = self.act_measure.isChecked(), self.view_annotating_kind()
        for v in self.viewer.views:
            if v is not self.view:
                v.set_measuring(False)
                v.set_annotating("")
        v = self.view
        if self.edit_panel.layer.tool and self.viewer.is_grid():
            self.edit_panel.set_tool("")
        v.set_measuring(measuring and v.has_image())
        v.set_annotating(annotating if v.has_image() else "")
        for other in self.viewer.views:  # the answer shown over one film is hidden on moving on
            other.set_reveal("")
        _set_checked(self.act_reveal, False)
        c, w = v.window()
        self.wl_label.setText(f"W {w:.0f}  C {c:.0f}" if v.has_image() else "")
        doc = self.doc
        if doc is not None:
            self.enhance.set_source(doc.source, doc.title, enhanced=doc.original is not None)
            if doc.entry is not None:
                self.generator.set_attention_words(sorted(doc.entry.attention_words, key=_prompt_order(doc.entry.prompt)))
        else:
            self.enhance.set_source(None)
        self._update_overlay()
        self._update_actions()
        self.documentShown.emit()

    def view_annotating_kind(self) -> str:
        return "arrow" if self.act_arrow.isChecked() else ("text" if self.act_text.isChecked() else "")

    def _on_window_changed(self, v, c: float, w: float) -> None:
        if v is self.view:
            self.wl_label.setText(f"W {w:.0f}  C {c:.0f}")

    def _compare_changed(self, on: bool) -> None:
        _set_checked(self.act_compare, on)
        if not on:
            self._update_overlay()

    def show_real_films(self, labels: list[str]) -> None:
        """The Dataset browser, filtered to the films with ``labels`` (the prompt's findings): the open
        or last dataset, else a folder the user picks."""
        if not labels:
            self.statusBar().showMessage("The prompt names no finding the datasets label", 6000)
            return
        d = self.dataset
        self.dock_dataset.show()
        self.dock_dataset.raise_()
        d.show_findings(labels)
        if not d.model.folder and d.open_button.isEnabled():  # no dataset open, none opening
            d.choose_folder()
            if not d.model.folder and d.open_button.isEnabled():  # the dialog was cancelled
                d.show_findings(None)
                return
        self.statusBar().showMessage("Dataset browser: real films labelled " + " + ".join(labels), 6000)

    def _use_prompt(self, text: str) -> None:
        self.generator.set_prompt(text)
        self.dock_generator.raise_()
        self.statusBar().showMessage("Report copied into the prompt", 4000)

    # ------------------------------------------------------------------ enhancement
    def _on_enhance_preview(self, original, enhanced, desc: str) -> None:
        if self.doc is None:
            return
        if self.viewer.is_grid() and not self.single_layout_for("The enhancement preview"):
            return
        c, w = self.view.window()
        if self.doc.original is not None:
            self.view.set_image(original, keep_view=True, keep_window=True, synthetic=self.doc.synthetic,
                                caption=self.doc.title, bits=self.doc.bits, spacing=self.doc.spacing)
        self.viewer.view_b.set_image(enhanced, keep_view=True, keep_window=True, synthetic=self.doc.synthetic,
                                     caption=f"Enhanced: {desc}", bits=self.doc.bits)
        self.viewer.view_b.set_window(c, w, emit=False)
        if not self.viewer.is_compare():
            self.view.clear_overlay()
            self.viewer.show_compare("Original", "Enhanced (preview)")

    def _on_enhance_preview_stopped(self) -> None:
        self.viewer.show_single()
        if self.doc is not None:
            self._display(self.doc, keep_window=True, keep_view=True)

    def _on_enhance_apply(self, enhanced, params: dict) -> None:
        if self.doc is None:
            return
        if self.doc.original is None:
            self.doc.original = self.doc.data
        self.doc.data = enhanced
        self.doc.enhancement = params
        if self.viewer.is_compare():
            self.enhance.preview_check.setChecked(False)
        self._display(self.doc, keep_window=True, keep_view=True)
        self.enhance.set_source(self.doc.source, self.doc.title, enhanced=True)
        self.statusBar().showMessage(f"Enhancement applied ({params.get('preset')}); Revert restores the original", 6000)

    def _on_enhance_revert(self) -> None:
        if self.doc is None or self.doc.original is None:
            return
        self.doc.data = self.doc.original
        self.doc.original = None
        self.doc.enhancement = None
        if self.viewer.is_compare():
            self.enhance.preview_check.setChecked(False)
        self._display(self.doc, keep_window=True, keep_view=True)
        self.enhance.set_source(self.doc.source, self.doc.title, enhanced=False)

    # ------------------------------------------------------------------ view
    def apply_window_preset(self, name: str) -> None:
        if self.view.has_image():
            self.view.apply_preset(name)
            self.statusBar().showMessage(f"Window preset: {name}", 3000)

    def toggle_invert(self) -> None:
        self.view.set_inverted(not self.view.inverted())

    def reset_window(self) -> None:
        """R: the image's own window and no inversion (both panes when comparing); the status bar
        no longer names a preset."""
        for v in (self.view, self.viewer.view_b) if self.viewer.is_compare() else (self.view,):
            v.reset_window()
            v.set_inverted(False)
        if self.view.has_image():
            self.statusBar().showMessage("Window/level and inversion reset", 3000)
        else:
            self.statusBar().clearMessage()

    def set_magnifier(self, on: bool) -> None:
        """L: a loupe under the cursor on both views."""
        for v in self.viewer.views:
            v.set_magnifier(on)
        _set_checked(self.act_magnifier, on)

    def set_show_pixels(self, on: bool) -> None:
        """Nearest-neighbour drawing of magnified films (on) or bicubic (off); saved in the settings."""
        for v in self.viewer.views:
            v.set_show_pixels(on)
        _set_checked(self.act_pixels, on)

    def view_fit(self) -> None:
        self.view.zoom_to_fit()

    def view_1to1(self) -> None:
        self.view.zoom_1to1()

    def copy_image(self) -> bool:
        """Put the picture as shown (window, inversion, enhancement preview; no overlay) on the clipboard
        at image resolution. A synthetic image gets the SYNTHETIC mark burned in: a pasted picture
        carries no metadata to say what it is."""
        if _copy_selected_text(QApplication.focusWidget()):
            return False  # Ctrl+C in a report or field with selected text copies that text
        u8 = self.view.rendered()
        if u8 is None:
            return self._nothing_to_copy()
        u8 = viewtools.oriented(u8, self.view.orientation())  # as shown: flipped/rotated too
        marked = self.view.is_synthetic()
        if marked:
            from ..core.imaging.pngio import burn_synthetic_mark

            u8 = burn_synthetic_mark(u8, max_value=255)
        h, w = u8.shape
        QGuiApplication.clipboard().setImage(grey_qimage(u8))
        c, wd = self.view.window()
        self.statusBar().showMessage(f"Copied the image as shown ({w}x{h}, W {wd:.0f} C {c:.0f})"
                                     + (" with a burned-in SYNTHETIC mark" if marked else ""), 6000)
        return True

    def show_adjacent(self, delta: int) -> bool:
        """Step through the history strip's results (-1 previous, +1 next) and show the one reached."""
        if self.running_job is not None:
            self.statusBar().showMessage("A generation is running: its results arrive in the history strip", 5000)
            return False
        entry = self.history.step(delta)
        if entry is None:
            end = "No results yet" if not self.history.entries() else ("This is the first result" if delta < 0
                                                                          else "This is the last result")
            self.statusBar().showMessage(end, 4000)
            if self.is_presenting():
                self.view.show_notice(end, 1500)
            return False
        self.show_entry(entry)
        k, n = self.history.position()
        self.view.show_notice(f"{k} / {n}", 1200)
        return True

    def set_reveal(self, on: bool) -> None:
        prompt = str((self.doc.params or {}).get("prompt") or "") if self.doc is not None else ""
        if on and not prompt:
            self.statusBar().showMessage("This image has no prompt to show (generated images and cxrdesk's "
                                         "PNG and DICOM exports have one)", 6000)
            on = False
        self.view.set_reveal(f"\u201c{prompt}\u201d" if on else "")
        _set_checked(self.act_reveal, on)

    def reorient(self, op) -> None:
        """Flip or rotate the view (``op`` None: back to the film's own orientation); both panes when
        comparing. Display only: exports say where they apply it."""
        if not self.view.has_image():
            return
        views = (self.view, self.viewer.view_b) if self.viewer.is_compare() else (self.view,)
        for v in views:
            v.set_orientation(viewtools.IDENTITY) if op is None else v.reorient(op)
        text = viewtools.orientation_text(self.view.orientation())
        self.view.show_notice(f"View {text}" if text else "Original orientation", 1500)
        self.statusBar().showMessage((f"View {text} (on screen only; R/F do not undo it, Shift+O does)" if text
                                      else "Original orientation"), 5000)

    def set_annotating(self, kind: str) -> None:
        """A: arrows, T: text labels (one at a time; measuring stops)."""
        if kind and self.act_measure.isChecked():
            self.set_measuring(False)
        self.view.set_annotating(kind)
        _set_checked(self.act_arrow, kind == "arrow")
        _set_checked(self.act_text, kind == "text")
        if kind:
            self.view.setFocus()
            self.statusBar().showMessage(
                ("Arrow: left drag from where the label goes to the finding" if kind == "arrow" else
                 "Text: click where the label goes, then type it") +
                "; middle drag pans; Backspace removes the last; A / T stops", 10000)

    def _ask_annotation_text(self, at, view=None) -> None:
        from PySide6.QtWidgets import QInputDialog

        v = self.view if view is None else view
        text, ok = QInputDialog.getText(self, "Text label", "Label (drawn over the film, not into it):")
        v.setFocus()
        if ok and text.strip():
            v.add_annotation({"kind": "text", "at": [at.x(), at.y()], "text": text})

    def remove_last_annotation(self) -> None:
        self.view.remove_last_annotation()

    def clear_annotations(self) -> None:
        self.view.clear_annotations()

    def _on_annotated(self, view=None) -> None:
        """Annotations are kept with the document of the viewport they were drawn in, and beside a
        result's files (its own JSON)."""
        k = self.viewer.active() if view is None else self.viewer.index_of(view)
        if k < 0 or (k > 0 and not self.viewer.is_grid()):  # the compare pane shows no document of its own
            return
        doc = self._docs[k]
        if doc is None:
            return
        doc.annotations = self.viewer.views[k].annotations()
        if doc.entry is not None:
            _save_annotations(doc.entry, doc.annotations)

    def set_measuring(self, on: bool) -> None:
        if on and self.view.annotating():
            self.set_annotating("")
        self.view.set_measuring(on)
        if on:
            self.statusBar().showMessage("Measuring: left drag draws a line, two lines give their ratio; middle drag "
                                         "pans; Del clears; M stops", 10000)
        _set_checked(self.act_measure, on)

    def clear_measurements(self) -> None:
        self.view.clear_measurements()
        self._on_measured()

    def _on_measured(self) -> None:
        labels, ratio = self.view.measurement_text()
        if not labels:
            self.statusBar().showMessage("Measurements cleared", 4000)
            return
        msg = "   ".join(f"line {k + 1}: {t}" for k, t in enumerate(labels))
        if ratio:
            msg += (f"   {ratio}: the cardiothoracic ratio if they span the heart and the chest at their widest "
                    "(> 0.5 on a PA film suggests cardiomegaly)")
        self.statusBar().showMessage(msg, 30000)

    def _nothing_to_copy(self) -> bool:
        self.statusBar().showMessage("Nothing to copy: generate or open an image first", 6000)
        return False

    def copy_view(self) -> bool:
        """Put the image area on the clipboard as it is on screen (both panes when comparing)."""
        if not self.view.has_image():
            return self._nothing_to_copy()
        pm = self.viewer.grab()
        QGuiApplication.clipboard().setPixmap(pm)
        self.statusBar().showMessage(f"Copied the view as on screen ({pm.width()}x{pm.height()})", 6000)
        return True

    def is_presenting(self) -> bool:
        return self._presentation is not None

    def set_presentation(self, on: bool) -> None:
        """Presentation mode: full screen, the image alone (no menus, panels or status bar), zoomed to
        fit; shortcuts keep working. Leaving restores the panels and the window as they were."""
        if on == self.is_presenting():
            return
        if on:
            self._presentation = (self.saveState(), self.saveGeometry(), self.isMaximized())
            for d in self.findChildren(QDockWidget):
                d.hide()
            self.menuBar().hide()
            self.statusBar().hide()
            self.showFullScreen()
            self.view.setFocus()  # Page Up / Down and the view's keys act at once
            self.view.set_text_scale(PRESENTATION_TEXT_SCALE)
            self.view.zoom_to_fit()
            self.view.show_notice("Presentation mode: F11 or Esc to leave")
        else:
            state, geometry, maximized = self._presentation
            self._presentation = None
            self.showMaximized() if maximized else self.showNormal()
            self.restoreGeometry(geometry)
            self.menuBar().show()
            self.statusBar().show()
            self.restoreState(state)
            self.view.show_notice("")
            self.view.set_text_scale(1.0)
            self.view.zoom_to_fit()
        _set_checked(self.act_present, on)

    def keyPressEvent(self, ev) -> None:
        # Esc cancels a generation (its action); with none running, it leaves presentation mode
        if ev.key() == Qt.Key_Escape and self.is_presenting() and self.running_job is None:
            self.set_presentation(False)
            ev.accept()
            return
        super().keyPressEvent(ev)

    def _on_pixel(self, info) -> None:
        if info is None:
            self.pixel_label.setText("")
        else:
            x, y, v = info
            self.pixel_label.setText(f"x {x} y {y}: {v}")

    # ------------------------------------------------------------------ export
    def _export_metadata(self) -> dict:
        doc = self.doc
        meta = dict(doc.params)
        if doc.enhancement:
            meta["enhancement"] = doc.enhancement
        return meta

    def _check_exportable(self, what: str) -> bool:
        if self.doc is None:
            self.statusBar().showMessage("Nothing to export: generate or open an image first", 6000)
            return False
        return True

    def export_png_dialog(self) -> None:
        if not self._check_exportable("PNG"):
            return
        doc = self.doc
        opts = {"bits": 8, "apply_window": True, "burn_mark": False}
        if doc.exportable:
            dlg = ExportDialog("PNG", self.settings, self)
            if dlg.exec() != QDialog.Accepted:
                return
            opts = dlg.values()
        start = Path(str(self.settings.value("paths/export", str(Path.home()))))
        name = (f"cxr_seed{doc.params.get('seed')}.png" if doc.kind == "generated" else Path(doc.path).stem + "_view.png")
        path, _ = QFileDialog.getSaveFileName(self, "Export PNG", str(start / name), "PNG image (*.png)")
        if not path:
            return
        if not path.lower().endswith(".png"):
            path += ".png"
        self.settings.setValue("paths/export", str(Path(path).parent))
        self.export_png(path, **opts)

    def export_png(self, path: str, bits: int = 16, apply_window: bool = True, burn_mark: bool = False) -> str | None:
        """Export the current image. Synthetic 12-bit images: ``pngio.write_png`` with the parameters
        and the current window, applied to the pixels (with the view's inversion: the file looks like
        the screen) unless ``apply_window`` is false (the full stored range); other images: the
        displayed (windowed) 8-bit picture."""
        doc = self.doc
        if doc is None:
            return None
        try:
            if doc.exportable:
                from ..core.imaging.pngio import write_png

                data, meta, (c, w) = doc.data, self._export_metadata(), self.view.window()
                if apply_window and self.view.inverted():
                    # the DICOM linear window of the negative, centre mirrored, is the inverted picture
                    top = (1 << doc.bits) - 1
                    data = (top - doc.data.astype(np.int32)).astype(doc.data.dtype)
                    c, meta["inverted"] = top - c + 1, True
                m, notes = self._view_extras(meta, apply_window)
                if m is not None:
                    data = viewtools.oriented(data, m)
                out = write_png(path, data, meta, bits=bits, window=(c, w), apply_window=apply_window,
                                burn_mark=burn_mark, paint=notes)
            else:
                c, w = self.view.window()
                from ..core.imaging.pngio import write_plain_png  # atomic: no partial file on a failure

                m, notes = self._view_extras({}, True)
                u8 = viewtools.oriented(imaging.window_to_u8(doc.data, c, w, self.view.inverted()), m)
                out = write_plain_png(path, notes(u8) if notes else u8)
        except Exception as exc:  # noqa: BLE001
            self._error("Export PNG failed", str(exc))
            return None
        self.statusBar().showMessage(f"Exported {out}", 8000)
        return str(out)

    def _view_extras(self, meta: dict, as_shown: bool):
        """What a PNG export as on screen adds to the film: (the view's orientation or None, a function
        drawing the annotations into the final pixels or None). Both are recorded in ``meta``; a
        full-range export applies neither (the stored pixels as they are)."""
        m, items = self.view.orientation(), self.view.annotations()
        if m != viewtools.IDENTITY:
            meta["view_orientation"] = {"matrix": list(m), "text": viewtools.orientation_text(m), "applied": as_shown}
        if items:
            meta["annotations"] = {"items": items, "units": "stored image pixels", "drawn_in": as_shown}
        if not as_shown:
            return None, None
        shape = self.doc.data.shape
        return m, ((lambda pix: viewtools.burn_annotations(pix, items, m, shape)) if items else None)

    def export_dicom_dialog(self) -> None:
        if not self._check_exportable("DICOM"):
            return
        if not self.doc.exportable:
            self._error("Export DICOM", "DICOM export is for generated (synthetic) images: a real image would "
                        "be mislabelled as synthetic. Use Export PNG for a picture of the view.")
            return
        dlg = ExportDialog("DICOM", self.settings, self, annotations=len(self.view.annotations()))
        if dlg.exec() != QDialog.Accepted:
            return
        opts = dlg.values()
        start = Path(str(self.settings.value("paths/export", str(Path.home()))))
        path, _ = QFileDialog.getSaveFileName(self, "Export DICOM", str(start / f"cxr_seed{self.doc.params.get('seed')}.dcm"),
                                              "DICOM file (*.dcm)")
        if not path:
            return
        if not path.lower().endswith(".dcm"):
            path += ".dcm"
        self.settings.setValue("paths/export", str(Path(path).parent))
        self.export_dicom(path, bits=opts["bits"], burn_mark=opts["burn_mark"], identity=opts["identity"],
                          presentation=opts["presentation"])

    def _series_context(self, identity: dict | None = None):
        """The series exports go to: one per session, a new one (in a new study) when ``identity``
        (patient_name, patient_id, study_description, series_description; empty = the synthetic
        defaults) differs from the current series'."""
        from ..core.dicom.writer import SeriesContext

        ident = {k: v for k, v in (identity or {}).items() if v}
        if self._series is None or (identity is not None and ident != self._series_identity):
            self._series = SeriesContext.new(**ident)
            self._series_identity = ident
        return self._series

    def export_dicom(self, path: str, bits: int = 12, burn_mark: bool = False,
                     identity: dict | None = None, presentation: bool | None = None) -> str | None:
        """DICOM Secondary Capture of the current synthetic image with the view's window; ``identity``:
        see ``_series_context`` (None: the current series). ``presentation``: also write a GSPS of the
        view (annotations, window, inversion, orientation) beside it as ``NAME_pr.dcm`` (None: when
        there are annotations)."""
        doc = self.doc
        if doc is None or not doc.exportable:
            return None
        try:
            from ..core.dicom.writer import write_dicom
        except ImportError as exc:
            self._error("Export DICOM", f"DICOM export is not available: {exc}")
            return None
        try:
            out = write_dicom(path, doc.data, without_region(self._export_metadata()), window=self.view.window(),
                              context=self._series_context(identity), bits=bits, burn_mark=burn_mark)
        except Exception as exc:  # noqa: BLE001
            self._error("Export DICOM failed", str(exc))
            return None
        if presentation is None:
            presentation = bool(self.view.annotations())
        pr = self._write_presentation_state(out) if presentation else None  # None: failed (error shown) or not asked
        self.statusBar().showMessage(f"Exported {out}" + (f" and its presentation state {Path(pr).name}" if pr else ""),
                                     8000)
        return str(out)

    def _presentation_kwargs(self) -> dict:
        """The view as ``cxrdesk.core.dicom.presentation`` takes it: annotations, inversion, orientation,
        and one presentation-state series per image series (instance numbers counted in it)."""
        from pydicom.uid import generate_uid

        series = self._series
        if series is not None and (self._pr_series is None or self._pr_series[0] != series.series_uid):
            self._pr_series = [series.series_uid, generate_uid(), 0]
        kw = {"annotations": self.view.annotations(), "inverted": self.view.inverted(),
              "orientation": self.view.orientation()}
        if series is not None:
            self._pr_series[2] += 1
            kw.update(series_uid=self._pr_series[1], series_number=int(series.series_number) + 1,
                      instance_number=self._pr_series[2])
        return kw

    def _write_presentation_state(self, image_path) -> str | None:
        """Write the GSPS of ``image_path`` (just exported) beside it; None (error shown) on failure.
        The window is the image's first (the view's, in the file's units whatever its depth)."""
        try:
            from ..core.dicom.presentation import presentation_path, write_presentation_state

            kw = self._presentation_kwargs()
            return str(write_presentation_state(presentation_path(image_path), image_path, kw.pop("annotations"), **kw))
        except Exception as exc:  # noqa: BLE001
            self._error("Export DICOM: presentation state failed", f"The image was written; its presentation "
                        f"state was not: {exc}")
            return None

    def send_to_pacs(self) -> None:
        if importlib.util.find_spec("cxrdesk.core.dicom.pacs") is None:
            self._error("Send to PACS", "Sending to a PACS is not available in this build "
                        "(the cxrdesk.core.dicom.pacs module is missing). Export DICOM and import the file instead.")
            return
        if self.doc is None or not self.doc.exportable:
            self._error("Send to PACS", "Only generated (synthetic) images can be sent to a PACS.")
            return
        from .pacs_dialog import PacsDialog

        dlg = PacsDialog(self.settings, self)
        context = self._series_context()
        dlg.set_payload(self.doc.data, without_region(self._export_metadata()), self.view.window(), context,
                        presentation=self._presentation_kwargs() if self.view.annotations() else None)
        dlg.exec()

    def open_data_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(data_dir())))

    def load_earlier_results(self) -> None:
        known = {e.id for e in self.history.entries()}
        earlier = [e for e in self.store.recent(60) if e.id not in known]
        for e in reversed(earlier):
            self.history.add(e, select=False, front=True)
        self.statusBar().showMessage(f"{len(earlier)} earlier result(s) added to the history strip", 5000)

    # ------------------------------------------------------------------ help
    def show_about(self) -> None:
        QMessageBox.about(self, "About cxrdesk",
                          f"<h3>cxrdesk {__version__}</h3>"
                          "<p>Synthetic chest X-rays from radiology text, for teaching.</p>"
                          f"<p><b>{DISCLAIMER}.</b> Generated images are produced by a model trained on "
                          "public data; they are not images of any patient and must not be used to make "
                          "clinical decisions.</p>"
                          f"<p>Results, settings and logs: {data_dir()}</p>"
                          "<p>Runs offline. Apache-2.0.</p>")

    def show_model_card(self) -> None:
        self.dock_model.show()
        self.dock_model.raise_()
        if self.model_state == "not loaded":
            self.load_model()

    def show_shortcuts(self) -> None:
        rows = []
        for a in [self.act_generate, self.act_cancel, self.act_batch_grid, *self._fast_actions(),
                  *self.act_presets.values(),
                  self.act_invert, self.act_reset_wl,
                  self.act_fit, self.act_1to1, self.act_magnifier, self.act_compare, self.act_highlight,
                  self.act_reveal, self.act_measure,
                  self.act_clear_measure, self.act_flip_h, self.act_flip_v, self.act_rot_cw, self.act_rot_ccw,
                  self.act_orient_reset, *self.act_layouts.values(), self.act_next_viewport,
                  self.act_prev_viewport, self.act_link_wl, self.act_arrow, self.act_text, self.act_undo_annotation,
                  self.act_clear_annotations, self.act_prev, self.act_next, self.act_present, self.act_open,
                  self.act_export_png, self.act_export_dicom, self.act_pacs, self.act_copy, self.act_copy_view,
                  *self.edit_panel.actions_for_help(), self.act_quit]:
            keys = ", ".join(s.toString(QKeySequence.NativeText) for s in a.shortcuts())
            rows.append(f"<tr><td><b>{keys}</b></td><td>{a.text().replace('&', '')}</td></tr>")
        rows.append("<tr><td><b>Wheel</b></td><td>Zoom about the cursor</td></tr>")
        rows.append("<tr><td><b>Left drag</b></td><td>Pan; while measuring (M), draw a line</td></tr>")
        rows.append("<tr><td><b>Middle drag</b></td><td>Pan</td></tr>")
        rows.append("<tr><td><b>Double click</b></td><td>Zoom to fit</td></tr>")
        rows.append("<tr><td><b>Click a viewport</b></td><td>Make it the active one (1x2 and 2x2 layouts)</td></tr>")
        rows.append("<tr><td><b>Drag a History thumbnail</b></td><td>Onto a viewport: show that result there</td></tr>")
        rows.append("<tr><td><b>Right drag</b></td><td>Window/level: horizontal = width, vertical = center</td></tr>")
        # two columns side by side: as one column in a message box it was taller than the screen, OK off it
        cells = [r[len("<tr>"):-len("</tr>")] for r in rows]
        half = (len(cells) + 1) // 2
        body = "".join(f"<tr>{a}<td width=24></td>{b}</tr>"
                       for a, b in zip(cells[:half], cells[half:] + ["<td></td><td></td>"]))
        show_html(self, "Keyboard shortcuts", "<table cellspacing=4>" + body + "</table>")

    def _error(self, title: str, msg: str) -> None:
        self.statusBar().showMessage(f"{title}: {msg}", 10000)
        if self.isVisible() and not os.environ.get("CXRDESK_NO_DIALOGS"):
            QMessageBox.warning(self, title, msg)

    # ------------------------------------------------------------------ state
    def _update_actions(self) -> None:
        doc = self.doc
        has = doc is not None
        self.act_export_png.setEnabled(has)
        self.act_copy.setEnabled(has)
        self.act_copy_view.setEnabled(has)
        self.act_export_dicom.setEnabled(has and doc.exportable)
        self.act_pacs.setEnabled(has and doc.exportable)
        tip = "" if (has and doc.exportable) else " (generated images only)"
        self.act_export_dicom.setStatusTip("Export as DICOM Secondary Capture" + tip)
        drafts = getattr(self, "drafts", None)
        draft = self.running_job is None and drafts is not None and drafts.shown() and not self.edit_panel.is_running()
        self.act_cancel.setEnabled(self.running_job is not None or draft)
        self.act_cancel.setText("Take the &draft off" if draft else "&Cancel generation")
        self.act_batch_grid.setEnabled(self._last_batch is not None)

    def _fast_actions(self) -> list:
        """Fast / Full, draft while typing, keep the draft: the Generator's, with window-wide shortcuts."""
        g = self.generator
        acts = [g.act_fast, g.act_draft, g.act_keep_draft]
        for a in acts:
            if a not in self.actions():
                self.addAction(a)
        return acts

    def _save_settings(self) -> None:
        s = self.settings
        if self.is_presenting():  # the layout to come back to, not the full-screen image
            state, geometry, _ = self._presentation
        else:
            state, geometry = self.saveState(), self.saveGeometry()
        s.setValue("window/geometry", geometry)
        s.setValue("window/state", state)
        self.generator.save_settings(s)
        self.enhance.save_settings(s)
        self.edit_panel.save_settings(s)
        self.dataset.save_settings(s)
        s.setValue("view/show_pixels", self.act_pixels.isChecked())
        s.setValue("view/layout", self.viewer.layout_name())
        s.setValue("view/link_window", self.act_link_wl.isChecked())
        if self.model_info and self.model_info.get("folder") and self.host.worker.model_path:
            s.setValue("model/folder", self.host.worker.model_path)
        s.sync()

    def _restore_settings(self) -> None:
        s = self.settings
        geo = s.value("window/geometry")
        if isinstance(geo, QByteArray) and not geo.isEmpty():
            self.restoreGeometry(geo)
        st = s.value("window/state")
        self._state_restored = bool(isinstance(st, QByteArray) and not st.isEmpty() and self.restoreState(st))
        self.generator.restore_settings(s)
        self.enhance.restore_settings(s)
        self.edit_panel.restore_settings(s)
        self.dataset.restore_settings(s)
        self.set_show_pixels(str(s.value("view/show_pixels", "false")).lower() == "true")
        self.set_link_window(str(s.value("view/link_window", "false")).lower() == "true")
        layout = str(s.value("view/layout", "1x1"))
        self.set_layout(layout if layout in LAYOUTS else "1x1")
        self._on_layout_changed(self.viewer.layout_name())
        if self.model_arg is None:
            folder = s.value("model/folder")
            if folder and Path(str(folder)).is_dir():
                self.host.worker.model_path = str(folder)

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        if self._preload:
            self._preload = False
            QTimer.singleShot(50, self.load_model)  # once the first frame is drawn
        if not self._layout_done:
            # Tabifying docks of two areas before the window is shown leaves a stray, visible
            # QTabBar in the middle of the window (Qt 6.12); doing it once shown does not.
            self._layout_done = True
            if not self._state_restored:
                self.tabifyDockWidget(self.dock_generator, self.dock_enhance)
                self.tabifyDockWidget(self.dock_enhance, self.dock_edit)
                self.tabifyDockWidget(self.dock_dataset, self.dock_model)
                self.tabifyDockWidget(self.dock_model, self.dock_lesson)
                self.dock_generator.raise_()
                self.dock_dataset.raise_()
                side = max(340, min(440, self.width() // 4))
                self.resizeDocks([self.dock_generator, self.dock_dataset], [side, side + 20], Qt.Horizontal)

    def _on_focus_changed(self, old, new) -> None:
        """A dialog of ours closed and no window has the focus (X without a window manager, or one that
        does not hand it back): the main window takes it back, so that the image's keys (F1, P, H) work
        without a click. Another application taking the focus leaves the dialog open: nothing is done."""
        dlg = QWidget.window(old) if old is not None else None  # ImageView.window() is its W/L window
        if new is None and dlg is not None and dlg is not self:
            QTimer.singleShot(0, self, lambda: self._take_focus_back(dlg))  # not once this window is deleted

    def _take_focus_back(self, dlg) -> None:
        try:
            if dlg.isVisible():
                return  # the focus went to another application, the dialog is still open
        except RuntimeError:  # the dialog is already deleted: closed
            pass
        if (self.isVisible() and not self.isMinimized() and QApplication.activeWindow() is None
                and QApplication.activeModalWidget() is None):
            self.activateWindow()

    def closeEvent(self, ev) -> None:
        self._save_settings()
        self.drafts.shutdown()
        if self.running_job is not None:
            self.host.worker.cancel(self.running_job)
        self.host.shutdown()
        self.dataset.model.loader.reset()
        self.dataset.model.loader.wait(3000)
        super().closeEvent(ev)


def show_html(parent, title: str, html: str) -> None:
    """A modal box of rich text sized to its text but never beyond the screen (it scrolls there), so that
    its OK button stays on screen: a QMessageBox grows with its text and wraps it at about 500 pixels."""
    dlg = QDialog(parent)
    dlg.setWindowTitle(title)
    text = QTextBrowser(dlg)
    text.setHtml(html)
    text.setFrameShape(QTextBrowser.NoFrame)
    bb = QDialogButtonBox(QDialogButtonBox.Ok, dlg)
    bb.accepted.connect(dlg.accept)
    lay = QVBoxLayout(dlg)
    lay.addWidget(text)
    lay.addWidget(bb)
    doc = text.document().clone(dlg)  # measured unwrapped: the browser's own is laid out at its width
    doc.setTextWidth(10_000)
    doc.setTextWidth(doc.idealWidth())
    screen = (parent.screen() if parent is not None else None) or QGuiApplication.primaryScreen()
    avail = screen.availableGeometry()
    extra_w, extra_h = 2 * lay.contentsMargins().left() + 30, bb.sizeHint().height() + 3 * lay.spacing() + 40
    dlg.resize(min(int(doc.size().width()) + extra_w, int(avail.width() * 0.9)),
               min(int(doc.size().height()) + extra_h, int(avail.height() * 0.85)))
    bb.button(QDialogButtonBox.Ok).setFocus()
    dlg.exec()
    dlg.deleteLater()


def _copy_selected_text(widget) -> bool:
    """Copy a text widget's selection (a read-only report view does not claim Ctrl+C from the
    window's Copy image shortcut the way an editable field does); False when it has none."""
    if isinstance(widget, (QTextEdit, QPlainTextEdit)) and widget.textCursor().hasSelection():
        widget.copy()
        return True
    if isinstance(widget, QLineEdit) and widget.hasSelectedText():
        widget.copy()
        return True
    if isinstance(widget, QLabel) and widget.hasSelectedText():
        QGuiApplication.clipboard().setText(widget.selectedText())
        return True
    return False


def _annotations_path(entry: HistoryEntry) -> Path:
    return Path(entry.image_path).with_name(f"{entry.id}_annotations.json")


def _load_annotations(entry: HistoryEntry) -> list:
    import json

    p = _annotations_path(entry)
    try:
        return viewtools.valid_annotations(json.loads(p.read_text(encoding="utf-8")).get("items"))
    except (OSError, ValueError, AttributeError):
        return []


def _save_annotations(entry: HistoryEntry, items: list) -> None:
    import json

    from ..core.fsutil import atomic_write

    p = _annotations_path(entry)
    try:
        if items:
            atomic_write(p, lambda fh: fh.write(json.dumps({"version": 1, "items": items}, indent=1)), mode="w")
        else:
            p.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot save the annotations of %s: %s", entry.id, exc)


def _set_checked(action: QAction, on: bool) -> None:
    """Show ``on`` in a checkable action without running its slot again."""
    if action.isChecked() != on:
        action.blockSignals(True)
        action.setChecked(on)
        action.blockSignals(False)


def _prompt_order(prompt: str):
    low = prompt.lower()

    def key(w: str):
        i = low.find(w)
        return i if i >= 0 else 10 ** 6

    return key
