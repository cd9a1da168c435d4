import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cxrdesk.core.imaging.pngio import read_png

from .fixtures import make_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("cli") / "tiny")


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cxrdesk", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_generate_batch_writes_pngs_with_parameters_and_dicom(tiny, tmp_path):
    r = run("generate", "small right pleural effusion", "-o", str(tmp_path / "cxr.png"), "--n", "2",
            "--steps", "3", "--seed", "5", "--model", str(tiny), "--dicom", str(tmp_path / "dcm"), "--quiet")
    assert r.returncode == 0, r.stderr
    files = sorted(tmp_path.glob("cxr_*.png"))
    assert [f.name for f in files] == ["cxr_001.png", "cxr_002.png"]
    assert "seed=5" in r.stdout and "seed=6" in r.stdout
    text = Image.open(files[0]).text
    blob = " ".join(text.values())
    for key in ("small right pleural effusion", "dpm++-karras"):
        assert key in blob
    assert "random weights" in r.stderr  # a test model is never passed off as a real one
    dcms = sorted((tmp_path / "dcm").glob("*.dcm"))
    assert len(dcms) == 2
    import pydicom

    a, b = (pydicom.dcmread(d) for d in dcms)
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID


def test_same_seed_same_file_pixels(tiny, tmp_path):
    for name in ("a.png", "b.png"):
        assert run("generate", "normal", "-o", str(tmp_path / name), "--steps", "2", "--seed", "9",
                   "--model", str(tiny), "--quiet").returncode == 0
    import numpy as np

    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


def test_info(tiny):
    r = run("info", "--model", str(tiny))
    assert r.returncode == 0
    for word in ("unet", "vae", "text encoder", "device", "random weights", "guidance 4 recommended",
                 "latents 4x32x32 (one scale)"):
        assert word in r.stdout.lower()


def test_generate_uses_the_models_recommended_guidance_unless_given(tiny, tmp_path):
    from tests.fixtures import model_copy_recommending

    model = model_copy_recommending(tiny, tmp_path / "g6", 6.5)
    for name, extra, want in (("a.png", [], 6.5), ("b.png", ["--guidance", "2"], 2.0)):
        r = run("generate", "normal", "-o", str(tmp_path / name), "--steps", "2", "--seed", "1",
                "--model", str(model), "--quiet", *extra)
        assert r.returncode == 0, r.stderr
        assert read_png(tmp_path / name).metadata["guidance_scale"] == want


def test_generate_many_images_warms_up_the_unet_and_draws_the_same(tiny, tmp_path):
    from cxrdesk.commands.generate import WARM_UP_FROM

    args = ("generate", "left pleural effusion", "--steps", "3", "--seed", "4", "--model", str(tiny), "--quiet")
    assert run(*args, "-o", str(tmp_path / "one.png")).returncode == 0  # a single image: eager
    assert "fast graphs:  none yet" in run("info", "--model", str(tiny)).stdout
    r = run(*args, "-o", str(tmp_path / "many.png"), "--n", str(WARM_UP_FROM))  # ONNX Runtime first
    assert r.returncode == 0, r.stderr
    # the guided UNet and the decoder, cached for the next start
    assert "fast graphs:  2 cached for ONNX Runtime" in run("info", "--model", str(tiny)).stdout
    one, many = (read_png(tmp_path / n).pixels.astype(int) for n in ("one.png", "many_001.png"))
    # ONNX Runtime's fused kernels round differently: a few pixels move by one of the film's grey
    # steps (this tiny model's films use every 16th 12-bit value), no more
    step = np.diff(np.unique(one)).min()
    assert np.abs(one - many).max() <= step and (one != many).mean() < 0.001


def test_generate_guidance_interval_default_and_option(tiny, tmp_path):
    from tests.fixtures import model_copy_recommending

    model = model_copy_recommending(tiny, tmp_path / "iv", 6.5, [0.2, 0.8])
    for name, extra, want in (("a.png", [], [0.2, 0.8]), ("b.png", ["--guidance-interval", "0,1"], [0.0, 1.0])):
        r = run("generate", "normal", "-o", str(tmp_path / name), "--steps", "4", "--seed", "1",
                "--model", str(model), "--quiet", *extra)
        assert r.returncode == 0, r.stderr
        meta = read_png(tmp_path / name).metadata
        # the default sampler's 4 timesteps are 999, 687, 146, 0: only 687 lies in 0.2-0.8
        assert meta["guidance_interval"] == want and meta["guided_steps"] == (4 if want == [0, 1] else 1)
    info = run("info", "--model", str(model))
    assert "guidance 6.5 recommended (applied from 20% to 80% noise)" in info.stdout


