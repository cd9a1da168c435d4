"""The UNet in ONNX Runtime (core.generation.onnx_graphs through Pipeline.warm_up): same images within float
rounding, exported once and reused from the cache, checked before use, and every failure falls
back to the TorchScript graph or the eager UNet."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from cxrdesk.core.generation import onnx_graphs
from cxrdesk.core.errors import PipelineError
from cxrdesk.core.generation.pipeline import Pipeline

from .fixtures import make_tiny_model

KW = dict(steps=4, seed=5)
PROMPT = "right upper lobe mass"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("onnx") / "tiny")


def _onnx_files(cache, part="unet"):
    return sorted((cache / "onnx").glob(f"{part}-*.onnx"))


def test_onnx_graphs_draws_the_eager_images_and_is_exported_once(tiny, cxrdesk_cache_dir, monkeypatch):
    p = Pipeline.load(tiny)
    eager = p.generate(PROMPT, **KW)
    eager_part = p.generate(PROMPT, guidance_interval=(0.3, 0.7), **KW)
    assert p.info["unet_engine"] == "eager"
    assert p.warm_up((1, 2)) > 0
    assert p.info["unet_engine"] == "onnxruntime"
    assert p.graphs()["unet"] == {1: "onnxruntime", 2: "onnxruntime"}
    files = _onnx_files(cxrdesk_cache_dir)
    assert len(files) == 2 and all(p.info["hash"] in f.name for f in files)
    assert len(_onnx_files(cxrdesk_cache_dir, "decoder")) == 1 and p.graphs()["decoder"] == {1: "onnxruntime"}
    used = []
    for key, graph in list(p._traced.items()):
        def spy(*a, _g=graph, _b=key[0][0]):
            used.append(_b)
            return _g(*a)
        p._traced[key] = spy
    decoded = []
    ((shape, decoder),) = p._decoders.items()
    p._decoders[shape] = lambda z: decoded.append(z.shape) or decoder(z)
    r = p.generate(PROMPT, **KW)
    img = r.image
    assert used == [2] * 4 and decoded == [shape]
    assert r.params["unet_engine"] == "onnxruntime" and eager.params["unet_engine"] == "eager"
    # fused kernels sum in another order: the film moves by float rounding, not visibly
    assert np.abs(img - eager.image).max() < 1e-3
    part = p.generate(PROMPT, guidance_interval=(0.3, 0.7), **KW).image
    assert set(used) == {1, 2} and np.abs(part - eager_part.image).max() < 1e-3

    # a second start loads the cached graphs without exporting
    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_graphs, "export", no_export)
    q = Pipeline.load(tiny)
    q.warm_up((1, 2))
    assert q.info["unet_engine"] == "onnxruntime" and _onnx_files(cxrdesk_cache_dir) == files
    assert np.array_equal(q.generate(PROMPT, **KW).image, img)


def test_damaged_or_foreign_cache_files_are_exported_again(tiny, tmp_path, cxrdesk_cache_dir, monkeypatch):
    p = Pipeline.load(tiny)
    p.warm_up((2,))
    (good,) = _onnx_files(cxrdesk_cache_dir)
    want = p.generate(PROMPT, **KW).image
    # a truncated file (a crash while writing it, a full disk) does not load
    good.write_bytes(good.read_bytes()[:1000])
    q = Pipeline.load(tiny)
    q.warm_up((2,))
    assert q.info["unet_engine"] == "onnxruntime"
    assert np.array_equal(q.generate(PROMPT, **KW).image, want)
    # a file that loads but holds other weights under this name fails the check against the UNet
    other = make_tiny_model(tmp_path / "other", seed=1)
    o = Pipeline.load(other)
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("CXRDESK_CACHE_DIR", str(elsewhere))
    o.warm_up((2,))
    (foreign,) = _onnx_files(elsewhere)
    good.write_bytes(foreign.read_bytes())
    monkeypatch.setenv("CXRDESK_CACHE_DIR", str(cxrdesk_cache_dir))
    r = Pipeline.load(tiny)
    r.warm_up((2,))
    assert r.info["unet_engine"] == "onnxruntime"
    assert good.read_bytes() != foreign.read_bytes()
    assert np.array_equal(r.generate(PROMPT, **KW).image, want)


def test_without_onnx_runtime_or_when_export_fails_the_unet_is_traced(tiny, monkeypatch):
    eager = Pipeline.load(tiny).generate(PROMPT, **KW).image
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    p = Pipeline.load(tiny)
    assert p.warm_up() > 0 and p.info["unet_engine"] == "torchscript" and "decoder" not in p.graphs()
    assert np.array_equal(p.generate(PROMPT, **KW).image, eager)
    monkeypatch.delitem(sys.modules, "onnxruntime")
    import torch

    def broken(*a, **k):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(torch.onnx, "export", broken)
    q = Pipeline.load(tiny)
    q.warm_up()
    assert q.info["unet_engine"] == "torchscript"
    assert np.array_equal(q.generate(PROMPT, **KW).image, eager)
    # an unwritable cache folder is no different
    monkeypatch.undo()
    monkeypatch.setenv("CXRDESK_CACHE_DIR", "/proc/cxrdesk-cannot-write-here")
    r = Pipeline.load(tiny)
    r.warm_up()
    assert r.info["unet_engine"] == "torchscript"


def test_the_engine_is_chosen_by_argument_or_environment(tiny, monkeypatch):
    p = Pipeline.load(tiny)
    with pytest.raises(PipelineError, match="unknown UNet engine"):
        p.warm_up(engine="tensorrt")
    monkeypatch.setenv("CXRDESK_UNET_ENGINE", "trace")
    p.warm_up()
    assert p.info["unet_engine"] == "torchscript"
    assert p.warm_up(engine="onnx") >= 0  # the shape already has a graph: nothing new is made
    assert len(p.graphs()["unet"]) == 1


def test_the_cache_keeps_the_most_recently_used_graphs(tmp_path):
    folder = tmp_path / "onnx"
    folder.mkdir()
    for i in range(onnx_graphs.KEEP_FILES + 3):
        f = folder / f"unet-{i:02d}.onnx"
        f.write_bytes(b"x")
        os.utime(f, (1000 + i, 1000 + i))
    keep = folder / "unet-00.onnx"  # the oldest, but the one just used
    onnx_graphs._prune(folder, keep)
    left = sorted(f.name for f in folder.glob("*.onnx"))
    assert keep.name in left and len(left) == onnx_graphs.KEEP_FILES
    assert "unet-01.onnx" not in left and f"unet-{onnx_graphs.KEEP_FILES + 2:02d}.onnx" in left


def test_attention_maps_come_from_the_attention_graph(tiny, monkeypatch):
    """warm_up(attention=True) (the app) exports a UNet that also returns the cross-attention maps:
    the steps that record attention run it instead of the torch modules, with the same maps."""
    from cxrdesk.core.generation.attention import ATTENTION_EVERY

    kw8 = dict(steps=8, seed=5, attention_words=["mass"])
    fresh = Pipeline.load(tiny).generate(PROMPT, **kw8)
    p = Pipeline.load(tiny)
    p.warm_up((1, 2), attention=True)
    assert sorted(p.graphs()["unet-attention"]) == [1, 2]
    calls = {"plain": 0, "attention": 0}
    for kind, graphs in (("plain", p._traced), ("attention", p._attention)):
        for key, graph in list(graphs.items()):
            def spy(*a, _g=graph, _k=kind):
                calls[_k] += 1
                return _g(*a)
            graphs[key] = spy

    def no_torch_unet(*a, **k):
        raise AssertionError("the torch UNet ran")

    monkeypatch.setattr(p.unet, "forward", no_torch_unet)
    r = p.generate(PROMPT, **kw8)
    assert calls == {"attention": 8 // ATTENTION_EVERY, "plain": 8 - 8 // ATTENTION_EVERY}
    assert np.abs(r.image - fresh.image).max() < 1e-3
    np.testing.assert_allclose(r.attention["mass"], fresh.attention["mass"], atol=1e-4)
    # no word to record: the attention graph is not used
    calls.update(plain=0, attention=0)
    p.generate(PROMPT, steps=8, seed=5)
    assert calls == {"attention": 0, "plain": 8}


def test_without_the_attention_graph_recording_steps_run_the_torch_unet(tiny, monkeypatch):
    kw8 = dict(steps=8, seed=5, attention_words=["mass"])
    fresh = Pipeline.load(tiny).generate(PROMPT, **kw8)
    real = onnx_graphs.load_or_export

    def no_attention(module, inputs, names, part, *a, **k):
        if part == "unet-attention":
            raise RuntimeError("exporter broke")
        return real(module, inputs, names, part, *a, **k)

    monkeypatch.setattr(onnx_graphs, "load_or_export", no_attention)
    p = Pipeline.load(tiny)
    p.warm_up((1, 2), attention=True)
    assert "unet-attention" not in p.graphs() and len(p.graphs()["unet"]) == 2 and p.info["unet_engine"] == "onnxruntime"
    r = p.generate(PROMPT, **kw8)
    np.testing.assert_allclose(r.attention["mass"], fresh.attention["mass"], atol=1e-4)
    assert np.abs(r.image - fresh.image).max() < 1e-3


def test_a_new_export_replaces_the_same_graph_of_another_torch_version(tmp_path):
    folder = tmp_path / "onnx"
    folder.mkdir()
    keep = folder / "unet-abc123-2x4x32x32_2_2x64x384-torch2.14.0-op17-f2.onnx"
    stale = folder / "unet-abc123-2x4x32x32_2_2x64x384-torch2.13.0-op17-f2.onnx"
    other_part = folder / "unet-attention-abc123-2x4x32x32_2_2x64x384-torch2.13.0-op17-f2.onnx"
    other_shape = folder / "unet-abc123-1x4x32x32_1_1x64x384-torch2.13.0-op17-f2.onnx"
    for f in (keep, stale, other_part, other_shape):
        f.write_bytes(b"x")
    onnx_graphs._prune(folder, keep)
    assert sorted(f.name for f in folder.iterdir()) == sorted(f.name for f in (keep, other_part, other_shape))
