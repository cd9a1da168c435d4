"""How fast cxrdesk's window is usable, and how fast generation shows its first preview.

Each run starts a fresh Python process (as a user would) and reports:

* ``usable``: process start -> main window shown and its first events (expose, paint) processed,
  before any model is loaded (torch must not be imported yet);
* with ``--preview``: Generate clicked -> first live preview drawn, with a cold model (the load
  is part of it) and again with the model loaded.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_startup.py [--runs 5] [--preview]
        [--model DIR] [--steps 20]

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


def run_once(model: str | None, preview: bool, steps: int, env: dict) -> dict:
    t = time.time()
    p = subprocess.run([sys.executable, "-c", CHILD, repr(t), model or "", "1" if preview else "0", str(steps)],
                       capture_output=True, text=True, env=env, timeout=600)
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
    args = ap.parse_args()
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = tempfile.TemporaryDirectory(prefix="cxrdesk-bench-")
    env["CXRDESK_DATA_DIR"] = os.path.join(tmp.name, "data")  # fresh settings: a first start
    model = args.model
    if args.preview and not model:
        from cxrdesk.core.pipeline import make_tiny_model

        model = str(make_tiny_model(os.path.join(tmp.name, "tiny")))
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


if __name__ == "__main__":
    sys.exit(main())
