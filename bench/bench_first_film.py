"""Issue 33's last target: the first film within 3 s of start, on a machine that has run the app before.

Each run starts the real app in a fresh Python process, as a user would: QT_QPA_PLATFORM=offscreen, a
fresh settings folder (CXRDESK_DATA_DIR), the default model (or --model), and the SAME graph cache
for every run (the user's, or --cache-dir), warmed by one run that is not counted, as on a machine
that has run the app before. As soon as the window can take it, Generate is clicked with the
window's defaults (Fast mode where the model has a student; seed fixed), and the run reports, from
process start:

* ``usable``: the window shown and its first events processed;
* ``load_start`` / ``model_loaded``: the worker starts / ends reading the model;
* ``gen_start`` / ``first_preview`` / ``first_film``: the job starts on the worker, its first preview
  and its final film are shown in the window;
* ``graphs_ready``: the deferred warm-up (the faster graphs for later films) is done.

and a breakdown: the model load's parts (``load_parts``: imports, weights, text encoder, ... as the
loader records them), the warm-up seconds, and the film's own timings (text, denoise, decode).

Usage::

    .venv/bin/python bench/bench_first_film.py [--runs 5] [--model DIR] [--cache-dir DIR]
        [--compare-code DIR]

``--compare-code DIR`` alternates each run with the cxrdesk package in DIR (e.g. an older commit:
``git archive COMMIT | tar -x -C DIR``), same machine, same minutes; each code then has its own graph
cache (under --cache-dir, else a temporary folder), warmed by its own uncounted run, so that neither
prunes or touches the other's files. ``quick`` in a run's line: its first film was drawn by the quick
start (before the model loaded; core.generation.quickstart). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
t_start = float(sys.argv[1])
model = sys.argv[2] or None
marks = {}
def mark(name):
    marks.setdefault(name, time.time() - t_start)
mark("python")
from cxrdesk.ui.app import make_app, setup_logging
setup_logging()
app = make_app()
from cxrdesk.ui.mainwindow import MainWindow
from PySide6.QtCore import QEventLoop, Qt, QTimer
mark("app_imported")
w = MainWindow(model=model)  # preloads the model, as the app starts
w.show()
direct = Qt.ConnectionType.DirectConnection  # marked in the worker thread, when it happens there
wk = w.host.worker
wk.loadingStarted.connect(lambda *_: mark("load_start"), direct)
wk.modelLoaded.connect(lambda *_: mark("model_loaded"), direct)
wk.jobStarted.connect(lambda *_: mark("gen_start"), direct)
w.previewShown.connect(lambda *_: mark("first_preview"))
w.documentShown.connect(lambda *_: mark("first_film"))
out = {}
entries = []
wk.resultReady.connect(lambda jid, entry: entries.append(entry), direct)
def usable():
    mark("usable")
    g = w.generator
    out["mode"] = "fast" if g.job_fast() else "full"
    g.random_seed_check.setChecked(False)
    g.seed_spin.setValue(1)
    g.request_generate()
loop = QEventLoop()
w.jobDone.connect(loop.quit)
QTimer.singleShot(0, usable)
loop.exec()
ready = getattr(wk, "warm_ready", None)
t_end = time.time() + 180
while entries and ready is not None and not ready.is_set() and time.time() < t_end:
    app.processEvents()
    time.sleep(0.02)
mark("graphs_ready")
for _ in range(20):
    app.processEvents()
    time.sleep(0.01)
info = w.model_info or {}
out["marks"] = marks
out["load_seconds"] = info.get("load_seconds")
out["load_parts"] = info.get("load_parts")
out["warm_up_seconds"] = info.get("warm_up_seconds")
if entries:
    e = entries[0]
    out["film"] = {k: round(v, 3) for k, v in (e.timings or {}).items()}
    out["engine"] = e.params.get("unet_engine")
    out["quick"] = "quick_start" in (e.timings or {})
    out["steps"] = e.params.get("steps")
    out["image"] = e.image_path
w.close()
print("BENCH " + json.dumps(out))
"""

KEYS = ("app_imported", "usable", "load_start", "model_loaded", "gen_start", "first_preview", "first_film",
        "graphs_ready")


