"""Fast mode: generation with a model folder's distilled student (one UNet call per step)."""
import json
import shutil

import numpy as np
import pytest

from cxrdesk.core.training import distill as D
from cxrdesk.core.errors import PipelineError
from cxrdesk.core.generation.pipeline import Pipeline


@pytest.fixture(scope="module")
def fast_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with a student (the teacher's weights, guidance projection at zero)."""
    from diffusers import UNet2DConditionModel

    teacher = UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet")
    return D.export_student(tiny_model_dir, D.build_student(teacher), tmp_path_factory.mktemp("fast") / "tiny-fast",
                            step=7)


def test_fast_mode_draws_in_one_unet_call_per_step_and_says_so(fast_model_dir):
    pipe = Pipeline.load(fast_model_dir)
    assert pipe.info["student"] == {"steps": 4, "distill_steps": 7, "sampler": "lcm"} and pipe.info["student_note"] == ""
    calls = []
    student = pipe.student_unet()
    hook = student.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    teacher_calls = []
    hook2 = pipe.unet.register_forward_hook(lambda m, i, o: teacher_calls.append(1))
    seen = []
    try:
        r = pipe.generate("normal chest radiograph", negative_prompt="effusion", steps=4, seed=5, fast=True,
                          on_step=lambda i, n, p: seen.append((i, n, p is not None)), preview_every=2,
                          attention_words=["normal"])
    finally:
        hook.remove()
        hook2.remove()
    assert calls == [1, 1, 1, 1] and teacher_calls == []  # 4 calls on one latent, the teacher untouched
    assert [s[:2] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)] and all(s[2] for s in seen)
    assert r.image.shape == (256, 256) and np.isfinite(r.image).all()
    p = r.params
    assert p["fast"] is True and p["sampler"] == "lcm" and p["steps"] == 4 and p["guided_steps"] == 0
    assert p["negative_prompt"] == "" and p["unet_engine"] == "eager"  # what did not apply is not claimed
    assert set(r.attention) == {"normal"}
    again = pipe.generate("normal chest radiograph", steps=4, seed=5, fast=True)
    assert np.array_equal(again.image, r.image)  # same seed, same film
    other = pipe.generate("normal chest radiograph", steps=4, seed=6, fast=True)
    assert not np.array_equal(other.image, r.image)
    full = pipe.generate("normal chest radiograph", steps=4, seed=5)
    assert full.params["fast"] is False and full.params["sampler"] != "lcm"


def test_fast_mode_without_a_usable_student_is_one_line(tiny_model_dir, fast_model_dir, tmp_path):
    pipe = Pipeline.load(tiny_model_dir)
    assert pipe.info["student"] is None and "train distill" in pipe.info["student_note"]
    with pytest.raises(PipelineError, match="no distilled student"):
        pipe.generate("normal chest radiograph", steps=4, seed=1, fast=True)
    stale = tmp_path / "stale"
    shutil.copytree(fast_model_dir, stale)
    extra = json.loads((stale / "cxrdesk.json").read_text())
    extra["student"]["teacher_hash"] = "0123456789ab"  # distilled from weights the folder no longer has
    (stale / "cxrdesk.json").write_text(json.dumps(extra))
    pipe = Pipeline.load(stale)
    assert pipe.info["student"] is None
    with pytest.raises(PipelineError, match="distilled from other weights"):
        pipe.generate("normal chest radiograph", steps=4, seed=1, fast=True)
    assert pipe.generate("normal chest radiograph", steps=2, seed=1).image.shape == (256, 256)  # full still works


def test_fast_mode_cancels_between_steps(fast_model_dir):
    import threading

    from cxrdesk.core.errors import GenerationCancelled

    pipe = Pipeline.load(fast_model_dir)
    cancel = threading.Event()
    with pytest.raises(GenerationCancelled):
        pipe.generate("normal chest radiograph", steps=4, seed=1, fast=True, cancel=cancel,
                      on_step=lambda i, n, p: cancel.set())


