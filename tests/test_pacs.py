"""PACS sending against a real Orthanc on 127.0.0.1 (skipped when the orthanc binary is absent)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from cxrdesk.core.dicom import reader, writer
from cxrdesk.core.dicom import pacs, pacs_queue
ORTHANC_AET = "CXRTESTPACS"


def _orthanc_binary() -> str | None:
    for cand in (shutil.which("Orthanc"), "/usr/sbin/Orthanc"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_json(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.loads(r.read().decode("utf-8"))


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    exe = _orthanc_binary()
    if exe is None:
        pytest.skip("orthanc binary not installed (apt-get install orthanc, see .ci/install_system.sh)")
    proc = None
    for attempt in range(3):  # a free port may be taken between probing and Orthanc's bind
        root = tmp_path_factory.mktemp("orthanc")
        http_port, dicom_port = _free_port(), _free_port()
        while dicom_port == http_port:
            dicom_port = _free_port()
        cfg = {
            "Name": "cxrdesk-test",
            "StorageDirectory": str(root / "db"),
            "IndexDirectory": str(root / "db"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": ORTHANC_AET,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {"cxrdesk": ["CXRDESK", "127.0.0.1", 104]},
            "Plugins": [],
        }
        (root / "config.json").write_text(json.dumps(cfg))
        log = open(root / "orthanc.log", "wb")
        proc = subprocess.Popen([exe, str(root / "config.json")], stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 60
        up = False
        while proc.poll() is None:
            try:
                _http_json(base, "/system")
                up = True
                break
            except OSError:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    break
                time.sleep(0.1)
        if up:
            break
        log.close()
        if attempt == 2:
            pytest.fail("Orthanc did not start:\n" + (root / "orthanc.log").read_text(errors="replace")[-3000:])
    try:
        yield {"base": base, "port": dicom_port, "aet": ORTHANC_AET, "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def queue(tmp_path):
    return pacs.RetryQueue(tmp_path / "queue" / "retry.json")


def _batch(folder: Path, n: int = 4, ctx=None):
    rng = np.random.default_rng(7)
    ctx = ctx or writer.SeriesContext.new(patient_name="SYNTHETIC^TEST", patient_id="SYN-TEST-1")
    images = []
    for i in range(n):
        img = rng.integers(0, 4096, size=(48, 40), dtype=np.uint16)
        images.append((img, {"prompt": f"PA chest radiograph {i}", "seed": i, "steps": 20}))
    paths = writer.export_series(folder, images, context=ctx, window=(2048, 4096))
    return paths, [im for im, _ in images], ctx


def _settings(orthanc, **kw):
    base = dict(called_aet=orthanc["aet"], host="127.0.0.1", port=orthanc["port"], timeout=5.0)
    base.update(kw)
    return pacs.PacsSettings(**base)


def _instances_of_series(orthanc, series_uid: str) -> list[dict]:
    out = []
    for iid in _http_json(orthanc["base"], "/instances"):
        tags = _http_json(orthanc["base"], f"/instances/{iid}/simplified-tags")
        if tags.get("SeriesInstanceUID") == series_uid:
            tags["_id"] = iid
            out.append(tags)
    return out


def test_echo(orthanc):
    msg = pacs.echo(_settings(orthanc))
    assert "succeeded" in msg and orthanc["aet"] in msg


def test_send_batch_arrives_as_one_series(orthanc, tmp_path, queue):
    paths, images, ctx = _batch(tmp_path / "out", n=4)
    seen = []
    report = pacs.send_files(_settings(orthanc), paths, queue=queue,
                             progress=lambda done, total, r: seen.append((done, total, r.ok)))
    assert report.ok, report.summary()
    assert report.sent == 4 and report.error is None
    assert seen == [(1, 4, True), (2, 4, True), (3, 4, True), (4, 4, True)]
    assert len(queue) == 0

    got = _instances_of_series(orthanc, ctx.series_uid)
    assert len(got) == 4
    sent_uids = {reader.read_dicom(p).sop_instance_uid for p in paths}
    assert {t["SOPInstanceUID"] for t in got} == sent_uids
    for t in got:
        assert t["StudyInstanceUID"] == ctx.study_uid
        assert t["PatientName"] == "SYNTHETIC^TEST"
        assert t["PatientID"] == "SYN-TEST-1"
        assert t["SeriesDescription"] == "SYNTHETIC - NOT FOR DIAGNOSIS"
        assert t["Modality"] == "OT"
        assert t["ConversionType"] == "SYN"
        assert t["ImageType"] == "DERIVED\\SECONDARY"
        assert t["BodyPartExamined"] == "CHEST"
        assert t["BitsStored"] == "12"
        assert t["PhotometricInterpretation"] == "MONOCHROME2"
        assert t["SOPClassUID"] == writer.SECONDARY_CAPTURE
    # one series with four instances
    parent = _http_json(orthanc["base"], f"/instances/{got[0]['_id']}")["ParentSeries"]
    series = _http_json(orthanc["base"], f"/series/{parent}")
    assert len(series["Instances"]) == 4
    # pixels survive the round trip through the PACS
    by_uid = {reader.read_dicom(p).sop_instance_uid: img for p, img in zip(paths, images)}
    for t in got:
        with urllib.request.urlopen(f"{orthanc['base']}/instances/{t['_id']}/file", timeout=10) as r:
            data = r.read()
        f = tmp_path / "back.dcm"
        f.write_bytes(data)
        back = reader.read_dicom(f)
        assert np.array_equal(back.pixels, by_uid[t["SOPInstanceUID"]])
        assert back.params.get("prompt", "").startswith("PA chest radiograph")


def test_wrong_called_aet_is_rejected_and_queued_then_retried(orthanc, tmp_path, queue):
    paths, _, ctx = _batch(tmp_path / "out", n=3)
    with pytest.raises(pacs.PacsError) as ei:
        pacs.echo(_settings(orthanc, called_aet="NOTTHEPACS"))
    assert ei.value.kind == "rejected"
    assert "called AE title 'NOTTHEPACS' not recognised" in str(ei.value)

    report = pacs.send_files(_settings(orthanc, called_aet="NOTTHEPACS"), paths, queue=queue)
    assert report.sent == 0 and report.failed == 3 and report.queued == 3
    assert report.error_kind == "rejected" and "not recognised" in report.error
    items = queue.items()
    assert len(items) == 3
    assert all(it["settings"]["called_aet"] == "NOTTHEPACS" for it in items)
    assert all(Path(it["file"]).is_file() for it in items)
    # the queue is persistent: a fresh object on the same path sees the same items
    assert len(pacs.RetryQueue(queue.path)) == 3
    # failing again keeps the items, counting attempts, without duplicates
    again = pacs.retry_queue(queue=queue)
    assert again.sent == 0 and len(queue) == 3
    assert all(it["attempts"] == 2 for it in queue.items())
    # originals may disappear: the queue holds its own copies
    for p in paths:
        p.unlink()
    ok = pacs.retry_queue(_settings(orthanc), queue=queue)
    assert ok.ok and ok.sent == 3, ok.summary()
    assert len(queue) == 0
    assert not any(queue.files_dir.iterdir())
    assert len(_instances_of_series(orthanc, ctx.series_uid)) == 3


def test_rejection_is_still_recognised_when_the_peer_closes_first(orthanc, monkeypatch):
    # On a busy CPU the PACS can send A-ASSOCIATE-RJ and close the socket before pynetdicom's
    # requesting thread looks at it; pynetdicom then aborts instead of reporting the rejection.
    # Make that ordering certain by delaying the requester right after it sends its request.
    import time

    from pynetdicom.acse import ACSE

    send_request = ACSE.send_request

    def slow_send_request(self):
        send_request(self)
        time.sleep(1.0)

    monkeypatch.setattr(ACSE, "send_request", slow_send_request)
    with pytest.raises(pacs.PacsError) as ei:
        pacs.echo(_settings(orthanc, called_aet="NOTTHEPACS"))
    assert ei.value.kind == "rejected"
    assert "called AE title 'NOTTHEPACS' not recognised" in str(ei.value)


def test_closed_port_message_and_queue(orthanc, tmp_path, queue):
    paths, _, _ = _batch(tmp_path / "out", n=2)
    closed = _settings(orthanc, port=_free_port())
    with pytest.raises(pacs.PacsError) as ei:
        pacs.echo(closed)
    assert ei.value.kind == "refused" and "connection refused" in str(ei.value)
    report = pacs.send_files(closed, paths, queue=queue)
    assert report.error_kind == "refused" and "connection refused" in report.error
    assert report.queued == 2 and len(queue) == 2
    assert all("connection refused" in it["error"] for it in queue.items())
    # retry to the real PACS empties the queue
    assert pacs.retry_queue(_settings(orthanc), queue=queue).sent == 2
    assert len(queue) == 0


def test_cancel_stops_before_next_file(orthanc, tmp_path, queue):
    paths, _, _ = _batch(tmp_path / "out", n=4)
    stop = threading.Event()

    def progress(done, total, result):
        if done == 1:
            stop.set()

    report = pacs.send_files(_settings(orthanc), paths, queue=queue, progress=progress, cancel=stop)
    assert report.sent == 1 and report.cancelled == 3 and report.failed == 0
    assert len(queue) == 0  # cancelled files are not failures


def test_non_dicom_files_are_reported_not_queued(orthanc, tmp_path, queue):
    paths, _, _ = _batch(tmp_path / "out", n=1)
    junk = tmp_path / "out" / "notes.txt"
    junk.write_text("hello")
    report = pacs.send_files(_settings(orthanc), [tmp_path / "out"], queue=queue)
    assert report.sent == 1 and report.failed == 1
    bad = [r for r in report.results if not r.ok][0]
    assert bad.path.endswith("notes.txt") and "DICOM" in bad.message
    assert len(queue) == 0


def test_cli_send_and_echo(orthanc, tmp_path, monkeypatch, capsys):
    from cxrdesk.cli import main

    monkeypatch.setenv(pacs_queue.QUEUE_ENV, str(tmp_path / "q.json"))
    paths, _, ctx = _batch(tmp_path / "out", n=2)
    common = ["--host", "127.0.0.1", "--port", str(orthanc["port"]), "--called-aet", orthanc["aet"], "--timeout", "5"]
    assert main(["send", "--echo", *common]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert main(["send", str(tmp_path / "out"), *common]) == 0
    assert len(_instances_of_series(orthanc, ctx.series_uid)) == 2
    bad = ["--host", "127.0.0.1", "--port", str(orthanc["port"]), "--called-aet", "WRONGAET", "--timeout", "5"]
    assert main(["send", str(paths[0]), *bad]) == 2
    err = capsys.readouterr().err
    assert "not recognised" in err and "retry queue" in err and "Traceback" not in err
    assert len(pacs.RetryQueue(tmp_path / "q.json")) == 1
    assert main(["send", "--retry-queue", *common]) == 0
    assert str(paths[0]) in capsys.readouterr().out  # progress names the user's file, not the queued copy
    assert len(pacs.RetryQueue(tmp_path / "q.json")) == 0


# ---- without Orthanc ---------------------------------------------------------------------

def test_timeout_when_peer_never_answers(tmp_path, queue):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    conns = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                conns.append(c)  # hold it open, never answer
            except OSError:
                continue

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    try:
        s = pacs.PacsSettings("SILENT", "127.0.0.1", port, timeout=1.0)
        with pytest.raises(pacs.PacsError) as ei:
            pacs.echo(s)
        assert ei.value.kind == "timeout" and "time-out" in str(ei.value)
        paths, _, _ = _batch(tmp_path / "out", n=1)
        report = pacs.send_files(s, paths, queue=queue)
        assert report.error_kind == "timeout" and len(queue) == 1
    finally:
        stop.set()
        th.join()
        for c in conns:
            c.close()
        srv.close()


def test_settings_validation():
    with pytest.raises(pacs.PacsError, match="longer than 16"):
        pacs.PacsSettings("A" * 17).validate()
    with pytest.raises(pacs.PacsError, match="empty"):
        pacs.PacsSettings("").validate()
    with pytest.raises(pacs.PacsError, match="out of range"):
        pacs.PacsSettings("PACS", port=70000).validate()
    s = pacs.PacsSettings(" PACS ", port="104").validate()
    assert s.called_aet == "PACS" and s.port == 104
    assert pacs.PacsSettings.from_dict(s.to_dict()) == s


def test_default_queue_path_env(monkeypatch, tmp_path):
    monkeypatch.setenv(pacs_queue.QUEUE_ENV, str(tmp_path / "x.json"))
    assert pacs_queue.default_queue_path() == tmp_path / "x.json"
    monkeypatch.delenv(pacs_queue.QUEUE_ENV)
    assert pacs_queue.default_queue_path().name == "pacs_retry_queue.json"


def test_corrupt_queue_file_is_set_aside(tmp_path):
    p = tmp_path / "q.json"
    p.write_text("{not json")
    q = pacs.RetryQueue(p)
    assert q.items() == []
    assert [f.read_text() for f in tmp_path.glob("q.json.bad-*")] == ["{not json"]
    assert q.set_aside is not None and q.set_aside.name.startswith("q.json.bad-")
