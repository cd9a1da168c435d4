"""Dataset browser: layouts, lazy thumbnails, corrupt files listed as skipped, filters, actions."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from cxrdesk.ui.dataset_panel import RecordRole  # noqa: E402
from cxrdesk.ui.mainwindow import Document, MainWindow  # noqa: E402


@pytest.fixture
def window(qtbot):
    w = MainWindow(model=None, preload=False)
    qtbot.addWidget(w)
    w.show()
    w.dock_dataset.raise_()
    qtbot.waitExposed(w)
    yield w
    w.close()


def open_folder(qtbot, panel, folder) -> None:
    with qtbot.waitSignal(panel.folderOpened, timeout=30000):
        panel.open_folder(str(folder))


def test_metadata_folder_with_corrupt_file(qtbot, window, dataset_dir):
    w = window
    d = w.dataset
    open_folder(qtbot, d, dataset_dir)
    m = d.model
    assert m.rowCount() == 7
    assert "7 images (metadata.csv)" in d.folder_label.text()
    # thumbnails arrive in the background; the corrupt file is listed as skipped, not fatal
    qtbot.waitUntil(lambda: m.thumbnails_loaded() + len(m.failed) == 7, timeout=30000)
    assert m.thumbnails_loaded() == 6
    assert [Path(p).name for p in d.skipped_paths()] == ["corrupt.png"]
    assert d.skipped_list.count() == 1 and "corrupt.png" in d.skipped_list.item(0).text()
    assert d.skipped_button.text().startswith("Skipped files: 1")
    # label filter and text search
    labels = [d.label_box.itemData(i) for i in range(d.label_box.count())]
    assert labels == ["", "Cardiomegaly", "Effusion", "No Finding", "Pneumonia"]
    d.label_box.setCurrentIndex(labels.index("Effusion"))
    assert d.proxy.rowCount() == 2
    d.search_edit.setText("bilateral")
    qtbot.waitUntil(lambda: d.proxy.rowCount() == 1, timeout=5000)
    rec = d.proxy.data(d.proxy.index(0, 0), RecordRole)
    assert rec.uid == "u4"
    d.search_edit.setText("")
    d.label_box.setCurrentIndex(0)
    qtbot.waitUntil(lambda: d.proxy.rowCount() == 7, timeout=5000)
    # selection shows report and labels; "use as prompt" fills the generator
    d.select_row(1)
    assert "Small left pleural effusion." in d.details.toPlainText()
    assert "Effusion" in d.details.toPlainText()
    qtbot.mouseClick(d.prompt_button, Qt.LeftButton)
    assert w.generator.prompt_edit.toPlainText() == "Small left pleural effusion."
    # show the selected image in the viewer, in the file's own data units (8-bit: 0..255)
    with qtbot.waitSignal(w.documentShown, timeout=20000):
        qtbot.mouseClick(d.show_button, Qt.LeftButton)
    from PIL import Image

    np.testing.assert_array_equal(w.view.image(), np.asarray(Image.open(dataset_dir / "images" / "img01.png")))
    assert w.view.bits == 8 and w.view.window() == (128.0, 256.0)
    assert not w.view.is_synthetic()
    assert "Effusion" in w.doc.title
    # opening the corrupt file from the browser is a status message, not a crash or a dialog
    d.select_row(6)
    qtbot.mouseClick(d.show_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: "Cannot open" in w.statusBar().currentMessage(), timeout=20000)
    assert "Effusion" in w.doc.title  # the previous image stays


def test_compare_with_generated(qtbot, window, dataset_dir):
    w = window
    d = w.dataset
    open_folder(qtbot, d, dataset_dir)
    d.select_row(0)
    # nothing generated yet: a clear message
    qtbot.mouseClick(d.compare_button, Qt.LeftButton)
    assert "generate an image first" in w.generator.error_label.text().lower()
    gen = np.full((64, 64), 2000, np.uint16)
    w.set_document(Document(data=gen, bits=12, title="Generated - seed 1", kind="generated", synthetic=True))
    qtbot.mouseClick(d.compare_button, Qt.LeftButton)
    qtbot.waitUntil(w.viewer.is_compare, timeout=20000)
    np.testing.assert_array_equal(w.viewer.view.image(), gen)
    assert w.viewer.view.is_synthetic() and not w.viewer.view_b.is_synthetic()
    assert w.viewer.view_b.image().shape == (64, 64)
    assert w.viewer.pane_b.title.toolTip().startswith("Real:")


def test_plain_image_folder_and_dicom_folder(qtbot, window, png_folder, tmp_path):
    w = window
    d = w.dataset
    open_folder(qtbot, d, png_folder)
    assert d.model.rowCount() == 5
    assert "image folder" in d.folder_label.text()
    qtbot.waitUntil(lambda: d.model.thumbnails_loaded() + len(d.model.failed) == 5, timeout=30000)
    assert [Path(p).name for p in d.skipped_paths()] == ["broken.jpg"]
    d.select_row(0)
    assert not d.prompt_button.isEnabled()  # no report, no labels
    # DICOM folder (written with the core exporter) plus a junk file
    from cxrdesk.core.dicom.writer import write_dicom

    dd = tmp_path / "dicoms"
    dd.mkdir()
    for i in range(2):
        write_dicom(dd / f"im{i}.dcm", np.full((32, 32), 500 * (i + 1), np.uint16), {"prompt": "x", "seed": i})
    (dd / "junk.dcm").write_bytes(b"\0" * 300)
    open_folder(qtbot, d, dd)
    assert "DICOM folder" in d.folder_label.text()
    qtbot.waitUntil(lambda: d.model.thumbnails_loaded() + len(d.model.failed) == 3, timeout=30000)
    assert [Path(p).name for p in d.skipped_paths()] == ["junk.dcm"]
    d.select_row(0)
    with qtbot.waitSignal(w.documentShown, timeout=20000):
        qtbot.mouseClick(d.show_button, Qt.LeftButton)
    assert int(w.view.image()[0, 0]) == 500
    assert w.view.is_synthetic()  # the file says SyntheticData YES


def test_large_folder_loads_only_visible_thumbnails(qtbot, window, tmp_path):
    """15,000 rows: the model is filled at once, but only the visible thumbnails are decoded."""
    from PIL import Image

    d = tmp_path / "big"
    (d / "images").mkdir(parents=True)
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(d / "images" / "a.png")
    with open(d / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(["uid", "file", "split", "labels", "text"])
        for i in range(15000):
            wr.writerow([f"u{i}", "images/a.png", "train", "Effusion" if i % 3 else "No Finding", f"report {i}"])
    w = window
    panel = w.dataset
    open_folder(qtbot, panel, d)
    m = panel.model
    assert m.rowCount() == 15000
    qtbot.wait(300)
    qtbot.waitUntil(lambda: m.loader.pending() == 0, timeout=30000)
    assert 0 < len(m._requested) < 500
    assert m.thumbnails_loaded() == len(m._requested)
    # scrolling to the end requests the rows that become visible, not everything in between
    panel.list.scrollToBottom()
    qtbot.wait(300)
    qtbot.waitUntil(lambda: m.loader.pending() == 0, timeout=30000)
    assert 14999 in m._requested or any(r > 14000 for r in m._requested)
    assert len(m._requested) < 1000
    # filtering 15,000 rows stays quick enough to be interactive (no timing assertion here)
    panel.label_box.setCurrentIndex(panel.label_box.findData("No Finding"))
    assert panel.proxy.rowCount() == 5000


def test_indiana_university_layout(qtbot, window, tmp_path):
    from PIL import Image

    from .conftest import _chest_like

    d = tmp_path / "iu"
    (d / "images" / "sub").mkdir(parents=True)
    Image.fromarray(_chest_like(40, 1)).save(d / "images" / "sub" / "1_IM-0001-4001.dcm.png")
    Image.fromarray(_chest_like(40, 2)).save(d / "images" / "sub" / "1_IM-0001-3001.dcm.png")
    (d / "indiana_reports.csv").write_text(
        "uid,MeSH,Problems,image,indication,comparison,findings,impression\n"
        "1,x,Cardiomegaly;Pleural Effusion,x,x,x,The heart is enlarged. XXXX,Small effusion.\n", encoding="utf-8")
    (d / "indiana_projections.csv").write_text(
        "uid,filename,projection\n1,1_IM-0001-4001.dcm.png,Frontal\n1,1_IM-0001-3001.dcm.png,Lateral\n",
        encoding="utf-8")
    w = window
    open_folder(qtbot, w.dataset, d)
    assert "Indiana University" in w.dataset.folder_label.text()
    assert w.dataset.model.rowCount() == 1  # frontal only
    w.dataset.select_row(0)
    text = w.dataset.details.toPlainText()
    assert "Cardiomegaly" in text and "Effusion" in text and "The heart is enlarged." in text
