"""Painting a region on a film: the mask of an edit (brush, eraser, undo), drawn over the image view.

``MaskLayer`` holds a boolean mask at the film's size and paints it as a translucent overlay on an
``ImageView`` (``view.mask_layer``); the film's pixels are never touched. With a tool on ("brush" or
"eraser"), a left drag paints or erases discs of ``radius`` film pixels along the stroke; a stroke is
one undo step. The layer can also outline a region (an edited film's redrawn region) without a fill.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QCursor, QImage, QPainter, QPainterPath, QPen

MASK_RGBA = (255, 70, 200, 95)      # translucent magenta: visible on any grey, the film readable through it
OUTLINE_COLOUR = QColor(255, 90, 210)
MIN_RADIUS, MAX_RADIUS = 1, 200     # brush radius in film pixels
UNDO_LIMIT = 40


def mask_outline(mask: np.ndarray) -> QPainterPath:
    """The boundary of ``mask`` as a path in image coordinates (pixel corners), for an outline."""
    import cv2

    path = QPainterPath()
    if mask is None or not mask.any():
        return path
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for c in contours:
        pts = c[:, 0, :].astype(float) + 0.5  # pixel centres
        path.moveTo(QPointF(*pts[0]))
        for x, y in pts[1:]:
            path.lineTo(QPointF(x, y))
        path.closeSubpath()
    return path


class MaskLayer(QObject):
    """A paintable mask over one view; see the module docstring."""

    changed = Signal()          # the mask changed (stroke finished, fill, clear, undo)
    toolChanged = Signal(str)   # "brush" | "eraser" | ""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.mask: np.ndarray | None = None      # bool (H, W) at the film's size, or None = nothing painted
        self.tool = ""
        self.radius = 12
        self.show_fill = True
        self._undo: list[np.ndarray | None] = []
        self._stroke_last: QPointF | None = None
        self._qimage: QImage | None = None
        self._rgba = None
        self._outline: QPainterPath | None = None
        self.view = None

    # ------------------------------------------------------------------ state
    def attach(self, view) -> None:
        """Paint on ``view`` (it calls press/move/release/paint through ``view.mask_layer``)."""
        view.mask_layer = self
        self.view = view

    def _refresh(self) -> None:
        if self.view is not None:
            self.view.update()

    def area(self) -> float:
        """The painted share of the film, 0..1."""
        return 0.0 if self.mask is None else float(self.mask.mean())

    def is_empty(self) -> bool:
        return self.mask is None or not self.mask.any()

    def set_tool(self, tool: str) -> None:
        tool = tool if tool in ("brush", "eraser") else ""
        if tool == self.tool:
            return
        self.tool = tool
        if tool:
            self.show_fill = True
        if self.view is not None:
            self.view.setCursor(Qt.BlankCursor) if tool else self.view.unsetCursor()
        self._refresh()
        self.toolChanged.emit(tool)

    def set_radius(self, r: int) -> None:
        self.radius = int(min(MAX_RADIUS, max(MIN_RADIUS, r)))
        self._refresh()

    def _push_undo(self) -> None:
        self._undo.append(None if self.mask is None else self.mask.copy())
        del self._undo[:-UNDO_LIMIT]

    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self) -> bool:
        if not self._undo:
            return False
        self.mask = self._undo.pop()
        self.show_fill = True
        self._changed()
        return True

    def clear(self, undoable: bool = True) -> None:
        """Remove the painted region (one undo step when ``undoable`` and something was painted)."""
        if self.mask is not None and undoable:
            self._push_undo()
        elif not undoable:
            self._undo = []
        self.mask = None
        self._changed()

    def fill(self, mask: np.ndarray) -> None:
        """Replace the region with ``mask`` (e.g. the default lung fields): one undo step."""
        self._push_undo()
        self.mask = np.asarray(mask, bool).copy()
        self.show_fill = True
        self._changed()

    def set_outline(self, mask: np.ndarray | None) -> None:
        """Outline ``mask`` (no fill); None removes the outline."""
        self._outline = None if mask is None else mask_outline(mask)
        self._refresh()

    def has_outline(self) -> bool:
        return self._outline is not None and not self._outline.isEmpty()

    def _changed(self) -> None:
        self._qimage = None
        self._refresh()
        self.changed.emit()

    # ------------------------------------------------------------------ painting the mask
    def _ensure_mask(self, shape) -> np.ndarray:
        if self.mask is None or self.mask.shape != shape:
            self.mask = np.zeros(shape, bool)
        return self.mask

    def _dab(self, a: QPointF, b: QPointF) -> None:
        import cv2

        m = self.mask.view(np.uint8)
        val = 1 if self.tool == "brush" else 0
        r = self.radius
        shift = 4  # sub-pixel precision: stroke centres at 1/16 px
        pa = (int(round((a.x() - 0.5) * 16)), int(round((a.y() - 0.5) * 16)))
        pb = (int(round((b.x() - 0.5) * 16)), int(round((b.y() - 0.5) * 16)))
        cv2.circle(m, pa, r * 16, val, -1, cv2.LINE_8, shift)
        if pa != pb:
            cv2.circle(m, pb, r * 16, val, -1, cv2.LINE_8, shift)
            cv2.line(m, pa, pb, val, 2 * r + 1, cv2.LINE_8, shift)
        self._qimage = None

    def press(self, view, ev) -> bool:
        """Start a stroke (left button with a tool on); True when the event was used."""
        if not self.tool or ev.button() != Qt.LeftButton or not view.has_image():
            return False
        shape = tuple(view.image().shape)
        self._push_undo()
        self._ensure_mask(shape)
        p = view.widget_to_image(ev.position())
        self._stroke_last = p
        self.show_fill = True
        self._dab(p, p)
        view.update()
        ev.accept()
        return True

    def move(self, view, ev) -> bool:
        """Extend the stroke; the brush outline follows the cursor either way."""
        if self.tool:
            view.update()
        if self._stroke_last is None:
            return False
        p = view.widget_to_image(ev.position())
        self._dab(self._stroke_last, p)
        self._stroke_last = p
        self._refresh()
        ev.accept()
        return True

    def release(self, view, ev) -> bool:
        if self._stroke_last is None or ev.button() != Qt.LeftButton:
            return False
        self._stroke_last = None
        if self.mask is not None and not self.mask.any():
            self.mask = None
        self._changed()
        ev.accept()
        return True

    # ------------------------------------------------------------------ drawing
    def _image(self) -> QImage | None:
        if self.mask is None:
            return None
        if self._qimage is None:
            h, w = self.mask.shape
            rgba = np.zeros((h, w, 4), np.uint8)
            rgba[self.mask] = MASK_RGBA
            self._rgba = rgba  # keeps the buffer alive for the QImage
            self._qimage = QImage(rgba.data, w, h, w * 4, QImage.Format_RGBA8888)
        return self._qimage

    def paint(self, p: QPainter, view) -> None:
        """Draw the translucent mask, the outline and the brush circle over the film."""
        if not view.has_image():
            return
        p.save()
        # image coordinates -> widget: the view's own film transform where it has one (a flipped or
        # rotated view), else its zoom and pan
        film_transform = getattr(view, "_film_transform", None)
        if film_transform is not None:
            p.setTransform(film_transform())
        else:
            p.translate(view.image_to_widget(QPointF(0, 0)))
            p.scale(view.scale(), view.scale())
        img = self._image() if self.show_fill else None
        if img is not None:
            p.setRenderHint(QPainter.SmoothPixmapTransform, False)
            p.drawImage(QRectF(0, 0, img.width(), img.height()), img)
        if self._outline is not None and not self._outline.isEmpty():
            p.setRenderHint(QPainter.Antialiasing, True)
            for colour, width in ((QColor(0, 0, 0, 170), 4.0), (OUTLINE_COLOUR, 2.0)):
                pen = QPen(colour, width)
                pen.setCosmetic(True)  # screen pixels, whatever the zoom
                p.setPen(pen)
                p.setBrush(Qt.NoBrush)
                p.drawPath(self._outline)
        p.resetTransform()  # the brush circle: widget coordinates
        if self.tool and view.underMouse():
            pos = view.mapFromGlobal(QCursor.pos())
            r = max(2.0, self.radius * view.scale())
            p.setRenderHint(QPainter.Antialiasing, True)
            p.setBrush(Qt.NoBrush)
            p.setPen(QPen(QColor(0, 0, 0, 180), 3))
            p.drawEllipse(QPointF(pos), r, r)
            p.setPen(QPen(QColor(255, 255, 255) if self.tool == "brush" else QColor(255, 200, 60), 1.5,
                          Qt.SolidLine if self.tool == "brush" else Qt.DashLine))
            p.drawEllipse(QPointF(pos), r, r)
        p.restore()
