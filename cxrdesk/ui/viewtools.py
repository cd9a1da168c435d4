"""Display-time tools of the image view that never touch the stored image: orientation (flip and
rotate by quarter turns) and annotations (arrows and text), both kept in image coordinates.

Orientation is a 2x2 matrix ``(a, b, c, d)`` of 0 and +-1 acting on coordinates about the image
centre (x right, y down): screen = [[a, b], [c, d]] @ image. The eight of them are the flips and
quarter turns. Annotations are dicts (JSON as they are): ``{"kind": "arrow", "from": [x, y],
"to": [x, y]}`` (the head at "to") and ``{"kind": "text", "at": [x, y], "text": "..."}``.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPen, QPolygonF

IDENTITY = (1, 0, 0, 1)
FLIP_H, FLIP_V = (-1, 0, 0, 1), (1, 0, 0, -1)
ROTATE_CW, ROTATE_CCW = (0, -1, 1, 0), (0, 1, -1, 0)   # y down: a quarter turn clockwise on screen
MAX_TEXT = 80  # characters of one text annotation
MAX_ANNOTATIONS = 50
ARROW_COLOUR = QColor(255, 214, 10)


def compose(op: tuple, m: tuple) -> tuple:
    """``op`` applied on screen after ``m``: op @ m."""
    a, b, c, d = op
    e, f, g, h = m
    return (a * e + b * g, a * f + b * h, c * e + d * g, c * f + d * h)


def swaps_axes(m: tuple) -> bool:
    return m[0] == 0


def orientation_text(m: tuple) -> str:
    """What the orientation does, in words ("" for none)."""
    names = {IDENTITY: "", FLIP_H: "flipped horizontally", FLIP_V: "flipped vertically",
             ROTATE_CW: "rotated 90\u00b0 clockwise", ROTATE_CCW: "rotated 90\u00b0 anticlockwise",
             (-1, 0, 0, -1): "rotated 180\u00b0", (0, 1, 1, 0): "rotated 90\u00b0 clockwise, flipped horizontally",
             (0, -1, -1, 0): "rotated 90\u00b0 anticlockwise, flipped horizontally"}
    return names[tuple(m)]


def oriented(a: np.ndarray, m: tuple) -> np.ndarray:
    """The 2-D array as shown under orientation ``m`` (contiguous)."""
    a0, b, c, d = m
    if a0 == 0:  # screen x = b * image y, screen y = c * image x
        out = a.T
        if b < 0:
            out = out[:, ::-1]
        if c < 0:
            out = out[::-1, :]
    else:
        out = a
        if a0 < 0:
            out = out[:, ::-1]
        if d < 0:
            out = out[::-1, :]
    return np.ascontiguousarray(out)


def orient_point(x: float, y: float, m: tuple, shape: tuple) -> tuple[float, float]:
    """A point in image coordinates (pixel edges at 0..w) -> the oriented array's coordinates."""
    h, w = shape[:2]
    a, b, c, d = m
    ow, oh = (h, w) if a == 0 else (w, h)
    dx, dy = x - w / 2, y - h / 2
    return a * dx + b * dy + ow / 2, c * dx + d * dy + oh / 2


def valid_annotations(items) -> list[dict]:
    """The well-formed annotations of ``items`` (anything: a sidecar file may be damaged)."""
    out = []
    if not isinstance(items, list):
        return out

    def pt(v):
        return (isinstance(v, (list, tuple)) and len(v) == 2 and
                all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in v))

    for it in items[:MAX_ANNOTATIONS]:
        if not isinstance(it, dict):
            continue
        if it.get("kind") == "arrow" and pt(it.get("from")) and pt(it.get("to")):
            out.append({"kind": "arrow", "from": [float(v) for v in it["from"]], "to": [float(v) for v in it["to"]]})
        elif it.get("kind") == "text" and pt(it.get("at")) and isinstance(it.get("text"), str) and it["text"].strip():
            out.append({"kind": "text", "at": [float(v) for v in it["at"]], "text": it["text"].strip()[:MAX_TEXT]})
    return out


def paint_annotations(p: QPainter, items: list[dict], to_screen, size: float, white: QColor = ARROW_COLOUR,
                      dark: QColor = QColor(0, 0, 0, 190), bounds: QRectF | None = None) -> None:
    """Draw arrows and text; ``to_screen(QPointF) -> QPointF`` maps image to painter coordinates,
    ``size`` is the text height in painter pixels (lines and heads scale with it). Text stays upright
    whatever the orientation, and is kept inside ``bounds`` (e.g. the view) where given."""
    if not items:
        return
    p.save()
    p.setRenderHint(QPainter.Antialiasing, True)
    lw = max(1.5, size / 6.0)
    font = QFont()
    font.setPixelSize(max(6, int(round(size))))
    font.setBold(True)
    fm = QFontMetricsF(font)
    for it in items:
        if it["kind"] == "arrow":
            a, b = to_screen(QPointF(*it["from"])), to_screen(QPointF(*it["to"]))
            v = b - a
            n = math.hypot(v.x(), v.y())
            if n < 1e-6:
                continue
            u = QPointF(v.x() / n, v.y() / n)
            head = min(n * 0.6, max(3 * lw, size * 0.9))
            base = b - u * head
            perp = QPointF(-u.y(), u.x()) * head * 0.45
            tri = QPolygonF([b, base + perp, base - perp])
            path = QPainterPath()
            path.moveTo(a)
            path.lineTo(base)
            for colour, width in ((dark, lw + 2.5), (white, lw)):
                p.setPen(QPen(colour, width, Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin))
                p.setBrush(colour)
                p.drawPath(path)
                p.drawPolygon(tri)
        else:
            at = to_screen(QPointF(*it["at"]))
            text = it["text"]
            r = QRectF(at.x(), at.y() - fm.height() / 2 - 2, fm.horizontalAdvance(text) + 8, fm.height() + 4)
            if bounds is not None and r.right() > bounds.right() - 2:
                r.moveRight(max(bounds.left() + r.width(), bounds.right() - 2))
            p.setPen(Qt.NoPen)
            p.setBrush(dark)
            p.drawRoundedRect(r, 3, 3)
            p.setFont(font)
            p.setPen(white)
            p.drawText(r, Qt.AlignCenter, text)
    p.restore()


def export_text_size(shape: tuple) -> float:
    """Text height for annotations drawn at image resolution (a 256-pixel film: 12 pixels)."""
    return max(9.0, min(shape[:2]) / 21.0)


def burn_annotations(pixels: np.ndarray, items: list[dict], m: tuple = IDENTITY,
                     shape: tuple | None = None) -> np.ndarray:
    """``pixels`` (2-D uint8 or uint16, already oriented by ``m`` from an image of ``shape``) with the
    annotations drawn in: white with a dark outline, as on screen but grey. A copy."""
    items = valid_annotations(items)
    out = np.ascontiguousarray(pixels).copy()
    if not items:
        return out
    shape = shape or (out.shape if not swaps_axes(m) else out.shape[::-1])
    h, w = out.shape
    fmt = QImage.Format_Grayscale16 if out.dtype == np.uint16 else QImage.Format_Grayscale8
    img = QImage(out.data, w, h, out.strides[0], fmt)
    p = QPainter(img)
    paint_annotations(p, items, lambda q: QPointF(*orient_point(q.x(), q.y(), m, shape)), export_text_size(shape),
                      white=QColor(255, 255, 255), dark=QColor(0, 0, 0, 200), bounds=QRectF(0, 0, w, h))
    p.end()
    return out
