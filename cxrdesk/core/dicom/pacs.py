"""Send DICOM files to a PACS (pynetdicom): C-ECHO to test the connection, C-STORE to send.

Everything here is plain Python and blocking: the GUI runs it on a worker thread, passing a
``progress`` callback and a ``cancel`` flag (a ``threading.Event`` or any callable returning
bool). Failures are explained in one line (:class:`PacsError`, :attr:`FileResult.message`).
Files whose sending fails are kept in the :class:`~cxrdesk.core.dicom.pacs_queue.RetryQueue`;
:func:`retry_queue` resends them.

Typical use::

    settings = PacsSettings(called_aet="ORTHANC", host="127.0.0.1", port=4242)
    echo(settings)                       # raises PacsError with a readable message
    report = send_files(settings, paths, progress=cb, cancel=event)
    report = retry_queue()               # later
"""
from __future__ import annotations

import os
import socket
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .pacs_queue import _HOST, RetryQueue
from .pacs_settings import PacsError, PacsSettings

__all__ = ["PacsError", "PacsSettings", "RetryQueue", "FileResult", "SendReport",
           "echo", "send_files", "retry_queue", "collect_files"]

MAX_CONTEXTS = 120  # pynetdicom allows 128 presentation contexts per association

ProgressFn = Callable[[int, int, "FileResult"], Any]


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
