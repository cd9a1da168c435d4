"""Dataset browser: a local folder as a lazily loaded thumbnail grid, with filters and details.

Only the visible thumbnails are decoded: the list view asks the model for the decoration of the
rows it paints; the model queues those rows on a small dedicated thread pool, newest request first
(scrolling fast through 15,000 images never builds a backlog of invisible ones). Unreadable files
get a placeholder and are listed as skipped.
"""
from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import (QAbstractListModel, QModelIndex, QObject, QRunnable, QSignalBlocker, QSize,
                            QSortFilterProxyModel, Qt, QThreadPool, QTimer, Signal, Slot)
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QListView,
                               QListWidget, QPushButton, QSplitter, QTextBrowser, QToolButton,
                               QVBoxLayout, QWidget)

from . import gcguard
from .imageview import grey_qimage
from .tasks import run_task

THUMB = 96
CACHE_SIZE = 3000
MAX_PENDING = 400
RecordRole = Qt.UserRole + 1


def _placeholder(text: str, color: QColor) -> QPixmap:
    pm = QPixmap(THUMB, THUMB)
    pm.fill(QColor(30, 30, 34))
    p = QPainter(pm)
    p.setPen(color)
    p.drawRect(0, 0, THUMB - 1, THUMB - 1)
    p.drawText(pm.rect(), Qt.AlignCenter | Qt.TextWordWrap, text)
    p.end()
    return pm


def decode_thumbnail(path: str, size: int = THUMB) -> QImage:
    """Decode and scale one image to a thumbnail QImage (safe outside the GUI thread)."""
    from ..core.data.datasets import load_gray

    x = load_gray(path)
    u8 = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    return grey_qimage(u8).scaled(size, size, Qt.KeepAspectRatio, Qt.SmoothTransformation)


class _Runner(QRunnable):
    def __init__(self, loader: "ThumbnailLoader"):
        super().__init__()
        self.loader = loader
        self.setAutoDelete(True)

    def run(self) -> None:
        self.loader._drain()


class ThumbnailLoader(QObject):
    """Newest-first queue of thumbnail requests served by a dedicated small thread pool."""

    loaded = Signal(int, int, object, str)  # generation, row, QImage or None, error message

    def __init__(self, threads: int = 2, parent=None):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max(1, threads))
        self._lock = threading.Lock()
        self._stack: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._running = 0
        self.generation = 0

    def reset(self) -> None:
        with self._lock:
            self.generation += 1
            self._stack.clear()

    def request(self, row: int, path: str) -> None:
        with self._lock:
            key = (self.generation, row)
            self._stack.pop(key, None)
            self._stack[key] = path           # newest at the end
            while len(self._stack) > MAX_PENDING:
                self._stack.popitem(last=False)  # forget the oldest (scrolled away)
            start = self._running < self.pool.maxThreadCount()
            if start:
                self._running += 1
        if start:
            gcguard.install()
            self.pool.start(_Runner(self))

    def pending(self) -> int:
        with self._lock:
            return len(self._stack) + self._running

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._stack:
                    self._running -= 1
                    return
                (gen, row), path = self._stack.popitem(last=True)
                if gen != self.generation:
                    continue
            try:
                img = decode_thumbnail(path)
                err = ""
            except Exception as exc:  # noqa: BLE001 - unreadable file -> skipped, never fatal
                img = None
                err = " ".join(str(exc).split()) or type(exc).__name__
            self.loaded.emit(gen, row, img, err)

    def wait(self, ms: int = 5000) -> bool:
        return self.pool.waitForDone(ms)


