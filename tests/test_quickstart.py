"""The first fast film without torch (core.generation.quickstart): drawn from the graphs and numbers an
earlier run's warm-up left, equal to the pipeline's fast film, and only from files that run checked."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from cxrdesk.core.errors import GenerationCancelled  # noqa: E402
from cxrdesk.core.generation.pipeline import Pipeline  # noqa: E402
from cxrdesk.core.generation.quickstart import QuickStart, numbers_path, torch_version  # noqa: E402

STEPS = 4


def make_guided_model(dest):
    """A tiny zero terminal SNR v-prediction model (like the default model's schedule) with a
    guidance-distilled student that runs the model's own sampler and whose guidance input matters."""
    import torch

    from cxrdesk.core.generation.models import build_unet, build_vae, scheduler_config
    from cxrdesk.core.modelfolder import write_model_folder
    from cxrdesk.core.training import distill as D

    torch.manual_seed(1)
    teacher_dir = write_model_folder(dest.parent / "teacher", build_vae("tiny", 256), build_unet("tiny", latent_size=32),
                                     name="tiny-guided", random_weights=True,
                                     scheduler=scheduler_config("v_prediction", zero_snr=True), guidance=4.5)
    from diffusers import UNet2DConditionModel

    student = D.build_student(UNet2DConditionModel.from_pretrained(teacher_dir / "unet"))
    with torch.no_grad():
        student.time_embedding.cond_proj.weight.normal_(0, 0.5)
    folder = D.export_student(teacher_dir, student, dest, step=7)
    meta = json.loads((folder / "cxrdesk.json").read_text())
    meta["student"].update(sampler="model", steps=STEPS, method="guidance distillation", guidance=6.5)
    (folder / "cxrdesk.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def guided_dir(tmp_path_factory):
    return make_guided_model(tmp_path_factory.mktemp("quick") / "tiny-guided")


@pytest.fixture
def warm_pipe(guided_dir):
    """The model loaded and warmed up as the app does after a load (attention graphs too): what an
    earlier run leaves in this test's cache."""
    pipe = Pipeline.load(guided_dir)
    pipe.warm_up(attention=True)
    return pipe


def test_a_quick_film_is_the_pipelines_fast_film(guided_dir, warm_pipe, cxrdesk_cache_dir):
    assert warm_pipe.model.sampler == "dpm++" and warm_pipe.model.student["sampler"] == "model"
    quick = QuickStart.open(guided_dir)
    assert quick is not None and {"text_encoder", "student", "student-attention", "decoder"} <= set(quick.sessions)
    cases = [("Normal chest radiograph", 3, None, 256), ("Large left pleural effusion", 2 ** 63 - 1, 7.5, 256),
             ("bilateral ground-glass opacities " * 12, 12345, 2.0, 512)]
    for prompt, seed, g, size in cases:
        ref = warm_pipe.generate(prompt, seed=seed, fast=True, steps=STEPS, sampler="auto", guidance_scale=g,
                                 width=size, height=size, attention_words=["effusion", "normal", "opacities"])
        steps_seen = []
        got = quick.generate(prompt, seed=seed, steps=STEPS, guidance_scale=g, width=size, height=size,
                             attention_words=["effusion", "normal", "opacities"],
                             on_step=lambda i, n, p: steps_seen.append((i, n, p is not None)))
        assert np.abs(got.image - ref.image).max() <= 1 / 4095
        assert got.params == ref.params  # the same record, engine included
        assert set(got.attention) == set(ref.attention) and got.attention
        for word in ref.attention:
            np.testing.assert_allclose(got.attention[word], ref.attention[word], atol=1e-3)
        assert steps_seen == [(i, STEPS, i == STEPS) for i in range(1, STEPS + 1)]  # the film is its one preview
    assert ref.params["prompt_truncated"] and ref.params["unet_engine"] == "onnxruntime"
    assert quick.generate("Normal", seed=1, steps=STEPS).params["guidance_scale"] == 6.5  # the student's own
    # another seed, another film; the guidance changes it too (it enters the student as an input)
    a = quick.generate("Normal chest radiograph", seed=4, steps=STEPS)
    assert not np.array_equal(a.image, quick.generate("Normal chest radiograph", seed=5, steps=STEPS).image)
    assert not np.array_equal(a.image, quick.generate("Normal chest radiograph", seed=4, steps=STEPS,
                                                      guidance_scale=8.0).image)


def test_the_quick_path_imports_no_torch(guided_dir, warm_pipe, cxrdesk_cache_dir, tmp_path):
    ref = warm_pipe.generate("Normal chest radiograph", seed=9, fast=True, steps=STEPS)
    out = tmp_path / "film.npy"
    code = ("import sys\n"
            "from cxrdesk.core.generation.quickstart import QuickStart\n"
            f"q = QuickStart.open({str(guided_dir)!r})\n"
            f"r = q.generate('Normal chest radiograph', seed=9, steps={STEPS})\n"
            "import numpy as np\n"
            f"np.save({str(out)!r}, r.image)\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    env = dict(os.environ, CXRDESK_CACHE_DIR=str(cxrdesk_cache_dir))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert np.abs(np.load(out) - ref.image).max() <= 1 / 4095


def test_only_files_the_full_path_checked_are_used(guided_dir, cxrdesk_cache_dir, monkeypatch):
    assert QuickStart.open(guided_dir) is None  # nothing cached yet
    Pipeline.load(guided_dir).warm_up()
    assert QuickStart.open(guided_dir) is not None
    onnx = cxrdesk_cache_dir / "onnx"
    student = next(onnx.glob("student-*.onnx"))
    assert student.with_name(student.name + ".verified").is_file()
    # a graph rewritten since its check (here: the same bytes, a new file) is not used
    data = student.read_bytes()
    student.unlink()
    student.write_bytes(data)
    assert QuickStart.open(guided_dir) is None
    Pipeline.load(guided_dir).warm_up()  # checked again, marked again
    assert QuickStart.open(guided_dir) is not None
    # the numbers file must be the one a run wrote after checking the noise
    numbers = numbers_path(torch_version())
    numbers.with_name(numbers.name + ".verified").unlink()
    assert QuickStart.open(guided_dir) is None
    Pipeline.load(guided_dir).warm_up()
    assert QuickStart.open(guided_dir) is not None
    # and the model's record: its sampler walked by numpy as by the pipeline's scheduler, checked
    record = next((cxrdesk_cache_dir / "onnx").glob("quickstart-*.json"))
    assert json.loads(record.read_text()) == {"steps": STEPS}
    record.write_text(json.dumps({"steps": STEPS}))  # rewritten: no longer the checked file
    assert QuickStart.open(guided_dir) is None
    Pipeline.load(guided_dir).warm_up()
    assert QuickStart.open(guided_dir) is not None
    # another engine asked for: the full path as it is
    monkeypatch.setenv("CXRDESK_UNET_ENGINE", "trace")
    assert QuickStart.open(guided_dir) is None


def test_a_model_drawing_noise_with_an_offset_or_a_consistency_student_gets_no_quick_path(
        guided_dir, warm_pipe, tmp_path):
    import shutil

    offset = tmp_path / "offset"
    shutil.copytree(guided_dir, offset)
    meta = json.loads((offset / "cxrdesk.json").read_text())
    meta["noise_offset"] = 0.1
    (offset / "cxrdesk.json").write_text(json.dumps(meta))
    assert QuickStart.open(offset) is None
    lcm = tmp_path / "lcm"
    shutil.copytree(guided_dir, lcm)
    meta = json.loads((lcm / "cxrdesk.json").read_text())
    meta["student"]["sampler"] = "lcm"
    (lcm / "cxrdesk.json").write_text(json.dumps(meta))
    assert QuickStart.open(lcm) is None
    assert QuickStart.open(guided_dir) is not None


def test_requests_it_cannot_draw_are_left_to_the_pipeline_and_cancel_stops_it(guided_dir, warm_pipe):
    import threading

    quick = QuickStart.open(guided_dir)
    assert quick.accepts("Normal chest radiograph", STEPS) and quick.accepts("Normal chest radiograph", STEPS, 5.5)
    assert not quick.accepts("Normal chest radiograph", STEPS, 4.05)  # guidance off the recorded grid
    assert not quick.accepts("", STEPS) and not quick.accepts("Normal", STEPS, size=300)
    assert not quick.accepts("Normal chest radiograph", STEPS + 1)  # only the steps the record was checked on
    assert quick.generate("Normal chest radiograph", steps=STEPS, guidance_scale=4.05) is None
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationCancelled):
        quick.generate("Normal chest radiograph", steps=STEPS, cancel=cancel)
