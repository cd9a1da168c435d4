"""The UNet and the VAE decoder as ONNX Runtime sessions: the fastest way found to run them on a CPU.

On this project's 2-core CPU one guided UNet call (batch 2) of the default model takes about 75-90
ms as a TorchScript graph and 55-70 ms in ONNX Runtime, and one VAE decode about 140 ms in torch
and 85 ms in ONNX Runtime: its fused convolution and attention kernels do the same arithmetic in
fewer passes (outputs agree with torch's to about 1e-5 of their scale).

A graph is exported once per model (weights hash), part, input shape, torch version and opset into
the user's cache folder (``platformdirs.user_cache_dir("cxrdesk")/onnx``, or
``$CXRDESK_CACHE_DIR/onnx``), so that later starts only load it (a fraction of a second instead of
exporting, 2-3 s). Beside each graph ONNX Runtime's optimised form of it is kept (``*.opt``, for this
ONNX Runtime and CPU), so that a later start loads the session without optimising the graph again.
Files are written atomically; one that fails to load or to reproduce the torch module is exported
again. A session is only used after its output on one real input matched the torch module's.

All sessions of the process share one thread pool (where ONNX Runtime allows it), so that the
UNet's threads, spinning after a step, do not slow the decoder's.

No Qt here; the pipeline decides when to use it (``Pipeline.warm_up``).
"""
from __future__ import annotations

import glob
import logging
import os
import threading
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

OPSET = 17
FORMAT = 2  # bump when the export changes, so that old cache files are not reused
KEEP_FILES = 12  # the cache keeps this many most recently used graphs (each about its module's size)
# A graph must reproduce the torch module to within this (relative to the output's scale) on the
# check input; fused kernels reorder sums, which moves results by about 1e-6 of that.
TOLERANCE = 1e-3

_pool_lock = threading.Lock()
_pool_threads: int | None = None  # the shared pool's size, once the first session made it


class OnnxUnavailable(RuntimeError):
    """ONNX Runtime (or the ``onnx`` package the exporter needs) is not installed."""


def cache_dir() -> Path:
    env = os.environ.get("CXRDESK_CACHE_DIR")
    if env:
        base = Path(env).expanduser()
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("cxrdesk", appauthor=False))
    return base / "onnx"


def cache_name(part: str, model_hash: str, inputs) -> str:
    import torch

    return shaped_name(part, model_hash, [tuple(t.shape) for t in inputs], torch.__version__)


def shaped_name(part: str, model_hash: str, shapes, torch_version: str) -> str:
    """cache_name from the input shapes and torch's version string (read without importing torch
    where torch is not loaded: importlib.metadata.version("torch"))."""
    shape = "_".join("x".join(map(str, s)) for s in shapes)
    return f"{part}-{model_hash}-{shape}-torch{torch_version.split('+')[0]}-op{OPSET}-f{FORMAT}.onnx"


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def verified_marker(path: Path) -> Path:
    """The file beside a cache file that says it was checked against torch (mark_verified)."""
    return path.with_name(path.name + ".verified")


def mark_verified(path: Path) -> None:
    """Record that the cache file at ``path`` (and its optimised form, for a graph), as they are now,
    reproduced torch: their identities (inode, size, modification time), so that a rewritten file is
    no longer taken as checked. For the start without torch (quickstart), which cannot check."""
    import json

    record = {"file": _identity(path)}
    if path.suffix == ".onnx":
        opt = optimized_path(path)
        if opt.is_file():  # its time changes at every use (_touch): inode and size
            record["opt"] = [opt.name, *_identity(opt)[:2]]
    marker = verified_marker(path)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, marker)
    finally:
        tmp.unlink(missing_ok=True)


def verified(path: Path) -> Path | None:
    """What to load of a cache file that mark_verified recorded and that has not changed since: its
    optimised form where that is unchanged too, else the file itself; None where the file is missing,
    unrecorded or changed."""
    import json

    try:
        record = json.loads(verified_marker(path).read_text(encoding="utf-8"))
        if record.get("file") != _identity(path):
            return None
        opt = record.get("opt")
        if opt and isinstance(opt, list) and len(opt) == 3 and "/" not in str(opt[0]):
            o = path.with_name(str(opt[0]))
            if o.is_file() and _identity(o)[:2] == opt[1:] and o == optimized_path(path):
                return o
        return path
    except (OSError, ValueError, AttributeError):
        return None


def verified_session(path: Path, threads: int):
    """An ONNX Runtime session of the verified graph at ``path`` (see verified), or None: loaded from its
    optimised form without optimising again, else optimised in memory (nothing is written)."""
    source = verified(path)
    if source is None:
        return None
    return _make_session(_onnxruntime(), source, threads, optimize=source == path)