def run_once(model: str, env: dict) -> dict:
    t = time.time()
    p = subprocess.run([sys.executable, "-c", CHILD, repr(t), model], capture_output=True, text=True, env=env,
                       timeout=600, cwd=tempfile.gettempdir())  # not a source folder: PYTHONPATH picks the code
    for line in p.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"child failed (exit {p.returncode}):\n{p.stderr[-3000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model", default="", help="model folder (default: the app's default model)")
    ap.add_argument("--cache-dir", help="graph cache for all runs (default: the user's, $CXRDESK_CACHE_DIR)")
    ap.add_argument("--compare-code", metavar="DIR", help="alternate runs with the cxrdesk package in DIR")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = dict(os.environ)
    base.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.cache_dir:
        base["CXRDESK_CACHE_DIR"] = os.path.abspath(args.cache_dir)
    default = os.path.join(root, "models", "cxrdesk-cxr256")
    if not args.model and args.compare_code and os.path.isdir(default):
        base.setdefault("CXRDESK_MODEL", default)  # the code in DIR has no models/ beside it
    codes = [("this", root)] + ([("compare", os.path.abspath(args.compare_code))] if args.compare_code else [])
    print(f"first film: model={args.model or 'default'} runs={args.runs} cpus={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.2f} graph cache={base.get('CXRDESK_CACHE_DIR') or 'user'} "
          f"LD_PRELOAD={os.path.basename(base.get('LD_PRELOAD', '')) or '-'}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cxrdesk-bench-") as tmp:
        caches = {}
        if args.compare_code:  # one cache per code: the older code neither prunes nor touches the newer's
            root_cache = base.get("CXRDESK_CACHE_DIR") if args.cache_dir else tmp
            caches = {label: os.path.join(root_cache, f"cache-{label}") for label, _ in codes}
            print("graph caches: " + ", ".join(f"{k} {v}" for k, v in caches.items()))
        for i in range(args.runs + 1):  # run 0 warms the graph cache (a user who has run the app before)
            for label, code in codes:
                env = dict(base)
                if label in caches:
                    env["CXRDESK_CACHE_DIR"] = caches[label]
                env["CXRDESK_DATA_DIR"] = tempfile.mkdtemp(dir=tmp)  # fresh settings every run
                env["PYTHONPATH"] = code + os.pathsep + env.get("PYTHONPATH", "")
                r = run_once(args.model, env)
                if "first_film" not in r["marks"]:
                    log = os.path.join(env["CXRDESK_DATA_DIR"], "logs", "cxrdesk.log")
                    tail = open(log, encoding="utf-8").read()[-2000:] if os.path.isfile(log) else "(no log)"
                    raise SystemExit(f"run {i} ({label}) drew no film; its log ends:\n{tail}")
                if i == 0:
                    print(f"warm-up run ({label}): first film {r['marks'].get('first_film', float('nan')):.2f} s")
                    continue
                r["code"] = label
                rows.append(r)
                m = r["marks"]
                quick = ", quick" if r.get("quick") else ""
                print(f"run {i} ({label}, {r.get('mode')}, {r.get('steps')} steps, UNet {r.get('engine')}{quick}): "
                      + ", ".join(f"{k} {m[k]:.2f}" for k in KEYS if k in m))
                print(f"    load {r.get('load_seconds')} s {json.dumps(r.get('load_parts'))}; "
                      f"warm-up {r.get('warm_up_seconds')} s; film {json.dumps(r.get('film'))}")
    for label, _ in codes:
        sel = [r for r in rows if r["code"] == label]
        print(f"{label}: median from process start (min-max) over {len(sel)} runs:")
        for k in KEYS:
            v = [r["marks"][k] for r in sel if k in r["marks"]]
            if v:
                print(f"    {k:14s} {statistics.median(v):6.2f} s  ({min(v):.2f}-{max(v):.2f})")
        d = [r["marks"]["first_film"] - r["marks"]["model_loaded"] for r in sel
             if "first_film" in r["marks"] and "model_loaded" in r["marks"]]
        if d:
            print(f"    model loaded -> first film {statistics.median(d):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
