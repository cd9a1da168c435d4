"""An edited film's region in its provenance (core.regions): the CLI's edit records it in the PNG, and
no DICOM carries it (ImageComments hold 10240 characters: a region's runs would cut the parameters
short, so a DICOM's parameters would no longer parse)."""
from __future__ import annotations

import json

import numpy as np

from cxrdesk.core.regions import decode_region, encode_region, without_region


def speckled_region(shape=(256, 256)) -> np.ndarray:
    """A brush-like region with many runs (its JSON is longer than a DICOM ImageComments)."""
    m = np.zeros(shape, bool)
    m[60:200, 40:220] = True
    m[60:200:2, 40:220:3] = False
    return m


def test_without_region_copies_and_leaves_the_rest():
    meta = {"prompt": "x", "edit": {"strength": 0.85, "region": encode_region(speckled_region())}}
    out = without_region(meta)
    assert out == {"prompt": "x", "edit": {"strength": 0.85}}
    assert "region" in meta["edit"]  # the caller's dict is untouched
    assert without_region(None) == {} and without_region({"edit": "odd"}) == {"edit": "odd"}


def test_a_lesson_case_with_a_region_exports_a_dicom_whose_parameters_parse(tmp_path):
    from cxrdesk.core.dicom.reader import parse_image_comments
    from cxrdesk.core.imaging.pngio import read_png
    from cxrdesk.core.lesson_export import export_case

    region = encode_region(speckled_region())
    assert len(json.dumps(region)) > 10240  # long enough to cut ImageComments short
    params = {"prompt": "Left pleural effusion", "seed": 4, "steps": 2, "synthetic": True,
              "edit": {"derived_from": "an edited film", "strength": 0.85, "region": region}}
    img = np.full((256, 256), 2000, np.uint16)
    (tmp_path / "dicom").mkdir()
    row = export_case(tmp_path, 0, img, params, unknown=False, dicom_dir=tmp_path / "dicom", bits=16)
    import pydicom

    ds = pydicom.dcmread(tmp_path / row["dicom"])
    back = parse_image_comments(ds.ImageComments)
    assert back["prompt"] == "Left pleural effusion" and back["seed"] == 4
    assert back["edit"]["derived_from"] == "an edited film" and "region" not in back["edit"]
    png = read_png(tmp_path / row["file"])  # the PNG keeps it
    np.testing.assert_array_equal(decode_region(png.metadata["edit"]["region"]), speckled_region())


def test_the_edit_command_records_the_region_in_the_png_not_the_dicom(tmp_path, tiny_model_dir):
    from PIL import Image

    from cxrdesk.cli import main
    from cxrdesk.core.dicom.reader import parse_image_comments
    from cxrdesk.core.imaging.pngio import read_png

    film = (np.linspace(0, 4095, 256)[None, :] * np.ones((256, 1))).astype(np.uint16)
    Image.fromarray((film // 16).astype(np.uint8)).save(tmp_path / "film.png")
    m = np.zeros((128, 128), np.uint8)
    m[40:80, 20:60] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    out = tmp_path / "e.png"
    assert main(["edit", str(tmp_path / "film.png"), "left pleural effusion", "--mask", str(tmp_path / "m.png"),
                 "-o", str(out), "--steps", "2", "--seed", "3", "--model", str(tiny_model_dir),
                 "--dicom", str(tmp_path / "d"), "--quiet"]) == 0
    region = decode_region(read_png(out).metadata["edit"]["region"])
    assert region.shape == (256, 256) and region[100, 80] and not region[20, 20]
    assert region.mean() == np.float64((m > 0).mean())  # the mask scaled to the film
    import pydicom

    params = parse_image_comments(pydicom.dcmread(tmp_path / "d" / "e.dcm").ImageComments)
    assert params["prompt"] == "left pleural effusion" and "region" not in params["edit"]
