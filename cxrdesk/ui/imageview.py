"""The image view: zoom, pan, window/level in data units, pixel readout, overlays.

The view holds the *stored* image (e.g. uint16 with 12-bit values) and a window (center, width)
in the same data units. The window is applied at display time only
(:func:`cxrdesk.core.imaging.imaging.window_to_u8`); the stored array is never modified.

Mouse, as in PACS viewers: wheel = zoom about the cursor, left drag = pan, right drag =
window/level (horizontal: width, vertical: center), double click = zoom to fit.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPainterPath, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from ..core.imaging import imaging
from . import viewtools

SYNTHETIC_MARK = "SYNTHETIC - NOT FOR DIAGNOSIS"
MAX_LINES = 2  # measurement lines kept: a length, or two and their ratio (e.g. cardiothoracic)
_LINE_COLOURS = (QColor(80, 220, 255), QColor(255, 200, 60))
_VIEW_TIP = ("Wheel: zoom  |  Left drag: pan  |  Right drag: window/level "
             "(horizontal = width, vertical = center)  |  Double click: fit")
_MEASURE_TIP = ("Measuring - Left drag: draw a line (two lines give their ratio)  |  Middle drag: pan  |  "
                "Right drag: window/level  |  Delete: clear  |  M: stop measuring")
MIN_ZOOM, MAX_ZOOM = 0.02, 64.0
LOUPE_RADIUS, LOUPE_ZOOM = 90, 3.0  # the magnifier: screen pixels, times the view's zoom
NOTICE_MS = 2000  # how long a notice ("1 / 3", "Presentation mode...") stays, by default


def _heat_lut() -> np.ndarray:
    """256 x RGBA "hot" colour map for attention overlays: the lower third is fully transparent
    (the image stays readable), then red -> orange -> yellow with rising opacity."""
    t = np.linspace(0, 1, 256)
    r = np.ones_like(t)
    g = np.clip((t - 0.35) / 0.65, 0, 1) ** 0.9
    b = np.clip((t - 0.85) / 0.15, 0, 1) * 0.6
    a = np.clip((t - 0.35) / 0.65, 0, 1) ** 0.7 * 0.7
    return (np.stack([r, g, b, a], 1) * 255).round().astype(np.uint8)


_HEAT = _heat_lut()

OVERLAY_TIP = ("Attention map: where the model looked for this word of the prompt while it drew the film "
               "(cross-attention, averaged over the steps; yellow = most). It is not a localisation of a "
               "finding: the map for 'effusion' may light up the shoulders or the chest wall. Read the film, "
               "not the map.")


def overlay_caption(word: str) -> str:
    """The on-screen label of an attention overlay: what the map is, and what it is not."""
    return (f"Where the model looked for '{word}' while drawing (yellow = most)\n"
            "Not the location of a finding")


def grey_qimage(u8: np.ndarray) -> QImage:
    """An 8-bit grey array as a QImage that owns its pixels (safe after the array goes, and off the
    GUI thread)."""
    u8 = np.ascontiguousarray(u8, dtype=np.uint8)
    h, w = u8.shape
    return QImage(u8.data, w, h, w, QImage.Format_Grayscale8).copy()


def grey_thumbnail(img: np.ndarray, size: int) -> QPixmap:
    """A stored image at its full window range, scaled to fit ``size`` x ``size``."""
    bits = max(1, imaging.infer_bits(img))
    u8 = imaging.window_to_u8(img, *imaging.full_window(bits))
    return QPixmap.fromImage(grey_qimage(u8).scaled(size, size, Qt.KeepAspectRatio, Qt.SmoothTransformation))


class ImageView(QWidget):
    """Displays one stored image with a display-time window; see the module docstring."""

    windowChanged = Signal(float, float)      # center, width (data units), on every change
    viewChanged = Signal()                    # zoom or pan changed by the user
    pixelHovered = Signal(object)             # (x, y, value) or None
    invertChanged = Signal(bool)
    measurementsChanged = Signal()
    annotationsChanged = Signal()             # an arrow or text added or removed (annotations())
    textRequested = Signal(QPointF)           # text mode: a click at this image point asks for a text

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumSize(160, 160)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self.base_tip = ""  # the tooltip when not measuring (a window may describe its own mouse use)
        self.setToolTip(_VIEW_TIP)
        self._data: np.ndarray | None = None
        self._bits = 12
        self._center, self._width = imaging.full_window(12)
        self._default_window = (self._center, self._width)
        self._invert = False
        self._scale = 1.0
        self._fit = True
        self._pan = QPointF(0, 0)  # image coordinate shown at the widget centre
        self._qimage: QImage | None = None
        self._u8: np.ndarray | None = None
        self._overlay: np.ndarray | None = None
        self._overlay_image: QImage | None = None
        self._overlay_label = ""
        self._synthetic = False
        self._caption = ""
        self._placeholder = "No image"
        self._drag_button = None
        self._drag_last = QPointF()
        self._hover: tuple[int, int, float] | None = None
        self._notice = ""
        self._text_scale = 1.0  # the text boxes' size, larger for a projector (presentation mode)
        self._reveal = ""   # e.g. the prompt of a generated image, shown on request (a quiz's answer)
        self._measuring = False
        self._lines: list[tuple[QPointF, QPointF]] = []   # image coordinates, at most MAX_LINES
        self._drawing: tuple[QPointF, QPointF] | None = None
        self._spacing: tuple[float, float] | None = None
        self._notice_timer = QTimer(self)
        self._notice_timer.setSingleShot(True)
        self._notice_timer.timeout.connect(lambda: self.show_notice(""))
        self.wl_sensitivity: float | None = None  # data units per pixel (None = by bit depth)
        self._pixels = False  # magnified films: smooth (bicubic) unless the user asks for pixels
        self._smooth_cache: tuple | None = None   # (key, QImage, its buffer)
        self._notice_rect = QRectF()
        self._magnifier = False
        self._mouse: QPointF | None = None  # the cursor over the view, for the magnifier
        self._orient = viewtools.IDENTITY  # display-time flip/rotation (viewtools), never in the pixels
        self._annotations: list[dict] = []  # arrows and text in image coordinates (viewtools)
        self._annotating = ""  # "arrow" | "text" | "" : what a left drag / click adds
        self._arrow: tuple[QPointF, QPointF] | None = None  # the arrow being drawn
        self.mask_layer = None  # maskpaint.MaskLayer: an edit's painted region, drawn over the film

    # ------------------------------------------------------------------ image
    def sizeHint(self) -> QSize:
        return QSize(640, 640)

    def has_image(self) -> bool:
        return self._data is not None

    def image(self) -> np.ndarray | None:
        """The stored image (never windowed)."""
        return self._data

    @property
    def bits(self) -> int:
        return self._bits

    def set_image(self, data: np.ndarray | None, *, window: tuple[float, float] | None = None,
                  keep_view: bool = False, keep_window: bool = False, synthetic: bool = False,
                  caption: str = "", bits: int | None = None,
                  spacing: tuple[float, float] | None = None) -> None:
        """Show ``data`` (2-D, data units). ``window``: initial (center, width); default: full range.

        ``keep_view`` keeps zoom/pan and the measurement lines (previews of the same size);
        ``keep_window`` keeps the current window (previews, enhanced versions of the same image).
        ``spacing``: (row, column) mm per pixel, for measurements in mm.
        """
        self._spacing = tuple(spacing) if spacing else None
        if data is None:
            self._data = None
            self._qimage = None
            self._u8 = None
            self._overlay = None
            self._overlay_image = None
            self._update_tip()
            self._hover = None
            self._caption = caption
            self._synthetic = False
            self.update()
            return
        data = np.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"expected a 2-D image, got shape {data.shape}")
        if data.dtype.kind == "f":
            data = imaging.from_unit(data, np.uint16, bits=12)
        same_shape = self._data is not None and self._data.shape == data.shape
        had_image, old_bits = self._data is not None, self._bits
        self._data = data
        self._bits = int(bits) if bits else max(1, imaging.infer_bits(data))
        if self._bits < 12 and data.dtype == np.uint16:
            self._bits = 12  # 12-bit data that happen to use few values stay 12-bit
        self._default_window = tuple(window) if window else imaging.full_window(self._bits)
        if not (keep_window and had_image and old_bits == self._bits) or window is not None:
            self._center, self._width = self._default_window
        self._synthetic = synthetic
        self._caption = caption
        if self._overlay is not None and self._overlay.shape != data.shape:
            self.clear_overlay()
        self._render()
        if not (keep_view and same_shape):
            self._fit = True
            self.clear_measurements()
            self._orient = viewtools.IDENTITY
            self._annotations = []
        self._apply_fit()
        self._hover = None
        self.update()
        self.windowChanged.emit(self._center, self._width)

    def set_caption(self, text: str) -> None:
        self._caption = text
        self.update()

    def show_notice(self, text: str, ms: int = NOTICE_MS) -> None:
        """A short message drawn at the bottom edge of the view, below the film's middle, for ``ms``
        milliseconds ("" clears it): a lecture goes on over the mediastinum undisturbed."""
        self._notice = text
        if text:
            self._notice_timer.start(ms)
        else:
            self._notice_timer.stop()
        self.update()

    def notice(self) -> str:
        return self._notice

    def set_text_scale(self, scale: float) -> None:
        """Draw the text boxes (caption, window, labels, notices) ``scale`` times the widget font."""
        self._text_scale = float(scale)
        self.update()

    def text_scale(self) -> float:
        return self._text_scale

    def _font(self, bold: bool = False, scale: float = 1.0) -> QFont:
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * self._text_scale * scale)
        f.setBold(bold)
        return f

    def set_reveal(self, text: str) -> None:
        """Text drawn wrapped under the caption, across the top of the image ("" hides it)."""
        self._reveal = text
        self.update()

    def reveal(self) -> str:
        return self._reveal

    def rendered(self) -> np.ndarray | None:
        """The picture as displayed, at image resolution: 8-bit grey after the window and inversion
        (a copy; None without an image). The attention overlay and the text boxes are not in it."""
        return None if self._u8 is None else self._u8.copy()

    # ------------------------------------------------------------------ interpolation
    def set_show_pixels(self, on: bool) -> None:
        """Magnified films: nearest neighbour (each pixel a square) when on; bicubic otherwise."""
        self._pixels = bool(on)
        self.update()

    def shows_pixels(self) -> bool:
        return self._pixels

    def set_magnifier(self, on: bool) -> None:
        """A round loupe under the cursor showing the film LOUPE_ZOOM times larger than the view."""
        self._magnifier = bool(on)
        self.update()

    def magnifier(self) -> bool:
        return self._magnifier

    def _paint_loupe(self, p: QPainter) -> None:
        import cv2

        if not (self._magnifier and self._mouse is not None and self._u8 is not None):
            return
        r = int(LOUPE_RADIUS * self._text_scale)
        k = self._scale * LOUPE_ZOOM
        c = self.widget_to_image(self._mouse)
        # forward map image -> loupe (pixel centres at +0.5 in view coordinates)
        a, b, cc, d = self._orient
        ox, oy = 0.5 - c.x(), 0.5 - c.y()
        m = np.float32([[a * k, b * k, (a * ox + b * oy) * k + r - 0.5], [cc * k, d * k, (cc * ox + d * oy) * k + r - 0.5]])
        flag = cv2.INTER_NEAREST if self._pixels else cv2.INTER_CUBIC
        loupe = np.ascontiguousarray(cv2.warpAffine(self._u8, m, (2 * r, 2 * r), flags=flag,
                                                    borderMode=cv2.BORDER_CONSTANT, borderValue=12))
        img = QImage(loupe.data, 2 * r, 2 * r, 2 * r, QImage.Format_Grayscale8)
        rect = QRectF(self._mouse.x() - r, self._mouse.y() - r, 2 * r, 2 * r)
        p.save()
        p.setRenderHint(QPainter.Antialiasing, True)
        path = QPainterPath()
        path.addEllipse(rect)
        p.setClipPath(path)
        p.drawImage(rect, img)
        p.setClipping(False)
        p.setPen(QPen(QColor(240, 240, 240, 200), 2))
        p.setBrush(Qt.NoBrush)
        p.drawEllipse(rect)
        p.restore()

    def _smooth_magnified(self, target: QRectF):
        """The visible part of a magnified film resampled bicubically to screen pixels (OpenCV):
        (rectangle on the widget, QImage). Qt's own smooth transform is bilinear, which leaves a
        256x256 film at 350% soft-edged but blocky."""
        import cv2

        h, w = self._u8.shape
        vis = target.intersected(QRectF(self.rect()))
        if vis.isEmpty():
            return None
        corners = [self.widget_to_image(q) for q in (vis.topLeft(), vis.bottomRight(), vis.topRight(),
                                                     vis.bottomLeft())]
        a = QPointF(min(q.x() for q in corners), min(q.y() for q in corners))
        b = QPointF(max(q.x() for q in corners), max(q.y() for q in corners))
        x0, y0 = max(0, int(math.floor(a.x())) - 2), max(0, int(math.floor(a.y())) - 2)
        x1, y1 = min(w, int(math.ceil(b.x())) + 2), min(h, int(math.ceil(b.y())) + 2)
        if x1 <= x0 or y1 <= y0:
            return None
        dw, dh = int(round((x1 - x0) * self._scale)), int(round((y1 - y0) * self._scale))
        key = (x0, y0, x1, y1, dw, dh)
        if self._smooth_cache is None or self._smooth_cache[0] != key:
            crop = np.ascontiguousarray(self._u8[y0:y1, x0:x1])
            big = np.ascontiguousarray(cv2.resize(crop, (dw, dh), interpolation=cv2.INTER_CUBIC))
            self._smooth_cache = (key, QImage(big.data, dw, dh, dw, QImage.Format_Grayscale8), big)
        # in zoomed image units: the painter (_film_transform(zoom)) only orients and places it
        return QRectF(x0 * self._scale, y0 * self._scale, dw, dh), self._smooth_cache[1]

    # ------------------------------------------------------------------ measuring
    def set_measuring(self, on: bool) -> None:
        """Measure mode: a left drag draws a line (the oldest of MAX_LINES goes); pan stays on the
        middle button."""
        self._measuring = bool(on)
        self._drawing = None
        self.setCursor(Qt.CrossCursor) if on else self.unsetCursor()
        self._update_tip()
        self.update()

    def _update_tip(self) -> None:
        tip = _MEASURE_TIP if self._measuring else (self.base_tip or _VIEW_TIP)
        if self._overlay_image is not None:
            tip = f"{OVERLAY_TIP}\n\n{tip}"
        self.setToolTip(tip)

    def is_measuring(self) -> bool:
        return self._measuring

    def measurements(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        return [((a.x(), a.y()), (b.x(), b.y())) for a, b in self._lines]

    def measurement_text(self) -> tuple[list[str], str]:
        """One label per line and, for two lines, their ratio (``imaging.measurement_lines``)."""
        return imaging.measurement_lines(self.measurements(), self._spacing)

    def clear_measurements(self) -> None:
        self._lines = []
        self._drawing = None
        self.update()

    def _clamp(self, p: QPointF) -> QPointF:
        h, w = self._data.shape
        return QPointF(min(max(p.x(), 0.0), float(w)), min(max(p.y(), 0.0), float(h)))

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def is_synthetic(self) -> bool:
        return self._synthetic

    def _render(self) -> None:
        if self._data is None:
            return
        u8 = imaging.window_to_u8(self._data, self._center, self._width, self._invert)
        u8 = np.ascontiguousarray(u8)
        h, w = u8.shape
        self._u8 = u8  # keep the buffer alive for the QImage
        self._qimage = QImage(u8.data, w, h, w, QImage.Format_Grayscale8)
        self._smooth_cache = None

    # ------------------------------------------------------------------ window / level
    def window(self) -> tuple[float, float]:
        return (self._center, self._width)

    def default_window(self) -> tuple[float, float]:
        return self._default_window

    def set_window(self, center: float, width: float, emit: bool = True) -> None:
        center, width = float(center), max(1.0, float(width))
        if (center, width) == (self._center, self._width):
            return
        self._center, self._width = center, width
        self._render()
        self.update()
        if emit:
            self.windowChanged.emit(center, width)

    def reset_window(self) -> None:
        self.set_window(*self._default_window)

    def apply_preset(self, name: str) -> None:
        presets = imaging.window_presets(self._bits)
        if name not in presets:
            raise KeyError(name)
        self.set_window(*presets[name])

    def inverted(self) -> bool:
        return self._invert

    def set_inverted(self, on: bool, emit: bool = True) -> None:
        on = bool(on)
        if on == self._invert:
            return
        self._invert = on
        self._render()
        self.update()
        if emit:
            self.invertChanged.emit(on)

    def _sensitivity(self) -> float:
        if self.wl_sensitivity:
            return self.wl_sensitivity
        return imaging.drag_sensitivity(self._bits, 512.0)

    # ------------------------------------------------------------------ overlay
    def set_overlay(self, heat: np.ndarray | None, label: str = "") -> None:
        """Attention overlay: float map in [0, 1], drawn stretched over the image, labelled as what
        it is (where the model looked for ``label`` while drawing; ``overlay_caption``)."""
        if heat is None:
            self.clear_overlay()
            return
        h = np.clip(np.nan_to_num(np.asarray(heat, np.float32)), 0, 1)
        idx = np.round(h * 255).astype(np.uint8)
        rgba = np.ascontiguousarray(_HEAT[idx])
        hh, ww = idx.shape
        self._overlay = h
        self._overlay_rgba = rgba
        self._overlay_image = QImage(rgba.data, ww, hh, ww * 4, QImage.Format_RGBA8888)
        self._overlay_label = label
        self._update_tip()
        self.update()

    def clear_overlay(self) -> None:
        self._overlay = None
        self._overlay_image = None
        self._overlay_label = ""
        self._update_tip()
        self.update()

    def has_overlay(self) -> bool:
        return self._overlay_image is not None

    # ------------------------------------------------------------------ zoom / pan
    def scale(self) -> float:
        return self._scale

    def fit_scale(self) -> float:
        if self._data is None:
            return 1.0
        h, w = self._data.shape
        if viewtools.swaps_axes(self._orient):
            h, w = w, h
        return max(MIN_ZOOM, min((self.width() - 8) / w, (self.height() - 8) / h))

    def is_fit(self) -> bool:
        return self._fit

    def zoom_to_fit(self) -> None:
        self._fit = True
        self._apply_fit()
        self.update()
        self.viewChanged.emit()

    def zoom_1to1(self) -> None:
        self._fit = False
        self._scale = 1.0
        self.update()
        self.viewChanged.emit()

    def _apply_fit(self) -> None:
        if self._fit and self._data is not None:
            self._scale = self.fit_scale()
            h, w = self._data.shape
            self._pan = QPointF(w / 2, h / 2)

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        if self._data is None:
            return
        new = min(MAX_ZOOM, max(MIN_ZOOM, self._scale * factor))
        if anchor is None:
            anchor = QPointF(self.width() / 2, self.height() / 2)
        p = self.widget_to_image(anchor)
        self._scale = new
        wc = QPointF(self.width() / 2, self.height() / 2)
        self._pan = p - (anchor - wc) / new
        self._fit = False
        self.update()
        self.viewChanged.emit()

    def view_state(self) -> dict:
        """Zoom and pan relative to the image (so two images of different sizes can be linked)."""
        if self._data is None:
            return {"fit": True, "rel": 1.0, "px": 0.5, "py": 0.5}
        h, w = self._data.shape
        return {"fit": self._fit, "rel": self._scale / self.fit_scale(),
                "px": self._pan.x() / w, "py": self._pan.y() / h}

    def set_view_state(self, st: dict, emit: bool = False) -> None:
        if self._data is None:
            return
        if st.get("fit"):
            self._fit = True
            self._apply_fit()
        else:
            h, w = self._data.shape
            self._fit = False
            self._scale = min(MAX_ZOOM, max(MIN_ZOOM, st["rel"] * self.fit_scale()))
            self._pan = QPointF(st["px"] * w, st["py"] * h)
        self.update()
        if emit:
            self.viewChanged.emit()

    def widget_to_image(self, p: QPointF) -> QPointF:
        wc = QPointF(self.width() / 2, self.height() / 2)
        a, b, c, d = self._orient  # orthogonal: the inverse is the transpose
        v = (QPointF(p) - wc) / self._scale
        return self._pan + QPointF(a * v.x() + c * v.y(), b * v.x() + d * v.y())

    def image_to_widget(self, p: QPointF) -> QPointF:
        wc = QPointF(self.width() / 2, self.height() / 2)
        a, b, c, d = self._orient
        v = (QPointF(p) - self._pan) * self._scale
        return wc + QPointF(a * v.x() + b * v.y(), c * v.x() + d * v.y())

    def _film_transform(self, unit: float = 1.0) -> QTransform:
        """Painter transform from image coordinates times ``unit`` to the widget (orientation and pan;
        ``unit`` = the zoom: only the orientation is left to the painter)."""
        a, b, c, d = self._orient
        wc = QPointF(self.width() / 2, self.height() / 2)
        s = self._scale / unit
        px, py = self._pan.x() * self._scale, self._pan.y() * self._scale
        return QTransform(a * s, c * s, b * s, d * s, wc.x() - (a * px + b * py), wc.y() - (c * px + d * py))

    def image_rect(self) -> QRectF:
        """The film's rectangle on the widget (as oriented)."""
        if self._data is None:
            return QRectF()
        h, w = self._data.shape
        pts = [self.image_to_widget(QPointF(x, y)) for x, y in ((0, 0), (w, h))]
        return QRectF(pts[0], pts[1]).normalized()

    # ------------------------------------------------------------------ orientation
    def orientation(self) -> tuple:
        """The display-time flip/rotation (a viewtools matrix); the stored image is never changed."""
        return self._orient

    def set_orientation(self, m: tuple) -> None:
        self._orient = tuple(m)
        if self._fit:
            self._apply_fit()
        self._smooth_cache = None
        self.update()
        self.viewChanged.emit()

    def reorient(self, op: tuple) -> None:
        """Flip or rotate the view on screen (viewtools.FLIP_H, FLIP_V, ROTATE_CW, ROTATE_CCW)."""
        self.set_orientation(viewtools.compose(op, self._orient))

    # ------------------------------------------------------------------ annotations
    def annotations(self) -> list[dict]:
        return [dict(a) for a in self._annotations]

    def set_annotations(self, items) -> None:
        self._annotations = viewtools.valid_annotations(items)
        self.update()

    def add_annotation(self, item: dict) -> None:
        self._annotations = viewtools.valid_annotations(self._annotations + [item])
        self.update()
        self.annotationsChanged.emit()

    def remove_last_annotation(self) -> bool:
        if not self._annotations:
            return False
        self._annotations.pop()
        self.update()
        self.annotationsChanged.emit()
        return True

    def clear_annotations(self) -> None:
        had = bool(self._annotations)
        self._annotations = []
        self.update()
        if had:
            self.annotationsChanged.emit()

    def set_annotating(self, kind: str) -> None:
        """"arrow": a left drag draws an arrow (its head where the drag ends); "text": a left click asks
        for a text there (textRequested); "": off. Pan stays on the middle button meanwhile."""
        self._annotating = kind if kind in ("arrow", "text") else ""
        self._arrow = None
        if self._annotating:
            self._measuring = False
        self.setCursor(Qt.CrossCursor) if (self._annotating or self._measuring) else self.unsetCursor()
        self.update()

    def annotating(self) -> str:
        return self._annotating

    def _annotate_mouse(self, kind: str, ev) -> bool:
        """Mouse events in annotation mode: True when used."""
        if not self._annotating or self._data is None:
            return False
        if kind == "press" and ev.button() == Qt.LeftButton:
            p = self._clamp(self.widget_to_image(ev.position()))
            if self._annotating == "text":
                self.textRequested.emit(p)
            else:
                self._arrow = (p, p)
            ev.accept()
            return True
        if kind == "move" and self._arrow is not None:
            self._arrow = (self._arrow[0], self._clamp(self.widget_to_image(ev.position())))
            self.update()
            return True
        if kind == "release" and self._arrow is not None and ev.button() == Qt.LeftButton:
            a, b = self._arrow
            self._arrow = None
            if (b - a).manhattanLength() * self._scale >= 6:  # a click is not an arrow
                self.add_annotation({"kind": "arrow", "from": [a.x(), a.y()], "to": [b.x(), b.y()]})
            self.update()
            ev.accept()
            return True
        return False

    def _paint_annotations(self, p: QPainter) -> None:
        items = list(self._annotations)
        if self._arrow is not None:
            a, b = self._arrow
            items.append({"kind": "arrow", "from": [a.x(), a.y()], "to": [b.x(), b.y()]})
        viewtools.paint_annotations(p, items, self.image_to_widget,
                                    QFontMetrics(self._font(bold=True)).height() * 1.15, bounds=QRectF(self.rect()))

    def value_at(self, x: int, y: int):
        if self._data is None:
            return None
        h, w = self._data.shape
        if 0 <= x < w and 0 <= y < h:
            v = self._data[y, x]
            return float(v) if self._data.dtype.kind == "f" else int(v)
        return None

    # ------------------------------------------------------------------ events
    def resizeEvent(self, ev) -> None:
        if self._fit:
            self._apply_fit()
        super().resizeEvent(ev)

    def wheelEvent(self, ev) -> None:
        if self._data is None:
            return
        steps = ev.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25 ** steps, ev.position())
        ev.accept()

    def mousePressEvent(self, ev) -> None:
        if self.mask_layer is not None and self.mask_layer.press(self, ev):
            return
        if self._annotate_mouse("press", ev):
            return
        if self._measuring and ev.button() == Qt.LeftButton and self._data is not None:
            p = self._clamp(self.widget_to_image(ev.position()))
            self._drawing = (p, p)
            ev.accept()
            return
        if ev.button() in (Qt.LeftButton, Qt.RightButton, Qt.MiddleButton) and self._data is not None:
            self._drag_button = ev.button()
            self._drag_last = ev.position()
            self.setCursor(Qt.ClosedHandCursor if ev.button() != Qt.RightButton else Qt.SizeAllCursor)
            ev.accept()
            return
        super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev) -> None:
        pos = ev.position()
        self._mouse = QPointF(pos)
        if self.mask_layer is not None and self.mask_layer.move(self, ev):
            self._update_hover(pos)
            return
        if self._magnifier:
            self.update()
        if self._annotate_mouse("move", ev):
            pass
        elif self._drawing is not None:
            self._drawing = (self._drawing[0], self._clamp(self.widget_to_image(pos)))
            self.update()
        elif self._drag_button is not None and self._data is not None:
            d = pos - self._drag_last
            self._drag_last = pos
            if self._drag_button == Qt.RightButton:
                c, w = imaging.drag_window(self._center, self._width, d.x(), d.y(), self._sensitivity())
                self.set_window(c, w)
            else:
                a, b, c, dd = self._orient  # the screen drag back in image coordinates
                self._pan = self._pan - QPointF(a * d.x() + c * d.y(), b * d.x() + dd * d.y()) / self._scale
                self._fit = False
                self.update()
                self.viewChanged.emit()
        self._update_hover(pos)

    def mouseReleaseEvent(self, ev) -> None:
        if self.mask_layer is not None and self.mask_layer.release(self, ev):
            return
        if self._annotate_mouse("release", ev):
            return
        if self._drawing is not None and ev.button() == Qt.LeftButton:
            a, b = self._drawing
            self._drawing = None
            if (b - a).manhattanLength() * self._scale >= 4:  # a click is not a line
                self._lines = (self._lines + [(a, b)])[-MAX_LINES:]
                self.measurementsChanged.emit()
            self.update()
            ev.accept()
            return
        if self._drag_button is not None and ev.button() == self._drag_button:
            self._drag_button = None
            self.setCursor(Qt.CrossCursor) if self._measuring else self.unsetCursor()
            ev.accept()
            return
        super().mouseReleaseEvent(ev)

    def mouseDoubleClickEvent(self, ev) -> None:
        if ev.button() == Qt.LeftButton:
            self.zoom_to_fit()

    def leaveEvent(self, ev) -> None:
        self._hover = None
        self._mouse = None
        self.pixelHovered.emit(None)
        self.update()
        super().leaveEvent(ev)

    def contextMenuEvent(self, ev) -> None:
        ev.accept()  # the right button is window/level

    def _update_hover(self, pos: QPointF) -> None:
        if self._data is None:
            return
        p = self.widget_to_image(pos)
        x, y = int(math.floor(p.x())), int(math.floor(p.y()))
        v = self.value_at(x, y)
        new = None if v is None else (x, y, v)
        if new != self._hover:
            self._hover = new
            self.pixelHovered.emit(new)
            self.update()

    # ------------------------------------------------------------------ painting
    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(12, 12, 14))
        if self._qimage is None:
            p.setPen(QColor(150, 150, 155))
            f = p.font()
            f.setPointSizeF(f.pointSizeF() * 1.2)
            p.setFont(f)
            p.drawText(self.rect().adjusted(20, 20, -20, -20), Qt.AlignCenter | Qt.TextWordWrap, self._placeholder)
            self._paint_notice(p, [])  # the placeholder fills the middle
            p.end()
            return
        target = self.image_rect()
        smooth = None if (self._pixels or self._scale <= 1.0) else self._smooth_magnified(target)
        film = QRectF(0, 0, self._data.shape[1], self._data.shape[0])
        p.save()  # the film and the overlay are drawn oriented (flip/rotate), in image coordinates
        if smooth is not None:
            p.setTransform(self._film_transform(self._scale))
            p.drawImage(*smooth)
        else:
            # minified films are filtered (bilinear); 1:1 and "show pixels" are exact
            p.setTransform(self._film_transform())
            p.setRenderHint(QPainter.SmoothPixmapTransform, not self._pixels and self._scale < 1.0)
            p.drawImage(film, self._qimage)
        if self._overlay_image is not None:
            p.setTransform(self._film_transform())
            p.setRenderHint(QPainter.SmoothPixmapTransform, True)
            p.drawImage(film, self._overlay_image)
        p.restore()
        if self.mask_layer is not None:
            self.mask_layer.paint(p, self)
        self._ratio = ""
        self._paint_lines(p)
        self._paint_annotations(p)
        self._paint_loupe(p)
        self._paint_text(p)
        p.end()

    def _box_rect(self, text: str, anchor: str, bold=False, margin=8, max_width: float | None = None,
                  bottom: float | None = None) -> tuple[QRectF, str]:
        """Where a text box goes (anchored at a corner, an edge's centre or the centre; ``bottom``:
        its lower edge) and its text, elided to ``max_width``."""
        fm = QFontMetrics(self._font(bold))
        lines = text.split("\n")
        if max_width is not None:
            lines = [fm.elidedText(s, Qt.ElideRight, int(max(20, max_width - 10))) for s in lines]
            text = "\n".join(lines)
        tw = max(fm.horizontalAdvance(s) for s in lines) + 10
        th = fm.height() * len(lines) + 6
        W, H = self.width(), self.height()
        x = margin if "left" in anchor else (W - tw - margin if "right" in anchor else (W - tw) / 2)
        y = margin if "top" in anchor else ((H - th) / 2 if anchor == "center" else H - th - margin)
        if bottom is not None:
            y = bottom - th
        return QRectF(x, y, tw, th), text

    def _text_box(self, p: QPainter, text: str, anchor: str, fg=QColor(235, 235, 235),
                  bg=QColor(0, 0, 0, 150), bold=False, margin=8, max_width: float | None = None,
                  bottom: float | None = None) -> QRectF:
        r, text = self._box_rect(text, anchor, bold, margin, max_width, bottom)
        p.setFont(self._font(bold))
        p.setPen(Qt.NoPen)
        p.setBrush(bg)
        p.drawRoundedRect(r, 3, 3)
        p.setPen(fg)
        p.drawText(r.adjusted(5, 3, -5, -3), Qt.AlignLeft | Qt.AlignVCenter, text)
        return r

    def _paint_lines(self, p: QPainter) -> None:
        lines = list(self._lines) + ([self._drawing] if self._drawing is not None else [])
        if not lines:
            return
        labels, ratio = imaging.measurement_lines([((a.x(), a.y()), (b.x(), b.y())) for a, b in lines],
                                                  self._spacing)
        p.setRenderHint(QPainter.Antialiasing, True)
        f = self._font(bold=True)
        p.setFont(f)
        fm = QFontMetrics(f)
        for k, ((a, b), label) in enumerate(zip(lines, labels)):
            wa, wb = self.image_to_widget(a), self.image_to_widget(b)
            p.setPen(QPen(QColor(0, 0, 0, 160), 4))
            p.drawLine(wa, wb)
            p.setPen(QPen(_LINE_COLOURS[k % len(_LINE_COLOURS)], 2))
            p.drawLine(wa, wb)
            for end in (wa, wb):
                p.drawEllipse(end, 3, 3)
            text = f"{k + 1}: {label}"
            mid = (wa + wb) / 2
            r = QRectF(mid.x() + 8, mid.y() - fm.height() - 4, fm.horizontalAdvance(text) + 10, fm.height() + 4)
            p.setPen(Qt.NoPen)
            p.setBrush(QColor(0, 0, 0, 170))
            p.drawRoundedRect(r, 3, 3)
            p.setPen(_LINE_COLOURS[k % len(_LINE_COLOURS)])
            p.drawText(r, Qt.AlignCenter, text)
        p.setRenderHint(QPainter.Antialiasing, False)
        self._ratio = ratio

    def _paint_notice(self, p: QPainter, bottom_boxes: list[QRectF], corners: tuple = ()) -> None:
        """The notice at the bottom centre, above the other boxes there (``bottom_boxes``), and
        lifted above the corner boxes when it would touch them: never over the middle of the film."""
        self._notice_rect = QRectF()
        if not self._notice:
            return
        kw = dict(bold=True, max_width=self.width() - 24)
        above = min([r.top() - 6 for r in bottom_boxes], default=None)
        r, _ = self._box_rect(self._notice, "bottom-center", bottom=above, **kw)
        if any(r.intersects(c) for c in corners):
            above = min(c.top() for c in corners + (r,)) - 6
        self._notice_rect = self._text_box(p, self._notice, "bottom-center", fg=QColor(255, 255, 255),
                                           bg=QColor(20, 20, 24, 215), bottom=above, **kw)

    def notice_rect(self) -> QRectF:
        """Where the notice was last drawn (empty when none)."""
        return QRectF(self._notice_rect)

    def _paint_text(self, p: QPainter) -> None:
        room = self.width() - 16
        if self._synthetic:
            mark = self._text_box(p, SYNTHETIC_MARK, "top-right", fg=QColor(255, 255, 255),
                                  bg=QColor(190, 40, 30, 220), bold=True)
            room = mark.left() - 16
        if self._caption and room > 40:
            self._text_box(p, self._caption, "top-left", max_width=room)
        zoom = f"{self._scale * 100:.0f}%" + (" (fit)" if self._fit else "")
        inv = "  INV" if self._invert else ""
        corners = [self._text_box(p, f"W {self._width:.0f}  C {self._center:.0f}{inv}\nZoom {zoom}", "bottom-left")]
        bottom: list[QRectF] = []  # the boxes stacked at the bottom centre, lowest first
        if self._overlay_image is not None:
            bottom.append(self._text_box(p, overlay_caption(self._overlay_label or "attention"), "bottom-center",
                                         fg=QColor(255, 225, 140), max_width=self.width() - 24))
        if self._ratio:
            bottom.append(self._text_box(p, self._ratio, "bottom-center", fg=QColor(140, 230, 255), bold=True,
                                         bottom=bottom[-1].top() - 6 if bottom else None))
        if self._hover is not None:
            x, y, v = self._hover
            val = f"{v:.4g}" if isinstance(v, float) else str(v)
            corners.append(self._text_box(p, f"x {x}  y {y}\nvalue {val}", "bottom-right"))
        if self._reveal:
            f = self._font(bold=True, scale=1.3)
            p.setFont(f)
            fm = QFontMetrics(f)
            width = int(max(120, min(self.width() * 0.7, self.width() - 40)))
            box = fm.boundingRect(0, 0, width, 10_000, Qt.TextWordWrap, self._reveal)
            top = 8 + QFontMetrics(self._font()).height() + 14
            r = QRectF((self.width() - box.width()) / 2 - 8, top, box.width() + 16, box.height() + 10)
            p.setPen(Qt.NoPen)
            p.setBrush(QColor(10, 40, 70, 225))
            p.drawRoundedRect(r, 4, 4)
            p.setPen(QColor(255, 255, 255))
            p.drawText(r.adjusted(8, 5, -8, -5), Qt.AlignCenter | Qt.TextWordWrap, self._reveal)
        self._paint_notice(p, bottom, tuple(corners))
        if self._synthetic:
            # a thin frame marks synthetic images even when the label is scrolled away
            p.setPen(QPen(QColor(190, 40, 30, 200), 2))
            p.setBrush(Qt.NoBrush)
            p.drawRect(self.rect().adjusted(1, 1, -2, -2))
