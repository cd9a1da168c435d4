"""Fuzz the importer: mutated exports either load or raise DicomError, never anything else."""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import RLELossless

from cxrdesk.core import dicom

N_PER_SEED = 100


def _seeds(tmp_path):
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(2000, 600, (24, 20)), 0, 4095).astype(np.uint16)
    meta = {"prompt": "PA chest radiograph, cardiomegaly", "seed": 3, "steps": 10}
    out = {
        "12bit": dicom.write_dicom(tmp_path / "s12.dcm", img, meta, window=(1800, 2400)).read_bytes(),
        "8bit": dicom.write_dicom(tmp_path / "s8.dcm", img, meta, bits=8).read_bytes(),
    }
    ds = dicom.build_dataset(img, meta)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.compress(RLELossless)
    p = tmp_path / "rle.dcm"
    ds.save_as(p, enforce_file_format=True)
    out["rle_mono1"] = p.read_bytes()
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(0, 6)
    if kind == 0:  # random byte flips anywhere
        for _ in range(int(rng.integers(1, 12))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif kind == 1:  # flips in the header (tags, VRs, lengths)
        hdr = min(len(b), 900)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(128, hdr))] = int(rng.integers(0, 256))
    elif kind == 2:  # truncation
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == 3:  # a chunk deleted
        i = int(rng.integers(0, len(b)))
        del b[i: i + int(rng.integers(1, 64))]
    elif kind == 4:  # a chunk of junk inserted
        i = int(rng.integers(0, len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:  # a 4-byte length field set to an extreme value
        i = int(rng.integers(132, max(133, min(len(b) - 4, 900))))
        b[i:i + 4] = bytes([0xFF, 0xFF, 0xFF, int(rng.integers(0, 256))])
    return bytes(b)


@pytest.mark.parametrize("name", ["12bit", "8bit", "rle_mono1"])
def test_mutations_load_or_raise_dicom_error(tmp_path, name):
    data = _seeds(tmp_path)[name]
    rng = np.random.default_rng({"12bit": 11, "8bit": 12, "rle_mono1": 13}[name])
    target = tmp_path / "fuzz.dcm"
    loaded = failed = 0
    for _ in range(N_PER_SEED):
        target.write_bytes(_mutate(data, rng))
        try:
            img = dicom.read_dicom(target)
        except dicom.DicomError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg
            failed += 1
            continue
        for mode in ("auto", "range", "minmax", "window"):
            try:
                n = img.normalized(mode)
            except dicom.DicomError:
                continue
            assert n.dtype == np.float32 and n.ndim == 2
            assert np.all(np.isfinite(n)) and n.min() >= 0.0 and n.max() <= 1.0
        img.summary()
        loaded += 1
    assert loaded + failed == N_PER_SEED


def test_truncation_at_every_region(tmp_path):
    data = _seeds(tmp_path)["12bit"]
    target = tmp_path / "t.dcm"
    for cut in list(range(0, 400, 7)) + list(range(400, len(data), max(1, len(data) // 60))):
        target.write_bytes(data[:cut])
        try:
            dicom.read_dicom(target).normalized()
        except dicom.DicomError:
            pass