def test_generate_fast_command(fast_model_dir, tiny_model_dir, tmp_path, capsys):
    from cxrdesk.cli import main
    from cxrdesk.core.imaging.pngio import read_png

    out = tmp_path / "f.png"
    assert main(["generate", "normal chest radiograph", "--model", str(fast_model_dir), "--fast", "--seed", "3",
                 "-o", str(out), "--quiet"]) == 0
    meta = read_png(out).metadata
    assert meta["fast"] is True and meta["steps"] == 4 and meta["sampler"] == "lcm"
    assert main(["generate", "normal chest radiograph", "--model", str(tiny_model_dir), "--fast",
                 "-o", str(tmp_path / "g.png"), "--quiet"]) == 2
    assert "no distilled student" in capsys.readouterr().err
    assert main(["info", "--model", str(fast_model_dir)]) == 0
    assert ("fast mode:    a distilled student, 4 steps (consistency sampling), one UNet call each (distilled 7 "
            "training steps)") in capsys.readouterr().out
    assert main(["info", "--model", str(tiny_model_dir)]) == 0
    assert "fast mode:    none (this model folder has no distilled student" in capsys.readouterr().out


def test_evaluate_fast_scores_the_student(fast_model_dir, tiny_model_dir, tmp_path, capsys, monkeypatch):
    from cxrdesk.cli import main

    from .fixtures import make_dataset

    used = []
    real_generate = Pipeline.generate

    def spy(self, *a, **kw):
        r = real_generate(self, *a, **kw)
        used.append((r.params["fast"], r.params["steps"]))
        return r

    monkeypatch.setattr(Pipeline, "generate", spy)
    data = make_dataset(tmp_path / "data", n=40)
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(fast_model_dir), "--data", str(data), "--out", str(out), "--n", "3",
                 "--split", "tune", "--fast", "--quiet"]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert res["fast"] is True and res["steps"] == 4 and res["sampler"] == "lcm"
    assert used and set(used) == {(True, 4)}  # every film, the diversity ones too, from the student
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out), "--n", "3",
                 "--fast", "--quiet"]) == 2
    assert "no distilled student" in capsys.readouterr().err


def test_warm_up_loads_the_student_once_so_the_first_fast_film_does_not_wait(fast_model_dir, monkeypatch):
    from cxrdesk.core.generation import fast

    loads = []
    real = fast.load_student
    monkeypatch.setattr(fast, "load_student", lambda *a, **k: loads.append(1) or real(*a, **k))
    pipe = Pipeline.load(fast_model_dir)
    pipe.warm_up()
    assert loads == [1]
    pipe.generate("normal chest radiograph", steps=2, seed=1, fast=True)
    assert loads == [1]