def cached(model_hash: str, folder: Path | None = None) -> list[Path]:
    """The graphs of this model (weights hash) in the cache folder."""
    folder = folder or cache_dir()
    return sorted(f for f in folder.glob("*.onnx") if f"-{model_hash}-" in f.name) if folder.is_dir() else []


class OnnxGraph:
    """A torch module's forward on an ONNX Runtime session: torch tensors in (any dtype; passed as
    float32), float32 torch tensors out (one tensor, or a tuple where the module returns several)."""

    def __init__(self, session):
        self.session = session
        self.names = [i.name for i in session.get_inputs()]

    def __call__(self, *tensors):
        import numpy as np
        import torch

        feed = {n: t.detach().to(torch.float32).contiguous().numpy() for n, t in zip(self.names, tensors)}
        outs = [torch.from_numpy(np.ascontiguousarray(o)) for o in self.session.run(None, feed)]
        return outs[0] if len(outs) == 1 else tuple(outs)


def _onnxruntime():
    """onnxruntime, its telemetry off (cxrdesk/__init__ sets ORT_DISABLE_TELEMETRY too): no network."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    try:
        ort.disable_telemetry_events()
    except Exception:  # noqa: BLE001 - an ONNX Runtime without the call
        pass
    return ort


_machine = None


def _machine_key() -> str:
    """This ONNX Runtime version and CPU, in 8 hex digits: an optimised graph holds operator layouts
    chosen for the CPU's vector width, so it is only reused where it was made."""
    global _machine
    if _machine is None:
        import hashlib
        import platform

        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpu = next((line for line in fh if line.startswith("flags")), "")
        except OSError:
            cpu = ""
        cpu = cpu or platform.processor() or platform.machine()
        _machine = hashlib.sha256(f"{_onnxruntime().__version__}|{cpu}".encode()).hexdigest()[:8]
    return _machine


def optimized_path(path: Path) -> Path:
    """Where ONNX Runtime's optimised form of the graph file at ``path``, as it is now, is kept: beside
    it, named for this ONNX Runtime and CPU and for the file (inode, size and modification time:
    rewriting the graph file, by an export or by hand, orphans its optimised form)."""
    st = path.stat()
    return path.with_name(f"{path.name}.{_machine_key()}-{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}.opt")


def drop_optimized(path: Path) -> None:
    """Delete the optimised forms of the graph at ``path`` (any ONNX Runtime, CPU or version of it) and
    its verified marker."""
    for f in path.parent.glob(f"{glob.escape(path.name)}.*.opt"):
        f.unlink(missing_ok=True)
    verified_marker(path).unlink(missing_ok=True)


def _last_used(path: Path) -> float:
    """When the graph at ``path`` was last used: its file's or its optimised form's modification
    time (a use touches the one it loaded)."""
    times = [f.stat().st_mtime for f in (path, *path.parent.glob(f"{glob.escape(path.name)}.*.opt"))
             if f.exists()]
    return max(times, default=0.0)


def _touch(path: Path) -> None:
    """Mark the graph at ``path`` as used now, on its current optimised form where it has one (the
    graph file's own time is part of that form's name)."""
    opt = optimized_path(path)
    os.utime(opt if opt.is_file() else path)


