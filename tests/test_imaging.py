"""Tests for cxrdesk.core.imaging and the `enhance` / `metrics` commands (synthetic images only)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrdesk.core.imaging import enhancement, metrics
from cxrdesk.core.imaging import imaging as im
from cxrdesk.core.imaging.enhancement import ENHANCEMENT_PRESETS, EnhanceParams


# ------------------------------------------------------------------------------------ fixtures

def make_phantom(size: int = 192, seed: int = 0) -> np.ndarray:
    """12-bit chest-like phantom in uint16: gradient body, dark 'lungs', bright 'spine' and
    'ribs', a small bright nodule, thin lines and Gaussian noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64) / (size - 1)
    img = 0.55 + 0.15 * yy - 0.05 * xx  # soft-tissue background with a gradient
    for cx in (0.3, 0.7):  # lungs: dark ellipses
        lung = ((xx - cx) / 0.16) ** 2 + ((yy - 0.45) / 0.3) ** 2 < 1
        img[lung] = 0.25 + 0.1 * yy[lung]
    img[np.abs(xx - 0.5) < 0.04] = 0.85  # spine
    for k in range(6):  # ribs: thin bright bands across the lungs
        img[np.abs(yy - (0.22 + 0.1 * k)) < 0.012] += 0.15
    img[(xx - 0.62) ** 2 + (yy - 0.35) ** 2 < 0.03 ** 2] += 0.2  # nodule
    img[::16, :] += 0.03  # fine lines
    img += rng.normal(0, 0.01, img.shape)
    return np.clip(np.rint(img * 4095), 0, 4095).astype(np.uint16)


@pytest.fixture
def phantom() -> np.ndarray:
    return make_phantom()


def voi_reference(x: float, c: float, w: float) -> int:
    """PS3.3 C.11.2.1.2.1 written out for one value, rounding half up."""
    if w <= 1:
        return 0 if x <= c - 0.5 else 255
    if x <= c - 0.5 - (w - 1) / 2:
        return 0
    if x > c - 0.5 + (w - 1) / 2:
        return 255
    return int(math.floor(((x - (c - 0.5)) / (w - 1) + 0.5) * 255 + 0.5))


# ------------------------------------------------------------------------------- window/level

def test_voi_breakpoints_and_midpoint():
    c, w = 100.0, 51.0  # black at <= 74.5, white at >= 124.5, mid-grey at 99.5
    x = np.array([[0, 74, 74.5, 75, 99.5, 124, 124.5, 125, 4000]], dtype=np.float64)
    got = im.window_to_u8(x, c, w)[0].tolist()
    assert got[:3] == [0, 0, 0]
    assert got[3] == 3  # (0.01) * 255 = 2.55 -> 3
    assert got[4] == 128  # 127.5 rounds half up
    assert got[5] == 252
    assert got[6:] == [255, 255, 255]


def test_voi_matches_reference_formula():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4096, size=(40, 50)).astype(np.uint16)
    for c, w in [(2048, 4096), (1000.5, 300), (3000, 2), (500, 1), (10, 7.25)]:
        ref = np.vectorize(lambda v: voi_reference(float(v), c, w))(x).astype(np.uint8)
        np.testing.assert_array_equal(im.window_to_u8(x, c, w), ref, err_msg=f"c={c} w={w}")


def test_full_window_maps_range_ends():
    img = np.array([[0, 1, 2047, 2048, 4094, 4095]], dtype=np.uint16)
    out = im.window_to_u8(img, *im.full_window(12))
    assert out[0, 0] == 0 and out[0, -1] == 255
    assert np.all(np.diff(out[0].astype(int)) >= 0)
    assert im.full_window(8) == (128.0, 256.0)


def test_invert_is_255_minus(phantom):
    a = im.window_to_u8(phantom, 1500, 1200)
    b = im.window_to_u8(phantom, 1500, 1200, invert=True)
    np.testing.assert_array_equal(b.astype(int), 255 - a.astype(int))


