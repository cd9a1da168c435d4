"""Python's cyclic garbage collection, on the GUI thread only.

The cyclic collector runs in whichever thread happens to allocate when a generation's threshold is
crossed. When that is a background thread (the model worker, a dataset scan, a thumbnail loader, the
quick-start loader) and the garbage holds a Qt object (a closed dialog, a widget caught in a cycle
through a lambda), Qt destroys that object off its own thread and the process dies with a
segmentation fault ("Garbage-collecting" at the top of the crashing thread's stack). It happened in
the tests, and it would happen to a teacher the same way: at random, minutes after the object died.

So, as pyqtgraph's GarbageCollector does, automatic collection is switched off once the UI starts a
thread, and a timer on the GUI thread collects instead, generation by generation, with Python's own
thresholds. Reference counting still frees everything that is not in a cycle at once, in any thread;
only cycles wait for the next tick (half a second).
"""
from __future__ import annotations

import gc
import threading

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QTimer

INTERVAL_MS = 500

_collector: "MainThreadCollector | None" = None


class MainThreadCollector(QObject):
    """Owns automatic collection while it runs: ``gc`` stays disabled and :meth:`check`, called by a
    GUI-thread timer, collects each generation whose count has passed its threshold."""

    def __init__(self, parent: QObject, interval_ms: int = INTERVAL_MS):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)
        self._timer.start()

    def check(self) -> int:
        """Collect what Python itself would have collected by now; returns the number of objects
        found unreachable. GUI thread only."""
        if gc.isenabled():  # something switched it back on: this thread keeps the job
            gc.disable()
        t0, t1, t2 = self.thresholds
        c0, c1, c2 = gc.get_count()
        if c0 <= t0:
            return 0
        if c1 > t1:
            return gc.collect(2 if c2 > t2 else 1)
        return gc.collect(0)


def install() -> MainThreadCollector | None:
    """Start collecting on the GUI thread (idempotent). Call it on the GUI thread before starting a
    thread that runs Python; does nothing (returns None) when there is no QApplication yet, or when
    called from another thread."""
    global _collector
    app = QCoreApplication.instance()
    if app is None or threading.current_thread() is not threading.main_thread():
        return _collector
    if _collector is None or not shiboken6.isValid(_collector):  # none yet, or its application is gone
        _collector = MainThreadCollector(app)
    return _collector


def installed() -> MainThreadCollector | None:
    return _collector


def collect_pending() -> int:
    """What the timer does, now: for callers on the GUI thread that will not run the event loop for a
    while (the tests, between one test and the next)."""
    return _collector.check() if _collector is not None else 0
