"""A grid of captioned film thumbnails: the Lesson panel's results and a batch's films.

Thumbnails show the stored film at its full range (as the History strip's). Arrow keys move
between films; Enter or Return opens the current one, and so does a double click, or a single
click with ``open_on_click``: each emits ``filmActivated`` with the item's data.
"""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem

from .imageview import grey_thumbnail

DataRole = Qt.UserRole
_SMALL_WORDS = {"a", "an", "the", "and", "or", "of", "with", "without", "to", "in", "on", "at", "by", "for", "no"}


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word to at most ``limit`` characters with an ellipsis."""
    s = " ".join(str(text).split())
    if len(s) <= limit:
        return s
    words = s[: limit - 1].split(" ")
    if len(words) > 1 and not s[limit - 1:limit].isspace():
        words.pop()  # the word that was cut in two
    while len(words) > 1 and words[-1].lower().strip(",.;:") in _SMALL_WORDS:
        words.pop()  # "... effusion with a" reads as "... effusion"
    return " ".join(words).rstrip(" ,.;:") + "\u2026"


class FilmGrid(QListWidget):
    """Film thumbnails in rows that wrap with the width, each with a caption and a tooltip."""

    filmActivated = Signal(object)  # the activated item's data

    def __init__(self, thumb: int = 112, open_on_click: bool = False, caption_lines: int = 2, parent=None):
        super().__init__(parent)
        self.thumb = thumb
        self.setViewMode(QListWidget.IconMode)
        self.setIconSize(QSize(thumb, thumb))
        self.setResizeMode(QListWidget.Adjust)
        self.setMovement(QListWidget.Static)
        self.setWordWrap(True)
        self.setTextElideMode(Qt.ElideRight)
        line = self.fontMetrics().lineSpacing()
        self.setGridSize(QSize(thumb + 44, thumb + 16 + caption_lines * line))
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setFocusPolicy(Qt.StrongFocus)
        if open_on_click:
            self.itemClicked.connect(self._activate)
        else:
            self.itemDoubleClicked.connect(self._activate)

    def add_film(self, image, caption: str, tooltip: str, data) -> QListWidgetItem:
        """Add a thumbnail of ``image`` (stored pixels; None: a caption only) with its caption, tooltip
        and data (what ``filmActivated`` and :meth:`current_data` give back)."""
        icon = QIcon()
        if image is not None:
            pm = grey_thumbnail(image, self.thumb)
            icon.addPixmap(pm)
            icon.addPixmap(pm, QIcon.Selected)  # no blue tint over a grey-scale film
        item = QListWidgetItem(icon, caption)
        item.setData(DataRole, data)
        item.setToolTip(tooltip)
        self.addItem(item)
        return item

    def current_data(self):
        item = self.currentItem()
        return item.data(DataRole) if item is not None else None

    def open_current(self) -> None:
        if self.currentItem() is not None:
            self._activate(self.currentItem())

    def _activate(self, item) -> None:
        self.filmActivated.emit(item.data(DataRole))

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and self.currentItem() is not None:
            self.open_current()
            event.accept()  # not on to a dialog's default button
            return
        super().keyPressEvent(event)