@pytest.mark.parametrize("c,w", [(2048, 4096), (1234.5, 777), (300, 1), (4000, 20.5)])
def test_lut_and_float_paths_agree(phantom, c, w):
    lut = im.window_to_u8(phantom, c, w)
    flt = im.window_to_u8(phantom.astype(np.float64), c, w)
    assert lut.dtype == np.uint8 and lut.shape == phantom.shape
    np.testing.assert_array_equal(lut, flt)
    p8 = (phantom >> 4).astype(np.uint8)
    np.testing.assert_array_equal(im.window_to_u8(p8, c / 16, w / 16),
                                  im.window_to_u8(p8.astype(np.float32), c / 16, w / 16))


def test_signed_data_with_negative_values():
    x = np.array([[-1000, -500, 0, 500, 1000]], dtype=np.int16)
    lut = im.window_to_u8(x, 0, 1001)
    np.testing.assert_array_equal(lut, im.window_to_u8(x.astype(np.float64), 0, 1001))
    assert lut[0, 0] == 0 and lut[0, -1] == 255


def test_window_does_not_modify_input(phantom):
    before = phantom.copy()
    im.window_to_u8(phantom, 2000, 1000, invert=True)
    np.testing.assert_array_equal(phantom, before)


def test_width_below_one_is_a_threshold():
    x = np.array([[99, 100, 101]], dtype=np.uint16)
    np.testing.assert_array_equal(im.window_to_u8(x, 100.5, 0.2), [[0, 0, 255]])


def test_window_range_round_trip():
    c, w = im.window_from_range(100, 300)
    assert im.window_range(c, w) == pytest.approx((100, 300))
    out = im.window_to_u8(np.array([[100, 300]], np.uint16), c, w)
    assert out.tolist() == [[0, 255]]
    with pytest.raises(ValueError):
        im.window_from_range(5, 1)


def test_window_presets():
    p = im.window_presets(12)
    assert list(p) == ["Full range", "Lung", "Mediastinum", "Bone"]
    assert p["Full range"] == (2048.0, 4096.0)
    assert len(set(p.values())) == 4
    assert p["Lung"][0] < p["Mediastinum"][0] <= p["Bone"][0]  # lung dark, bone bright
    for c, w in p.values():
        lo, hi = im.window_range(c, w)
        assert w >= 1 and -0.5 <= lo < hi <= 4095.5
    p8 = im.window_presets(8)
    assert p8["Lung"][0] == pytest.approx(p["Lung"][0] / 16, abs=1)


def test_lung_window_spreads_lungs_and_saturates_spine(phantom):
    c, w = im.window_presets(12)["Lung"]
    yy, xx = np.mgrid[:192, :192] / 191
    lung = ((xx - 0.3) / 0.16) ** 2 + ((yy - 0.45) / 0.3) ** 2 < 0.5
    out = im.window_to_u8(phantom, c, w)
    full = im.window_to_u8(phantom, *im.full_window(12))
    assert out[lung].std() > full[lung].std() * 1.4  # more contrast in the lungs
    assert np.median(out[:, 94:98]) == 255  # spine is white


def test_auto_window_clips_about_the_percentiles(phantom):
    c, w = im.auto_window(phantom, 0.5, 99.5)
    out = im.window_to_u8(phantom, c, w)
    assert 0.002 <= np.mean(out == 0) <= 0.02
    assert 0.002 <= np.mean(out == 255) <= 0.02
    lo, hi = im.window_range(c, w)
    assert lo == pytest.approx(np.percentile(phantom, 0.5))
    assert hi == pytest.approx(np.percentile(phantom, 99.5))


