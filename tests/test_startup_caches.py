"""What a second start reuses (issue 33): ONNX Runtime's optimised form of each cached graph, kept
beside it and loaded with optimisation off (same films, bit for bit), remade when the graph file is
rewritten or the form is damaged; and the model load's imports with the garbage collector paused."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from cxrdesk.core.generation import loading, onnx_graphs
from cxrdesk.core.generation.pipeline import Pipeline

from .fixtures import make_tiny_model

KW = dict(steps=3, seed=7)
PROMPT = "left lower lobe consolidation"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("startup") / "tiny")


def _graphs(cache):
    return sorted((cache / "onnx").glob("*.onnx"))


def _optimised(cache):
    return sorted((cache / "onnx").glob("*.opt"))


def _sessions(monkeypatch):
    """Record whether each session ONNX Runtime makes optimises its graph."""
    made = []
    real = onnx_graphs._make_session

    def spy(ort, path, threads, optimize, save_to=None):
        made.append((path.suffix, optimize))
        return real(ort, path, threads, optimize, save_to)

    monkeypatch.setattr(onnx_graphs, "_make_session", spy)
    return made


def test_a_second_start_loads_the_optimised_graphs_and_draws_the_same_films(tiny, cxrdesk_cache_dir, monkeypatch):
    p = Pipeline.load(tiny)
    p.warm_up((2,))
    first = p.generate(PROMPT, **KW)
    assert first.params["unet_engine"] == "onnxruntime"
    graphs, opts = _graphs(cxrdesk_cache_dir), _optimised(cxrdesk_cache_dir)
    assert len(graphs) == 2 and len(opts) == 2  # UNet and decoder, each with its optimised form
    assert all(o.name.startswith(g.name + ".") for g, o in zip(graphs, opts))
    made = _sessions(monkeypatch)
    q = Pipeline.load(tiny)
    q.warm_up((2,))
    assert made == [(".opt", False)] * 2  # nothing optimised again
    again = q.generate(PROMPT, **KW)
    assert again.params["unet_engine"] == "onnxruntime"
    assert np.array_equal(again.image, first.image)
    assert _graphs(cxrdesk_cache_dir) == graphs and _optimised(cxrdesk_cache_dir) == opts


def test_the_optimised_form_is_remade_when_the_graph_file_or_the_form_changes(tiny, tmp_path, cxrdesk_cache_dir,
                                                                              monkeypatch):
    p = Pipeline.load(tiny)
    p.warm_up((2,))
    want = p.generate(PROMPT, **KW).image
    unet = next(g for g in _graphs(cxrdesk_cache_dir) if g.name.startswith("unet-"))
    (opt,) = [o for o in _optimised(cxrdesk_cache_dir) if o.name.startswith(unet.name)]
    # a damaged optimised form: the graph is optimised again, the film is the same
    opt.write_bytes(b"not a graph")
    made = _sessions(monkeypatch)
    q = Pipeline.load(tiny)
    q.warm_up((2,))
    assert (".opt", False) in made and (".onnx", True) in made
    assert np.array_equal(q.generate(PROMPT, **KW).image, want)
    (opt2,) = [o for o in _optimised(cxrdesk_cache_dir) if o.name.startswith(unet.name)]
    assert opt2.read_bytes() != b"not a graph"
    # the graph file rewritten with another model's graph of the same shape: its old optimised form is
    # not used (the check against this UNet would pass with it); the file fails the check and is exported
    # again, and a new optimised form is made from that
    other = make_tiny_model(tmp_path / "other", seed=1)
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("CXRDESK_CACHE_DIR", str(elsewhere))
    Pipeline.load(other).warm_up((2,))
    foreign = next(g for g in _graphs(elsewhere) if g.name.startswith("unet-"))
    unet.write_bytes(foreign.read_bytes())
    monkeypatch.setenv("CXRDESK_CACHE_DIR", str(cxrdesk_cache_dir))
    exported = []
    real_export = onnx_graphs.export
    monkeypatch.setattr(onnx_graphs, "export", lambda *a, **k: exported.append(a[3].name) or real_export(*a, **k))
    r = Pipeline.load(tiny)
    r.warm_up((2,))
    assert exported == [unet.name] and unet.read_bytes() != foreign.read_bytes()
    assert not opt2.exists()
    assert len([o for o in _optimised(cxrdesk_cache_dir) if o.name.startswith(unet.name)]) == 1
    assert np.array_equal(r.generate(PROMPT, **KW).image, want)


def test_without_a_writable_folder_for_the_optimised_form_the_graph_still_runs(tiny, cxrdesk_cache_dir, monkeypatch):
    p = Pipeline.load(tiny)
    p.warm_up((2,))
    want = p.generate(PROMPT, **KW).image
    for o in _optimised(cxrdesk_cache_dir):
        o.unlink()
    real = onnx_graphs._make_session

    def cannot_save(ort, path, threads, optimize, save_to=None):
        if save_to is not None:
            raise OSError("read-only file system")
        return real(ort, path, threads, optimize)

    monkeypatch.setattr(onnx_graphs, "_make_session", cannot_save)
    q = Pipeline.load(tiny)
    q.warm_up((2,))
    assert q.info["unet_engine"] == "onnxruntime" and not _optimised(cxrdesk_cache_dir)
    assert np.array_equal(q.generate(PROMPT, **KW).image, want)


def test_pruning_a_graph_takes_its_optimised_form_and_counts_its_use(tmp_path):
    import os

    folder = tmp_path / "onnx"
    folder.mkdir()
    for i in range(onnx_graphs.KEEP_FILES + 1):
        f = folder / f"unet-{i:02d}.onnx"
        f.write_bytes(b"x")
        os.utime(f, (1000 + i, 1000 + i))
    # graph 00 is the oldest file, but its optimised form was used last: it stays; 01 goes
    used = folder / "unet-00.onnx.abcd1234-1-1-1.opt"
    used.write_bytes(b"y")
    os.utime(used, (5000, 5000))
    gone = folder / "unet-01.onnx.abcd1234-1-1-1.opt"
    gone.write_bytes(b"y")
    os.utime(gone, (1001, 1001))  # used when its graph was
    orphan = folder / "unet-99.onnx.abcd1234-1-1-1.opt"  # its graph was deleted by hand
    orphan.write_bytes(b"y")
    keep = folder / f"unet-{onnx_graphs.KEEP_FILES:02d}.onnx"
    onnx_graphs._prune(folder, keep)
    left = sorted(f.name for f in folder.iterdir())
    assert "unet-00.onnx" in left and used.name in left
    assert "unet-01.onnx" not in left and gone.name not in left and orphan.name not in left
    assert len([n for n in left if n.endswith(".onnx")]) == onnx_graphs.KEEP_FILES


def test_the_libraries_import_with_the_collector_paused_and_it_is_restored(monkeypatch):
    seen = []
    monkeypatch.setattr(gc, "freeze", lambda: seen.append(gc.isenabled()))
    # as if one were not imported yet (re-importing torch itself is not possible in one process)
    monkeypatch.setattr(loading, "LIBRARIES", loading.LIBRARIES + ("cxrdesk_not_imported_yet",))
    was_enabled = gc.isenabled()  # off where an earlier UI test moved collection to the GUI thread
    try:
        gc.enable()
        loading.import_libraries()
        assert seen == [False] and gc.isenabled()
        gc.disable()
        loading.import_libraries()
        assert seen == [False, False] and not gc.isenabled()
    finally:
        if was_enabled:
            gc.enable()
        else:
            gc.disable()
    monkeypatch.undo()
    monkeypatch.setattr(gc, "freeze", lambda: seen.append(gc.isenabled()))
    seen.clear()
    loading.import_libraries()  # all imported: nothing to do
    assert seen == []


def test_a_checked_graph_is_marked_and_the_mark_follows_the_file(tiny, cxrdesk_cache_dir, monkeypatch):
    """What the start without torch (quickstart) may use: only graphs a full start checked, as they were."""
    Pipeline.load(tiny).warm_up()
    graph = next(g for g in _graphs(cxrdesk_cache_dir) if g.name.startswith("decoder-"))
    opt = onnx_graphs.optimized_path(graph)
    assert onnx_graphs.verified(graph) == opt  # the optimised form, unchanged since the check
    onnx_graphs._touch(graph)  # a use moves the form's time: still the checked form
    assert onnx_graphs.verified(graph) == opt
    assert onnx_graphs.verified_session(graph, threads=1) is not None
    opt.unlink()
    assert onnx_graphs.verified(graph) == graph  # the graph itself, optimised in memory
    data = graph.read_bytes()
    graph.unlink()
    graph.write_bytes(data)  # rewritten: same bytes, but not the checked file
    assert onnx_graphs.verified(graph) is None and onnx_graphs.verified_session(graph, threads=1) is None
    marker = onnx_graphs.verified_marker(graph)
    assert marker.is_file()
    graph.unlink()
    keep = next(g for g in _graphs(cxrdesk_cache_dir) if g != graph)
    onnx_graphs._prune(cxrdesk_cache_dir / "onnx", keep)
    assert not marker.exists()  # a deleted graph's mark goes with it
    assert onnx_graphs.verified(cxrdesk_cache_dir / "onnx" / "missing.onnx") is None
