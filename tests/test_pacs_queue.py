"""The PACS retry queue shared by several processes, and queue files of the wrong shape.

Concurrency: separate Python processes (the app and ``cxrdesk send`` are separate processes)
are started together, each after writing a "ready" file and waiting for a "go" file, so their
queue updates overlap. Senders fail against a real Orthanc on 127.0.0.1 (a called AE title it
rejects); retriers send to it. Every trial checks that no queue entry is lost and that no file
is sent twice (the retriers' own reports of what the PACS stored, and the PACS's instances).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cxrdesk.core.dicom import reader, writer
from cxrdesk.core.dicom import pacs, pacs_queue
from .test_pacs import _free_port, _instances_of_series, _settings, orthanc  # noqa: F401 - the Orthanc fixture

REPO = Path(__file__).resolve().parents[1]
TRIALS = 3
N_FILES = 10
CHILD_TIMEOUT = 180  # seconds; a bound on a hung child, not a performance threshold

# Run in a child process: argv = role, queue path, settings JSON, ready file, go file, result file,
# files... ("send": send the files; "retry": resend the queue). Writes the report as JSON.
_CHILD = r"""
import json, os, sys, time
from pathlib import Path
from cxrdesk.core.dicom import pacs, pacs_queue
role, qpath, sjson, ready, go, result, *files = sys.argv[1:]
if os.environ.get("CXRDESK_TEST_LOCK") == "excl":  # the lock of systems without fcntl or msvcrt
    pacs_queue.fcntl = pacs_queue.msvcrt = None
settings = pacs.PacsSettings(**json.loads(sjson))
q = pacs.RetryQueue(qpath)
Path(ready).touch()
deadline = time.monotonic() + 60
while not Path(go).exists():
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.001)
if role == "send":
    rep = pacs.send_files(settings, files, queue=q)
else:
    rep = pacs.retry_queue(settings, queue=q)
Path(result).write_text(json.dumps({
    "sent": [r.sop_instance_uid for r in rep.results if r.ok],
    "failed": [r.sop_instance_uid for r in rep.results if not r.ok],
    "queued": rep.queued, "busy": getattr(rep, "busy", 0)}))
"""


def _files(folder: Path, n: int, tag: str) -> list[Path]:
    rng = np.random.default_rng(abs(hash(tag)) % 2**32)
    ctx = writer.SeriesContext.new(patient_name="SYNTHETIC^QUEUE", patient_id=f"SYN-{tag}")
    images = [(rng.integers(0, 4096, size=(16, 16), dtype=np.uint16), {"prompt": f"{tag} {i}", "seed": i})
              for i in range(n)]
    return writer.export_series(folder, images, context=ctx, window=(2048, 4096))


def _uid(path: Path) -> str:
    return reader.read_dicom(path).sop_instance_uid


def _run_together(tmp: Path, jobs: list[tuple[str, pacs.PacsSettings, list[Path]]], qpath: Path,
                  **env_extra) -> list[dict]:
    """Start one child per job, release them at once, wait, return their reports."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_extra)
    go = tmp / "go"
    procs, results, readies = [], [], []
    for i, (role, settings, files) in enumerate(jobs):
        ready, result = tmp / f"ready{i}", tmp / f"result{i}.json"
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _CHILD, role, str(qpath), json.dumps(settings.to_dict()), str(ready), str(go), str(result),
             *map(str, files)], env=env, stderr=subprocess.PIPE, text=True))
        readies.append(ready)
        results.append(result)
    try:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while not all(r.exists() for r in readies):
            assert all(p.poll() is None for p in procs), [p.communicate()[1] for p in procs if p.poll() is not None]
            assert time.monotonic() < deadline, "children did not start"
            time.sleep(0.02)
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=CHILD_TIMEOUT)
            assert p.returncode == 0, err
            assert "Traceback" not in err, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [json.loads(r.read_text()) for r in results]


def _fresh_trial(tmp_path: Path, trial: int) -> tuple[Path, Path]:
    tmp = tmp_path / f"trial{trial}"
    tmp.mkdir()
    return tmp, tmp / "queue" / "retry.json"


# ---- several processes, a real Orthanc ------------------------------------------------------

def test_two_senders_lose_no_entry(orthanc, tmp_path):
    wrong = _settings(orthanc, called_aet="NOTTHEPACS")  # Orthanc rejects the association
    for trial in range(TRIALS):
        tmp, qpath = _fresh_trial(tmp_path, trial)
        a, b = _files(tmp / "a", N_FILES, f"a{trial}"), _files(tmp / "b", N_FILES, f"b{trial}")
        reports = _run_together(tmp, [("send", wrong, a), ("send", wrong, b)], qpath)
        assert [r["queued"] for r in reports] == [N_FILES, N_FILES]
        items = pacs.RetryQueue(qpath).items()
        assert sorted(it["sop_instance_uid"] for it in items) == sorted(_uid(p) for p in a + b), f"trial {trial}"
        assert all(Path(it["file"]).is_file() and it["attempts"] == 1 for it in items)
        assert sorted(p.name for p in qpath.parent.glob("retry_files/*")) == sorted(
            Path(it["file"]).name for it in items)


