"""Editing a film: redraw a painted region from text (core.generation.editing, Pipeline.edit, `cxrdesk edit`)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from cxrdesk.core.generation.editing import EditError, feather_weights, prepare_mask
from cxrdesk.core.errors import GenerationCancelled, PipelineError
from cxrdesk.core.generation.pipeline import Pipeline

from .fixtures import phantom


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Pipeline.load(tiny_model_dir)


def _mask(shape, box):
    m = np.zeros(shape, np.uint8)
    r0, r1, c0, c1 = box
    m[r0:r1, c0:c1] = 255
    return m


@pytest.mark.parametrize("size", [(256, 256), (300, 200), (512, 512)])
def test_pixels_beyond_the_feather_are_the_inputs_and_the_region_changes(pipe, size):
    h, w = size
    film = (np.random.default_rng(0).random(size) * 255).astype(np.uint8)
    mask = _mask(size, (h // 4, h // 2, w // 4, w // 2))
    res = pipe.edit(film, mask, "left pleural effusion", steps=3, seed=1, strength=1.0)
    assert res.image.shape == size and res.image.dtype == np.float32
    feather = res.params["edit"]["feather_px"]
    assert 0 < feather <= 16 * max(size) / 256
    far = feather_weights(mask > 0, feather) == 0
    assert far.mean() > 0.5
    assert np.array_equal(res.image_u8[far], film[far])  # bit-identical beyond the feather
    inside = mask > 0
    assert np.abs(res.image_u8[inside].astype(int) - film[inside]).mean() > 5
    e = res.params["edit"]
    assert e["derived_from"] == "an edited film" and e["mask_area"] == pytest.approx(inside.mean(), abs=1e-3)
    assert e["strength"] == 1.0 and len(e["source_sha256"]) == 16
    assert res.params["prompt"] == "left pleural effusion"


def test_a_mask_of_another_size_is_scaled_and_sixteen_bit_input_is_kept_exactly(pipe):
    film = (phantom(3, size=256).astype(np.uint16) * 16)  # 12-bit values
    res = pipe.edit(film / 4095.0, _mask((64, 64), (10, 20, 10, 20)), "clear lungs", steps=2, seed=0, strength=0.6)
    far = feather_weights(prepare_mask(_mask((64, 64), (10, 20, 10, 20)), film.shape), res.params["edit"]["feather_px"]) == 0
    assert np.array_equal(res.image_u16[far], film[far])
    assert res.params["edit"]["denoised_steps"] == 1  # strength 0.6 of 2 steps


def test_same_seed_same_edit_and_previews_are_reported(pipe):
    film = phantom(1)
    mask = _mask(film.shape, (100, 160, 30, 110))
    seen = []
    a = pipe.edit(film, mask, "right lower lobe consolidation", steps=4, seed=5,
                  on_step=lambda i, n, prev: seen.append((i, n, None if prev is None else prev.shape)))
    b = pipe.edit(film, mask, "right lower lobe consolidation", steps=4, seed=5)
    assert np.array_equal(a.image, b.image)
    assert seen[-1][0] == seen[-1][1] and seen[-1][2] == film.shape
    assert [s[0] for s in seen] == list(range(1, seen[-1][1] + 1))


@pytest.mark.parametrize("mask, message", [
    (np.zeros((256, 256)), "no pixels"),
    (np.full((256, 256), 255), "whole film"),
    (np.zeros((4,)), "2-D"),
])
def test_bad_masks_are_refused_in_one_line(pipe, mask, message):
    with pytest.raises(EditError, match=message):
        pipe.edit(phantom(0), mask, "clear lungs", steps=2)


def test_bad_strength_prompt_and_film_are_refused(pipe):
    film, mask = phantom(0), _mask((256, 256), (10, 50, 10, 50))
    for s in (0, 1.5, "x"):
        with pytest.raises(EditError, match="strength"):
            pipe.edit(film, mask, "clear lungs", strength=s)
    with pytest.raises(PipelineError, match="empty"):
        pipe.edit(film, mask, "  ")
    with pytest.raises(EditError, match="2-D"):
        pipe.edit(np.zeros((4, 4, 4)), mask, "clear lungs")


def test_cancel_stops_an_edit(pipe):
    ev = threading.Event()
    ev.set()
    with pytest.raises(GenerationCancelled):
        pipe.edit(phantom(0), _mask((256, 256), (10, 50, 10, 50)), "clear lungs", steps=3, cancel=ev)


def _write_png(path, arr):
    from PIL import Image

    Image.fromarray(arr).save(path)
    return path


def test_edit_command_writes_png_and_a_synthetic_dicom_without_the_sources_identity(tmp_path, tiny_model_dir):
    """A real-looking source DICOM with a name, IDs, dates, institution and private tags: the edited
    film's DICOM is synthetic (SyntheticData YES, DERIVED, new UIDs, the synthetic patient) and
    carries none of them; its provenance records the edit."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from cxrdesk.cli import main
    from cxrdesk.core.dicom.reader import parse_image_comments

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    src = FileDataset(str(tmp_path / "src.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    src.PatientName, src.PatientID, src.PatientBirthDate = "DOE^JANE", "MRN12345", "19600101"
    src.StudyDate, src.InstitutionName, src.AccessionNumber = "20240101", "General Hospital", "ACC999"
    src.StudyInstanceUID, src.SeriesInstanceUID = generate_uid(), generate_uid()
    src.SOPInstanceUID, src.SOPClassUID = meta.MediaStorageSOPInstanceUID, meta.MediaStorageSOPClassUID
    src.Modality, src.Rows, src.Columns = "DX", 256, 256
    src.SamplesPerPixel, src.PhotometricInterpretation = 1, "MONOCHROME2"
    src.BitsAllocated, src.BitsStored, src.HighBit, src.PixelRepresentation = 16, 12, 11, 0
    src.add_new(0x00091010, "LO", "private secret")
    src.PixelData = (phantom(2).astype(np.uint16) * 16).tobytes()
    src.save_as(tmp_path / "src.dcm", enforce_file_format=True)
    mask = _write_png(tmp_path / "m.png", _mask((128, 128), (40, 80, 20, 60)))
    out = tmp_path / "e.png"
    assert main(["edit", str(tmp_path / "src.dcm"), "left pleural effusion", "--mask", str(mask), "-o", str(out),
                 "--steps", "2", "--seed", "3", "--model", str(tiny_model_dir), "--dicom", str(tmp_path / "d"),
                 "--quiet"]) == 0
    ds = pydicom.dcmread(tmp_path / "d" / "e.dcm")
    assert ds.SyntheticData == "YES" and list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "edited" in ds.DerivationDescription and "edited film" in ds.SeriesDescription
    text = str(ds)
    for secret in ("DOE^JANE", "MRN12345", "19600101", "General Hospital", "ACC999", "private secret",
                   src.StudyInstanceUID, src.SeriesInstanceUID, src.SOPInstanceUID):
        assert secret not in text, secret
    assert not [e for e in ds if e.tag.is_private]
    params = parse_image_comments(ds.ImageComments)
    assert params["edit"]["derived_from"] == "an edited film" and params["prompt"] == "left pleural effusion"
    assert 0 < params["edit"]["mask_area"] < 0.2
    from cxrdesk.core.imaging.pngio import read_png

    png = read_png(out)
    assert png.metadata["edit"]["strength"] == 0.85 and png.metadata["synthetic"] is True


def test_edit_command_keeps_an_8_bit_film_exactly_outside_the_region(tmp_path, tiny_model_dir):
    from PIL import Image

    from cxrdesk.cli import main

    film = phantom(4, size=200)
    src = _write_png(tmp_path / "f.png", film)
    mask = _write_png(tmp_path / "m.png", _mask((200, 200), (60, 120, 60, 120)))
    out = tmp_path / "o.png"
    assert main(["edit", str(src), "clear lung", "--mask", str(mask), "-o", str(out), "--steps", "2",
                 "--strength", "1", "--model", str(tiny_model_dir), "--quiet"]) == 0
    got = np.array(Image.open(out))
    assert got.dtype == np.uint8 and got.shape == film.shape
    far = feather_weights(_mask((200, 200), (60, 120, 60, 120)) > 0, 16 * 200 / 256) == 0
    assert np.array_equal(got[far], film[far])
    assert not np.array_equal(got, film)


@pytest.mark.parametrize("case, message", [
    ("empty_mask", "no pixels"), ("white_mask", "whole film"), ("missing_input", "no such file"),
    ("bad_mask_file", "mask:"), ("bad_strength", "strength"), ("bad_output", ".png"), ("empty_prompt", "empty"),
])
def test_edit_command_bad_input_is_one_line_and_exit_2(tmp_path, tiny_model_dir, case, message):
    import subprocess
    import sys

    src = _write_png(tmp_path / "f.png", phantom(0))
    good = _write_png(tmp_path / "m.png", _mask((256, 256), (10, 50, 10, 50)))
    args = {"input": str(src), "prompt": "clear lung", "mask": str(good), "out": str(tmp_path / "o.png"), "extra": []}
    if case == "empty_mask":
        args["mask"] = str(_write_png(tmp_path / "z.png", np.zeros((32, 32), np.uint8)))
    elif case == "white_mask":
        args["mask"] = str(_write_png(tmp_path / "w.png", np.full((32, 32), 255, np.uint8)))
    elif case == "missing_input":
        args["input"] = str(tmp_path / "nope.png")
    elif case == "bad_mask_file":
        (tmp_path / "bad.png").write_bytes(b"not a png")
        args["mask"] = str(tmp_path / "bad.png")
    elif case == "bad_strength":
        args["extra"] = ["--strength", "1.5"]
    elif case == "bad_output":
        args["out"] = str(tmp_path / "o.jpg")
    elif case == "empty_prompt":
        args["prompt"] = "  "
    r = subprocess.run([sys.executable, "-m", "cxrdesk", "edit", args["input"], args["prompt"], "--mask", args["mask"],
                        "-o", args["out"], "--steps", "2", "--model", str(tiny_model_dir), "--quiet", *args["extra"]],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_the_default_lung_field_mask_covers_two_lungs_and_spares_the_mediastinum():
    from cxrdesk.core.generation.editing import lung_field_mask

    m = lung_field_mask((256, 256))
    assert 0.2 < m.mean() < 0.4
    assert not m[:, 124:132].any()  # the mediastinum and spine stay as they are
    assert m[:, :128].sum() == m[:, 128:].sum()  # both sides alike
    assert not m[:20].any() and not m[-20:].any()
    assert lung_field_mask((512, 300)).shape == (512, 300)
