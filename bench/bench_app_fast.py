"""Fast mode in the app (issue 28's second target): Generate clicked -> final film shown, in the real
window with live previews on, Fast (the distilled student) against Full (the model's sampling).

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_app_fast.py --model DIR [--n 6] [--steps 20]

The window starts as a user starts it (the model preloads, its graphs warm up); once warm, the same
prompt and seed are drawn alternately in Full and Fast so that other load falls on both alike. Prints
the median and range of each, the ratio and the machine's load. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model folder with a distilled student")
    ap.add_argument("--n", type=int, default=6, help="films of each mode")
    ap.add_argument("--steps", type=int, default=20, help="steps of Full generation")
    ap.add_argument("--prompt", default="Right lower lobe pneumonia")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = tempfile.TemporaryDirectory(prefix="cxrdesk-bench-")
    os.environ["CXRDESK_DATA_DIR"] = os.path.join(tmp.name, "data")  # fresh settings

    from PySide6.QtCore import QEventLoop, QTimer

    from cxrdesk.ui.app import make_app
    from cxrdesk.ui.mainwindow import MainWindow

    app = make_app()
    w = MainWindow(model=args.model)
    w.show()
    t_end = time.time() + 300
    while w.model_state != "loaded" and time.time() < t_end:
        app.processEvents()
        time.sleep(0.02)
    ready = getattr(w.host.worker, "warm_ready", None)
    while ready is not None and not ready.is_set() and time.time() < t_end:
        app.processEvents()
        time.sleep(0.02)
    g = w.generator
    if not g.fast_button.isEnabled():
        print(f"{args.model} has no usable student: {g.fast_button.toolTip()}")
        return 2
    g.prompt_edit.setPlainText(args.prompt)
    g.random_seed_check.setChecked(False)
    g.seed_spin.setValue(1)
    g.batch_spin.setValue(1)

    def one(fast: bool) -> float:
        (g.fast_button if fast else g.full_button).click()
        if not fast:
            g.steps_spin.setValue(args.steps)
        loop = QEventLoop()
        w.documentShown.connect(loop.quit)
        QTimer.singleShot(600_000, loop.quit)
        t0 = time.perf_counter()
        g.request_generate()
        loop.exec()
        dt = time.perf_counter() - t0
        w.documentShown.disconnect(loop.quit)
        while w.running_job is not None:  # the job's end (history, save) before the next click
            app.processEvents()
            time.sleep(0.01)
        return dt

    one(True)
    fast_steps = g.steps_spin.value()
    one(False)  # a first film of each: caches, allocator
    times = {True: [], False: []}
    for _ in range(args.n):
        for fast in (True, False):
            times[fast].append(one(fast))
    w.close()
    full, fast = statistics.median(times[False]), statistics.median(times[True])
    print(f"app, Generate -> final film shown, previews on; model={args.model} cpus={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.2f} n={args.n}")
    print(f"  Full ({args.steps} steps): median {full:.2f} s (min {min(times[False]):.2f}, max {max(times[False]):.2f})")
    print(f"  Fast ({fast_steps} steps): median {fast:.2f} s (min {min(times[True]):.2f}, "
          f"max {max(times[True]):.2f})  ratio {fast / full:.2f}  (target: Fast <= 0.5 s)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