def test_two_senders_with_the_lock_file_fallback(orthanc, tmp_path):
    wrong = _settings(orthanc, called_aet="NOTTHEPACS")
    tmp, qpath = _fresh_trial(tmp_path, 0)
    a, b = _files(tmp / "a", N_FILES, "xa"), _files(tmp / "b", N_FILES, "xb")
    _run_together(tmp, [("send", wrong, a), ("send", wrong, b)], qpath, CXRDESK_TEST_LOCK="excl")
    items = pacs.RetryQueue(qpath).items()
    assert sorted(it["sop_instance_uid"] for it in items) == sorted(_uid(p) for p in a + b)
    assert not list(qpath.parent.glob("*.excl"))


def test_two_retriers_send_each_file_once(orthanc, tmp_path):
    wrong, right = _settings(orthanc, called_aet="NOTTHEPACS"), _settings(orthanc)
    for trial in range(TRIALS):
        tmp, qpath = _fresh_trial(tmp_path, trial)
        files = _files(tmp / "src", 2 * N_FILES, f"r{trial}")
        q = pacs.RetryQueue(qpath)
        assert pacs.send_files(wrong, files, queue=q).queued == 2 * N_FILES
        reports = _run_together(tmp, [("retry", right, []), ("retry", right, [])], qpath)
        sent = reports[0]["sent"] + reports[1]["sent"]
        assert sorted(sent) == sorted(_uid(p) for p in files), f"trial {trial}: some file sent twice or never"
        assert reports[0]["failed"] == reports[1]["failed"] == []
        assert len(q) == 0 and not any(q.files_dir.iterdir())
        series = reader.read_dicom(files[0]).series_instance_uid
        assert len(_instances_of_series(orthanc, series)) == 2 * N_FILES


def test_sender_and_retrier_together(orthanc, tmp_path):
    wrong, right = _settings(orthanc, called_aet="NOTTHEPACS"), _settings(orthanc)
    for trial in range(TRIALS):
        tmp, qpath = _fresh_trial(tmp_path, trial)
        old, new = _files(tmp / "old", N_FILES, f"o{trial}"), _files(tmp / "new", N_FILES, f"n{trial}")
        q = pacs.RetryQueue(qpath)
        assert pacs.send_files(wrong, old, queue=q).queued == N_FILES
        # the retrier sends the old files to the PACS while the sender's new files fail and queue
        retry, send = _run_together(tmp, [("retry", right, []), ("send", wrong, new)], qpath)
        old_uids, new_uids = {_uid(p) for p in old}, {_uid(p) for p in new}
        left = {it["sop_instance_uid"] for it in q.items()}
        # every file is either stored once or still queued, never both, never neither
        assert len(retry["sent"]) == len(set(retry["sent"]))
        assert set(retry["sent"]) | left == old_uids | new_uids, f"trial {trial}"
        assert not set(retry["sent"]) & left
        assert old_uids <= set(retry["sent"]) and send["queued"] == N_FILES


def test_two_retriers_to_an_unreachable_pacs_keep_everything(orthanc, tmp_path):
    closed = _settings(orthanc, port=_free_port())
    tmp, qpath = _fresh_trial(tmp_path, 0)
    files = _files(tmp / "src", N_FILES, "u")
    q = pacs.RetryQueue(qpath)
    assert pacs.send_files(closed, files, queue=q).queued == N_FILES
    reports = _run_together(tmp, [("retry", closed, []), ("retry", closed, [])], qpath)
    assert reports[0]["sent"] == reports[1]["sent"] == []
    items = q.items()
    assert sorted(it["sop_instance_uid"] for it in items) == sorted(_uid(p) for p in files)
    # each file was tried by one of the two, or by both one after the other; none is left claimed
    assert all(it["attempts"] in (2, 3) and "claim" not in it for it in items)
    assert len(reports[0]["failed"]) + len(reports[1]["failed"]) + reports[0]["busy"] + reports[1]["busy"] >= N_FILES


# ---- the lock and claims within one process --------------------------------------------------

