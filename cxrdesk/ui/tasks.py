"""Short background jobs on a QThreadPool, results delivered in the GUI thread.

``run_task(fn, *args, done=cb, error=cb)``: ``fn`` runs in a pool thread (pure Python/numpy, no
Qt widgets); ``done(result)`` or ``error(message)`` is called in the GUI thread. Pass ``owner``
(a QObject, usually the widget that asked): when it has been deleted by the time the result
arrives (window closed), the result is dropped instead of touching dead widgets.

Pool threads never hold a QObject: a task carries only a number, and one long-lived dispatcher in
the GUI thread keeps the callbacks, so no Qt object is ever created or destroyed off the GUI thread.
"""
from __future__ import annotations

import itertools
import logging
import threading
import traceback

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThreadPool, Signal, Slot

from . import gcguard

log = logging.getLogger("cxrdesk.ui.tasks")


def pool() -> QThreadPool:
    return QThreadPool.globalInstance()


class _Dispatcher(QObject):
    """Lives in the GUI thread for the application's lifetime; maps task numbers to callbacks."""

    finished = Signal(int, object, object)  # task number, result, error message (one of them None)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._callbacks: dict[int, tuple] = {}
        self.finished.connect(self._deliver)

    def add(self, token: int, done, error, owner) -> None:
        self._callbacks[token] = (done, error, owner)

    def pending(self) -> int:
        return len(self._callbacks)

    @Slot(int, object, object)
    def _deliver(self, token: int, result, err) -> None:
        entry = self._callbacks.pop(token, None)
        if entry is None:
            return
        done, error, owner = entry
        if owner is not None and not shiboken6.isValid(owner):
            return
        if err is not None:
            if error is not None:
                error(err)
            else:
                log.warning("background task failed: %s", err)
        elif done is not None:
            done(result)


_dispatcher: _Dispatcher | None = None
_tokens = itertools.count(1)
_token_lock = threading.Lock()


def dispatcher() -> _Dispatcher:
    """The GUI thread's dispatcher (made on first use, parented to the application)."""
    global _dispatcher
    if _dispatcher is None or not shiboken6.isValid(_dispatcher):
        _dispatcher = _Dispatcher(QCoreApplication.instance())
    return _dispatcher


class _Task(QRunnable):
    def __init__(self, target: _Dispatcher, token: int, fn, args, kwargs):
        super().__init__()
        self.token, self.fn, self.args, self.kwargs = token, fn, args, kwargs
        self._signal = target.finished  # a bound signal: emitting it never deletes its QObject
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            res = self.fn(*self.args, **self.kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the GUI as a message
            log.debug("task failed\n%s", traceback.format_exc())
            msg = " ".join(str(exc).split()) or type(exc).__name__
            self._report(None, msg)
            return
        self._report(res, None)

    def _report(self, res, msg) -> None:
        try:
            self._signal.emit(self.token, res, msg)
        except RuntimeError:  # the application shut down while the task ran: nobody is waiting
            log.debug("task finished after the application closed")


def run_task(fn, *args, done=None, error=None, owner: QObject | None = None,
             target_pool: QThreadPool | None = None, **kwargs) -> None:
    if owner is None:
        owner = getattr(done, "__self__", None) if isinstance(getattr(done, "__self__", None), QObject) else None
    target = dispatcher()
    with _token_lock:
        token = next(_tokens)
    target.add(token, done, error, owner)
    gcguard.install()  # cycles holding Qt objects must not be collected in the task's thread
    (target_pool or pool()).start(_Task(target, token, fn, args, kwargs))
