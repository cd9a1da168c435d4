"""Enhancement panel: four presets with editable parameters, live preview, compare grid."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QFrame, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QSlider, QVBoxLayout, QWidget)

from .imageview import grey_thumbnail
from .layout import fit_scroll_width, scrolling_body
from ..core.imaging import enhancement, metrics
from ..core.imaging.enhancement import ENHANCEMENT_PRESETS, EnhanceParams
from .tasks import run_task

# field -> (label, min, max, step, tooltip)
SLIDERS = {
    "window_low": ("Stretch low %", 0.0, 10.0, 0.1, "Percentile stretched to black before processing"),
    "window_high": ("Stretch high %", 90.0, 100.0, 0.1, "Percentile stretched to white before processing"),
    "clahe_clip": ("CLAHE clip", 0.0, 5.0, 0.1, "Local contrast (CLAHE clip limit); 0 = off"),
    "clahe_tiles": ("CLAHE tiles", 1, 16, 1, "CLAHE tiles per side: more tiles = more local"),
    "unsharp_amount": ("Sharpen amount", 0.0, 3.0, 0.05, "Unsharp mask strength; 0 = off"),
    "unsharp_radius": ("Sharpen radius", 0.3, 5.0, 0.1, "Unsharp mask Gaussian sigma in pixels"),
    "gamma": ("Gamma", 0.5, 2.0, 0.01, "Power curve: above 1 darkens mid-tones (denser film look)"),
    "film_curve": ("Film curve", 0.0, 12.0, 0.5, "Slope of an S-shaped film characteristic curve; 0 = off"),
    "vignette": ("Vignette", 0.0, 0.6, 0.01, "Darkening towards the corners (light-box look); 0 = off"),
}


def _fmt_pct(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "+inf %"
    return f"{v:+.1f} %"


def metrics_text(m: dict) -> str:
    psnr = m.get("psnr", float("nan"))
    psnr_s = "inf" if math.isinf(psnr) else f"{psnr:.1f} dB"
    return (f"contrast {_fmt_pct(m.get('contrast_pct'))}, entropy {_fmt_pct(m.get('entropy_pct'))}\n"
            f"sharpness {_fmt_pct(m.get('sharpness_pct'))}\n"
            f"SSIM {m.get('ssim', float('nan')):.3f}, PSNR {psnr_s}")


def _enhance_job(image: np.ndarray, params: EnhanceParams) -> tuple[np.ndarray, dict]:
    out = enhancement.enhance(image, params)
    return out, metrics.compare(image, out)


def _grid_job(image: np.ndarray) -> dict:
    res = {}
    for name, p in ENHANCEMENT_PRESETS.items():
        out = enhancement.enhance(image, p)
        res[name] = (out, metrics.compare(image, out))
    return res


class _ParamSlider(QWidget):
    changed = Signal()

    def __init__(self, key: str, parent=None):
        super().__init__(parent)
        label, lo, hi, step, tip = SLIDERS[key]
        self.key, self.lo, self.hi, self.step = key, lo, hi, step
        self.is_int = isinstance(step, int)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, int(round((hi - lo) / step)))
        self.slider.setToolTip(tip)
        self.value_label = QLabel()
        self.value_label.setMinimumWidth(40)
        self.value_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.value_label)
        self.slider.valueChanged.connect(self._moved)
        self.setToolTip(tip)

    def value(self):
        v = self.lo + self.slider.value() * self.step
        return int(round(v)) if self.is_int else round(float(v), 4)

    def set_value(self, v) -> None:
        with QSignalBlocker(self.slider):
            self.slider.setValue(int(round((float(v) - self.lo) / self.step)))
        self._show()

    def _show(self):
        v = self.value()
        self.value_label.setText(str(v) if self.is_int else f"{v:g}")

    def _moved(self, _):
        self._show()
        self.changed.emit()


class EnhancePanel(QWidget):
    previewReady = Signal(object, object, str)   # original, enhanced, description
    previewStopped = Signal()
    applyRequested = Signal(object, dict)         # enhanced image, enhancement params
    revertRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._source: np.ndarray | None = None
        self._title = ""
        self._seq = 0
        self._last: tuple[np.ndarray, dict] | None = None
        self._grid: PresetGrid | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(120)
        self._timer.timeout.connect(self._compute)

        lay = scrolling_body(self)

        self.source_label = QLabel("No image: generate one or open a file")
        self.source_label.setWordWrap(True)
        lay.addWidget(self.source_label)

        g = QGroupBox("Preset")
        gl = QVBoxLayout(g)
        self.preset_box = QComboBox()
        for name in ENHANCEMENT_PRESETS:
            self.preset_box.addItem(name)
        self.preset_box.addItem("Custom")
        self.preset_box.setToolTip("Enhancement preset; moving a slider makes it Custom")
        self.preset_box.currentTextChanged.connect(self._preset_chosen)
        gl.addWidget(self.preset_box)
        self.desc_label = QLabel()
        self.desc_label.setWordWrap(True)
        self.desc_label.setObjectName("hint")
        gl.addWidget(self.desc_label)
        lay.addWidget(g)

        g = QGroupBox("Parameters")
        form = QFormLayout(g)
        self.stretch_check = QCheckBox("Percentile stretch")
        self.stretch_check.setToolTip("Stretch the low/high percentiles to black/white first")
        self.stretch_check.toggled.connect(self._edited)
        form.addRow(self.stretch_check)
        self.median_box = QComboBox()
        self.median_box.addItem("off", 0)
        self.median_box.addItem("3 x 3", 3)
        self.median_box.addItem("5 x 5", 5)
        self.median_box.setToolTip("Median filter before contrast steps (removes speckle, softens fine lines)")
        self.median_box.currentIndexChanged.connect(self._edited)
        form.addRow("Denoise (median)", self.median_box)
        self.hist_check = QCheckBox("Histogram equalisation")
        self.hist_check.setToolTip("Global histogram equalisation (strong)")
        self.hist_check.toggled.connect(self._edited)
        form.addRow(self.hist_check)
        self.sliders: dict[str, _ParamSlider] = {}
        for key in SLIDERS:
            s = _ParamSlider(key)
            s.changed.connect(self._edited)
            self.sliders[key] = s
            form.addRow(SLIDERS[key][0], s)
        lay.addWidget(g)

        row = QHBoxLayout()
        self.preview_check = QCheckBox("Live preview (side by side)")
        self.preview_check.setToolTip("Show original and enhanced side by side, updated as you move sliders")
        self.preview_check.toggled.connect(self._preview_toggled)
        row.addWidget(self.preview_check)
        lay.addLayout(row)
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        self.metrics_label.setToolTip("Change against the original: contrast, sharpness and entropy in percent; "
                                      "SSIM (1 = identical) and PSNR")
        lay.addWidget(self.metrics_label)
        row = QHBoxLayout()
        self.apply_button = QPushButton("Apply to image")
        self.apply_button.setToolTip("Replace the displayed image by the enhanced one (Revert restores it)")
        self.apply_button.clicked.connect(self._apply)
        self.revert_button = QPushButton("Revert")
        self.revert_button.setToolTip("Show the original image again")
        self.revert_button.clicked.connect(self.revertRequested)
        self.revert_button.setEnabled(False)
        row.addWidget(self.apply_button)
        row.addWidget(self.revert_button)
        lay.addLayout(row)
        self.grid_button = QPushButton("Compare all presets...")
        self.grid_button.setToolTip("A grid of all four presets on the current image, with metric changes")
        self.grid_button.clicked.connect(self.show_grid)
        lay.addWidget(self.grid_button)
        lay.addStretch(1)
        fit_scroll_width(lay)
        self._preset_chosen(self.preset_box.currentText())
        self._update_enabled()

    # ------------------------------------------------------------------ params
    def params(self) -> EnhanceParams:
        s = self.sliders
        stretch = self.stretch_check.isChecked()
        lo, hi = s["window_low"].value(), s["window_high"].value()
        return EnhanceParams(
            window_low=lo if stretch else None, window_high=max(hi, lo + 0.1) if stretch else None,
            median_ksize=int(self.median_box.currentData()), hist_eq=self.hist_check.isChecked(),
            clahe_clip=s["clahe_clip"].value(), clahe_tiles=int(s["clahe_tiles"].value()),
            unsharp_amount=s["unsharp_amount"].value(), unsharp_radius=max(0.3, s["unsharp_radius"].value()),
            gamma=s["gamma"].value(), film_curve=s["film_curve"].value(), vignette=s["vignette"].value())

    def set_params(self, p: EnhanceParams) -> None:
        widgets = [self.stretch_check, self.median_box, self.hist_check]
        blockers = [QSignalBlocker(w) for w in widgets]
        self.stretch_check.setChecked(p.window_low is not None)
        self.median_box.setCurrentIndex(max(0, self.median_box.findData(p.median_ksize if p.median_ksize > 1 else 0)))
        self.hist_check.setChecked(p.hist_eq)
        for key, sl in self.sliders.items():
            v = getattr(p, key)
            if v is None:
                v = 0.5 if key == "window_low" else 99.5
            sl.set_value(v)
        for b in blockers:
            b.unblock()
        self.desc_label.setText(p.describe())

    def _preset_chosen(self, name: str) -> None:
        if name in ENHANCEMENT_PRESETS:
            self.set_params(ENHANCEMENT_PRESETS[name])
            self._schedule()

    def select_preset(self, name: str) -> None:
        self.preset_box.setCurrentText(name)

    def _edited(self, *_):
        p = self.params()
        name = next((n for n, q in ENHANCEMENT_PRESETS.items() if q == p), "Custom")
        with QSignalBlocker(self.preset_box):
            self.preset_box.setCurrentText(name)
        self.desc_label.setText(p.describe())
        self._schedule()

    # ------------------------------------------------------------------ source / preview
    def set_source(self, image: np.ndarray | None, title: str = "", enhanced: bool = False) -> None:
        """The image to enhance (the stored original). ``enhanced``: the view shows an applied result."""
        self._source = image
        self._title = title
        self._last = None
        self.revert_button.setEnabled(enhanced)
        if image is None:
            self.source_label.setText("No image: generate one or open a file")
            self.metrics_label.setText("")
        else:
            h, w = image.shape
            self.source_label.setText(f"Image: {title or 'current'} ({w} x {h})")
        self._update_enabled()
        self._schedule()

    def _update_enabled(self) -> None:
        on = self._source is not None
        self.apply_button.setEnabled(on)
        self.grid_button.setEnabled(on)

    def _preview_toggled(self, on: bool) -> None:
        if on:
            self._schedule(now=True)
        else:
            self.previewStopped.emit()

    def _schedule(self, now: bool = False) -> None:
        if self._source is None:
            return
        if now:
            self._timer.start(0)
        else:
            self._timer.start()

    def _compute(self) -> None:
        if self._source is None:
            return
        self._seq += 1
        seq = self._seq
        src = self._source
        params = self.params()
        self.metrics_label.setText("computing...")
        run_task(_enhance_job, src, params, owner=self,
                 done=lambda r, seq=seq, src=src, params=params: self._computed(seq, src, params, r),
                 error=lambda msg: self.metrics_label.setText(f"Enhancement failed: {msg}"))

    def _computed(self, seq: int, src, params: EnhanceParams, result) -> None:
        if seq != self._seq or src is not self._source:
            return  # a newer request is on its way
        out, m = result
        self._last = (out, dataclasses.asdict(params))
        self.metrics_label.setText(metrics_text(m))
        if self.preview_check.isChecked():
            self.previewReady.emit(src, out, params.describe())

    def _apply(self) -> None:
        if self._source is None:
            return
        params = self.params()
        if self._last is not None and self._last[1] == dataclasses.asdict(params):
            out = self._last[0]
        else:
            out = enhancement.enhance(self._source, params)
        d = dataclasses.asdict(params)
        d["preset"] = self.preset_box.currentText()
        self.applyRequested.emit(out, d)
        self.revert_button.setEnabled(True)

    # ------------------------------------------------------------------ compare grid
    def show_grid(self) -> None:
        if self._source is None:
            return
        if self._grid is None:
            self._grid = PresetGrid(self)
            self._grid.presetChosen.connect(self.select_preset)
        self._grid.set_image(self._source, self._title)
        self._grid.show()
        self._grid.raise_()

    def save_settings(self, s) -> None:
        s.setValue("enhance/preset", self.preset_box.currentText())
        s.setValue("enhance/params", dataclasses.asdict(self.params()))

    def restore_settings(self, s) -> None:
        name = str(s.value("enhance/preset", "Balanced"))
        d = s.value("enhance/params")
        if name == "Custom" and isinstance(d, dict):
            try:
                p = EnhanceParams(**{k: _coerce(k, v) for k, v in d.items()})
                self.set_params(p)
                with QSignalBlocker(self.preset_box):
                    self.preset_box.setCurrentText("Custom")
                return
            except (TypeError, ValueError):
                pass
        if name in ENHANCEMENT_PRESETS:
            self.preset_box.setCurrentText(name)


def _coerce(key, v):
    if v in (None, "None", "@Invalid()", ""):
        return None
    if key in ("median_ksize", "clahe_tiles"):
        return int(v)
    if key == "hist_eq":
        return v if isinstance(v, bool) else str(v).lower() == "true"
    return float(v)


class _Tile(QFrame):
    clicked = Signal(str)

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.name = name
        self.setFrameShape(QFrame.StyledPanel)
        self.setCursor(Qt.PointingHandCursor)
        lay = QVBoxLayout(self)
        self.title = QLabel(f"<b>{name}</b>")
        self.title.setAlignment(Qt.AlignCenter)
        self.image = QLabel("computing...")
        self.image.setAlignment(Qt.AlignCenter)
        self.image.setFixedSize(224, 224)
        self.text = QLabel("")
        self.text.setAlignment(Qt.AlignCenter)
        self.text.setMinimumHeight(self.text.fontMetrics().lineSpacing() * 3 + 6)
        lay.addWidget(self.title)
        lay.addWidget(self.image, 1)
        lay.addWidget(self.text)
        if name != "Original":
            self.setToolTip(f"Click to select the {name} preset in the Enhancement panel")

    def mousePressEvent(self, ev):
        if self.name != "Original":
            self.clicked.emit(self.name)
        super().mousePressEvent(ev)


class PresetGrid(QDialog):
    """All presets on the current image, with metric changes against the original."""

    presetChosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Enhancement presets compared")
        self.setModal(False)
        self._seq = 0
        lay = QVBoxLayout(self)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        lay.addWidget(self.info)
        grid = QGridLayout()
        self.tiles: dict[str, _Tile] = {}
        names = ["Original", *ENHANCEMENT_PRESETS]
        for i, name in enumerate(names):
            t = _Tile(name)
            t.clicked.connect(self._chosen)
            self.tiles[name] = t
            grid.addWidget(t, i // 3, i % 3)
        lay.addLayout(grid)
        note = QLabel("Percent changes are against the original image; SSIM 1.000 and PSNR inf mean identical. "
                      "Higher numbers are not automatically better for reading.")
        note.setObjectName("hint")
        note.setWordWrap(True)
        lay.addWidget(note)
        bb = QDialogButtonBox(QDialogButtonBox.Close)
        bb.rejected.connect(self.close)
        lay.addWidget(bb)
        lay.setSizeConstraint(QVBoxLayout.SetMinimumSize)

    def _chosen(self, name: str) -> None:
        self.presetChosen.emit(name)

    def set_image(self, img: np.ndarray, title: str = "") -> None:
        self._seq += 1
        seq = self._seq
        self.info.setText(f"Image: {title or 'current'}. Click a preset to select it.")
        self.tiles["Original"].image.setPixmap(grey_thumbnail(img, 220))
        self.tiles["Original"].text.setText("reference")
        for name in ENHANCEMENT_PRESETS:
            self.tiles[name].image.setText("computing...")
            self.tiles[name].text.setText("")
        run_task(_grid_job, img, owner=self, done=lambda r, seq=seq: self._done(seq, r),
                 error=lambda msg: self.info.setText(f"Comparison failed: {msg}"))

    def _done(self, seq: int, res: dict) -> None:
        if seq != self._seq:
            return
        for name, (out, m) in res.items():
            self.tiles[name].image.setPixmap(grey_thumbnail(out, 220))
            self.tiles[name].text.setText(metrics_text(m))
        self.results = res