@pytest.mark.parametrize("fallback", [False, True])
def test_os_lock_excludes_and_releases(tmp_path, monkeypatch, fallback):
    if fallback:
        monkeypatch.setattr(pacs_queue, "fcntl", None)
        monkeypatch.setattr(pacs_queue, "msvcrt", None)
    a, b = pacs_queue._OsLock(tmp_path / "q.lock", timeout=0.2), pacs_queue._OsLock(tmp_path / "q.lock", timeout=0.2)
    a.acquire()
    assert not b._try()
    with pytest.raises(pacs.PacsError) as ei:
        b.acquire()
    assert ei.value.kind == "queue" and "locked by another process" in str(ei.value)
    a.release()
    b.acquire()
    b.release()


def test_lock_file_of_a_dead_holder_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(pacs_queue, "fcntl", None)
    monkeypatch.setattr(pacs_queue, "msvcrt", None)
    stale = tmp_path / "q.lock.excl"
    stale.touch()
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    lock = pacs_queue._OsLock(tmp_path / "q.lock", timeout=5)
    lock.acquire()
    lock.release()
    assert not stale.exists()


def test_claims_are_exclusive_and_released(tmp_path):
    q = pacs.RetryQueue(tmp_path / "q.json")
    s = pacs.PacsSettings("PACS", "127.0.0.1", 104)
    for p in _files(tmp_path / "src", 3, "c"):
        q.add(p, s, "refused", _uid(p))
    mine, busy = q.claim("A")
    assert len(mine) == 3 and busy == 0
    assert q.claim("B") == ([], 3)
    q.update(mine[0]["id"], "again", claim="A")   # a failed retry gives its item back
    got, busy = q.claim("B")
    assert [it["id"] for it in got] == [mine[0]["id"]] and busy == 2
    q.release("A")
    assert len(q.claim("C")[0]) == 2


def test_a_claim_of_a_dead_process_lapses(tmp_path):
    q = pacs.RetryQueue(tmp_path / "q.json")
    p = _files(tmp_path / "src", 1, "d")[0]
    q.add(p, pacs.PacsSettings("PACS", "127.0.0.1", 104), "refused", _uid(p))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    items = q.items()
    items[0]["claim"] = {"by": "gone", "pid": dead.pid, "host": pacs_queue._HOST, "at": time.time()}
    q.path.write_text(json.dumps({"version": 1, "items": items}))
    assert len(q.claim("me")[0]) == 1
    # a claim that made no progress for longer than CLAIM_TTL lapses too, wherever it was made
    items = q.items()
    items[0]["claim"] = {"by": "old", "pid": 1, "host": "elsewhere", "at": time.time() - pacs_queue.CLAIM_TTL - 5}
    q.path.write_text(json.dumps({"version": 1, "items": items}))
    assert len(q.claim("me2")[0]) == 1


def test_cancelled_retry_gives_its_claims_back(tmp_path):
    q = pacs.RetryQueue(tmp_path / "q.json")
    for p in _files(tmp_path / "src", 2, "x"):
        q.add(p, pacs.PacsSettings("PACS", "127.0.0.1", _free_port(), timeout=2), "refused", _uid(p))
    rep = pacs.retry_queue(queue=q, cancel=lambda: True)
    assert rep.cancelled == 2
    assert all("claim" not in it for it in q.items()) and len(q.claim("next")[0]) == 2


# ---- queue files of the wrong shape -----------------------------------------------------------

def _item(**kw) -> dict:
    it = {"id": "0123abcd", "file": "/nonexistent/x.dcm", "original": "x.dcm", "sop_instance_uid": "1.2.3",
          "settings": {"called_aet": "PACS", "host": "127.0.0.1", "port": 104, "calling_aet": "CXRDESK",
                       "timeout": 10.0},
          "error": "refused", "attempts": 1, "first_failed": "2026-01-01T00:00:00",
          "last_failed": "2026-01-01T00:00:00"}
    for k, v in kw.items():
        if k.startswith("s_"):
            it["settings"][k[2:]] = v
        else:
            it[k] = v
    return it


def _doc(*items, **top) -> str:
    return json.dumps({"version": 1, "items": list(items), **top})


