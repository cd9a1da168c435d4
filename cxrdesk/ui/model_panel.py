"""Model info panel: components, sizes, device, load time, model card, "load model folder..."."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QTextBrowser, QWidget)

from ..core.pipeline import FULL_INTERVAL, interval_text
from .layout import ElidedLabel, scrolling_body

NO_CARD = ("*This model folder has no `model_card.md`.*\n\n"
           "Generated images are synthetic and for education only: not for diagnosis.")


def _count(n) -> str:
    try:
        n = int(n)
    except (TypeError, ValueError):
        return "-"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    if n >= 1000:
        return f"{n / 1e3:.0f} k"
    return str(n)


# What the UNet runs on after the worker's warm-up (Pipeline.info["unet_engine"]).
ENGINE_NAMES = {"onnxruntime": "ONNX Runtime", "torchscript": "TorchScript",
                "torchscript-bf16": "TorchScript, bfloat16"}

class ModelPanel(QWidget):
    loadFolderRequested = Signal(str)
    loadNowRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        # Everything scrolls as one page when the dock is too short for it, rather than squeezing
        # the rows of the form over each other.
        lay = scrolling_body(self)
        self.state_label = QLabel("Model not loaded yet: it loads in the background on first use.")
        self.state_label.setObjectName("modelState")
        self.state_label.setWordWrap(True)
        self.state_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.state_label)
        row = QHBoxLayout()
        self.load_button = QPushButton("Load model folder...")
        self.load_button.setToolTip("Use your own model: a diffusers-layout folder with safetensors weights")
        self.load_button.clicked.connect(self.choose_folder)
        self.load_now_button = QPushButton("Load now")
        self.load_now_button.setToolTip("Load the model now instead of on the first generation")
        self.load_now_button.clicked.connect(self.loadNowRequested)
        row.addWidget(self.load_button)
        row.addWidget(self.load_now_button)
        row.addStretch(1)
        lay.addLayout(row)

        g = QGroupBox("Components")
        self.form = QFormLayout(g)
        # The dock is narrow: a value too long to sit beside its label goes on its own line below
        # it, and one too long even for that is elided (full text in the tooltip).
        self.form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.fields: dict[str, ElidedLabel] = {}
        for key, label, tip in (
            ("name", "Model", "Model name (from cxrdesk.json or the folder name)"),
            ("folder", "Folder", "Where the model was loaded from"),
            ("hash", "Weights hash", "SHA-256 (first 12 hex digits) of the weight files; recorded in every image"),
            ("unet", "UNet", "Denoising network: parameter count"),
            ("vae", "VAE", "Image autoencoder: parameter count"),
            ("text_encoder", "Text encoder", "Prompt encoder and its parameter count"),
            ("latent", "Latent shape", "Channels x height x width of the latent the UNet denoises"),
            ("native", "Native size", "Image size the model draws; larger outputs are upsampled"),
            ("prediction", "Prediction", "What the UNet predicts (noise 'epsilon' or 'v')"),
            ("guidance", "Adherence", "The prompt adherence (guidance scale) this model was tuned for; "
                                      "the Generator uses it unless you choose another. Where it applies "
                                      "only to part of the noise schedule, the other steps run unguided "
                                      "(faster, more varied)"),
            ("device", "Device", "Where the model runs"),
            ("dtype", "Precision", "Numeric precision of inference"),
            ("load", "Load time", "Seconds to load the model, then (+) seconds preparing faster "
                                  "graphs of the UNet for this CPU (TorchScript warm-up)"),
        ):
            lab = ElidedLabel(tip)
            self.fields[key] = lab
            self.form.addRow(label, lab)
        lay.addWidget(g)
        self.random_label = QLabel("")
        self.random_label.setObjectName("errorBanner")
        self.random_label.setWordWrap(True)
        self.random_label.hide()
        lay.addWidget(self.random_label)
        lay.addWidget(QLabel("Model card"))
        self.card = QTextBrowser()
        self.card.setOpenExternalLinks(False)
        self.card.setToolTip("The model card shipped with the model folder")
        self.card.setMarkdown("*The model card appears when the model is loaded.*")
        self.card.setMinimumHeight(160)
        lay.addWidget(self.card, 1)
        self.info: dict = {}

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Load model folder", self.info.get("folder", ""))
        if folder:
            self.loadFolderRequested.emit(folder)

    def set_loading(self, what: str) -> None:
        self.state_label.setText(f"Loading {what} ...")
        self.load_button.setEnabled(False)
        self.load_now_button.setEnabled(False)

    def set_failed(self, msg: str) -> None:
        self.state_label.setText(f"<b>The model could not be loaded.</b><br>{msg}<br>"
                                 "Use <b>Load model folder...</b> to choose a model folder.")
        self.load_button.setEnabled(True)
        self.load_now_button.setEnabled(True)

    def set_info(self, info: dict) -> None:
        self.info = dict(info)
        p = info.get("params", {}) or {}
        total = sum(int(v) for v in p.values() if isinstance(v, (int, float)))
        self.state_label.setText(f"Loaded <b>{info.get('name', '?')}</b> - {_count(total)} parameters in total.")
        f = self.fields
        f["name"].setText(str(info.get("name", "-")))
        f["folder"].setText(str(info.get("folder", "-")))
        f["hash"].setText(str(info.get("hash", "-")))
        f["unet"].setText(_count(p.get("unet")))
        f["vae"].setText(_count(p.get("vae")))
        f["text_encoder"].setText(f"{info.get('text_encoder', '-')}, {_count(p.get('text_encoder'))}")
        ls = info.get("latent_shape") or []
        f["latent"].setText(" x ".join(str(x) for x in ls) if ls else "-")
        ns = info.get("native_size")
        f["native"].setText(f"{ns} x {ns}" if ns else "-")
        f["prediction"].setText(str(info.get("prediction_type", "-")))
        g = info.get("guidance")
        where = interval_text(info.get("guidance_interval") or FULL_INTERVAL)
        f["guidance"].setText((f"{g:g}" + (f" ({where})" if where else "")) if isinstance(g, (int, float)) else "-")
        dev = str(info.get("device", "-")).upper()
        if info.get("device_name"):
            dev += f" ({info['device_name']})"
        elif info.get("torch_threads"):
            dev += f" ({info['torch_threads']} threads)"
        f["device"].setText(dev)
        f["dtype"].setText(str(info.get("dtype", "-")))
        ls, wu = info.get("load_seconds"), info.get("warm_up_seconds")
        text = f"{ls:.2f} s" if isinstance(ls, (int, float)) else "-"
        if isinstance(wu, (int, float)) and wu > 0:
            text += f" + {wu:.2f} s warm-up"
            engine = ENGINE_NAMES.get(info.get("unet_engine"))
            if engine:
                text += f" ({engine})"
        f["load"].setText(text)
        if info.get("random_weights"):
            self.random_label.setText("This model has RANDOM weights (a test model): it draws noise, "
                                      "not radiographs.")
            self.random_label.show()
        else:
            self.random_label.hide()
        self.card.setMarkdown(info.get("model_card") or NO_CARD)
        self.load_button.setEnabled(True)
        self.load_now_button.setEnabled(False)
