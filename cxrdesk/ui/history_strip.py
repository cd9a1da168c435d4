"""History strip: thumbnails of this session's results; show again, reuse parameters."""
from __future__ import annotations

import html

from PySide6.QtCore import QMimeData, QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QListWidget, QListWidgetItem, QMenu, QPushButton,
                               QVBoxLayout, QWidget)

from .imageview import grey_thumbnail

THUMB = 72
EntryRole = Qt.UserRole + 2
ENTRY_MIME = "application/x-cxrdesk-history-entry"  # a dragged thumbnail: the result's id (UTF-8)


class _StripList(QListWidget):
    """The thumbnails; a drag carries the result's id, for a viewport to show it (viewer.py)."""

    def mimeTypes(self) -> list[str]:  # noqa: N802 - Qt's name
        return [ENTRY_MIME]

    def mimeData(self, items) -> QMimeData:  # noqa: N802
        md = QMimeData()
        if items:
            md.setData(ENTRY_MIME, str(items[0].data(EntryRole).id).encode("utf-8"))
        return md


def entry_tooltip(e) -> str:
    p = e.params
    lines = [f"<b>{html.escape(e.prompt)}</b>"]
    if p.get("negative_prompt"):
        lines.append(f"negative: {html.escape(p['negative_prompt'])}")
    lines.append(html.escape(e.summary()))
    lesson = p.get("lesson")
    if isinstance(lesson, dict):
        lines.append(html.escape(f"drawn for the lesson \u201c{lesson.get('title', '')}\u201d, case {lesson.get('case')}"))
    edit = p.get("edit")
    if isinstance(edit, dict):
        lines.append(html.escape(f"an edited film: the prompt redrew {float(edit.get('mask_area', 0)) * 100:.1f}% "
                                 f"of it (strength {edit.get('strength')}); synthetic"))
    lines.append(f"model {html.escape(str(p.get('model')))} ({html.escape(str(p.get('model_hash')))}), "
                 f"{html.escape(e.created)}")
    if p.get("upscale"):
        lines.append(html.escape(str(p["upscale"])))
    if p.get("prompt_truncated"):
        lines.append("prompt was truncated to the encoder's token limit")
    return "<br>".join(lines)


class HistoryStrip(QWidget):
    showRequested = Signal(object)    # HistoryEntry
    reuseRequested = Signal(object)   # HistoryEntry
    loadEarlierRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = _StripList()
        self.list.setViewMode(QListWidget.IconMode)
        self.list.setFlow(QListWidget.LeftToRight)
        self.list.setWrapping(False)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 44, THUMB + 40))
        self.list.setWordWrap(True)
        self.list.setMovement(QListWidget.Static)
        self.list.setDragEnabled(True)  # onto a viewport (after setMovement, which turns it off)
        self.list.setDragDropMode(QAbstractItemView.DragOnly)
        self.list.setDefaultDropAction(Qt.CopyAction)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.list.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setFixedHeight(THUMB + 60)
        self.list.setToolTip("This session's results (saved in the data folder). Click to show (in the active "
                             "viewport); drag onto a viewport to show it there; "
                             "right click for more.")
        self.list.itemClicked.connect(lambda it: self.showRequested.emit(it.data(EntryRole)))
        self.list.setContextMenuPolicy(Qt.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.reuse_button = QPushButton("Reuse parameters")
        self.reuse_button.setToolTip("Fill the Generator form with the selected result's prompt, seed and parameters")
        self.reuse_button.clicked.connect(self._reuse)
        self.earlier_button = QPushButton("Earlier results...")
        self.earlier_button.setToolTip("Add results saved in earlier sessions to the strip")
        self.earlier_button.clicked.connect(self.loadEarlierRequested)
        side = QVBoxLayout()
        side.addWidget(self.reuse_button)
        side.addWidget(self.earlier_button)
        side.addStretch(1)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.addWidget(self.list, 1)
        lay.addLayout(side)
        self.list.currentItemChanged.connect(lambda *_: self._update())
        self._update()

    def _update(self) -> None:
        self.reuse_button.setEnabled(self.list.currentItem() is not None)

    def add(self, entry, select: bool = True, front: bool = False) -> QListWidgetItem:
        for i in range(self.list.count()):
            if self.list.item(i).data(EntryRole).id == entry.id:
                return self.list.item(i)
        pm = grey_thumbnail(entry.image(), THUMB)
        icon = QIcon(pm)
        icon.addPixmap(pm, QIcon.Selected)  # no blue tint on the selected (grey-scale) thumbnail
        what = "edited, seed" if isinstance(entry.params.get("edit"), dict) else "seed"
        lesson = entry.params.get("lesson")
        if isinstance(lesson, dict) and lesson.get("case"):
            what = f"case {lesson.get('case')}, seed"
        how = "fast" if entry.params.get("fast") else f"{entry.params.get('steps')} steps"  # fast: the student's steps
        it = QListWidgetItem(icon, f"{what} {entry.seed}\n{how}, {entry.created[11:16]}")
        it.setData(EntryRole, entry)
        it.setToolTip(entry_tooltip(entry))
        if front:
            self.list.insertItem(0, it)
        else:
            self.list.addItem(it)
        if select:
            self.list.setCurrentItem(it)
            self.list.scrollToItem(it)
        self._update()
        return it

    def entries(self) -> list:
        return [self.list.item(i).data(EntryRole) for i in range(self.list.count())]

    def current_entry(self):
        it = self.list.currentItem()
        return it.data(EntryRole) if it else None

    def select_entry(self, entry) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(EntryRole).id == entry.id:
                self.list.setCurrentRow(i)
                return

    def step(self, delta: int):
        """Select the result ``delta`` places from the current one (none selected: the newest);
        returns it, or None past either end (the selection stays)."""
        n = self.list.count()
        if n == 0:
            return None
        row = self.list.currentRow()
        new = n - 1 if row < 0 else row + delta
        if not 0 <= new < n:
            return None
        self.list.setCurrentRow(new)
        self.list.scrollToItem(self.list.item(new))
        return self.list.item(new).data(EntryRole)

    def position(self) -> tuple[int, int]:
        """(1-based place of the selected result, count); (0, count) when none is selected."""
        return self.list.currentRow() + 1, self.list.count()

    def _reuse(self) -> None:
        e = self.current_entry()
        if e is not None:
            self.reuseRequested.emit(e)

    def _menu(self, pos) -> None:
        it = self.list.itemAt(pos)
        if it is None:
            return
        e = it.data(EntryRole)
        m = QMenu(self)
        m.addAction("Show", lambda: self.showRequested.emit(e))
        m.addAction("Reuse parameters", lambda: self.reuseRequested.emit(e))
        m.exec(self.list.mapToGlobal(pos))