MALFORMED = {
    "empty file": b"",
    "truncated": b'{"version": 1, "items": [',
    "not utf-8": b'{"items": ["\xff\xfe"]}',
    "a list": b"[]",
    "a string": b'"queue"',
    "null": b"null",
    "a number": b"42",
    "no items": b"{}",
    "items an object": b'{"version": 1, "items": {}}',
    "items a string": b'{"version": 1, "items": "abc"}',
    "items null": b'{"version": 1, "items": null}',
    "item a number": _doc(1).encode(),
    "item without id": _doc({k: v for k, v in _item().items() if k != "id"}).encode(),
    "id a number": _doc(_item(id=7)).encode(),
    "file a list": _doc(_item(file=["a"])).encode(),
    "settings a string": _doc(_item(settings="ORTHANC@127.0.0.1:4242")).encode(),
    "settings null": _doc(_item(settings=None)).encode(),
    "port a word": _doc(_item(s_port="four")).encode(),
    "port a fraction": _doc(_item(s_port=104.5)).encode(),
    "port true": _doc(_item(s_port=True)).encode(),
    "host a number": _doc(_item(s_host=127)).encode(),
    "timeout huge": _doc(_item(s_timeout=10 ** 400)).encode(),
    "attempts a word": _doc(_item(attempts="three")).encode(),
    "claim a string": _doc(_item(claim="me")).encode(),
    "ids repeated": _doc(_item(), _item()).encode(),
    "version 2": _doc(_item(), version=2).encode(),
    "nested deeply": b'{"version": 1, "items": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "settings nested deeply": _doc(_item(settings=None)).encode().replace(
        b'"settings": null', b'"settings": ' + b'{"a":' * 50000 + b"1" + b"}" * 50000),
    "a huge integer": b'{"version": 1, "items": [' + b"9" * 100000 + b"]}",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_queue_file_is_set_aside(name, tmp_path, caplog):
    qpath = tmp_path / "q.json"
    qpath.write_bytes(MALFORMED[name])
    q = pacs.RetryQueue(qpath)
    with caplog.at_level(logging.WARNING, logger="cxrdesk.core.dicom.pacs_queue"):
        assert q.items() == []
    aside = list(tmp_path.glob("q.json.bad-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == MALFORMED[name] and q.set_aside == aside[0]
    assert not qpath.exists()
    lines = [r.getMessage() for r in caplog.records if r.name == "cxrdesk.core.dicom.pacs_queue"]
    assert len(lines) == 1 and "not a valid queue" in lines[0] and str(aside[0]) in lines[0]
    assert "\n" not in lines[0]
    # a later failed send is queued again, in a fresh queue file
    src = _files(tmp_path / "src", 1, "m")[0]
    rep = pacs.send_files(pacs.PacsSettings("PACS", "127.0.0.1", _free_port(), timeout=2), [src], queue=q)
    assert rep.queued == 1 and [it["sop_instance_uid"] for it in q.items()] == [_uid(src)]
    assert len(list(tmp_path.glob("q.json.bad-*"))) == 1


def test_queue_file_that_is_a_folder_is_set_aside(tmp_path):
    (tmp_path / "q.json").mkdir()
    q = pacs.RetryQueue(tmp_path / "q.json")
    assert q.items() == [] and q.set_aside is not None and q.set_aside.is_dir()


def test_two_bad_files_in_one_second_are_both_kept(tmp_path):
    q = pacs.RetryQueue(tmp_path / "q.json")
    for text in ("[]", "null", "42"):
        q.path.write_text(text)
        assert q.items() == []
    assert sorted(p.read_text() for p in tmp_path.glob("q.json.bad-*")) == ["42", "[]", "null"]


def test_valid_queue_with_odd_values_loads(tmp_path):
    # values of the right type that are wrong (a port out of range, NaN time-out) are reported per
    # file when retried, not treated as a broken queue
    qpath = tmp_path / "q.json"
    qpath.write_text(json.dumps({"version": 1, "items": [_item(s_port=70000), _item(id="b", s_timeout=float("nan"))]}))
    q = pacs.RetryQueue(qpath)
    assert len(q) == 2 and q.set_aside is None
    rep = pacs.retry_queue(queue=q)
    assert rep.sent == 0 and rep.failed == 2 and rep.queued == 2
    assert "out of range" in rep.results[0].message and "positive" in rep.results[1].message
    assert all(it["attempts"] == 2 and "claim" not in it for it in q.items())


@pytest.mark.parametrize("name", ["port a word", "nested deeply", "settings a string"])
def test_cli_with_malformed_queue_says_one_line_and_queues(name, tmp_path):
    qpath = tmp_path / "q.json"
    qpath.write_bytes(MALFORMED[name])
    src = _files(tmp_path / "src", 1, "cli")[0]
    env = dict(os.environ, CXRDESK_PACS_QUEUE=str(qpath),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "cxrdesk.cli", "send", str(src), "--host", "127.0.0.1",
                          "--port", str(_free_port()), "--called-aet", "PACS", "--timeout", "2"],
                         env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    warn = [ln for ln in out.stderr.splitlines() if "not a valid queue" in ln]
    assert len(warn) == 1 and ".bad-" in warn[0]
    assert "kept in the retry queue" in out.stderr or "kept" in out.stderr
    assert [it["sop_instance_uid"] for it in pacs.RetryQueue(qpath).items()] == [_uid(src)]
