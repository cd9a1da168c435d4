"""Layout helpers and small widgets shared by the panels."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QLabel, QMenu, QScrollArea, QVBoxLayout, QWidget


def scrolling_body(panel: QWidget) -> QVBoxLayout:
    """Give ``panel`` a vertically scrolling body (no frame, no horizontal bar); return its layout."""
    outer = QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 0)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    outer.addWidget(scroll)
    body = QWidget()
    scroll.setWidget(body)
    lay = QVBoxLayout(body)
    lay.setContentsMargins(6, 6, 6, 6)
    return lay


def fit_scroll_width(lay: QVBoxLayout) -> None:
    """Once the body is built: the dock may not be narrower than the form (nothing clipped)."""
    body = lay.parentWidget()
    scroll = body.parentWidget()
    while scroll is not None and not isinstance(scroll, QScrollArea):
        scroll = scroll.parentWidget()
    scroll.setMinimumWidth(body.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 2)


class ElidedLabel(QLabel):
    """One line of text that fits any width: too long, it is cut in the middle with an ellipsis
    (a folder path keeps its start and its last folder). `text()` is the full text and right-click
    copies it; the tooltip is the full text, or ``tip`` with the full text above it when elided."""

    MIN_CHARS = 18

    def __init__(self, tip: str = "", parent=None):
        super().__init__(parent)
        self._full = ""
        self._tip = tip
        self.setContextMenuPolicy(Qt.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.setText("-")

    def text(self) -> str:  # noqa: D102 - the full text, not the elided one shown
        return self._full

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full = str(text)
        self._show()
        self.updateGeometry()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(self.fontMetrics().horizontalAdvance(self._full) + 4, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        # Short values keep their full width (so a form puts them beside their label); long ones
        # ask for MIN_CHARS characters (so a form with WrapLongRows moves them below the label).
        fm = self.fontMetrics()
        width = min(fm.horizontalAdvance(self._full) + 4, fm.averageCharWidth() * self.MIN_CHARS)
        return QSize(width, super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._show()

    def _show(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.ElideMiddle, max(1, self.contentsRect().width()))
        QLabel.setText(self, shown)
        if not self._tip:
            self.setToolTip(self._full)
        else:
            self.setToolTip(f"{self._full}\n\n{self._tip}" if shown != self._full else self._tip)

    def _menu(self, pos) -> None:
        menu = QMenu(self)
        menu.addAction("Copy", lambda: QGuiApplication.clipboard().setText(self._full))
        menu.exec(self.mapToGlobal(pos))
