"""Layout helpers shared by the side panels."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget


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
