"""The central area: one image view, or two side by side with linked zoom, pan and W/L."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from .imageview import ImageView
from .layout import ElidedLabel


class _Pane(QWidget):
    def __init__(self, view: ImageView, parent=None):
        super().__init__(parent)
        self.view = view
        self.title = ElidedLabel()
        self.title.setObjectName("paneTitle")
        self.title.setAlignment(Qt.AlignCenter)
        # long titles must not widen the centre (and squeeze the side panels): elide instead
        self.title.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.title.setMinimumWidth(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.title)
        lay.addWidget(view, 1)


class ViewerArea(QWidget):
    """``view`` is the main view; ``view_b`` appears in compare mode, linked to ``view``."""

    compareChanged = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = ImageView()
        self.view.setObjectName("mainView")
        self.view_b = ImageView()
        self.view_b.setObjectName("compareView")
        self.pane_a = _Pane(self.view)
        self.pane_b = _Pane(self.view_b)
        self.split = QSplitter(Qt.Horizontal)
        self.split.addWidget(self.pane_a)
        self.split.addWidget(self.pane_b)
        self.split.setChildrenCollapsible(False)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.split)
        self.pane_b.hide()
        self.pane_a.title.hide()
        self._compare = False
        self._syncing = False
        self.linked = True
        for src, dst in ((self.view, self.view_b), (self.view_b, self.view)):
            src.windowChanged.connect(lambda c, w, s=src, d=dst: self._sync_window(s, d))
            src.viewChanged.connect(lambda s=src, d=dst: self._sync_view(s, d))
            src.invertChanged.connect(lambda on, d=dst: self._sync_invert(d, on))

    # ------------------------------------------------------------------ mode
    def is_compare(self) -> bool:
        return self._compare

    def show_single(self) -> None:
        if not self._compare:
            return
        self._compare = False
        self.pane_b.hide()
        self.pane_a.title.hide()
        self.view.zoom_to_fit()
        self.compareChanged.emit(False)

    def show_compare(self, left_title: str, right_title: str) -> None:
        self.pane_a.title.setText(left_title)
        self.pane_b.title.setText(right_title)
        if not self._compare:
            self._compare = True
            self.pane_b.show()
            self.pane_a.title.show()
            self.split.setSizes([1, 1])
            self.compareChanged.emit(True)
        self.view.zoom_to_fit()
        self.view_b.set_view_state(self.view.view_state())

    # ------------------------------------------------------------------ linking
    def _sync_window(self, src: ImageView, dst: ImageView) -> None:
        if self._syncing or not (self._compare and self.linked) or not dst.has_image() or not src.has_image():
            return
        self._syncing = True
        try:
            c, w = src.window()
            f = (2.0 ** dst.bits) / (2.0 ** src.bits)  # link in fractions of the full range
            dst.set_window(c * f, w * f)
        finally:
            self._syncing = False

    def _sync_view(self, src: ImageView, dst: ImageView) -> None:
        if self._syncing or not (self._compare and self.linked) or not dst.has_image():
            return
        self._syncing = True
        try:
            dst.set_view_state(src.view_state())
        finally:
            self._syncing = False

    def _sync_invert(self, dst: ImageView, on: bool) -> None:
        if self._syncing or not (self._compare and self.linked):
            return
        self._syncing = True
        try:
            dst.set_inverted(on)
        finally:
            self._syncing = False

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if self._compare and self.linked and self.view_b.has_image():
            self.view_b.set_view_state(self.view.view_state())
