"""The app's first fast film while the model loads (issue 33): drawn at once by the quick start from the
graphs an earlier run left, other jobs waiting for the load as before, cancel working, later films the
loaded model's."""
from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("onnxruntime")

from cxrdesk.core.generation.pipeline import Pipeline  # noqa: E402
from tests.test_quickstart import STEPS, make_guided_model  # noqa: E402
from tests.test_ui_app import GEN_TIMEOUT, make_window  # noqa: E402, F401


@pytest.fixture(scope="module")
def guided_dir(tmp_path_factory):
    return make_guided_model(tmp_path_factory.mktemp("uiquick") / "tiny-guided")


@pytest.fixture
def held_load(guided_dir, cxrdesk_cache_dir, monkeypatch):
    """An earlier run's cache, and a model load that waits until the test releases it."""
    Pipeline.load(guided_dir).warm_up(attention=True)
    release = threading.Event()
    real = Pipeline.load.__func__

    def held(cls, *a, **k):
        assert release.wait(GEN_TIMEOUT / 1000)
        return real(cls, *a, **k)

    monkeypatch.setattr(Pipeline, "load", classmethod(held))
    return release


def _ask(w, seed=3, fast=True):
    g = w.generator
    g.prompt_edit.setPlainText("Small left pleural effusion")
    g.random_seed_check.setChecked(False)
    g.seed_spin.setValue(seed)
    g.batch_spin.setValue(1)
    g.set_fast(fast)
    w.generator.request_generate()


def test_a_fast_film_asked_for_while_the_model_loads_is_drawn_at_once(qtbot, make_window, guided_dir, held_load):
    w = make_window(guided_dir)
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT) as done:
        _ask(w)
    assert done.args[0] == "done" and w.model_state == "loading"  # the load is still held
    quick = w.history.entries()[-1]
    assert quick.params["fast"] and quick.params["steps"] == STEPS and quick.params["unet_engine"] == "onnxruntime"
    assert "quick_start" in quick.timings and quick.attention()  # the app asks for attention maps
    # a Full film waits for the model, as before
    w.generator.set_fast(False)
    w.generator.request_generate()
    qtbot.wait(300)
    assert w.running_job is not None and len(w.history.entries()) == 1
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT) as done:
        held_load.set()
    assert done.args[0] == "done" and w.model_state == "loaded"
    assert not w.history.entries()[-1].params["fast"]
    # later fast films are the loaded model's: the same film for the same seed
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT):
        _ask(w)
    later = w.history.entries()[-1]
    assert "quick_start" not in later.timings and later.params["seed"] == quick.params["seed"]
    assert w.host.worker.quick is None
    a, b = (np.asarray(e.image(), np.int32) for e in (quick, later))
    assert np.abs(a - b).max() <= 2 * 4095 / 255  # 12-bit films; ONNX Runtime and torch round differently
    # (test_fast's bound: two 8-bit grey levels)


def test_a_quick_film_can_be_cancelled(qtbot, make_window, guided_dir, held_load):
    w = make_window(guided_dir)
    with qtbot.waitSignal(w.jobDone, timeout=GEN_TIMEOUT) as done:
        _ask(w)
        w.cancel_generation()
    assert done.args[0] == "cancelled" and not w.history.entries() and w.model_state == "loading"
    held_load.set()
    qtbot.waitUntil(lambda: w.model_state == "loaded", timeout=GEN_TIMEOUT)
