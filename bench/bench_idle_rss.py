"""Resident memory of the app at idle after loading the model (issue 31, item 7: goal under 1 GB).

Starts the app offscreen in a fresh process as a user would (the window preloads the model), waits
until the model is loaded and the deferred warm-up (ONNX Runtime graphs) is done, lets it idle, and
prints VmRSS and VmHWM (peak) from /proc/self/status, in MB. ``--generate`` draws one film first (as a
class would) and measures after it.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_idle_rss.py [--model DIR] [--runs 2]
        [--generate] [--cold-cache]

Linux only (reads /proc). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
model = sys.argv[1] or None
generate = sys.argv[2] == "1"
from cxrdesk.ui.app import make_app, setup_logging
setup_logging()
app = make_app()
from PySide6.QtCore import QEventLoop, QTimer
from cxrdesk.ui.mainwindow import MainWindow

def status():
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024
    return out

def wait(cond, timeout=600):
    loop = QEventLoop()
    t0 = time.time()
    def poll():
        if cond() or time.time() - t0 > timeout:
            loop.quit()
        else:
            QTimer.singleShot(50, poll)
    QTimer.singleShot(0, poll)
    loop.exec()

w = MainWindow(model=model, preload=True)
w.show()
t0 = time.time()
wait(lambda: w.host.worker.pipe is not None)
loaded = time.time() - t0
out = {"loaded_s": round(loaded, 1), "after_load": status()}
wait(w.host.worker.warm_ready.is_set)
out["warm_s"] = round(time.time() - t0, 1)
if generate:
    done = []
    w.jobDone.connect(lambda *a: done.append(a))
    w.generator.prompt_edit.setPlainText("Small left pleural effusion.")
    w.generator.generate_button.click()
    wait(lambda: bool(done))
    wait(w.host.worker.warm_ready.is_set)
t1 = time.time()
wait(lambda: time.time() - t1 > 5)  # idle
out["idle"] = status()
print("RESULT " + json.dumps(out), flush=True)
w.close()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="model folder (default: the embedded model)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--generate", action="store_true", help="draw one film before measuring")
    ap.add_argument("--cold-cache", action="store_true", help="an empty ONNX graph cache (a first start)")
    args = ap.parse_args()
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    idle = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            env["CXRDESK_DATA_DIR"] = os.path.join(tmp, "data")
            if args.cold_cache:
                env["CXRDESK_CACHE_DIR"] = os.path.join(tmp, "cache")
            r = subprocess.run([sys.executable, "-c", CHILD, args.model, "1" if args.generate else "0"],
                               capture_output=True, text=True, env=env)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"run {i + 1} failed:\n{r.stderr[-2000:]}")
        res = json.loads(line[7:])
        idle.append(res["idle"]["VmRSS"])
        print(f"run {i + 1}: loaded in {res['loaded_s']} s (RSS {res['after_load']['VmRSS']:.0f} MB), warm at "
              f"{res['warm_s']} s; idle RSS {res['idle']['VmRSS']:.0f} MB, peak {res['idle']['VmHWM']:.0f} MB")
    print(f"idle RSS: median {statistics.median(idle):.0f} MB over {len(idle)} runs")


if __name__ == "__main__":
    main()