def test_drag_directions():
    c, w = 2000.0, 1000.0
    assert im.drag_window(c, w, 10, 0, 2.0) == (2000.0, 1020.0)  # right: wider
    assert im.drag_window(c, w, -10, 0, 2.0) == (2000.0, 980.0)  # left: narrower
    assert im.drag_window(c, w, 0, 10, 2.0) == (2020.0, 1000.0)  # down: higher center
    assert im.drag_window(c, w, 0, -10, 2.0) == (1980.0, 1000.0)  # up: lower center
    assert im.drag_window(c, w, -5000, 0, 1.0)[1] == 1.0  # width clamped >= 1
    # dragging down makes the image darker, dragging right lowers contrast
    x = np.array([[1900, 2100]], dtype=np.uint16)
    darker = im.window_to_u8(x, *im.drag_window(c, w, 0, 50, 1.0))
    wider = im.window_to_u8(x, *im.drag_window(c, w, 500, 0, 1.0))
    base = im.window_to_u8(x, c, w)
    assert np.all(darker < base)
    assert np.ptp(wider.astype(int)) < np.ptp(base.astype(int))
    assert im.drag_sensitivity(12, 512) == 8.0


# ---------------------------------------------------------------------------------- conversion

def test_infer_bits_and_unit_round_trip(phantom):
    assert im.infer_bits(phantom) == 12
    assert im.infer_bits(np.array([[0, 40000]], np.uint16)) == 16
    assert im.infer_bits(np.zeros((2, 2), np.uint8)) == 8
    assert im.infer_bits(np.zeros((2, 2), np.float32)) == 0
    x = im.to_unit(phantom)
    assert x.dtype == np.float32 and x.max() <= 1 and x.min() >= 0
    np.testing.assert_array_equal(im.from_unit(x, np.uint16, 12), phantom)
    p8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(im.from_unit(im.to_unit(p8), np.uint8), p8)
    assert im.from_unit(np.array([[1.0]]), np.uint16)[0, 0] == 65535
    assert im.to_unit(np.array([[2047.5]]), bits=12)[0, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        im.to_unit(np.array([[-5, 3]], np.int16))


# --------------------------------------------------------------------------------- enhancement

def test_exactly_four_presets():
    assert list(ENHANCEMENT_PRESETS) == ["Balanced", "High Contrast", "Sharp Detail", "Radiographic Film"]
    film = ENHANCEMENT_PRESETS["Radiographic Film"]
    assert film.vignette > 0 and film.film_curve > 0
    assert all(p.vignette == 0 for n, p in ENHANCEMENT_PRESETS.items() if n != "Radiographic Film")
    assert len({p for p in ENHANCEMENT_PRESETS.values()}) == 4


@pytest.mark.parametrize("kind", ["u16", "u8", "f32", "f64"])
def test_presets_keep_dtype_and_range_and_differ(phantom, kind):
    img = {"u16": phantom, "u8": (phantom >> 4).astype(np.uint8),
           "f32": phantom.astype(np.float32) / 4095, "f64": phantom.astype(np.float64) / 4095}[kind]
    before = img.copy()
    outs = {}
    for name, params in ENHANCEMENT_PRESETS.items():
        out = enhancement.enhance(img, params)
        assert out.dtype == img.dtype and out.shape == img.shape
        assert out is not img
        if kind == "u16":
            assert out.max() <= 4095  # 12-bit data stays 12-bit
            assert out.max() > 3500  # and still uses the range
        if kind.startswith("f"):
            assert 0.0 <= out.min() and out.max() <= 1.0
        outs[name] = im.to_unit(out, im.infer_bits(img) or None)
    np.testing.assert_array_equal(img, before)  # input untouched
    names = list(outs)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            diff = np.abs(outs[names[i]] - outs[names[j]]).mean()
            assert diff > 0.01, (names[i], names[j])


def test_enhance_by_name_and_unknown_name(phantom):
    np.testing.assert_array_equal(enhancement.enhance(phantom, "Sharp Detail"),
                                  enhancement.enhance(phantom, ENHANCEMENT_PRESETS["Sharp Detail"]))
    with pytest.raises(ValueError, match="unknown preset"):
        enhancement.enhance(phantom, "Sepia")


def test_identity_params_keep_image(phantom):
    ident = EnhanceParams(window_low=None, window_high=None)
    np.testing.assert_array_equal(enhancement.enhance(phantom, ident), phantom)


def test_12bit_output_is_not_banded_to_8_bits(phantom):
    out = enhancement.enhance(phantom, "Balanced")
    assert len(np.unique(out)) > 600  # 12-bit precision survives CLAHE and equalisation
    out = enhancement.enhance(phantom, "High Contrast")
    assert len(np.unique(out)) > 600


def test_enhance_same_result_for_8_and_12_bit_versions(phantom):
    p8 = np.rint(phantom / 4095 * 255).astype(np.uint8)
    p12 = ((p8.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16)  # same picture, 12 bits
    for name in ENHANCEMENT_PRESETS:
        a = im.to_unit(enhancement.enhance(p8, name))
        b = im.to_unit(enhancement.enhance(p12, name))
        assert np.abs(a - b).mean() < 0.01, name


def test_clahe_close_to_opencv_on_8bit():
    img = (make_phantom(256, seed=3) >> 4).astype(np.uint8)
    ref = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(img).astype(np.float64)
    mine = enhancement._clahe(img.astype(np.float32) / 255, 2.0, 8).astype(np.float64) * 255
    assert np.corrcoef(ref.ravel(), mine.ravel())[0, 1] > 0.98
    assert np.abs(ref - mine).mean() < 8


def test_unsharp_raises_sharpness_and_median_lowers_it(phantom):
    base = EnhanceParams(window_low=None, window_high=None)
    s0 = metrics.image_metrics(phantom)["sharpness"]
    s_sharp = metrics.image_metrics(enhancement.enhance(phantom, EnhanceParams(
        window_low=None, window_high=None, unsharp_amount=1.0, unsharp_radius=1.0)))["sharpness"]
    s_med = metrics.image_metrics(enhancement.enhance(phantom, EnhanceParams(
        window_low=None, window_high=None, median_ksize=3)))["sharpness"]
    assert s_sharp > 1.5 * s0
    assert s_med < s0
    assert metrics.image_metrics(enhancement.enhance(phantom, base))["sharpness"] == pytest.approx(s0)


def test_vignette_darkens_corners_only():
    flat = np.full((101, 101), 2000, np.uint16)
    out = enhancement.enhance(flat, EnhanceParams(window_low=None, window_high=None, vignette=0.3))
    assert out[50, 50] == 2000
    assert out[0, 0] < 0.75 * 2000 and out[0, 0] == out[-1, -1]
    assert out[0, 50] < out[50, 50]


def test_film_curve_has_toe_and_shoulder():
    ramp = np.linspace(0, 1, 101, dtype=np.float32)[None, :]
    out = enhancement.enhance(ramp, EnhanceParams(window_low=None, window_high=None, film_curve=5.0))[0]
    assert out[0] == pytest.approx(0, abs=1e-6) and out[-1] == pytest.approx(1, abs=1e-6)
    assert out[50] == pytest.approx(0.5, abs=1e-4)
    slope = np.diff(out)
    assert slope[48] > 2 * slope[2] and slope[48] > 2 * slope[-3]  # steep middle, flat ends


def test_bad_params_rejected():
    with pytest.raises(ValueError):
        EnhanceParams(median_ksize=7)
    with pytest.raises(ValueError):
        EnhanceParams(window_low=50, window_high=10)
    with pytest.raises(ValueError):
        EnhanceParams(vignette=2)


def test_tiny_and_non_square_images():
    for shape in [(1, 1), (3, 7), (5, 64)]:
        img = (np.arange(np.prod(shape)).reshape(shape) % 4096).astype(np.uint16)
        for name in ENHANCEMENT_PRESETS:
            assert enhancement.enhance(img, name).shape == shape


# ------------------------------------------------------------------------------------- metrics

def test_metrics_of_constant_and_two_level_images():
    m = metrics.image_metrics(np.full((32, 32), 1234, np.uint16))
    assert m["entropy"] == 0.0 and m["contrast"] == 0.0 and m["sharpness"] == 0.0
    assert m["mean"] == pytest.approx(1234 / 4095)
    half = np.zeros((32, 32), np.uint8)
    half[:, 16:] = 255
    m = metrics.image_metrics(half)
    assert m["entropy"] == pytest.approx(1.0)
    assert m["contrast"] == pytest.approx(0.5)
    assert m["sharpness"] > 0


def test_ssim_properties(phantom):
    assert metrics.ssim(phantom, phantom) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(5)
    x = im.to_unit(phantom)
    noisy = [np.clip(x + rng.normal(0, s, x.shape), 0, 1).astype(np.float32) for s in (0.01, 0.05, 0.2)]
    vals = [metrics.ssim(x, n) for n in noisy]
    assert 1 > vals[0] > vals[1] > vals[2] > 0
    assert metrics.ssim(x, noisy[1]) == pytest.approx(metrics.ssim(noisy[1], x))
    with pytest.raises(ValueError):
        metrics.ssim(x, x[:-1])


def test_ssim_of_flat_images_matches_formula():
    a, b = 0.3, 0.6  # no variance: SSIM is the luminance term alone
    s = metrics.ssim(np.full((40, 40), a, np.float64), np.full((40, 40), b, np.float64))
    c1 = 0.01 ** 2
    assert s == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_psnr(phantom):
    assert math.isinf(metrics.psnr(phantom, phantom))
    a = np.random.default_rng(2).uniform(0, 0.9, (50, 50))
    assert metrics.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-6)  # MSE 0.01
    assert metrics.psnr(phantom, phantom.astype(np.int32) + 100) < 40


def test_compare_and_compare_presets(phantom):
    same = metrics.compare(phantom, phantom)
    assert same["contrast_pct"] == 0 and same["sharpness_pct"] == 0 and same["entropy_pct"] == 0
    assert same["ssim"] == pytest.approx(1.0) and math.isinf(same["psnr"])
    res = metrics.compare_presets(phantom)
    assert list(res) == list(ENHANCEMENT_PRESETS)
    for name, r in res.items():
        assert set(r) == {"contrast_pct", "sharpness_pct", "entropy_pct", "ssim", "psnr"}
        assert 0 < r["ssim"] < 1 and math.isfinite(r["psnr"])
    assert res["Sharp Detail"]["sharpness_pct"] > res["Balanced"]["sharpness_pct"]
    # hand-check one entry
    e = enhancement.enhance(phantom, "Balanced")
    m0, m1 = metrics.image_metrics(phantom), metrics.image_metrics(e)
    assert res["Balanced"]["contrast_pct"] == pytest.approx(100 * (m1["contrast"] / m0["contrast"] - 1))


def test_mean_pairwise_ssim():
    base = make_phantom(64, seed=0)
    same = [base.copy() for _ in range(3)]
    assert metrics.mean_pairwise_ssim(same) == pytest.approx(1.0)
    varied = [make_phantom(64, seed=s) for s in range(4)]
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 4096, (64, 64)).astype(np.uint16) for _ in range(4)]
    v = metrics.mean_pairwise_ssim(varied)
    n = metrics.mean_pairwise_ssim(noise)
    assert n < v < 1
    pairs = [metrics.ssim(varied[i], varied[j]) for i in range(4) for j in range(i + 1, 4)]
    assert v == pytest.approx(np.mean(pairs), rel=1e-9)
    assert 0 < metrics.mean_pairwise_ssim(varied, max_pairs=2) < 1
    with pytest.raises(ValueError):
        metrics.mean_pairwise_ssim([base])


