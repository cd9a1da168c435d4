"""Short background jobs on a QThreadPool, results delivered in the GUI thread.

``run_task(fn, *args, done=cb, error=cb)``: ``fn`` runs in a pool thread (pure Python/numpy, no
Qt widgets); ``done(result)`` or ``error(message)`` is called in the thread that called
``run_task`` (the GUI thread), via a queued signal. Pass ``owner`` (a QObject, usually the
widget that asked): when it has been deleted by the time the result arrives (window closed), the
result is dropped instead of touching dead widgets.
"""
from __future__ import annotations

import logging
import traceback

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger("cxrdesk.ui.tasks")
_live: set = set()


def pool() -> QThreadPool:
    return QThreadPool.globalInstance()


class _Relay(QObject):
    finished = Signal(object, object)  # result, error message (one of them None)

    def __init__(self, done, error, owner=None):
        super().__init__()
        self._done, self._error, self._owner = done, error, owner
        self.finished.connect(self._deliver)

    @Slot(object, object)
    def _deliver(self, result, err) -> None:
        _live.discard(self)
        if self._owner is not None and not shiboken6.isValid(self._owner):
            self.deleteLater()
            return
        try:
            if err is not None:
                if self._error is not None:
                    self._error(err)
                else:
                    log.warning("background task failed: %s", err)
            elif self._done is not None:
                self._done(result)
        finally:
            self.deleteLater()


class _Task(QRunnable):
    def __init__(self, relay: _Relay, fn, args, kwargs):
        super().__init__()
        self.relay, self.fn, self.args, self.kwargs = relay, fn, args, kwargs
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
            self.relay.finished.emit(res, msg)
        except RuntimeError:  # the relay's owner was destroyed (the window closed): nobody is waiting
            log.debug("task finished after its owner was destroyed")


def run_task(fn, *args, done=None, error=None, owner: QObject | None = None,
             target_pool: QThreadPool | None = None, **kwargs) -> None:
    if owner is None:
        owner = getattr(done, "__self__", None) if isinstance(getattr(done, "__self__", None), QObject) else None
    relay = _Relay(done, error, owner)
    _live.add(relay)
    (target_pool or pool()).start(_Task(relay, fn, args, kwargs))