@pytest.mark.parametrize("args,msg", [
    (["   "], "prompt is empty"),
    (["x", "--steps", "abc"], "steps must be a whole number"),
    (["x", "--steps", "0"], "steps must be"),
    (["x", "--guidance", "nan"], "guidance must be a number"),
    (["x", "--guidance", "99"], "guidance must be between"),
    (["x", "--size", "300"], "size must be one of"),
    (["x", "--guidance-interval", "0.8,0.2"], "0 <= LO <= HI <= 1"),
    (["x", "--guidance-interval", "half"], "two numbers LO,HI"),
    (["x", "--sampler", "plms"], "sampler"),
    (["x", "--n", "0"], "--n must be"),
    (["x", "-o", "/nonexistent-dir/x.png"], "does not exist"),
    (["x", "-o", "out.jpg"], "must be a .png"),
])
def test_bad_input_one_line_error_no_traceback_no_file(tiny, tmp_path, args, msg):
    r = run("generate", *args, "--model", str(tiny), "--quiet", cwd=tmp_path)
    assert r.returncode != 0
    assert msg in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.tmp"))


def test_bad_models_are_refused_in_one_line(tmp_path):
    ck = tmp_path / "model.ckpt"
    ck.write_bytes(b"\x80\x04junk")
    for model, msg in ((ck, "pickle"), (tmp_path / "missing", "not found"), (tmp_path, "not a model folder")):
        r = run("generate", "normal", "-o", str(tmp_path / "x.png"), "--model", str(model))
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_unwritable_output_leaves_no_partial_file(tiny, tmp_path):
    r = run("generate", "normal", "-o", "/proc/cxr.png", "--steps", "1", "--model", str(tiny), "--quiet")
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr


def test_version_is_fast_path():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("cxrdesk ")


def test_generate_notes_a_rare_finding(tiny, tmp_path):
    from tests.fixtures import model_copy_recommending

    model = model_copy_recommending(tiny, tmp_path / "counted", label_counts={"No Finding": 500, "Cardiomegaly": 13})
    args = ("--steps", "1", "--seed", "1", "--model", str(model), "--quiet")
    r = run("generate", "Cardiomegaly. No pleural effusion.", "-o", str(tmp_path / "a.png"), *args)
    assert r.returncode == 0, r.stderr
    assert "note: Few training films show cardiomegaly (13)" in r.stderr
    r = run("generate", "Normal heart size. No cardiomegaly.", "-o", str(tmp_path / "b.png"), *args)
    assert r.returncode == 0 and "Few training films" not in r.stderr


def test_generate_notes_a_finding_the_findings_check_found_drawn_poorly(tiny, tmp_path):
    from tests.fixtures import FINDINGS_CHECK, model_copy_recommending

    model = model_copy_recommending(tiny, tmp_path / "checked", findings_check=FINDINGS_CHECK)
    args = ("--steps", "1", "--seed", "1", "--model", str(model), "--quiet")
    r = run("generate", "Right lower lobe pneumonia", "-o", str(tmp_path / "a.png"), *args)
    assert r.returncode == 0, r.stderr
    assert "note: Asked for pneumonia, this model mostly draws COVID-19-like films" in r.stderr
    r = run("generate", "Small left pleural effusion", "-o", str(tmp_path / "b.png"), *args)
    assert r.returncode == 0 and "note:" not in r.stderr
    broken = model_copy_recommending(tiny, tmp_path / "broken", findings_check="{not json")
    r = run("generate", "Right lower lobe pneumonia", "-o", str(tmp_path / "c.png"), "--steps", "1",
            "--model", str(broken), "--quiet")
    assert r.returncode == 0 and "note:" not in r.stderr and (tmp_path / "c.png").is_file()