def test_core_imports_no_qt():
    code = ("import sys, cxrdesk.core.imaging.imaging, cxrdesk.core.imaging.enhancement, cxrdesk.core.imaging.metrics; "
            "print(any(m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'torch') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------- CLI

def run_cli(*argv):
    from cxrdesk.cli import main

    return main([str(a) for a in argv])


def test_cli_enhance_16bit_png_round_trip(tmp_path, phantom, capsys):
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    assert cv2.imwrite(str(src), phantom)
    rc = run_cli("enhance", src, "-o", dst, "--preset", "radiographic-film")
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    out = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == phantom.shape
    np.testing.assert_array_equal(out, enhancement.enhance(phantom, "Radiographic Film"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png"]  # no temp left


def test_cli_enhance_8bit_jpeg_and_overwrite_in_place(tmp_path, phantom):
    src = tmp_path / "in.jpg"
    assert cv2.imwrite(str(src), (phantom >> 4).astype(np.uint8))
    dst = tmp_path / "out.png"
    assert run_cli("enhance", src, "-o", dst) == 0
    assert cv2.imread(str(dst), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    same = tmp_path / "same.png"
    cv2.imwrite(str(same), phantom)
    assert run_cli("enhance", same, "-o", same, "--preset", "Sharp Detail") == 0
    np.testing.assert_array_equal(cv2.imread(str(same), cv2.IMREAD_UNCHANGED),
                                  enhancement.enhance(phantom, "Sharp Detail"))


def test_cli_compare_and_list(tmp_path, phantom, capsys):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), phantom)
    assert run_cli("enhance", src, "--compare") == 0
    out = capsys.readouterr().out
    for name in ENHANCEMENT_PRESETS:
        assert name in out
    assert "SSIM" in out and "PSNR" in out and "%" in out
    assert list(tmp_path.iterdir()) == [src]
    assert run_cli("enhance", "--list") == 0
    out = capsys.readouterr().out
    assert "clahe_clip=" in out and "Radiographic Film" in out


def test_cli_metrics(tmp_path, phantom, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(a), phantom)
    cv2.imwrite(str(b), np.full((20, 20), 7, np.uint8))
    assert run_cli("metrics", a, b) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "contrast" in lines[0] and "sharpness" in lines[0] and "entropy" in lines[0]
    assert len(lines) == 3 and lines[2].split()[3] == "0.000"  # constant image: entropy 0
    assert run_cli("metrics", "--json", a) == 0
    import json

    rec = json.loads(capsys.readouterr().out)
    assert rec["bits"] == 12 and rec["entropy"] == pytest.approx(metrics.image_metrics(phantom)["entropy"])


@pytest.mark.parametrize("case", ["missing", "preset", "jpeg16", "nodir", "notimage"])
def test_cli_errors_exit_2_without_output(tmp_path, phantom, capsys, case):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), phantom)
    dst = tmp_path / "out.png"
    args = {
        "missing": ["enhance", tmp_path / "nope.png", "-o", dst],
        "preset": ["enhance", src, "-o", dst, "--preset", "Sepia"],
        "jpeg16": ["enhance", src, "-o", tmp_path / "out.jpg"],
        "nodir": ["enhance", src, "-o", tmp_path / "no" / "out.png"],
        "notimage": ["metrics", tmp_path / "bad.png"],
    }[case]
    (tmp_path / "bad.png").write_bytes(b"not a png")
    rc = run_cli(*args)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("cxrdesk: error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "in.png"]


def test_cli_error_in_a_real_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-m", "cxrdesk", "enhance", str(tmp_path / "nope.png"),
                          "-o", str(tmp_path / "out.png")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "no such file" in out.stderr
    assert not (tmp_path / "out.png").exists()


def test_measurement_lines_lengths_and_ratio():
    labels, ratio = im.measurement_lines([((10, 20), (40, 60))])
    assert labels == ["50 px"] and ratio == ""
    # two lines: shorter / longer, whatever the order (heart then chest or chest then heart)
    heart, chest = ((80, 150), (200, 150)), ((30, 140), (270, 140))
    assert im.measurement_lines([heart, chest])[1] == "ratio 0.50 (shorter / longer)"
    assert im.measurement_lines([chest, heart])[1] == "ratio 0.50 (shorter / longer)"
    # (row, column) spacing: x is scaled by the column spacing, y by the row spacing
    labels, _ = im.measurement_lines([((0, 0), (100, 0)), ((0, 0), (0, 100))], spacing=(0.2, 0.5))
    assert labels == ["50.0 mm", "20.0 mm"]
    assert im.measurement_lines([])[1] == "" and im.measurement_lines([heart] * 3)[1] == ""
    assert im.measurement_lines([((5, 5), (5, 5)), ((5, 5), (5, 5))])[1] == ""  # no division by zero