def test_warm_up_runs_the_student_in_onnx_runtime_like_the_unet(fast_model_dir, cxrdesk_cache_dir, monkeypatch):
    pytest.importorskip("onnxruntime")
    from cxrdesk.core.generation.attention import ATTENTION_EVERY

    eager = Pipeline.load(fast_model_dir)
    plain = eager.generate("normal chest radiograph", steps=4, seed=2, fast=True)
    with_maps = eager.generate("normal chest radiograph", steps=4, seed=2, fast=True, attention_words=["normal"])
    pipe = Pipeline.load(fast_model_dir)
    pipe.warm_up()
    assert pipe.graphs()["student"] == {1: "onnxruntime"} and list(cxrdesk_cache_dir.rglob("student-*.onnx"))
    assert "student-attention" not in pipe.graphs()  # only asked for with attention (the app's setting)
    r = pipe.generate("normal chest radiograph", steps=4, seed=2, fast=True)
    assert r.params["unet_engine"] == "onnxruntime" and plain.params["unet_engine"] == "eager"
    assert np.abs(r.image_u8.astype(int) - plain.image_u8.astype(int)).max() <= 2
    # without an attention graph, the steps that record attention run the student in torch
    a = pipe.generate("normal chest radiograph", steps=4, seed=2, fast=True, attention_words=["normal"])
    assert a.attention and np.abs(a.image_u8.astype(int) - plain.image_u8.astype(int)).max() <= 2
    # warm_up(attention=True) adds a student graph returning the maps: every step then runs a graph,
    # with the maps torch records
    pipe.warm_up(attention=True)
    assert pipe.graphs()["student-attention"] == {1: "onnxruntime"}
    assert list(cxrdesk_cache_dir.rglob("student-attention-*.onnx"))
    calls = {"plain": 0, "attention": 0}
    for kind, graphs in (("plain", pipe._student_graphs), ("attention", pipe._student_attention)):
        for key, graph in list(graphs.items()):
            graphs[key] = lambda *x, _g=graph, _k=kind: calls.__setitem__(_k, calls[_k] + 1) or _g(*x)

    def no_torch_student(*x, **k):
        raise AssertionError("the torch student ran")

    monkeypatch.setattr(pipe._student, "forward", no_torch_student)
    g = pipe.generate("normal chest radiograph", steps=4, seed=2, fast=True, attention_words=["normal"])
    assert calls == {"attention": 4 // ATTENTION_EVERY, "plain": 4 - 4 // ATTENTION_EVERY}
    assert np.abs(g.image_u8.astype(int) - plain.image_u8.astype(int)).max() <= 2
    np.testing.assert_allclose(g.attention["normal"], with_maps.attention["normal"], atol=1e-3)




def _with_student_sampler(folder, sampler, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(folder, out)
    meta = json.loads((out / "cxrdesk.json").read_text())
    meta["student"]["sampler"] = sampler
    (out / "cxrdesk.json").write_text(json.dumps(meta))
    return out


def test_a_guided_student_runs_the_sampler_its_record_names_or_the_one_asked_for(fast_model_dir, tmp_path):
    kw = dict(steps=4, seed=3, fast=True)
    own = Pipeline.load(_with_student_sampler(fast_model_dir, "model", tmp_path / "a"))
    auto = own.generate("normal chest radiograph", **kw)
    assert auto.params["sampler"] == own.info["sampler"]
    ddim = own.generate("normal chest radiograph", sampler="ddim", **kw)
    assert ddim.params["sampler"] == "ddim" and not np.array_equal(ddim.image_u16, auto.image_u16)
    named = Pipeline.load(_with_student_sampler(fast_model_dir, "ddim", tmp_path / "b"))
    assert named.info["student"]["sampler"] == "ddim"
    r = named.generate("normal chest radiograph", **kw)
    assert r.params["sampler"] == "ddim" and np.array_equal(r.image_u16, ddim.image_u16)
    # a consistency student runs only its own
    lcm = Pipeline.load(fast_model_dir).generate("normal chest radiograph", sampler="ddim", **kw)
    assert lcm.params["sampler"] == "lcm"
    # a record naming no known sampler: no usable student
    bad = Pipeline.load(_with_student_sampler(fast_model_dir, "heun", tmp_path / "c"))
    assert bad.info["student"] is None


def test_a_student_record_naming_its_guidance_is_the_fast_default_and_full_keeps_the_models(fast_model_dir, tmp_path,
                                                                                            capsys):
    from cxrdesk.cli import main

    out = _with_student_sampler(fast_model_dir, "model", tmp_path / "g")
    meta = json.loads((out / "cxrdesk.json").read_text())
    meta["student"]["guidance"] = 7.0
    (out / "cxrdesk.json").write_text(json.dumps(meta))
    p = Pipeline.load(out)
    assert p.info["student"]["guidance"] == 7.0 and p.default_guidance(fast=True) == 7.0
    assert p.default_guidance() == p.model.guidance != 7.0
    kw = dict(steps=2, seed=3)
    fast = p.generate("normal chest radiograph", fast=True, **kw)
    assert fast.params["guidance_scale"] == 7.0
    assert np.array_equal(fast.image_u16, p.generate("normal chest radiograph", fast=True, guidance_scale=7.0,
                                                     **kw).image_u16)
    assert p.generate("normal chest radiograph", **kw).params["guidance_scale"] == p.model.guidance
    assert main(["info", "--model", str(out)]) == 0 and "guidance 7" in capsys.readouterr().out
    for bad in (0.5, "x", 99):  # unusable values: the record stays usable, without a guidance of its own
        meta["student"]["guidance"] = bad
        (out / "cxrdesk.json").write_text(json.dumps(meta))
        assert "guidance" not in Pipeline.load(out).info["student"]
