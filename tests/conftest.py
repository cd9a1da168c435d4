"""Shared test fixtures. No network, no data outside the test's temporary folders."""
from __future__ import annotations

import csv
import os

# Before anything imports torch: OpenMP spin-waiting makes a tiny model ~50x slower when another
# process (e.g. a training run) uses the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("CXRDESK_NO_DIALOGS", "1")  # GUI code reports errors without modal boxes

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def fault_log():
    """With CXRDESK_FAULT_LOG set, a native crash writes every thread's Python stack to that file
    (pytest's fd capture swallows faulthandler's own report when a test segfaults); .ci/run prints
    it when the tests fail."""
    import faulthandler

    path = os.environ.get("CXRDESK_FAULT_LOG")
    if not path:
        yield None
        return
    with open(path, "w", encoding="utf-8") as fh:
        faulthandler.enable(fh, all_threads=True)
        yield path
        faulthandler.disable()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random model folder (diffusers layout), written once per test session."""
    from .fixtures import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(autouse=True)
def cxrdesk_data_dir(tmp_path, monkeypatch):
    """Per-test user data folder (history, settings, logs) via CXRDESK_DATA_DIR."""
    d = tmp_path / "cxrdesk-data"
    monkeypatch.setenv("CXRDESK_DATA_DIR", str(d))
    return d


@pytest.fixture(autouse=True)
def cxrdesk_cache_dir(tmp_path, monkeypatch):
    """Per-test cache folder (exported ONNX UNet graphs) via CXRDESK_CACHE_DIR."""
    d = tmp_path / "cxrdesk-cache"
    monkeypatch.setenv("CXRDESK_CACHE_DIR", str(d))
    monkeypatch.delenv("CXRDESK_UNET_ENGINE", raising=False)
    return d


def _chest_like(size: int, seed: int) -> np.ndarray:
    """A smooth synthetic 'radiograph-ish' 8-bit image (two dark lungs, bright mediastinum)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.75 - 0.45 * np.exp(-(((xx - 0.3) / 0.14) ** 2 + ((yy - 0.5) / 0.28) ** 2))
    img -= 0.45 * np.exp(-(((xx - 0.7) / 0.14) ** 2 + ((yy - 0.5) / 0.28) ** 2))
    img += 0.03 * rng.standard_normal((size, size))
    return np.clip(img * 255, 0, 255).astype(np.uint8)


@pytest.fixture
def dataset_dir(tmp_path):
    """A metadata.csv dataset: 6 small PNGs with labels and reports, plus one corrupt PNG."""
    from PIL import Image

    d = tmp_path / "dataset"
    (d / "images").mkdir(parents=True)
    rows = []
    labels = ["No Finding", "Effusion", "Pneumonia", "Cardiomegaly", "Effusion|Cardiomegaly", "No Finding"]
    texts = ["The lungs are clear.", "Small left pleural effusion.", "Right lower lobe pneumonia.",
             "The heart is enlarged.", "Cardiomegaly with bilateral effusions.", "Normal chest."]
    for i, (lab, text) in enumerate(zip(labels, texts)):
        name = f"images/img{i:02d}.png"
        Image.fromarray(_chest_like(64, i)).save(d / name)
        rows.append({"uid": f"u{i}", "file": name, "split": "train", "labels": lab, "text": text})
    (d / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    rows.append({"uid": "bad", "file": "images/corrupt.png", "split": "train", "labels": "Pneumonia",
                 "text": "A file that cannot be decoded."})
    with open(d / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["uid", "file", "split", "labels", "text"])
        w.writeheader()
        w.writerows(rows)
    return d


@pytest.fixture
def png_folder(tmp_path):
    """A plain folder of PNG/JPEG images plus one unreadable file."""
    from PIL import Image

    d = tmp_path / "plain"
    d.mkdir()
    for i in range(3):
        Image.fromarray(_chest_like(48, 10 + i)).save(d / f"p{i}.png")
    Image.fromarray(_chest_like(48, 20)).save(d / "j0.jpg")
    (d / "broken.jpg").write_bytes(b"not a jpeg at all")
    return d


@pytest.fixture(autouse=True)
def gui_thread_garbage_collection():
    """Once a UI test has moved cyclic garbage collection onto the GUI thread (cxrdesk.ui.gcguard),
    its timer only runs inside an event loop: collect between tests too, as Python would have."""
    yield
    import sys

    guard = sys.modules.get("cxrdesk.ui.gcguard")
    if guard is not None:
        guard.collect_pending()
