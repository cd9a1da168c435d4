"""How fast cxrdesk's window is usable, and how fast generation shows its first preview.

Each run starts a fresh Python process (as a user would) and reports:

* ``usable``: process start -> main window shown and its first events (expose, paint) processed,
  before any model is loaded (torch must not be imported yet);
* with ``--preview``: Generate clicked -> first live preview drawn, with a cold model (the load
  is part of it) and again with the model loaded;
* with ``--first-film``: the app as a user starts it (the model preloads), Generate clicked as soon
  as the window is usable: process start -> model loaded, first preview, first film; when the
  faster graphs are ready; and what "Prompt adherence" shows before the model is loaded.
  ``--cold-cache`` gives it an empty graph cache (a first run); by default it uses the user's
  cache, as on a machine that has run the app before.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_startup.py [--runs 5] [--preview]
        [--model DIR] [--steps 20]
    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_startup.py --first-film [--runs 3]
        [--model models/cxrdesk-cxr256] [--cold-cache]

Without ``--model``, ``--preview`` writes a tiny random model to a temporary folder. Prints figures;
asserts nothing.
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
import json, os, sys, time
t_start = float(sys.argv[1])
model = sys.argv[2] or None
want_preview = sys.argv[3] == "1"
steps = int(sys.argv[4])
t_imp0 = time.time()
from cxrdesk.ui.app import make_app, setup_logging
setup_logging()
app = make_app()
from cxrdesk.ui.mainwindow import MainWindow
from PySide6.QtCore import QTimer, QEventLoop
t_imp1 = time.time()
w = MainWindow(model=model, preload=False)
t_built = time.time()
w.show()
out = {"python_start": t_imp0 - t_start, "imports": t_imp1 - t_imp0, "window_built": t_built - t_imp1}
loop = QEventLoop()
def usable():
    out["usable"] = time.time() - t_start
    out["torch_imported"] = "torch" in sys.modules
    loop.quit()
QTimer.singleShot(0, usable)
loop.exec()
if want_preview:
    g = w.generator
    g.steps_spin.setValue(steps)
    g.random_seed_check.setChecked(False)
    g.seed_spin.setValue(1)
    for key in ("cold", "warm"):
        loop = QEventLoop()
        w.previewShown.connect(loop.quit)
        t0 = time.perf_counter()
        g.request_generate()
        loop.exec()
        out[f"first_preview_{key}"] = time.perf_counter() - t0
        w.previewShown.disconnect(loop.quit)
        loop2 = QEventLoop()
        w.jobDone.connect(loop2.quit)
        if w.running_job is not None:
            loop2.exec()
        w.jobDone.disconnect(loop2.quit)
        out[f"total_{key}"] = time.perf_counter() - t0
    out["model_load"] = (w.model_info or {}).get("load_seconds")
w.close()
print("BENCH " + json.dumps(out))
"""


FIRST_FILM = r"""
import json, sys, time
t_start = float(sys.argv[1])
model = sys.argv[2] or None
steps = int(sys.argv[4])
from cxrdesk.ui.app import make_app, setup_logging
setup_logging()
app = make_app()
from cxrdesk.ui.mainwindow import MainWindow
from PySide6.QtCore import QTimer, QEventLoop
w = MainWindow(model=model)  # preload, as the app starts
w.show()
out = {}
marks = {}
def mark(name):
    marks.setdefault(name, time.time() - t_start)
w.host.worker.modelLoaded.connect(lambda *_: mark("model_loaded"))
w.previewShown.connect(lambda *_: mark("first_preview"))
w.documentShown.connect(lambda *_: mark("first_film"))
def usable():
    mark("usable")
    out["guidance_before_load"] = w.generator.guidance_spin.text()
    g = w.generator
    g.steps_spin.setValue(steps)
    g.random_seed_check.setChecked(False)
    g.seed_spin.setValue(1)
    g.request_generate()
loop = QEventLoop()
w.jobDone.connect(loop.quit)
QTimer.singleShot(0, usable)
loop.exec()
out["guidance_after_load"] = w.generator.guidance_spin.text()
ready = getattr(w.host.worker, "warm_ready", None)  # deferred warm-up: wait for it
t_end = time.time() + 120
while ready is not None and not ready.is_set() and time.time() < t_end:
    app.processEvents()
    time.sleep(0.02)
mark("graphs_ready")
for _ in range(50):  # the warmedUp signal that fills Model info
    app.processEvents()
    time.sleep(0.01)
info = w.model_info or {}
out.update(marks)
out["load_seconds"] = info.get("load_seconds")
out["warm_up_seconds"] = info.get("warm_up_seconds")
out["engine_first_film"] = (w.doc.params or {}).get("unet_engine") if w.doc else None
w.close()
print("BENCH " + json.dumps(out))
"""