def test_generate_a_teaching_set_from_a_prompts_file(tiny, tmp_path):
    import pydicom

    (tmp_path / "lesson.txt").write_text("# week 3: pleura\nsmall left pleural effusion\n\n"
                                         "normal chest radiograph\n", encoding="utf-8")
    r = run("generate", "--prompts", str(tmp_path / "lesson.txt"), "-o", str(tmp_path / "case.png"), "--n", "2",
            "--steps", "2", "--seed", "3", "--model", str(tiny), "--dicom", str(tmp_path / "dcm"), "--quiet")
    assert r.returncode == 0, r.stderr
    files = sorted(f.name for f in tmp_path.glob("case_*.png"))
    assert files == ["case_01_001.png", "case_01_002.png", "case_02_001.png", "case_02_002.png"]
    assert [read_png(tmp_path / f).metadata["prompt"] for f in files] == \
        ["small left pleural effusion"] * 2 + ["normal chest radiograph"] * 2
    assert [read_png(tmp_path / f).metadata["seed"] for f in files] == [3, 4, 5, 6]
    ds = [pydicom.dcmread(d) for d in sorted((tmp_path / "dcm").glob("*.dcm"))]
    assert len(ds) == 4 and len({d.StudyInstanceUID for d in ds}) == 1
    assert len({d.SeriesInstanceUID for d in ds}) == 2
    assert [int(d.SeriesNumber) for d in ds] == [1, 1, 2, 2] and [int(d.InstanceNumber) for d in ds] == [1, 2, 1, 2]
    # the series say which case they are, not the answer
    assert "case 01" in ds[0].SeriesDescription and "effusion" not in ds[0].SeriesDescription
    assert "SYNTHETIC" in ds[0].SeriesDescription


@pytest.mark.parametrize("case", ["both", "missing", "empty", "bad_prompt", "none"])
def test_generate_prompts_file_errors(tiny, tmp_path, case):
    f = tmp_path / "p.txt"
    args = ["--prompts", str(f)]
    if case == "both":
        f.write_text("normal\n")
        args = ["normal", *args]
    elif case == "empty":
        f.write_text("# only a comment\n\n")
    elif case == "bad_prompt":
        f.write_text("normal\n   \neffusion\n")
        args += ["--steps", "0"]  # refused before any image is made
    elif case == "none":
        args = []
    r = run("generate", *args, "-o", str(tmp_path / "c.png"), "--model", str(tiny), "--quiet")
    assert r.returncode != 0
    msg = r.stderr.strip().splitlines()[-1]
    assert msg.startswith("cxrdesk: ")
    expected = {"both": "not both", "missing": "not found", "empty": "no prompts", "bad_prompt": "steps",
                "none": "prompt is empty"}[case]
    assert expected in msg
    assert not list(tmp_path.glob("c*.png"))  # nothing written


# ------------------------------------------------------------------------------------------
# issue 31: one line and exit 2, never a traceback
# ------------------------------------------------------------------------------------------

def _one_line_error(r, msg):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    err = [ln for ln in r.stderr.strip().splitlines() if "random weights" not in ln]  # the tiny model's note
    assert len(err) == 1 and err[0].startswith("cxrdesk: error: ") and msg in err[0], err


@pytest.mark.parametrize("args,msg", [
    (["x", "--seed", str(2 ** 64)], "--seed must be from 0 to"),
    (["x", "--seed", str(2 ** 63 - 1), "--n", "2"], "every image takes the next seed"),
    (["x", "-o", "d/" * 3000 + "x.png"], "output path too long"),
    (["x", "-o", "e" * 300 + ".png"], "output path too long"),
    (["--prompts", "/dev/zero"], "larger than 1024 KB"),
])
def test_hostile_generate_arguments(tiny, tmp_path, args, msg):
    _one_line_error(run("generate", *args, "--model", str(tiny), "--quiet", cwd=tmp_path), msg)
    assert not list(tmp_path.iterdir())


