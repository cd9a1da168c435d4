"""The films of a batch (Batch count > 1) as a grid, captioned by prompt and seed.

A non-modal dialog over the main window: it opens when a batch ends (after a cancel or an error
too, with the films finished so far). A click on a thumbnail, or Enter on the current one, shows
that film in the active viewport; arrow keys move, Esc closes. Generate > Show the last batch
(Ctrl+Shift+B) opens it again.
"""
from __future__ import annotations


from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from .film_grid import FilmGrid, shorten
from .history_strip import entry_tooltip

THUMB = 160
COLUMNS = 4
PROMPT_CHARS = 40


def film_caption(entry) -> str:
    """'prompt (shortened) · seed N': what a batch film is called under its thumbnail."""
    return f"{shorten(entry.prompt, PROMPT_CHARS) or '(no prompt)'} \u00b7 seed {entry.seed}"


class BatchGridDialog(QDialog):
    showRequested = Signal(object)  # HistoryEntry: show it in the active viewport

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Batch")
        self.entries: list = []
        self.header = QLabel("")
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.PlainText)
        self.grid = FilmGrid(THUMB, open_on_click=True)
        self.grid.setToolTip("The batch's films: click one, or choose it with the arrow keys and press Enter, "
                             "to show it in the active viewport")
        self.grid.filmActivated.connect(self.showRequested)
        self.show_button = QPushButton("Show")
        self.show_button.setToolTip("Show the selected film in the active viewport (Enter)")
        self.show_button.clicked.connect(self.grid.open_current)
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip("Close the grid; Generate > Show the last batch (Ctrl+Shift+B) opens it "
                                     "again (Esc)")
        self.close_button.clicked.connect(self.close)
        for b in (self.show_button, self.close_button):
            b.setAutoDefault(False)  # Enter belongs to the grid: it shows a film, it does not close
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.show_button)
        buttons.addWidget(self.close_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.header)
        lay.addWidget(self.grid, 1)
        lay.addLayout(buttons)
        self.grid.currentItemChanged.connect(lambda *_: self.show_button.setEnabled(self.grid.currentItem() is not None))

    def set_batch(self, entries: list, batch: int, status: str = "done", shown=None) -> None:
        """The films of a batch of ``batch`` (``status``: how the run ended); ``shown``: the entry
        on screen, made the current thumbnail (default: the last)."""
        self.entries = list(entries)
        n = len(self.entries)
        prompt = self.entries[0].prompt if self.entries else ""
        seeds = [e.seed for e in self.entries]
        span = f"seed {seeds[0]}" if n == 1 else f"seeds {min(seeds)}-{max(seeds)}" if seeds else ""
        if status == "done":
            head = f"{n} films of the batch"
        else:
            head = (f"{'Cancelled' if status == 'cancelled' else 'Stopped by an error'}: the {n} of {batch} "
                    f"film{'s' if batch != 1 else ''} finished before it")
        self.header.setText(f"{head}, {span}: {shorten(prompt, 300)}" if n else head)
        self.header.setToolTip(prompt)
        self.setWindowTitle(f"Batch: {n} film{'s' if n != 1 else ''}" + ("" if status == "done" else
                                                                          f" of {batch}"))
        self.grid.clear()
        current = None
        for e in self.entries:
            try:
                image = e.image()
            except Exception:  # noqa: BLE001 - its file gone: the caption says so
                image = None
            item = self.grid.add_film(image, film_caption(e) + ("" if image is not None else " (file missing)"),
                                      entry_tooltip(e) + "<br><i>Click or Enter: show it in the active "
                                      "viewport</i>", e)
            if shown is not None and e.id == shown.id:
                current = item
        if self.grid.count():
            self.grid.setCurrentItem(current or self.grid.item(self.grid.count() - 1))
        self.show_button.setEnabled(self.grid.currentItem() is not None)
        cols = max(1, min(COLUMNS, n))
        cell = self.grid.gridSize()
        rows = min(2, max(1, -(-n // cols)))
        self.resize(cols * cell.width() + 48, rows * cell.height() + 100)

    def present(self) -> None:
        """Show (or raise) the dialog with the keyboard in the grid."""
        self.show()
        self.raise_()
        self.activateWindow()
        self.grid.setFocus()
