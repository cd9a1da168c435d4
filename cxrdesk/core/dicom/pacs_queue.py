"""The persistent PACS retry queue: files whose sending failed, kept until a retry sends them.

A :class:`RetryQueue` is a JSON file under the platformdirs user data folder plus a copy of each
file, so nothing is lost when the app is closed. The app and any number of ``cxrdesk send``
processes may share it: updates are serialised by a lock file, and a retrier claims the files it
resends so that no file is sent twice.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable

from ..fsutil import atomic_write
from .pacs_settings import PacsError, PacsSettings

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None

log = logging.getLogger(__name__)

QUEUE_ENV = "CXRDESK_PACS_QUEUE"


def default_queue_path() -> Path:
    """``$CXRDESK_PACS_QUEUE`` or ``<user data dir>/cxrdesk/pacs_retry_queue.json``."""
    env = os.environ.get(QUEUE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("cxrdesk", appauthor=False)) / "pacs_retry_queue.json"


LOCK_TIMEOUT = 60.0            # seconds to wait for another process's queue lock (held for file I/O only)
CLAIM_TTL = 30 * 60.0          # a retrier's claim lapses after this long without progress
MAX_QUEUE_BYTES = 64 << 20     # a larger queue file is set aside unread
_HOST = socket.gethostname()


class _OsLock:
    """An exclusive lock between processes on ``path`` (a lock file beside the queue).

    POSIX: ``fcntl.flock``; Windows: ``msvcrt.locking`` on the lock file's first byte; elsewhere
    a lock file created with ``O_EXCL`` (removed when older than ``LOCK_TIMEOUT``: its owner died).
    The OS locks are released by the kernel when the owner dies. Waits at most ``timeout`` seconds,
    then raises :class:`PacsError` (kind ``queue``).
    """

    def __init__(self, path: Path, timeout: float = LOCK_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None
        self._excl = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        while True:
            if self._try():
                return
            if time.monotonic() > deadline:
                raise PacsError(f"the PACS retry queue is locked by another process ({self.path})", "queue")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _try(self) -> bool:
        if fcntl is not None or msvcrt is not None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                else:
                    os.lseek(fd, 0, os.SEEK_SET)
                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            except OSError:
                os.close(fd)
                return False
            self._fd = fd
            return True
        excl = self.path.with_name(self.path.name + ".excl")
        try:
            fd = os.open(excl, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                if time.time() - excl.stat().st_mtime > self.timeout:
                    excl.unlink()
            except OSError:
                pass
            return False
        os.close(fd)
        self._excl = True
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                else:
                    os.lseek(fd, 0, os.SEEK_SET)
                    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            except OSError:
                pass
            os.close(fd)
        if self._excl:
            self._excl = False
            try:
                self.path.with_name(self.path.name + ".excl").unlink()
            except OSError:
                pass


class _QueueLock:
    """Threads of one process take the RLock; the outermost holder also takes the OS lock."""

    def __init__(self, lock_path: Path):
        self._rlock = threading.RLock()
        self._os = _OsLock(lock_path)
        self._depth = 0

    def __enter__(self):
        self._rlock.acquire()
        if self._depth == 0:
            try:
                self._os.acquire()
            except BaseException:
                self._rlock.release()
                raise
        self._depth += 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            self._os.release()
        self._rlock.release()


_QUEUE_LOCKS: dict[str, _QueueLock] = {}
_QUEUE_LOCKS_GUARD = threading.Lock()


def _forget_locks() -> None:  # a forked child must not inherit locks held by its parent's threads
    global _QUEUE_LOCKS_GUARD
    _QUEUE_LOCKS.clear()
    _QUEUE_LOCKS_GUARD = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks)


def _lock_for(key: str, lock_path: Path) -> _QueueLock:
    with _QUEUE_LOCKS_GUARD:
        lock = _QUEUE_LOCKS.get(key)
        if lock is None:
            lock = _QUEUE_LOCKS[key] = _QueueLock(lock_path)
        return lock


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this machine still runs (True when unsure)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        try:
            import ctypes

            k32 = ctypes.windll.kernel32
            handle = k32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
            if not handle:
                return k32.GetLastError() != 87  # ERROR_INVALID_PARAMETER: no such process
            try:
                code = ctypes.c_ulong()
                if not k32.GetExitCodeProcess(handle, ctypes.byref(code)):
                    return True
                return code.value == 259  # STILL_ACTIVE
            finally:
                k32.CloseHandle(handle)
        except Exception:  # noqa: BLE001
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class QueueFormatError(ValueError):
    """The queue file is valid JSON of the wrong shape."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_item(i: int, it) -> None:
    def bad(why: str):
        raise QueueFormatError(f"item {i}: {why}")

    if not isinstance(it, dict):
        bad("not an object")
    if not isinstance(it.get("id"), str) or not 0 < len(it["id"]) <= 64:
        bad("no id")
    if not isinstance(it.get("file"), str) or not it["file"]:
        bad("no file")
    for k in ("original", "sop_instance_uid", "error", "first_failed", "last_failed"):
        if k in it and not isinstance(it[k], str):
            bad(f"{k} is not a string")
    if "attempts" in it and not _is_int(it["attempts"]):
        bad("attempts is not a whole number")
    s = it.get("settings")
    if not isinstance(s, dict):
        bad("settings is not an object")
    for k in ("called_aet", "host", "calling_aet"):
        if k in s and not isinstance(s[k], str):
            bad(f"settings.{k} is not a string")
    if "port" in s and not _is_int(s["port"]):
        bad("settings.port is not a whole number")
    if "timeout" in s and not (_is_int(s["timeout"]) and abs(s["timeout"]) < 1 << 53
                               or isinstance(s["timeout"], float)):
        bad("settings.timeout is not a number")
    c = it.get("claim")
    if c is not None and not (isinstance(c, dict) and isinstance(c.get("by"), str)
                              and _is_int(c.get("pid")) and isinstance(c.get("host"), str)
                              and isinstance(c.get("at"), (int, float)) and not isinstance(c.get("at"), bool)):
        bad("claim is malformed")


