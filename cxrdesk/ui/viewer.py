"""The central area: one image view, or two side by side with linked zoom, pan and W/L (compare);
or a layout of viewports, 1x2 or 2x2, as on a radiology workstation.

Viewports: ``views[0]`` is ``view`` (the main view), ``views[1]`` is ``view_b`` (also the compare
pane of the 1x1 layout), ``views[2]`` and ``views[3]`` appear in the 2x2 layout. Each viewport keeps
its own window/level, zoom and orientation; a click (or focus) makes it the active one, which the
window's tools, the History strip and the Dataset browser act on. Window/level (and inversion) can be
linked across the viewports shown, in fractions of each film's range.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from .imageview import ImageView
from .layout import ElidedLabel

LAYOUTS = {"1x1": 1, "1x2": 2, "2x2": 4}   # layout -> viewports shown
LAYOUT_NAMES = {"1x1": "1 x 1 (one film)", "1x2": "1 x 2 (two films side by side)", "2x2": "2 x 2 (four films)"}
ACTIVE_COLOUR = QColor(64, 140, 230)
IDLE_COLOUR = QColor(40, 40, 44)
EMPTY_TEXT = ("Viewport {n}: empty.\n\nClick here to make it the active viewport, then pick a film "
              "in the History strip or the Dataset browser, open one (Ctrl+O) or generate one.")


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
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        self.lay.setSpacing(0)
        self.lay.addWidget(self.title)
        self.lay.addWidget(view, 1)
        self.setAutoFillBackground(True)
        self._active = False
        self.set_framed(False)

    def set_framed(self, on: bool) -> None:
        """A frame around the pane (grid layouts): blue on the active viewport."""
        m = 2 if on else 0
        self.lay.setContentsMargins(m, m, m, m)
        self._paint()

    def set_active(self, on: bool) -> None:
        self._active = bool(on)
        self._paint()

    def is_active(self) -> bool:
        return self._active

    def _paint(self) -> None:
        pal = self.palette()
        pal.setColor(QPalette.Window, ACTIVE_COLOUR if self._active else IDLE_COLOUR)
        self.setPalette(pal)
        self.title.setStyleSheet("QLabel { color: white; background: %s; font-weight: bold; padding: 1px; }"
                                 % ACTIVE_COLOUR.name() if self._active else
                                 "QLabel { color: #d8d8d8; background: %s; padding: 1px; }" % IDLE_COLOUR.name())


class ViewerArea(QWidget):
    """``view`` is the main view; ``view_b`` appears in compare mode, linked to ``view``, and as
    the second viewport of the 1x2 and 2x2 layouts (see the module docstring)."""

    compareChanged = Signal(bool)
    activeChanged = Signal(int)       # the viewport that tools act on
    layoutChanged = Signal(str)       # "1x1" | "1x2" | "2x2"
    entryDropped = Signal(int, str)   # viewport, id of a History strip result dragged onto it

    def __init__(self, parent=None):
        super().__init__(parent)
        self.views: list[ImageView] = []
        for name in ("mainView", "compareView", "viewC", "viewD"):
            v = ImageView()
            v.setObjectName(name)
            self.views.append(v)
        self.view, self.view_b, self.view_c, self.view_d = self.views
        self.panes = [_Pane(v) for v in self.views]
        self.pane_a, self.pane_b = self.panes[0], self.panes[1]
        self.top = QSplitter(Qt.Horizontal)
        self.bottom = QSplitter(Qt.Horizontal)
        for s, panes in ((self.top, self.panes[:2]), (self.bottom, self.panes[2:])):
            for p in panes:
                s.addWidget(p)
            s.setChildrenCollapsible(False)
        self.split = QSplitter(Qt.Vertical)
        self.split.addWidget(self.top)
        self.split.addWidget(self.bottom)
        self.split.setChildrenCollapsible(False)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.split)
        for p in self.panes[1:]:
            p.hide()
        self.bottom.hide()
        self.pane_a.title.hide()
        self._compare = False
        self._syncing = False
        self.linked = True          # compare: zoom, pan and W/L linked
        self.link_window = False    # grid layouts: W/L and inversion linked across the viewports shown
        self._layout = "1x1"
        self._active = 0
        for k, v in enumerate(self.views):
            v.installEventFilter(self)
            v.setAcceptDrops(True)
            v.windowChanged.connect(lambda c, w, s=v: self._on_window(s))
            v.viewChanged.connect(lambda s=v: self._on_view(s))
            v.invertChanged.connect(lambda on, s=v: self._on_invert(s, on))
            if k >= 2:
                v.set_placeholder(EMPTY_TEXT.format(n=k + 1))

    # ------------------------------------------------------------------ layouts
    def layout_name(self) -> str:
        return self._layout

    def is_grid(self) -> bool:
        return self._layout != "1x1"

    def count(self) -> int:
        """Viewports shown by the layout (1, 2 or 4; a 1x1 compare is still one)."""
        return LAYOUTS[self._layout]

    def set_layout(self, name: str) -> None:
        """Show the viewports of ``name`` (see LAYOUTS); leaves compare mode. The active viewport
        stays where it is when shown, else the first becomes active."""
        if name not in LAYOUTS:
            raise ValueError(f"unknown layout {name!r}")
        if name == self._layout:
            return
        if self._compare:
            self.show_single()
        self._layout = name
        n = LAYOUTS[name]
        self.pane_b.setVisible(n >= 2)
        self.panes[2].setVisible(n >= 4)
        self.panes[3].setVisible(n >= 4)
        self.bottom.setVisible(n >= 4)
        for p in self.panes:
            p.title.setVisible(n > 1)
            p.set_framed(n > 1)
        self.view_b.set_placeholder(EMPTY_TEXT.format(n=2) if n > 1 else "No image")
        if n > 1:
            self.top.setSizes([1, 1])
            self.bottom.setSizes([1, 1])
            self.split.setSizes([1, 1])
        active = self._active if self._active < n else 0
        self._active = -1
        self.set_active(active)
        for v in self.views[:n]:
            if v.is_fit():
                v.zoom_to_fit()
        self.layoutChanged.emit(name)

    # ------------------------------------------------------------------ the active viewport
    def active(self) -> int:
        return self._active

    def active_view(self) -> ImageView:
        return self.views[self._active]

    def index_of(self, view) -> int:
        return self.views.index(view) if view in self.views else -1

    def set_active(self, k: int) -> None:
        """Make viewport ``k`` the one tools act on (only a viewport the layout shows)."""
        if not 0 <= k < self.count() or k == self._active:
            return
        self._active = k
        for i, p in enumerate(self.panes):
            p.set_active(self.is_grid() and i == k)
        self.activeChanged.emit(k)

    def step_active(self, delta: int) -> None:
        self.set_active((self._active + delta) % self.count())

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802 - Qt's name
        if ev.type() in (QEvent.DragEnter, QEvent.DragMove, QEvent.Drop):
            return self._drop_event(obj, ev)
        # a click, or the keyboard's Tab onto it (not the focus Qt hands back to a window)
        if self.is_grid() and (ev.type() == QEvent.MouseButtonPress or (
                ev.type() == QEvent.FocusIn and ev.reason() in (Qt.TabFocusReason, Qt.BacktabFocusReason))):
            k = self.index_of(obj)
            if k >= 0 and k != self._active:
                self.set_active(k)
        return False

    def _drop_event(self, obj: QObject, ev) -> bool:
        """A History strip thumbnail dragged onto a viewport shows that result there (in the 1x1
        layout: in the one film shown)."""
        from .history_strip import ENTRY_MIME

        k = self.index_of(obj)
        if k < 0 or not ev.mimeData().hasFormat(ENTRY_MIME):
            return False
        ev.setDropAction(Qt.CopyAction)
        ev.accept()
        if ev.type() == QEvent.Drop:
            eid = bytes(ev.mimeData().data(ENTRY_MIME)).decode("utf-8", "replace")
            self.entryDropped.emit(k if self.is_grid() else 0, eid)
        return True

    def set_title(self, k: int, text: str, tip: str = "") -> None:
        self.panes[k].title.setText(text)
        if tip:
            self.panes[k].title.setToolTip(tip)

    # ------------------------------------------------------------------ compare (1x1 layout)
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
        """Two films side by side with linked zoom, pan and W/L; a 1x1 layout feature (the window
        leaves a grid layout first)."""
        if self.is_grid():
            self.set_layout("1x1")
        self.pane_a.title.setText(left_title)
        self.pane_b.title.setText(right_title)
        if not self._compare:
            self._compare = True
            self.pane_b.show()
            self.pane_a.title.show()
            self.top.setSizes([1, 1])
            self.compareChanged.emit(True)
        self.view.zoom_to_fit()
        self.view_b.set_view_state(self.view.view_state())

    # ------------------------------------------------------------------ linking
    def _partners(self, src: ImageView) -> list[ImageView]:
        """The views that follow ``src``'s window: the other compare pane, or in a grid layout with
        linked W/L every other viewport shown."""
        if self._compare and self.linked:
            return [self.view_b] if src is self.view else ([self.view] if src is self.view_b else [])
        if self.is_grid() and self.link_window and self.index_of(src) < self.count():
            return [v for v in self.views[:self.count()] if v is not src]
        return []

    def _on_window(self, src: ImageView) -> None:
        for dst in self._partners(src):
            self._sync_window(src, dst)

    def _on_view(self, src: ImageView) -> None:
        if self._compare and self.linked:
            self._sync_view(src, self.view_b if src is self.view else self.view)

    def _on_invert(self, src: ImageView, on: bool) -> None:
        for dst in self._partners(src):
            self._sync_invert(dst, on)

    def sync_window_from(self, src: ImageView) -> None:
        """Linking switched on: the other viewports take ``src``'s window and inversion."""
        if not src.has_image():
            return
        for dst in self._partners(src):
            self._sync_window(src, dst)
            self._sync_invert(dst, src.inverted())

    def _sync_window(self, src: ImageView, dst: ImageView) -> None:
        if self._syncing or not dst.has_image() or not src.has_image():
            return
        if not (self._compare and self.linked) and not (self.is_grid() and self.link_window):
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
        if self._syncing or dst.inverted() == on:
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
