"""Small fixtures made in the tests: no ../shared, no network."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def phantom(seed: int = 0, size: int = 256, finding: bool = False) -> np.ndarray:
    """A crude chest-radiograph-like phantom (uint8): bright body, two dark lungs, a spine."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.75 - 0.2 * ((xx - 0.5) ** 2 + (yy - 0.55) ** 2)
    for cx in (0.32 + rng.normal(0, 0.01), 0.68 + rng.normal(0, 0.01)):
        lung = ((xx - cx) / 0.15) ** 2 + ((yy - 0.45) / 0.3) ** 2 < 1
        img = np.where(lung, 0.25, img)
    img = np.where(np.abs(xx - 0.5) < 0.04, 0.9, img)
    if finding:
        img = np.where(((xx - 0.3) / 0.1) ** 2 + ((yy - 0.6) / 0.1) ** 2 < 1, 0.6, img)
    img = img + rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_dataset(root: Path, n: int = 12, corrupt: bool = False, size: int = 256) -> Path:
    """A metadata.csv-layout dataset folder with n phantom images (and an optional corrupt file)."""
    import cv2

    (root / "images").mkdir(parents=True, exist_ok=True)
    labels = ["No Finding", "COVID-19", "Effusion|Pneumonia"]
    rows = []
    for i in range(n):
        f = f"images/img_{i:03d}.png"
        cv2.imwrite(str(root / f), phantom(i, size, finding=i % 3 != 0))
        rows.append({"uid": f"img_{i:03d}", "file": f, "split": "val" if i % 4 == 3 else "train",
                     "labels": labels[i % 3], "text": "bilateral opacities" if i == 1 else "",
                     "patient": f"p{i}", "view": "PA", "sex": "", "age": "", "source": "test", "license": "test"})
    if corrupt:
        (root / "images" / "bad.png").write_bytes(b"not a png at all")
        rows.append({**rows[0], "uid": "bad", "file": "images/bad.png"})
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


# A findings check (as `cxrdesk evaluate --findings` writes it) in which pneumonia prompts gave
# COVID-19-like films and effusion prompts gave films read as effusion as often as real ones.
FINDINGS_CHECK = {"classes": ["normal", "covid", "other"], "findings": [
    {"label": "Pneumonia", "expected": "other", "n": 16, "real_n": 39,
     "generated": {"normal": 0.0, "covid": 1.0, "other": 0.0}, "real": {"normal": 0.23, "covid": 0.03, "other": 0.74}},
    {"label": "Effusion", "expected": "other", "n": 16, "real_n": 8,
     "generated": {"normal": 0.25, "covid": 0.0, "other": 0.75}, "real": {"normal": 0.0, "covid": 0.0, "other": 1.0}},
]}


def model_copy_recommending(src: Path, dest: Path, guidance=None, interval=None, label_counts=None,
                            findings_check=None) -> Path:
    """A copy of a model folder whose cxrdesk.json recommends ``guidance`` and, when given, a guidance
    ``interval`` (any JSON values, to test bad ones too), and records ``label_counts`` (training films
    per finding) and a ``findings_check`` (a dict, or a string written as is) when given."""
    import json
    import shutil

    shutil.copytree(src, dest)
    meta = json.loads((dest / "cxrdesk.json").read_text())
    if guidance is not None:
        meta["sampling"] = {"guidance": guidance}
        if interval is not None:
            meta["sampling"]["guidance_interval"] = interval
    if label_counts is not None:
        meta.setdefault("training", {})["label_counts"] = label_counts
    (dest / "cxrdesk.json").write_text(json.dumps(meta))
    if findings_check is not None:
        (dest / "findings_check.json").write_text(findings_check if isinstance(findings_check, str)
                                                  else json.dumps(findings_check))
    return dest


def make_tiny_model(dest, seed: int = 0) -> Path:
    """A tiny random model folder (seconds on CPU; draws noise, never shipped), as diffusers' tests
    build dummy components. Importable from the repository root as ``tests.fixtures``."""
    import torch

    from cxrdesk.core.generation.models import build_unet, build_vae
    from cxrdesk.core.modelfolder import write_model_folder

    torch.manual_seed(seed)
    vae = build_vae("tiny", 256)
    unet = build_unet("tiny", latent_size=32)
    return write_model_folder(dest, vae, unet, name="tiny-random", random_weights=True)