def _parse_queue(raw: bytes) -> list[dict]:
    """The items of a queue file's bytes; raises ValueError (or QueueFormatError) saying why not."""
    if len(raw) > MAX_QUEUE_BYTES:
        raise QueueFormatError(f"larger than {MAX_QUEUE_BYTES >> 20} MB")
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise QueueFormatError("nested too deeply") from None
    except ValueError as exc:
        raise QueueFormatError(f"not valid JSON ({' '.join(str(exc).split())[:80]})") from None
    if not isinstance(data, dict):
        raise QueueFormatError(f"a JSON {type(data).__name__}, not an object")
    if data.get("version", 1) != 1 or isinstance(data.get("version"), bool):
        raise QueueFormatError(f"unknown version {str(data.get('version'))[:20]!r}")
    items = data.get("items")
    if not isinstance(items, list):
        raise QueueFormatError("items is not a list")
    ids = set()
    for i, it in enumerate(items):
        _check_item(i, it)
        if it["id"] in ids:
            raise QueueFormatError(f"item {i}: id repeated")
        ids.add(it["id"])
    return items


class RetryQueue:
    """Failed sends, persisted as JSON, each with its own copy of the DICOM file.

    Items are dicts: ``id, file`` (the queued copy), ``original, sop_instance_uid, settings``
    (a :class:`PacsSettings` dict), ``error, attempts, first_failed, last_failed``, and ``claim``
    (``{by, pid, host, at}``) while a retrier is sending it.

    Safe to share between threads and processes (the app and ``cxrdesk send``): every
    read-modify-write of the file happens under a lock file (``<queue>.lock``) that works across
    processes. A retrier first *claims* the items it will send (:meth:`claim`), so two retriers
    never send the same file; a claim lapses when its process is gone or after ``CLAIM_TTL``
    seconds without progress. A queue file that cannot be read as a queue is renamed
    ``<queue>.bad-<time>`` (one warning line) and the queue starts empty.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_queue_path()
        self.files_dir = self.path.with_name(self.path.stem + "_files")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._key = str(self.path.absolute())
        self.set_aside: Path | None = None  # where a malformed queue file was moved, if it was

    @property
    def _lock(self) -> _QueueLock:
        return _lock_for(self._key, self.lock_path)

    # -- persistence (call with the lock held)
    def _load(self) -> list[dict]:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_QUEUE_BYTES + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            return self._set_aside(f"unreadable ({exc.strerror or exc})")
        try:
            return _parse_queue(raw)
        except ValueError as exc:
            return self._set_aside(str(exc))

    def _set_aside(self, why: str) -> list[dict]:
        """Move the queue file out of the way (kept for inspection); the queue starts empty."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        dest = self.path.with_name(f"{self.path.name}.bad-{stamp}")
        n = 1
        while dest.exists():
            dest = self.path.with_name(f"{self.path.name}.bad-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, dest)
        except OSError as exc:
            dest = None
            where = f"could not move it aside ({exc.strerror or exc}); it will be overwritten"
        else:
            where = f"moved to {dest}"
        self.set_aside = dest
        log.warning("cxrdesk: the PACS retry queue %s is not a valid queue (%s): %s; starting an empty queue",
                    self.path, why, where)
        return []

    def _save(self, items: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": 1, "items": items}, indent=1, ensure_ascii=False)
        atomic_write(self.path, lambda fh: fh.write(text.encode("utf-8")))

    # -- API
    def items(self) -> list[dict]:
        with self._lock:
            return self._load()

    def __len__(self) -> int:
        return len(self.items())

    def add(self, path: str | os.PathLike, settings: PacsSettings, error: str,
            sop_instance_uid: str = "") -> dict:
        """Queue ``path`` (copied into the queue folder) for ``settings``; returns the item.

        A file already queued for the same destination (same SOP instance UID, or same copy)
        is updated instead of queued twice.
        """
        path = Path(path)
        now = _dt.datetime.now().isoformat(timespec="seconds")
        item_id = uuid.uuid4().hex
        copy = self.files_dir / f"{item_id}.dcm"
        # copy before taking the lock: other processes wait only for the JSON update
        self.files_dir.mkdir(parents=True, exist_ok=True)

        def _copy(fh):
            with open(path, "rb") as src:
                shutil.copyfileobj(src, fh)

        atomic_write(copy, _copy)
        try:
            with self._lock:
                items = self._load()
                for it in items:
                    same_dest = PacsSettings.from_dict(it["settings"]).key() == settings.key()
                    same_file = (sop_instance_uid and it.get("sop_instance_uid") == sop_instance_uid) or \
                        Path(it["file"]) == path
                    if same_dest and same_file:
                        it["error"] = error
                        it["attempts"] = int(it.get("attempts", 0)) + 1
                        it["last_failed"] = now
                        self._save(items)
                        break
                else:
                    it = {"id": item_id, "file": str(copy), "original": str(path),
                          "sop_instance_uid": sop_instance_uid, "settings": settings.to_dict(),
                          "error": error, "attempts": 1, "first_failed": now, "last_failed": now}
                    items.append(it)
                    self._save(items)
                    return it
        except BaseException:
            _unlink(copy)
            raise
        _unlink(copy)  # queued already: the new copy is not needed
        return it

    def claim(self, token: str) -> tuple[list[dict], int]:
        """Mark every unclaimed item (or one whose claim lapsed) as claimed by ``token``.

        Returns (the claimed items, how many others are claimed by another live retrier).
        """
        now = time.time()
        mine, busy = [], 0
        with self._lock:
            items = self._load()
            for it in items:
                c = it.get("claim")
                if c and c["by"] != token and not _claim_lapsed(c, now):
                    busy += 1
                    continue
                it["claim"] = {"by": token, "pid": os.getpid(), "host": _HOST, "at": now}
                mine.append(dict(it))
            if mine:
                self._save(items)
        return mine, busy

    def release(self, token: str) -> None:
        """Drop ``token``'s claims on the items still queued (a retrier that is done)."""
        with self._lock:
            items = self._load()
            changed = False
            for it in items:
                if (it.get("claim") or {}).get("by") == token:
                    del it["claim"]
                    changed = True
            if changed:
                self._save(items)

    def _heartbeat(self, items: list[dict], token: str | None) -> None:
        if token:
            now = time.time()
            for it in items:
                c = it.get("claim")
                if c and c["by"] == token:
                    c["at"] = now

    def update(self, item_id: str, error: str, *, claim: str | None = None) -> None:
        """Record one more failed attempt; the item's claim (if ``claim`` holds it) is released."""
        now = _dt.datetime.now().isoformat(timespec="seconds")
        with self._lock:
            items = self._load()
            self._heartbeat(items, claim)
            for it in items:
                if it["id"] == item_id:
                    it["error"] = error
                    it["attempts"] = int(it.get("attempts", 0)) + 1
                    it["last_failed"] = now
                    if claim and (it.get("claim") or {}).get("by") == claim:
                        del it["claim"]
            self._save(items)

    def remove(self, item_ids: Iterable[str], *, claim: str | None = None) -> None:
        ids = set(item_ids)
        if not ids:
            return
        with self._lock:
            items = self._load()
            self._heartbeat(items, claim)
            keep = []
            for it in items:
                if it["id"] in ids:
                    f = Path(it["file"])
                    if f.parent == self.files_dir:
                        _unlink(f)
                else:
                    keep.append(it)
            self._save(keep)

    def clear(self) -> None:
        with self._lock:
            self.remove([it["id"] for it in self.items()])


def _claim_lapsed(c: dict, now: float) -> bool:
    if now - c["at"] > CLAIM_TTL:
        return True
    return c["host"] == _HOST and c["pid"] != os.getpid() and not _pid_alive(c["pid"])


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
