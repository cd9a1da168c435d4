"""Send DICOM files to a PACS (pynetdicom): C-ECHO to test the connection, C-STORE to send.

Everything here is plain Python and blocking: the GUI runs it on a worker thread, passing a
``progress`` callback and a ``cancel`` flag (a ``threading.Event`` or any callable returning
bool). Failures are explained in one line (:class:`PacsError`, :attr:`FileResult.message`).

Files whose sending fails are kept in a persistent :class:`RetryQueue` (a JSON file under the
platformdirs user data folder plus a copy of each file), so nothing is lost when the app is
closed; :func:`retry_queue` resends them. The app and any number of ``cxrdesk send`` processes
may share the queue: updates are serialised by a lock file, and a retrier claims the files it
resends so that no file is sent twice.

Typical use::

    settings = PacsSettings(called_aet="ORTHANC", host="127.0.0.1", port=4242)
    echo(settings)                       # raises PacsError with a readable message
    report = send_files(settings, paths, progress=cb, cancel=event)
    report = retry_queue()               # later
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
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..fsutil import atomic_write

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None

log = logging.getLogger(__name__)

DEFAULT_CALLING_AET = "CXRDESK"
QUEUE_ENV = "CXRDESK_PACS_QUEUE"
MAX_CONTEXTS = 120  # pynetdicom allows 128 presentation contexts per association

ProgressFn = Callable[[int, int, "FileResult"], Any]


class PacsError(Exception):
    """A PACS operation failed. ``kind`` is one of: config, unreachable, refused, rejected,
    timeout, aborted, failed, queue (the retry queue's lock could not be taken)."""

    def __init__(self, message: str, kind: str = "failed"):
        super().__init__(message)
        self.kind = kind


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------

def _check_aet(value: str, what: str) -> str:
    v = (value or "").strip()
    if not v:
        raise PacsError(f"{what} is empty", "config")
    if len(v) > 16:
        raise PacsError(f"{what} '{v}' is longer than 16 characters", "config")
    if "\\" in v or any(ord(ch) < 32 or ord(ch) > 126 for ch in v):
        raise PacsError(f"{what} '{v}' may only hold printable ASCII characters without '\\'", "config")
    return v


@dataclass
class PacsSettings:
    """Where to send: the remote (called) AE title, host, port; our (calling) AE title; the
    time-out in seconds for connecting, association and each DIMSE response."""

    called_aet: str
    host: str = "127.0.0.1"
    port: int = 4242
    calling_aet: str = DEFAULT_CALLING_AET
    timeout: float = 10.0

    def validate(self) -> "PacsSettings":
        """Return a cleaned copy or raise :class:`PacsError` (kind ``config``)."""
        called = _check_aet(self.called_aet, "remote AE title")
        calling = _check_aet(self.calling_aet, "our AE title")
        host = (self.host or "").strip()
        if not host:
            raise PacsError("PACS host is empty", "config")
        try:
            port = int(self.port)
        except (TypeError, ValueError):
            raise PacsError(f"PACS port '{self.port}' is not a number", "config") from None
        if not 1 <= port <= 65535:
            raise PacsError(f"PACS port {port} is out of range (1-65535)", "config")
        try:
            timeout = float(self.timeout)
        except (TypeError, ValueError):
            raise PacsError(f"time-out '{self.timeout}' is not a number", "config") from None
        if not timeout > 0:
            raise PacsError("time-out must be positive", "config")
        return PacsSettings(called, host, port, calling, timeout)

    def describe(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PacsSettings":
        return cls(called_aet=str(d.get("called_aet", "")), host=str(d.get("host", "127.0.0.1")),
                   port=int(d.get("port", 4242)), calling_aet=str(d.get("calling_aet", DEFAULT_CALLING_AET)),
                   timeout=float(d.get("timeout", 10.0)))

    def key(self) -> tuple:
        return (self.called_aet, self.host, int(self.port), self.calling_aet)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------

@dataclass
class FileResult:
    path: str
    ok: bool
    message: str = ""
    status: int | None = None
    sop_instance_uid: str = ""
    queued: bool = False
    cancelled: bool = False


@dataclass
class SendReport:
    results: list[FileResult] = field(default_factory=list)
    error: str | None = None        # the association-level error, if any
    error_kind: str | None = None
    busy: int = 0                   # queued files left alone: another retrier is sending them

    @property
    def sent(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok and not r.cancelled)

    @property
    def cancelled(self) -> int:
        return sum(1 for r in self.results if r.cancelled)

    @property
    def queued(self) -> int:
        return sum(1 for r in self.results if r.queued)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.cancelled == 0

    def summary(self) -> str:
        parts = [f"{self.sent} of {len(self.results)} sent"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        if self.queued:
            parts.append(f"{self.queued} kept in the retry queue")
        if self.busy:
            parts.append(f"{self.busy} being resent by another cxrdesk")
        s = ", ".join(parts)
        return f"{s} ({self.error})" if self.error else s


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    if callable(cancel):
        return bool(cancel())
    return bool(cancel)


# --------------------------------------------------------------------------------------------
# retry queue
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# association handling
# --------------------------------------------------------------------------------------------

def _probe(host: str, port: int, timeout: float) -> tuple[str, str] | None:
    """Why a TCP connection fails, as (kind, message), or None when it succeeds."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return ("unreachable", f"cannot connect: unknown host '{host}'")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return ("refused", f"cannot connect to {host}:{port}: connection refused "
                           "(is the PACS running, and is the port right?)")
    except (socket.timeout, TimeoutError):
        return ("timeout", f"cannot connect to {host}:{port}: no answer within {timeout:g} s (time-out)")
    except OSError as exc:
        return ("unreachable", f"cannot connect to {host}:{port}: {exc.strerror or exc}")


def _associate(s: PacsSettings, contexts: list[tuple[str, list[str]]]):
    """Open an association or raise :class:`PacsError` explaining why not."""
    from pynetdicom import AE, evt
    from pynetdicom.pdu import A_ASSOCIATE_RJ

    ae = AE(ae_title=s.calling_aet)
    ae.acse_timeout = s.timeout
    ae.dimse_timeout = s.timeout
    ae.connection_timeout = s.timeout
    ae.network_timeout = max(60.0, s.timeout)
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, syntaxes)
    # Classify a rejection from the A-ASSOCIATE-RJ PDU itself. pynetdicom can report a rejection as
    # an abort: when the peer answers with A-ASSOCIATE-RJ and closes the connection before the
    # requesting thread checks the socket (a busy CPU), that thread aborts and the reject primitive
    # is never read; the PDU is always decoded, on both paths.
    rejects: list[A_ASSOCIATE_RJ] = []

    def on_pdu(event):
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            rejects.append(event.pdu)

    t0 = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assoc = ae.associate(s.host, s.port, ae_title=s.called_aet,
                                 evt_handlers=[(evt.EVT_PDU_RECV, on_pdu)])
    except socket.gaierror:
        raise PacsError(f"cannot connect: unknown host '{s.host}'", "unreachable") from None
    except (OSError, ValueError, RuntimeError) as exc:
        probe = _probe(s.host, s.port, s.timeout)
        if probe is not None:
            raise PacsError(probe[1], probe[0]) from None
        raise PacsError(f"cannot open an association with {s.describe()}: {' '.join(str(exc).split())[:160]}",
                        "failed") from None
    if assoc.is_established:
        return assoc
    elapsed = time.monotonic() - t0
    dest = s.describe()
    if assoc.is_rejected or rejects:
        rj = rejects[-1] if rejects else None
        src, diag = getattr(rj, "source", None), getattr(rj, "reason_diagnostic", None)
        if src == 1 and diag == 7:
            raise PacsError(f"association rejected by {s.host}:{s.port}: called AE title "
                            f"'{s.called_aet}' not recognised (check the remote AE title)", "rejected")
        if src == 1 and diag == 3:
            raise PacsError(f"association rejected by {s.host}:{s.port}: our AE title "
                            f"'{s.calling_aet}' is not known to the PACS (add it to its modalities)",
                            "rejected")
        try:
            reason = rj.reason_str if rj is not None else "no reason given"
        except ValueError:  # a code outside the standard's table
            reason = f"source {src}, reason {diag}"
        raise PacsError(f"association rejected by {dest}: {str(reason).lower()}", "rejected")
    probe = _probe(s.host, s.port, s.timeout)
    if probe is not None:
        raise PacsError(probe[1], probe[0])
    if elapsed >= 0.9 * s.timeout:
        raise PacsError(f"no answer from {dest} within {s.timeout:g} s (time-out; is this a DICOM port?)",
                        "timeout")
    raise PacsError(f"association with {dest} was aborted (no acceptable presentation context, "
                    "or not a DICOM service)", "aborted")


def echo(settings: PacsSettings) -> str:
    """C-ECHO ("test connection"). Returns a one-line success message; raises PacsError."""
    from pynetdicom.sop_class import Verification

    s = settings.validate()
    assoc = _associate(s, [(Verification, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])])
    try:
        t0 = time.monotonic()
        status = assoc.send_c_echo()
        ms = (time.monotonic() - t0) * 1000
        code = getattr(status, "Status", None) if status is not None else None
        if code is None:
            raise PacsError(f"no C-ECHO response from {s.describe()} within {s.timeout:g} s", "timeout")
        if int(code) != 0:
            raise PacsError(f"C-ECHO to {s.describe()} failed with status 0x{int(code):04X}", "failed")
        return f"C-ECHO to {s.describe()} succeeded ({ms:.0f} ms)"
    finally:
        if assoc.is_established:
            assoc.release()


def _status_text(code: int) -> str:
    from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS

    cat, desc = STORAGE_SERVICE_CLASS_STATUS.get(code, ("Failure", "unknown status"))
    return f"status 0x{code:04X} ({desc})" if desc else f"status 0x{code:04X} ({cat})"


def collect_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand folders (recursively, sorted) into files; files are kept as given.

    Raises PacsError (kind ``config``) for a path that does not exist.
    """
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
        elif p.is_file():
            out.append(p)
        else:
            raise PacsError(f"no such file or folder: {p}", "config")
    return out


@dataclass
class _Item:
    path: Path
    sop_class: str = ""
    sop_instance: str = ""
    syntax: str = ""
    queue_id: str | None = None
    claim: str | None = None  # the retrier's claim token on the queue item
    settings: PacsSettings | None = None
    original: str = ""  # for queued copies: the file the user sent


def _inspect(path: Path) -> tuple[str, str, str] | str:
    """(SOP class, SOP instance, transfer syntax) of a DICOM file, or an error message."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID") or ds.SOPClassUID)
        sop_inst = str(ds.file_meta.get("MediaStorageSOPInstanceUID") or ds.SOPInstanceUID)
        ts = str(ds.file_meta.TransferSyntaxUID)
        if not sop_class or not sop_inst or not ts:
            return "not a DICOM Part 10 file (no SOP class, instance or transfer syntax)"
        return (sop_class, sop_inst, ts)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not sendable
        return "not a readable DICOM Part 10 file"


def _send_items(s: PacsSettings, items: list[_Item], report: SendReport, *, progress, cancel,
                queue: RetryQueue | None, done0: int, total: int) -> int:
    """Send items (all valid DICOM) over as few associations as needed; return files done."""
    done = done0

    def finish(item: _Item, ok: bool, message: str, status: int | None = None, cancelled: bool = False):
        nonlocal done
        queued = False
        if ok and item.queue_id and queue is not None:
            queue.remove([item.queue_id], claim=item.claim)
        elif not ok and not cancelled and queue is not None:
            if item.queue_id:
                queue.update(item.queue_id, message, claim=item.claim)
            else:
                queue.add(item.path, s, message, item.sop_instance)
            queued = True
        r = FileResult(item.original or str(item.path), ok, message, status, item.sop_instance, queued, cancelled)
        report.results.append(r)
        done += 1
        if progress is not None:
            progress(done, total, r)

    # batches of at most MAX_CONTEXTS distinct (SOP class, transfer syntax) pairs
    batches: list[list[_Item]] = []
    pairs: set = set()
    for it in items:
        pair = (it.sop_class, it.syntax)
        if not batches or (pair not in pairs and len(pairs) >= MAX_CONTEXTS):
            batches.append([])
            pairs = set()
        pairs.add(pair)
        batches[-1].append(it)

    for bi, batch in enumerate(batches):
        if _is_cancelled(cancel):
            for it in [x for b in batches[bi:] for x in b]:
                finish(it, False, "cancelled", cancelled=True)
            return done
        contexts = sorted({(it.sop_class, it.syntax) for it in batch})
        try:
            assoc = _associate(s, [(c, [t]) for c, t in contexts])
        except PacsError as exc:
            report.error, report.error_kind = str(exc), exc.kind
            for it in batch:
                finish(it, False, str(exc))
            continue
        try:
            for i, it in enumerate(batch):
                if _is_cancelled(cancel):
                    for rest in batch[i:]:
                        finish(rest, False, "cancelled", cancelled=True)
                    break
                if not assoc.is_established:
                    msg = f"association with {s.describe()} ended before this file was sent"
                    report.error = report.error or msg
                    report.error_kind = report.error_kind or "aborted"
                    finish(it, False, msg)
                    continue
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        status = assoc.send_c_store(str(it.path))
                except Exception as exc:  # noqa: BLE001 - e.g. no matching presentation context
                    finish(it, False, f"cannot send: {' '.join(str(exc).split())[:160]}")
                    continue
                code = getattr(status, "Status", None) if status is not None else None
                if code is None:
                    msg = f"no C-STORE response from {s.describe()} within {s.timeout:g} s (time-out or abort)"
                    report.error = report.error or msg
                    report.error_kind = report.error_kind or "timeout"
                    finish(it, False, msg)
                    continue
                code = int(code)
                from pynetdicom.status import code_to_category

                cat = code_to_category(code)
                if code == 0:
                    finish(it, True, "stored", code)
                elif cat == "Warning":
                    finish(it, True, f"stored with warning: {_status_text(code)}", code)
                else:
                    finish(it, False, f"C-STORE refused: {_status_text(code)}", code)
        finally:
            if assoc.is_established:
                assoc.release()
    return done


def send_files(settings: PacsSettings, paths: Iterable[str | os.PathLike], *,
               progress: ProgressFn | None = None, cancel: Any = None,
               queue: RetryQueue | None | bool = True) -> SendReport:
    """C-STORE files (folders are expanded) to the PACS over one association.

    ``progress(done, total, FileResult)`` is called after each file; ``cancel`` (Event or
    callable) stops before the next file (the rest are reported as cancelled, not queued).
    Files that fail to send are added to ``queue`` (``True``: the default queue; ``None`` or
    ``False``: no queue). Files that are not DICOM are reported as failed but never queued.
    Raises :class:`PacsError` only for bad settings or a missing path; connection errors are
    in the report (``report.error``).
    """
    s = settings.validate()
    q = RetryQueue() if queue is True else (queue if isinstance(queue, RetryQueue) else None)
    files = collect_files(paths)
    report = SendReport()
    total = len(files)
    done = 0
    good: list[_Item] = []
    for p in files:
        info = _inspect(p)
        if isinstance(info, str):
            r = FileResult(str(p), False, info)
            report.results.append(r)
            done += 1
            if progress is not None:
                progress(done, total, r)
        else:
            good.append(_Item(p, *info))
    if good:
        _send_items(s, good, report, progress=progress, cancel=cancel, queue=q, done0=done, total=total)
    return report


def retry_queue(settings: PacsSettings | None = None, *, queue: RetryQueue | None = None,
                progress: ProgressFn | None = None, cancel: Any = None) -> SendReport:
    """Resend every queued file: to its own stored destination, or to ``settings`` if given.

    The files are claimed first: files another retrier (another process or thread) is resending
    are left to it and counted in ``report.busy``. Sent files leave the queue (and their copies
    are deleted); failures stay, with the new error and one more attempt counted.
    """
    q = queue if queue is not None else RetryQueue()
    report = SendReport()
    token = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex}"
    items, report.busy = q.claim(token)
    try:
        total = len(items)
        groups: dict[tuple, list[_Item]] = {}
        gset: dict[tuple, PacsSettings] = {}
        done = 0

        def skip(r: FileResult) -> None:
            nonlocal done
            report.results.append(r)
            done += 1
            if progress is not None:
                progress(done, total, r)

        for it in items:
            try:
                s = (settings or PacsSettings.from_dict(it["settings"])).validate()
            except (PacsError, TypeError, ValueError) as exc:
                q.update(it["id"], str(exc), claim=token)
                skip(FileResult(it.get("original") or it["file"], False, str(exc), queued=True))
                continue
            path = Path(it["file"])
            info = _inspect(path) if path.is_file() else "queued copy is missing"
            if isinstance(info, str):
                q.remove([it["id"]], claim=token)  # cannot ever succeed: drop it, say so
                skip(FileResult(str(path), False, f"dropped from the queue: {info}"))
                continue
            groups.setdefault(s.key(), []).append(
                _Item(path, *info, queue_id=it["id"], claim=token, settings=s,
                      original=str(it.get("original") or path)))
            gset[s.key()] = s
        for key, group in groups.items():
            done = _send_items(gset[key], group, report, progress=progress, cancel=cancel, queue=q,
                               done0=done, total=total)
    finally:
        q.release(token)  # cancelled files (and any left by an error) go back to the queue
    return report