def _session(path: Path, threads: int):
    """An ONNX Runtime session of the graph at ``path``. The first one optimises the graph (fusing
    and re-laying out its operators: 0.1-0.3 s for the default model's UNet) and saves the result
    (optimized_path); later ones load that with optimisation off, which gives the same session
    (outputs bit-identical) in a fifth of the time. Where the saved form does not load, the graph is
    optimised again."""
    ort = _onnxruntime()
    opt = optimized_path(path)
    if opt.is_file():
        try:
            return _make_session(ort, opt, threads, optimize=False)
        except Exception as e:  # noqa: BLE001 - damaged: optimise the graph again
            log.info("optimised graph %s does not load (%s); optimising again", opt.name, e)
    drop_optimized(path)  # forms of earlier versions of the file, or a damaged one
    tmp = opt.with_name(f".{opt.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        session = _make_session(ort, path, threads, optimize=True, save_to=tmp)
        if tmp.is_file():
            os.replace(tmp, opt)
        return session
    except Exception as e:  # noqa: BLE001 - e.g. a folder it cannot write: a session without the saved form
        log.info("could not make or save the optimised form of %s (%s); optimising it in memory", path.name, e)
    finally:
        tmp.unlink(missing_ok=True)
    return _make_session(ort, path, threads, optimize=True)


def _make_session(ort, path: Path, threads: int, optimize: bool, save_to: Path | None = None):
    global _pool_threads
    opts = ort.SessionOptions()
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if save_to is not None:
        opts.optimized_model_filepath = str(save_to)
    # no memory arena (CXRDESK_ORT_ARENA=1 for one): the arenas kept their peak, ~90 MB of the idle app
    opts.enable_cpu_mem_arena = os.environ.get("CXRDESK_ORT_ARENA") == "1"
    opts.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise
    with _pool_lock:
        if _pool_threads is None:
            try:  # only before ONNX Runtime's environment exists, i.e. before its first session
                from onnxruntime.capi import _pybind_state

                _pybind_state.set_global_thread_pool_sizes(max(1, int(threads)), 1)
                _pool_threads = max(1, int(threads))
            except Exception:  # noqa: BLE001 - an older or newer ONNX Runtime: one pool per session
                _pool_threads = 0
        if _pool_threads:
            opts.use_per_session_threads = False
        else:
            opts.intra_op_num_threads = max(1, int(threads))
            opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def export(module, inputs, names, path: Path, n_outputs: int = 1) -> None:
    """Write ``module`` (a torch module whose forward takes ``inputs`` and returns one tensor, or a
    tuple of ``n_outputs``) as an ONNX graph for these input shapes, atomically (a temporary file
    renamed into place)."""
    import torch

    try:
        import onnx  # noqa: F401 - the TorchScript-based exporter needs it
    except ImportError as e:
        raise OnnxUnavailable("the onnx package is not installed") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic the graph keeps
            torch.onnx.export(module, tuple(t.to(torch.float32) for t in inputs), str(tmp),
                              input_names=list(names), output_names=[f"out{i}" for i in range(n_outputs)],
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        drop_optimized(path)  # made from the graph this one replaces
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _prune(folder: Path, keep: Path) -> None:
    """Delete the graphs that ``keep`` replaces (the same part, weights and shapes from another torch
    version or export format), then all but the KEEP_FILES most recently used, ``keep`` among them."""
    stem = keep.name.split("-torch")[0] + "-torch"
    for old in folder.glob(f"{stem}*.onnx"):
        if old != keep:
            old.unlink(missing_ok=True)
    others = [f for f in folder.glob("*.onnx") if f != keep]
    others.sort(key=_last_used, reverse=True)
    for old in others[KEEP_FILES - 1:]:
        old.unlink(missing_ok=True)
    for opt in folder.glob("*.opt"):  # optimised forms of graphs deleted here or by hand
        if not opt.with_name(opt.name.rsplit(".", 2)[0]).is_file():
            opt.unlink(missing_ok=True)
    for marker in folder.glob("*.onnx.verified"):  # and their markers
        if not marker.with_suffix("").is_file():
            marker.unlink(missing_ok=True)


def _outputs(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def deviation(graph, reference, inputs) -> float:
    """The graph's (any callable's) largest deviation from the reference outputs on ``inputs``, each
    relative to its own scale; infinite where the outputs' number or shapes differ."""
    outs, refs = _outputs(graph(*inputs)), _outputs(reference)
    if len(outs) != len(refs) or any(o.shape != r.shape for o, r in zip(outs, refs)):
        return float("inf")
    return max(float((o - r).abs().max()) / (float(r.abs().max()) + 1e-6) for o, r in zip(outs, refs))


def load_or_export(module, inputs, names, part: str, model_hash: str, threads: int,
                   folder: Path | None = None) -> OnnxGraph:
    """An ONNX Runtime version of ``module`` (in eval mode, forward(*inputs) -> tensor or tuple of
    tensors) for inputs shaped like these, from the cache or newly exported, checked against the
    module on ``inputs``.
    ``part`` and ``model_hash`` name it in the cache. Raises OnnxUnavailable without ONNX Runtime,
    RuntimeError when the graph cannot be made or does not reproduce the module."""
    import torch

    try:
        _onnxruntime()
    except ImportError as e:
        raise OnnxUnavailable("onnxruntime is not installed") from e
    folder = folder or cache_dir()
    path = folder / cache_name(part, model_hash, inputs)
    with torch.no_grad():
        reference = module(*inputs)
    for attempt in ("cached", "exported"):
        if attempt == "exported" or not path.is_file():
            export(module, inputs, names, path, len(_outputs(reference)))
            attempt = "exported"
        try:
            graph = OnnxGraph(_session(path, threads))
            err = deviation(graph, reference, inputs)
        except Exception as e:  # noqa: BLE001 - a damaged or foreign cache file: make it again
            if attempt == "exported":
                raise RuntimeError(f"ONNX Runtime could not run the exported {part}: {e}") from e
            log.info("cached graph %s does not load (%s); exporting it again", path.name, e)
            drop_optimized(path)
            continue
        if err <= TOLERANCE:
            try:
                _touch(path)  # most recently used: the last to be pruned
                _prune(folder, path)
                mark_verified(path)  # after _touch, which may change the optimised form's time
            except OSError:
                pass
            return graph
        if attempt == "exported":
            raise RuntimeError(f"the ONNX {part} differs from the torch module by {err:.2g} of its output scale")
        log.info("cached graph %s differs from the torch module (%.2g); exporting it again", path.name, err)
        drop_optimized(path)
    raise AssertionError("unreachable")
