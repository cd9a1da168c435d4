"""A small line chart of per-step image metrics, drawn with QPainter (no extra dependency)."""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

SERIES = (
    ("contrast", "Contrast", QColor(90, 170, 255)),
    ("sharpness", "Sharpness", QColor(255, 150, 70)),
    ("entropy", "Entropy", QColor(120, 210, 120)),
)


def _fmt(v: float) -> str:
    a = abs(v)
    if a >= 1000:
        return f"{v:.3g}" if a < 1e6 else f"{v:.2e}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


class MetricsChart(QWidget):
    """Three stacked strips (contrast, sharpness, entropy) over the denoising steps."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.setMinimumHeight(150)
        self.points: list[dict] = []
        self.total_steps = 0
        self.setToolTip("Image quality over the denoising run, measured on each live preview: "
                        "RMS contrast, sharpness (variance of the Laplacian) and 8-bit entropy.")

    def sizeHint(self) -> QSize:
        return QSize(300, 190)

    def clear(self, total_steps: int = 0) -> None:
        self.points = []
        self.total_steps = int(total_steps)
        self.update()

    def add(self, metrics: dict) -> None:
        self.points.append(dict(metrics))
        self.update()

    def set_points(self, points: list[dict], total_steps: int | None = None) -> None:
        self.points = [dict(p) for p in points]
        self.total_steps = int(total_steps or (max((p.get("step", 0) for p in points), default=0)))
        self.update()

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing, True)
        pal = self.palette()
        p.fillRect(self.rect(), pal.base())
        fm = QFontMetrics(self.font())
        text = pal.text().color()
        dim = QColor(text)
        dim.setAlpha(110)
        W, H = self.width(), self.height()
        left, right, top, bottom = 8, 8, 4, fm.height() + 6
        n = len(SERIES)
        strip_h = (H - top - bottom) / n
        steps = [int(pt.get("step", i + 1)) for i, pt in enumerate(self.points)]
        xmax = max([self.total_steps] + steps + [1])
        if not self.points:
            p.setPen(dim)
            p.drawText(self.rect(), Qt.AlignCenter, "Per-step metrics appear here\nduring generation")
            p.end()
            return
        for k, (key, label, color) in enumerate(SERIES):
            r = QRectF(left, top + k * strip_h, W - left - right, strip_h - 4)
            vals = [float(pt.get(key, 0.0)) for pt in self.points]
            lo, hi = min(vals), max(vals)
            if hi - lo < 1e-12:
                lo, hi = lo - 0.5 * abs(lo or 1), hi + 0.5 * abs(hi or 1)
            p.setBrush(Qt.NoBrush)
            p.setPen(QPen(dim, 1))
            p.drawRect(r)
            plot = r.adjusted(2, fm.height() + 2, -2, -2)

            def xy(step, v):
                x = plot.left() + (step - 1) / max(xmax - 1, 1) * plot.width() if xmax > 1 else plot.center().x()
                y = plot.bottom() - (v - lo) / (hi - lo) * plot.height()
                return QPointF(x, y)

            path = QPainterPath()
            for i, (s, v) in enumerate(zip(steps, vals)):
                if i == 0:
                    path.moveTo(xy(s, v))
                else:
                    path.lineTo(xy(s, v))
            p.setPen(QPen(color, 1.8))
            p.drawPath(path)
            p.setBrush(color)
            last = xy(steps[-1], vals[-1])
            p.drawEllipse(last, 2.5, 2.5)
            p.setBrush(Qt.NoBrush)
            head = f"{label} {_fmt(vals[-1])}"
            p.setPen(color)
            p.drawText(QRectF(r.left() + 4, r.top() + 1, r.width() - 8, fm.height()), Qt.AlignLeft, head)
            rng = f"{_fmt(lo)} .. {_fmt(hi)}"
            if fm.horizontalAdvance(head) + fm.horizontalAdvance(rng) + 24 < r.width():
                p.setPen(dim)
                p.drawText(QRectF(r.left() + 4, r.top() + 1, r.width() - 8, fm.height()), Qt.AlignRight, rng)
        p.setPen(dim)
        p.drawText(QRectF(left, H - bottom + 2, W - left - right, fm.height()), Qt.AlignLeft, "step 1")
        p.drawText(QRectF(left, H - bottom + 2, W - left - right, fm.height()), Qt.AlignRight, f"step {xmax}")
        p.drawText(QRectF(left, H - bottom + 2, W - left - right, fm.height()), Qt.AlignHCenter,
                   f"{len(self.points)} preview(s)")
        p.end()
