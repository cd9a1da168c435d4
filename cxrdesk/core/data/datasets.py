"""Readers for local dataset folders.

Layouts understood:
- ``metadata.csv`` (the cxr256 layout): uid, file, split, labels (``|``-separated), text, ...
- Indiana University: ``indiana_reports.csv`` + ``indiana_projections.csv`` + image files somewhere
  below the folder (frontal projections only are used).
- A plain folder of PNG/JPEG images.
- A folder of DICOM files.

Every reader returns :class:`Record` rows; nothing here decodes pixels except :func:`load_gray`.
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fsutil import has_dicm_magic

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
DICOM_EXT = {".dcm", ".dicom", ""}


@dataclass
class Record:
    path: str
    labels: list[str] = field(default_factory=list)
    text: str = ""
    split: str = "train"
    uid: str = ""
    kind: str = "image"  # "image" or "dicom"


class DatasetError(Exception):
    pass


def detect_layout(folder: str | os.PathLike) -> str:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"not a folder: {folder}")
    if (folder / "metadata.csv").is_file():
        return "metadata"
    if (folder / "indiana_reports.csv").is_file():
        return "iu"
    for p in folder.iterdir():
        if p.suffix.lower() in IMAGE_EXT:
            return "images"
    return "dicom"


def _split_for(key: str, val_fraction: float = 0.05) -> str:
    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


def read_metadata(folder: Path) -> list[Record]:
    out = []
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            f = row.get("file") or row.get("path") or ""
            if not f:
                continue
            labels = [s.strip() for s in (row.get("labels") or "").split("|") if s.strip()]
            out.append(Record(path=str(folder / f), labels=labels or ["No Finding"],
                              text=row.get("text") or "", split=row.get("split") or _split_for(f),
                              uid=row.get("uid") or Path(f).stem))
    return out


_IU_MAP = {
    "normal": "No Finding", "cardiomegaly": "Cardiomegaly", "pleural effusion": "Effusion",
    "effusion": "Effusion", "atelectasis": "Atelectasis", "pneumonia": "Pneumonia",
    "consolidation": "Consolidation", "pulmonary edema": "Edema", "edema": "Edema",
    "pneumothorax": "Pneumothorax", "emphysema": "Emphysema", "nodule": "Nodule",
    "mass": "Mass", "fibrosis": "Fibrosis", "infiltrate": "Infiltration", "hernia": "Hernia",
    "hernia, hiatal": "Hernia", "pleural thickening": "Pleural Thickening",
}


def _iu_labels(problems: str) -> list[str]:
    labels = []
    for p in (problems or "").split(";"):
        p = p.strip().lower()
        for key, lab in _IU_MAP.items():
            if p == key or p.startswith(key):
                if lab not in labels:
                    labels.append(lab)
    if len(labels) > 1 and "No Finding" in labels:
        labels.remove("No Finding")
    return labels or ["No Finding"]


def read_iu(folder: Path) -> list[Record]:
    reports = {}
    with open(folder / "indiana_reports.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            reports[row["uid"]] = row
    files: dict[str, Path] = {}
    for root, _dirs, names in os.walk(folder):
        for n in names:
            if Path(n).suffix.lower() in IMAGE_EXT | {".dcm"}:
                files.setdefault(n, Path(root) / n)
    out = []
    proj = folder / "indiana_projections.csv"
    if not proj.is_file():
        raise DatasetError("Indiana layout needs indiana_projections.csv beside indiana_reports.csv")
    with open(proj, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if (row.get("projection") or "").lower() != "frontal":
                continue
            rep = reports.get(row["uid"])
            name = row.get("filename") or ""
            path = files.get(name)
            if rep is None or path is None:
                continue
            text = " ".join(s for s in (rep.get("findings"), rep.get("impression")) if s)
            text = text.replace("XXXX", "").strip()
            out.append(Record(path=str(path), labels=_iu_labels(rep.get("Problems", "")), text=text,
                              split=_split_for(row["uid"]), uid=f"iu_{row['uid']}_{Path(name).stem}",
                              kind="dicom" if path.suffix.lower() == ".dcm" else "image"))
    return out


def read_image_folder(folder: Path) -> list[Record]:
    return [Record(path=str(p), labels=[], split=_split_for(p.name), uid=p.stem)
            for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXT and p.is_file()]


def read_dicom_folder(folder: Path) -> list[Record]:
    out = []
    for root, _dirs, names in os.walk(folder):
        for n in sorted(names):
            p = Path(root) / n
            if p.suffix.lower() in DICOM_EXT or has_dicm_magic(p):
                if p.suffix.lower() in IMAGE_EXT or p.suffix.lower() in {".csv", ".txt", ".json"}:
                    continue
                out.append(Record(path=str(p), labels=[], split=_split_for(n), uid=p.stem, kind="dicom"))
    return out


def read_dataset(folder: str | os.PathLike) -> list[Record]:
    """All records of a local dataset folder, whatever its layout."""
    folder = Path(folder)
    layout = detect_layout(folder)
    return {"metadata": read_metadata, "iu": read_iu, "images": read_image_folder,
            "dicom": read_dicom_folder}[layout](folder)


def load_gray(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Decode an image or DICOM file to a float32 array in [0, 1] (H, W).

    Raises :class:`DatasetError` with a readable message for unreadable files.
    """
    import cv2

    path = Path(path)
    if path.suffix.lower() in IMAGE_EXT:
        from ..imaging.imagefile import ImageReadError, read_grey
        from ..imaging.imaging import to_unit

        try:
            arr = read_grey(path)  # bounded: the declared size is checked before decoding
        except ImageReadError as exc:
            raise DatasetError(str(exc)) from None
        img = to_unit(arr)  # 8-bit, 12-bit-in-16 and 16-bit files alike
    else:
        from ..dicom.reader import read_dicom  # local import: pydicom only when needed

        img = read_dicom(path).normalized()
    if size is not None and img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img