def run_once(model: str | None, preview: bool, steps: int, env: dict, child: str = CHILD) -> dict:
    t = time.time()
    p = subprocess.run([sys.executable, "-c", child, repr(t), model or "", "1" if preview else "0", str(steps)],
                       capture_output=True, text=True, env=env, timeout=900,
                       cwd=tempfile.gettempdir())  # not a source folder: PYTHONPATH picks the code
    for line in p.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"child failed (exit {p.returncode}):\n{p.stderr[-3000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--preview", action="store_true", help="also time the first preview of a generation")
    ap.add_argument("--model", help="model folder for --preview (default: a tiny random model)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--first-film", action="store_true",
                    help="time the app's first film from process start (model preloaded, default model)")
    ap.add_argument("--cold-cache", action="store_true", help="with --first-film: an empty graph cache")
    ap.add_argument("--compare-code", metavar="DIR",
                    help="with --first-film: alternate runs with the cxrdesk package in DIR (e.g. an older "
                         "commit: git archive COMMIT | tar -x -C DIR), same machine, same minutes")
    args = ap.parse_args()
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = tempfile.TemporaryDirectory(prefix="cxrdesk-bench-")
    env["CXRDESK_DATA_DIR"] = os.path.join(tmp.name, "data")  # fresh settings: a first start
    model = args.model
    if args.preview and not model:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
        from tests.fixtures import make_tiny_model

        model = str(make_tiny_model(os.path.join(tmp.name, "tiny")))
    if args.first_film:
        return first_film(args, env, tmp)
    print(f"platform={env['QT_QPA_PLATFORM']} python={sys.version.split()[0]} runs={args.runs} "
          f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    rows = []
    for i in range(args.runs):
        r = run_once(model, args.preview and i == 0, args.steps, env)
        rows.append(r)
        extra = ""
        if "first_preview_cold" in r:
            extra = (f"  first preview: cold {r['first_preview_cold']:.2f} s (model load {r['model_load']:.2f} s), "
                     f"warm {r['first_preview_warm']:.2f} s; {args.steps} steps total warm {r['total_warm']:.2f} s")
        print(f"run {i + 1}: usable {r['usable']:.2f} s (python {r['python_start']:.2f}, imports "
              f"{r['imports']:.2f}, window {r['window_built']:.2f}), torch imported: {r['torch_imported']}{extra}")
    us = [r["usable"] for r in rows]
    print(f"usable window: median {statistics.median(us):.2f} s, min {min(us):.2f} s, max {max(us):.2f} s "
          f"(target < 3 s, model not loaded)")
    tmp.cleanup()
    return 0


def first_film(args, env: dict, tmp) -> int:
    model = args.model or ""
    if args.cold_cache:
        env["CXRDESK_CACHE_DIR"] = os.path.join(tmp.name, "cache")
    print(f"first film: model={model or 'default'} platform={env['QT_QPA_PLATFORM']} runs={args.runs} "
          f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} graph cache={'empty' if args.cold_cache else 'user'}")
    keys = ("usable", "model_loaded", "first_preview", "first_film", "graphs_ready")
    rows = []
    for i in range(args.runs):
        if args.cold_cache:
            import shutil

            shutil.rmtree(env["CXRDESK_CACHE_DIR"], ignore_errors=True)
        for label, code in (("", None), ("compare", args.compare_code)):
            if label and not code:
                continue
            e = dict(env)
            if code:
                e["PYTHONPATH"] = os.path.abspath(code) + os.pathsep + e.get("PYTHONPATH", "")
            r = run_once(model, False, args.steps, e, FIRST_FILM)
            r["code"] = label or "this"
            rows.append(r)
            print(f"run {i + 1} ({r['code']}): "
                  + ", ".join(f"{k} {r[k]:.2f} s" for k in keys if r.get(k) is not None)
                  + f" (load {r.get('load_seconds')} s, warm-up {r.get('warm_up_seconds')} s, first film's UNet: "
                  f"{r.get('engine_first_film')}); adherence before load {r['guidance_before_load']!r}, "
                  f"after {r['guidance_after_load']!r}")
    for code in dict.fromkeys(r["code"] for r in rows):
        for k in keys:
            v = [r[k] for r in rows if r.get(k) is not None and r["code"] == code]
            if v:
                print(f"{code}: {k}: median {statistics.median(v):.2f} s (min {min(v):.2f}, max {max(v):.2f}) "
                      "from process start")
        d = [r["first_film"] - r["model_loaded"] for r in rows if r["code"] == code]
        print(f"{code}: model loaded -> first film: median {statistics.median(d):.2f} s")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