class DatasetModel(QAbstractListModel):
    skipped = Signal(str, str)     # path, reason
    thumbnailsChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.records: list = []
        self.folder = ""
        self._thumbs: OrderedDict[int, QPixmap] = OrderedDict()
        self._requested: set[int] = set()
        self.failed: dict[int, str] = {}
        self.loader = ThumbnailLoader(threads=min(2, max(1, QThreadPool.globalInstance().maxThreadCount())),
                                      parent=self)
        self.loader.loaded.connect(self._loaded)
        self._loading_pm = _placeholder("...", QColor(90, 90, 100))
        self._failed_pm = _placeholder("unreadable", QColor(220, 90, 80))

    def set_records(self, folder: str, records: list) -> None:
        self.beginResetModel()
        self.loader.reset()
        self.folder = folder
        self.records = list(records)
        self._thumbs.clear()
        self._requested.clear()
        self.failed.clear()
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.records)

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid() or index.row() >= len(self.records):
            return None
        row = index.row()
        rec = self.records[row]
        if role == Qt.DisplayRole:
            return findings_caption(rec)
        if role == Qt.DecorationRole:
            pm = self._thumbs.get(row)
            if pm is not None:
                self._thumbs.move_to_end(row)
                return pm
            if row in self.failed:
                return self._failed_pm
            if row not in self._requested:
                self._requested.add(row)
                self.loader.request(row, rec.path)
            return self._loading_pm
        if role == Qt.ToolTipRole:
            labels = ", ".join(rec.labels) or "no labels"
            tip = f"{Path(rec.path).name}\n{labels}"
            if row in self.failed:
                tip += f"\nSKIPPED: {self.failed[row]}"
            elif rec.text:
                tip += "\n" + (rec.text[:200] + ("..." if len(rec.text) > 200 else ""))
            return tip
        if role == RecordRole:
            return rec
        return None

    @Slot(int, int, object, str)
    def _loaded(self, gen: int, row: int, img, err: str) -> None:
        if gen != self.loader.generation or row >= len(self.records):
            return
        if img is None:
            self.failed[row] = err
            self.skipped.emit(self.records[row].path, err)
        else:
            self._thumbs[row] = QPixmap.fromImage(img)
            while len(self._thumbs) > CACHE_SIZE:
                old, _ = self._thumbs.popitem(last=False)
                self._requested.discard(old)  # reloaded if it becomes visible again
        idx = self.index(row)
        self.dataChanged.emit(idx, idx, [Qt.DecorationRole, Qt.ToolTipRole])
        self.thumbnailsChanged.emit()

    def thumbnails_loaded(self) -> int:
        return len(self._thumbs)

    def mark_failed(self, row: int, err: str) -> None:
        if row not in self.failed:
            self.failed[row] = err
            self.skipped.emit(self.records[row].path, err)
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.DecorationRole, Qt.ToolTipRole])


def findings_caption(rec) -> str:
    """A thumbnail's caption: the film's findings ("Effusion, Cardiomegaly"), else its file name."""
    if not rec.labels:
        return Path(rec.path).name
    return ", ".join("No finding" if lab == "No Finding" else lab for lab in rec.labels)


