"""Cyclic garbage holding Qt objects is collected on the GUI thread, never in a background thread
(a QWidget destroyed off the GUI thread crashed the test run with a segmentation fault)."""
from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject, Qt


class _Cycle:
    pass


def _orphan_cycle_with_qobject(seen: list) -> None:
    c = _Cycle()
    c.me = c  # only the cyclic collector can free this
    c.obj = QObject()
    c.obj.destroyed.connect(lambda *_: seen.append(threading.current_thread()), Qt.DirectConnection)


def test_a_background_task_never_runs_the_cyclic_collector(qtbot):
    from cxrdesk.ui import gcguard
    from cxrdesk.ui.tasks import run_task

    seen: list = []
    results: list = []

    def churn():
        # far past generation 0's threshold: with automatic collection on, this thread would collect
        junk = []
        for _ in range(20 * gc.get_threshold()[0]):
            d = {}
            d["self"] = d
            junk.append(d)
        return len(seen)

    _orphan_cycle_with_qobject(seen)
    run_task(churn, done=results.append)
    assert gcguard.installed() is not None and not gc.isenabled()
    qtbot.waitUntil(lambda: bool(results), timeout=20000)
    assert results == [0]  # the worker allocated plenty and collected nothing
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)  # the GUI thread's timer collected the cycle
    assert seen == [threading.main_thread()]


def test_collection_follows_pythons_thresholds_and_can_be_handed_back(qtbot):
    from cxrdesk.ui import gcguard

    c = gcguard.install()
    assert c is gcguard.install()  # one collector per application
    gc.collect()
    assert c.check() == 0  # nothing pending: nothing collected
    seen: list = []
    _orphan_cycle_with_qobject(seen)
    for _ in range(2 * gc.get_threshold()[0]):
        d = {}
        d["self"] = d
    assert not seen  # automatic collection is off
    assert gcguard.collect_pending() > 0
    assert seen == [threading.main_thread()]
    gc.enable()  # something switches it back on: the next tick takes the job back
    c.check()
    assert not gc.isenabled()
    # called off the GUI thread, install() starts nothing new
    out = []
    t = threading.Thread(target=lambda: out.append(gcguard.install()))
    t.start()
    t.join()
    assert out == [c]


def test_the_cores_memory_release_leaves_collection_to_the_host_when_it_has_taken_it():
    """memory.release runs in the model's thread (warm-up, unload): with automatic collection off (the app's
    GUI thread owns it) it frees no cycle there; with it on, it collects as before."""
    import weakref

    from cxrdesk.core import memory

    was = gc.isenabled()
    try:
        for enabled in (False, True):
            (gc.enable if enabled else gc.disable)()
            c = _Cycle()
            c.me = c
            alive = weakref.ref(c)
            del c
            memory.release()
            assert (alive() is None) == enabled
            gc.collect()
    finally:
        (gc.enable if was else gc.disable)()