def test_prompt_that_is_not_utf8_is_refused(tiny, tmp_path):
    for opt in ([], ["--negative"]):
        argv = [sys.executable, "-m", "cxrdesk", "generate", *(["x"] if opt else []), *opt, b"ab\xff\xfe",
                "--model", str(tiny), "-o", str(tmp_path / "x.png"), "--quiet"]
        r = subprocess.run(argv, capture_output=True, text=True, errors="replace")
        _one_line_error(r, "not valid UTF-8")
    assert not list(tmp_path.iterdir())


def test_prompts_file_with_an_endless_line(tiny, tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("x" * 5000 + "\n")
    _one_line_error(run("generate", "--prompts", str(f), "-o", str(tmp_path / "c.png"), "--model", str(tiny)),
                    "prompt 1 is not a prompt")


def test_a_244_character_file_name_is_written(tiny, tmp_path):
    name = "n" * 240 + ".png"
    r = run("generate", "x", "--steps", "1", "-o", name, "--model", str(tiny), "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == [name]


def _model_copy(tiny, dest, rel, text):
    import shutil

    shutil.copytree(tiny, dest)
    (dest / rel).write_text(text)
    return dest


@pytest.mark.parametrize("rel,text,msg", [
    ("cxrdesk.json", "{", "cxrdesk.json: not valid JSON"),
    ("cxrdesk.json", "[1, 2]", "expected a JSON object"),
    ("cxrdesk.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("cxrdesk.json", '{"training": 3}', "training must be"),
    ("cxrdesk.json", '{"sampling": "fast"}', "sampling must be an object"),
    ("cxrdesk.json", '{"preview_map": [1]}', "preview_map must be"),
    ("model_index.json", "nul", "model_index.json: not valid JSON"),
    ("scheduler/scheduler_config.json", "{", "scheduler_config.json: not valid JSON"),
    ("scheduler/scheduler_config.json", '{"num_train_timesteps": "x"}', "num_train_timesteps must be"),
    ("scheduler/scheduler_config.json", '{"beta_schedule": "cubic"}', "unusable"),
    ("scheduler/scheduler_config.json", '{"timestep_spacing": "odd"}', "unusable"),
])
def test_odd_model_folder_json_is_one_line(tiny, tmp_path, rel, text, msg):
    model = _model_copy(tiny, tmp_path / "m", rel, text)
    _one_line_error(run("info", "--model", str(model)), msg)


def test_decoy_safetensors_gives_only_our_line(tiny, tmp_path):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny, model)
    (model / "unet" / "diffusion_pytorch_model.safetensors").rename(model / "unet" / "decoy.safetensors")
    _one_line_error(run("info", "--model", str(model)), "cannot load weights")


def test_export_refuses_a_small_png_claiming_a_huge_image(tmp_path):
    from tests.test_dicom_fuzz import _png

    src = _png(tmp_path / "big.png", 12000, 12000)
    assert src.stat().st_size < 200_000
    code = ("import resource, sys\nfrom cxrdesk.cli import main\nrc = main(sys.argv[1:])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code, "export", str(src), "--dicom", str(tmp_path / "o.dcm")],
                       capture_output=True, text=True)
    _one_line_error(r, "image too large (12000x12000")
    assert int(r.stdout.split()[-1]) < 1_500_000  # KB
    assert not (tmp_path / "o.dcm").exists()


def test_a_killed_export_leaves_no_temporary_file_for_long(tmp_path):
    """A temporary file of ours whose process is gone (a kill mid-write) goes on the next write."""
    import os
    import time

    from cxrdesk.core.fsutil import STALE_TMP_SECONDS, atomic_write, temp_name

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stranded = tmp_path / temp_name("x.dcm").replace(f".{os.getpid()}.", f".{int(dead.stdout)}.")
    stranded.write_bytes(b"partial")
    recent = tmp_path / temp_name("y.dcm")  # our own, being written: kept
    recent.write_bytes(b"partial")
    other = tmp_path / ".notes.tmp"  # not ours: kept
    other.write_bytes(b"x")
    old = time.time() - STALE_TMP_SECONDS - 60
    for p in (stranded, other):
        os.utime(p, (old, old))
    atomic_write(tmp_path / "z.dcm", lambda fh: fh.write(b"ok"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([recent.name, other.name, "z.dcm"])
    assert len(os.fsencode(temp_name("n" * 255))) <= 255