class DatasetFilter(QSortFilterProxyModel):
    """Films with every one of ``labels`` (a label or a tuple of them) and all words of ``text``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.labels: tuple[str, ...] = ()
        self.text = ""

    def set_filter(self, label, text: str) -> None:
        labels = tuple(label) if isinstance(label, (list, tuple)) else ((label,) if label else ())
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9
            self.beginFilterChange()
            self.labels, self.text = labels, text.strip().lower()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.labels, self.text = labels, text.strip().lower()
            self.invalidateFilter()

    def filterAcceptsRow(self, row, parent) -> bool:
        recs = self.sourceModel().records
        if row >= len(recs):
            return False
        rec = recs[row]
        if any(lab not in rec.labels for lab in self.labels):
            return False
        if self.text:
            hay = f"{os.path.basename(rec.path)} {rec.text} {' '.join(rec.labels)} {rec.uid}".lower()
            return all(t in hay for t in self.text.split())
        return True


def _scan(folder: str):
    from ..core.data.datasets import detect_layout, read_dataset

    layout = detect_layout(folder)
    return layout, read_dataset(folder)


LAYOUT_NAMES = {"metadata": "metadata.csv", "iu": "Indiana University", "images": "image folder",
                "dicom": "DICOM folder"}


class DatasetPanel(QWidget):
    showRequested = Signal(str, object)      # path, Record
    usePromptRequested = Signal(str)
    compareRequested = Signal(str, object)   # path, Record
    folderOpened = Signal(str, int)          # folder, records

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = DatasetModel(self)
        self.proxy = DatasetFilter(self)
        self.proxy.setSourceModel(self.model)
        self.model.skipped.connect(self._add_skipped)
        self._scan_seq = 0
        self._last_folder = ""
        self._pending_findings: list[str] | None = None

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        row = QHBoxLayout()
        self.open_button = QPushButton("Open folder...")
        self.open_button.setToolTip("Open a local dataset folder: metadata.csv layout, Indiana University "
                                    "layout, a folder of PNG/JPEG, or a folder of DICOM files")
        self.open_button.clicked.connect(self.choose_folder)
        self.folder_label = QLabel("No folder open")
        self.folder_label.setObjectName("hint")
        self.folder_label.setWordWrap(True)
        row.addWidget(self.open_button)
        row.addWidget(self.folder_label, 1)
        lay.addLayout(row)

        row = QHBoxLayout()
        self.label_box = QComboBox()
        self.label_box.addItem("All labels", "")
        self.label_box.setToolTip("Show only films with this finding (the number of films in brackets)")
        # wide enough to read "Pleural Thickening (123)"; the list that drops down is never narrower
        self.label_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.label_box.setMinimumContentsLength(18)
        self.label_box.currentIndexChanged.connect(self._filter)
        find_label = QLabel("Finding")
        find_label.setBuddy(self.label_box)
        row.addWidget(find_label)
        row.addWidget(self.label_box, 1)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search reports, labels, file names")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setToolTip("Text search in the report, labels and file name (all words must match)")
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(200)
        self._search_timer.timeout.connect(self._filter)
        self.search_edit.textChanged.connect(lambda _: self._search_timer.start())
        row.addWidget(self.search_edit, 1)
        lay.addLayout(row)

        split = QSplitter(Qt.Vertical)
        self.list = QListView()
        self.list.setModel(self.proxy)
        self.list.setViewMode(QListView.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 24, THUMB + 42))  # two lines of findings under each
        self.list.setUniformItemSizes(True)
        self.list.setLayoutMode(QListView.Batched)
        self.list.setBatchSize(256)
        self.list.setResizeMode(QListView.Adjust)
        self.list.setMovement(QListView.Static)
        self.list.setWordWrap(True)
        self.list.setTextElideMode(Qt.ElideRight)
        self.list.setSelectionMode(QListView.SingleSelection)
        self.list.setToolTip("Each film captioned with its findings (the file name in its tooltip). Thumbnails "
                             "load as they scroll into view. Double click shows the image.")
        self.list.selectionModel().currentChanged.connect(self._current_changed)
        self.list.doubleClicked.connect(lambda _: self._show())
        split.addWidget(self.list)

        details = QWidget()
        dl = QVBoxLayout(details)
        dl.setContentsMargins(0, 0, 0, 0)
        self.details = QTextBrowser()
        self.details.setOpenLinks(False)
        self.details.setToolTip("Report text and labels of the selected image")
        self.details.setPlaceholderText("Select an image to see its report and labels")
        dl.addWidget(self.details, 1)
        row = QHBoxLayout()
        self.show_button = QPushButton("Show")
        self.show_button.setToolTip("Show the selected image in the viewer (double click)")
        self.show_button.clicked.connect(self._show)
        self.prompt_button = QPushButton("Use as prompt")
        self.prompt_button.setToolTip("Copy this image's report (or labels) into the Generator's prompt")
        self.prompt_button.clicked.connect(self._use_prompt)
        self.compare_button = QPushButton("Compare with generated")
        self.compare_button.setToolTip("Show the current generated image and this real image side by side "
                                       "with linked zoom, pan and window/level")
        self.compare_button.clicked.connect(self._compare)
        for b in (self.show_button, self.prompt_button, self.compare_button):
            row.addWidget(b)
        dl.addLayout(row)
        self.skipped_button = QToolButton()
        self.skipped_button.setCheckable(True)
        self.skipped_button.setText("Skipped files: 0")
        self.skipped_button.setToolTip("Files that could not be read (listed, not fatal); click to show")
        self.skipped_button.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.skipped_list = QListWidget()
        self.skipped_list.setToolTip("Unreadable files and the reason")
        self.skipped_list.setMaximumHeight(90)
        self.skipped_list.hide()
        self.skipped_button.toggled.connect(self.skipped_list.setVisible)
        dl.addWidget(self.skipped_button)
        dl.addWidget(self.skipped_list)
        split.addWidget(details)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay.addWidget(split, 1)
        self._update_buttons()

    # ------------------------------------------------------------------ folder
    def start_folder(self) -> str:
        """Where the folder dialog starts: the open or last dataset, else cxrdesk's data folder."""
        from .paths import data_dir

        for cand in (self.model.folder, self._last_folder):
            if cand and os.path.isdir(cand):
                return cand
        return str(data_dir())

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open dataset folder", self.start_folder())
        if folder:
            self.open_folder(folder)

    def show_findings(self, labels: list[str] | None) -> None:
        """Show the films with all of ``labels`` (a prompt's findings), in the open dataset or, while
        one is still opening, once it is open (None: forget such a request). The label box shows it."""
        self._pending_findings = None if labels is None else list(labels)
        if labels is not None and self.model.folder and self.open_button.isEnabled():
            self._apply_findings()

    def _apply_findings(self) -> None:
        labels, self._pending_findings = self._pending_findings, None
        if labels is None:
            return
        with QSignalBlocker(self.label_box):
            for k in reversed(range(self.label_box.count())):  # an earlier prompt's combination
                if isinstance(self.label_box.itemData(k), list):
                    self.label_box.removeItem(k)
            i = self.label_box.findData(labels[0]) if len(labels) == 1 else -1
            if i < 0 and labels:
                n = sum(1 for r in self.model.records if all(lab in r.labels for lab in labels))
                self.label_box.addItem(f"{' + '.join(labels)} ({n})", labels)
                i = self.label_box.count() - 1
            self.label_box.setCurrentIndex(max(0, i))
            self.search_edit.clear()
        self._filter()

    def open_folder(self, folder: str) -> None:
        self._scan_seq += 1
        seq = self._scan_seq
        self.folder_label.setText(f"Scanning {folder} ...")
        self.open_button.setEnabled(False)
        run_task(_scan, folder, owner=self, done=lambda r: self._scanned(seq, folder, r),
                 error=lambda msg: self._scan_failed(seq, folder, msg))

    def _scan_failed(self, seq: int, folder: str, msg: str) -> None:
        if seq != self._scan_seq:
            return
        self.open_button.setEnabled(True)
        self.folder_label.setText(f"Cannot open {folder}: {msg}")

    def _scanned(self, seq: int, folder: str, result) -> None:
        if seq != self._scan_seq:
            return
        self.open_button.setEnabled(True)
        layout, records = result
        self.skipped_list.clear()
        self._update_skipped_count()
        self.model.set_records(folder, records)
        labels = sorted({lab for r in records for lab in r.labels})
        self.label_box.blockSignals(True)
        self.label_box.clear()
        self.label_box.addItem("All labels", "")
        for lab in labels:
            n = sum(1 for r in records if lab in r.labels)
            self.label_box.addItem(f"{lab} ({n})", lab)
        self.label_box.blockSignals(False)
        self.proxy.set_filter("", self.search_edit.text())
        name = LAYOUT_NAMES.get(layout, layout)
        self.folder_label.setText(f"{folder}  -  {len(records)} images ({name})")
        self.folder_label.setToolTip(folder)
        self.details.clear()
        self._update_buttons()
        self._last_folder = folder
        self._apply_findings()
        self.folderOpened.emit(folder, len(records))

    def _filter(self) -> None:
        self.proxy.set_filter(self.label_box.currentData() or "", self.search_edit.text())
        shown = self.proxy.rowCount()
        total = self.model.rowCount()
        if self.model.folder:
            base = self.folder_label.text().split("  -  ")[0]
            self.folder_label.setText(f"{base}  -  {shown} of {total} images shown")

    # ------------------------------------------------------------------ selection
    def current_record(self):
        idx = self.list.currentIndex()
        if not idx.isValid():
            return None
        return self.proxy.data(idx, RecordRole)

    def select_row(self, proxy_row: int) -> None:
        self.list.setCurrentIndex(self.proxy.index(proxy_row, 0))

    def _current_changed(self, cur, _prev) -> None:
        rec = self.proxy.data(cur, RecordRole) if cur.isValid() else None
        self._update_buttons()
        if rec is None:
            self.details.clear()
            return
        src = self.proxy.mapToSource(cur).row()
        parts = [f"<b>{html.escape(Path(rec.path).name)}</b>"]
        if rec.labels:
            parts.append("Labels: " + ", ".join(f"<b>{html.escape(l)}</b>" for l in rec.labels))
        parts.append(f"<span style='color:gray'>uid {html.escape(rec.uid)}, split {html.escape(rec.split)}, "
                     f"{html.escape(rec.kind)}</span>")
        if src in self.model.failed:
            parts.append(f"<span style='color:#e06050'>Skipped: {html.escape(self.model.failed[src])}</span>")
        if rec.text:
            parts.append("<hr>" + html.escape(rec.text))
        else:
            parts.append("<i>No report text for this image.</i>")
        self.details.setHtml("<br>".join(parts))

    def _update_buttons(self) -> None:
        rec = self.current_record()
        self.show_button.setEnabled(rec is not None)
        self.compare_button.setEnabled(rec is not None)
        self.prompt_button.setEnabled(rec is not None and bool(rec.text or rec.labels))

    def _show(self) -> None:
        rec = self.current_record()
        if rec is not None:
            self.showRequested.emit(rec.path, rec)

    def _compare(self) -> None:
        rec = self.current_record()
        if rec is not None:
            self.compareRequested.emit(rec.path, rec)

    def _use_prompt(self) -> None:
        rec = self.current_record()
        if rec is None:
            return
        self.usePromptRequested.emit(prompt_from_record(rec))

    # ------------------------------------------------------------------ skipped
    def _add_skipped(self, path: str, reason: str) -> None:
        self.skipped_list.addItem(f"{Path(path).name}: {reason}")
        self._update_skipped_count()

    def _update_skipped_count(self) -> None:
        n = self.skipped_list.count()
        self.skipped_button.setText(f"Skipped files: {n}" + (" (click to list)" if n else ""))

    def report_unreadable(self, path: str, reason: str) -> None:
        """The viewer failed to open a file of this dataset: mark it skipped."""
        for row, rec in enumerate(self.model.records):
            if rec.path == path:
                self.model.mark_failed(row, reason)
                return

    def skipped_paths(self) -> list[str]:
        return [self.model.records[r].path for r in sorted(self.model.failed)]

    # ------------------------------------------------------------------ settings
    def save_settings(self, s) -> None:
        s.setValue("dataset/folder", self.model.folder or self._last_folder)

    def restore_settings(self, s) -> None:
        """Open the last dataset, else the one CXRDESK_DATASET names (e.g. set for a classroom)."""
        folder = str(s.value("dataset/folder", "") or "")
        if not (folder and os.path.isdir(folder)):
            folder = os.environ.get("CXRDESK_DATASET", "")
        if folder and os.path.isdir(folder):
            self._last_folder = folder
            # reopen in the background once the window is up
            QTimer.singleShot(400, lambda: self.model.folder or self.open_folder(folder))


def prompt_from_record(rec) -> str:
    if rec.text:
        return rec.text.strip()
    labels = [l for l in rec.labels if l != "No Finding"]
    if not labels:
        return "Normal chest radiograph. No acute cardiopulmonary abnormality."
    return "Chest radiograph showing " + ", ".join(l.lower() for l in labels) + "."
