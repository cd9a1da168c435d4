"""Model info panel: components, sizes, device, load time, model card, "load model folder..."."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QTextBlockFormat, QTextCursor, QTextLength, QTextOption
from PySide6.QtWidgets import (QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QTextBrowser, QWidget)

from ..core.data.findings import RARE_FILMS, _mostly_read_as, _name, drawn_poorly
from ..core.generation.sampling import FULL_INTERVAL, interval_text
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

_LOOK = {"normal": "normal", "covid": "COVID-19-like", "other": "like other findings"}
WARNINGS_TEXT = (
    "<b>Reading the warnings.</b> A yellow note under the prompt means the film may not show what was "
    "asked for. <i>Few training films show ...</i>: the model saw too few examples to learn it. "
    "<i>Asked for ..., this model mostly draws ...</i>: a classifier read most of its films of that finding "
    "as something else. Then show a real film beside it (<i>Real films with this finding</i> in the "
    "Generator). The attention overlay shows where the model looked for a word, not where a finding is. "
    "Every generated film is synthetic: for teaching, never for diagnosis.")


def instructor_summary(info: dict) -> str:
    """A plain summary of a loaded model for instructors (rich text): what it draws well, what it
    cannot draw convincingly (from the model folder's findings check and training-film counts), how
    to read the Generator's warnings."""
    if info.get("random_weights"):
        return "<b>This is a test model with random weights: it draws noise, not radiographs.</b>"
    counts = (info.get("training") or {}).get("label_counts") or {}
    checked = [f for f in (info.get("findings_check") or {}).get("findings", []) if isinstance(f, dict)]
    rare = [lab for lab, n in sorted(counts.items(), key=lambda x: -int(x[1]))
            if lab != "No Finding" and int(n) < RARE_FILMS]
    well, looks = [], {}  # looks: what the films of each poorly drawn finding look like -> findings
    for f in checked:
        label = str(f.get("label", "?"))
        if drawn_poorly(f):
            looks.setdefault(_LOOK.get(_mostly_read_as(f), "unclear"), []).append(_name(label))
        elif label not in rare:
            well.append("normal films" if label == "No Finding" else _name(label))
    poorly = [", ".join(names) + f" (the films look {look})" for look, names in looks.items()]
    named = {n for names in looks.values() for n in names}
    few = [_name(lab) for lab in rare if _name(lab) not in named]
    ns = info.get("native_size")
    size = f"{ns} x {ns} " if ns else ""
    parts = [f"<b>For instructors.</b> This model draws {size}frontal chest films from a short report."]
    if well:
        parts.append("<b>Draws well:</b> " + ", ".join(well) + ".")
    if poorly:
        parts.append("<b>Draws poorly:</b> " + "; ".join(poorly) + ".")
    if few:
        parts.append(f"<b>Cannot draw</b> (under {RARE_FILMS} training films each): " + ", ".join(few) + ".")
    if poorly or few:
        parts[-1] += " Teach these with real films."
    else:
        parts.append("This model folder records no findings check and no training-film counts: try each "
                     "finding you teach before class, and compare with real films.")
    parts.append(WARNINGS_TEXT)
    return "<br><br>".join(parts)


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
        self.summary = QLabel("")
        self.summary.setObjectName("modelSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.RichText)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.summary.setToolTip("What this model draws well and what it cannot, from its folder's findings check "
                                "and training-film counts; the details follow below")
        self.summary.hide()
        lay.addWidget(self.summary)
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

        details = QLabel("<b>Details</b>")
        details.setToolTip("The model's components, the numbers and its model card")
        lay.addWidget(details)
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
            ("fast", "Fast mode", "Whether this model folder has a distilled student for Fast mode and drafts "
                                  "while typing (a film in a few steps, one network call each), its steps "
                                  "and how many training steps it was distilled for"),
            ("device", "Device", "Where the model runs"),
            ("dtype", "Precision", "Numeric precision of inference"),
            ("load", "Load time", "Seconds to load the model, then (+) seconds preparing faster "
                                  "graphs of the UNet for this CPU (TorchScript warm-up)"),
        ):
            lab = ElidedLabel(tip)
            self.fields[key] = lab
            self.form.addRow(label, lab)
        lay.addWidget(g)
        self.fast_note = QLabel("")
        self.fast_note.setObjectName("caveatNote")
        self.fast_note.setWordWrap(True)
        self.fast_note.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.fast_note.setToolTip("Why the Generator's Fast switch and drafts while typing are off for this model")
        self.fast_note.hide()
        lay.addWidget(self.fast_note)
        self.random_label = QLabel("")
        self.random_label.setObjectName("errorBanner")
        self.random_label.setWordWrap(True)
        self.random_label.hide()
        lay.addWidget(self.random_label)
        lay.addWidget(QLabel("Model card"))
        self.card = QTextBrowser()
        self.card.setOpenExternalLinks(False)
        self.card.setToolTip("The model card shipped with the model folder")
        # long lines (code, table cells, paths) wrap anywhere rather than run off the panel
        self.card.setWordWrapMode(QTextOption.WrapAtWordBoundaryOrAnywhere)
        self.card.setLineWrapMode(QTextBrowser.WidgetWidth)
        self.card.setMarkdown("*The model card appears when the model is loaded.*")
        self.card.setMinimumHeight(420)  # the page scrolls: the card gets room to be read
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
        text, note = student_text(info)
        f["fast"].setText(text)
        self.fast_note.setText(note)
        self.fast_note.setVisible(bool(note))
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
        self.summary.setText(instructor_summary(info))
        self.summary.show()
        self.card.setMarkdown(info.get("model_card") or NO_CARD)
        _wrap_everything(self.card.document())
        self.load_button.setEnabled(True)
        self.load_now_button.setEnabled(False)


def student_text(info: dict) -> tuple[str, str]:
    """The Fast mode row of a loaded model, and the note under it when it has no usable student."""
    st = info.get("student")
    if isinstance(st, dict):
        done = st.get("distill_steps")
        trained = f", distilled for {int(done):,} training steps" if isinstance(done, int) and done > 0 else ""
        g = f" at adherence {st['guidance']:g}" if isinstance(st.get("guidance"), (int, float)) else ""
        return f"yes: distilled student, {st.get('steps')} steps{g}{trained}", ""
    note = str(info.get("student_note") or "this model folder has no distilled student")
    return "no (Full generation only)", "Fast mode: " + note[0].upper() + note[1:] + "."


def _wrap_everything(doc) -> None:
    """Markdown code blocks come in as non-breaking lines, and tables as wide as their longest
    cell: let both wrap at the width of the panel."""
    cur = QTextCursor(doc)
    block = doc.begin()
    while block.isValid():
        if block.blockFormat().nonBreakableLines():
            cur.setPosition(block.position())
            fmt = QTextBlockFormat(block.blockFormat())
            fmt.setNonBreakableLines(False)
            cur.setBlockFormat(fmt)
        block = block.next()
    for frame in doc.rootFrame().childFrames():
        fmt = frame.frameFormat()
        if fmt.isTableFormat():
            tf = fmt.toTableFormat()
            tf.setWidth(QTextLength(QTextLength.PercentageLength, 96))
            frame.setFrameFormat(tf)
