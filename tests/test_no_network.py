"""No network at run time: generation, the warm-up (ONNX export and sessions) and the app's start open no
non-loopback socket. A Python-level guard catches Python code; ONNX Runtime's telemetry is native code
(it looked up mobile.events.data.microsoft.com at its first session), so that is checked under strace
where the machine has it."""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from cxrdesk.core.generation.pipeline import Pipeline


def _loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a name: a DNS lookup


@pytest.fixture
def socket_guard(monkeypatch):
    """Every non-loopback connect, DNS lookup or datagram fails and is recorded."""
    attempts: list[str] = []

    def check(what, address):
        if isinstance(address, tuple) and not _loopback(address[0]):
            attempts.append(f"{what} {address!r}")
            raise OSError(f"socket guard: {what} {address!r} refused in a test")

    def wrap(what, orig, pick):
        def guarded(*args, **kwargs):
            check(what, pick(*args, **kwargs))
            return orig(*args, **kwargs)
        return guarded

    monkeypatch.setattr(socket.socket, "connect", wrap("connect", socket.socket.connect, lambda s, a: a))
    monkeypatch.setattr(socket.socket, "connect_ex", wrap("connect_ex", socket.socket.connect_ex, lambda s, a: a))
    monkeypatch.setattr(socket.socket, "sendto", wrap("sendto", socket.socket.sendto, lambda s, *a: a[-1]))
    monkeypatch.setattr(socket, "create_connection", wrap("create_connection", socket.create_connection,
                                                         lambda a, *r, **k: a))
    monkeypatch.setattr(socket, "getaddrinfo", wrap("getaddrinfo", socket.getaddrinfo,
                                                   lambda host, *r, **k: (host, 0)))
    yield attempts
    assert not attempts, attempts


def test_the_guard_refuses_a_non_loopback_lookup(socket_guard):
    with pytest.raises(OSError, match="socket guard"):
        socket.getaddrinfo("mobile.events.data.microsoft.com", 443)
    socket_guard.clear()
    socket.getaddrinfo("127.0.0.1", 0)  # loopback passes


def test_generation_and_warm_up_open_no_socket(socket_guard, tiny_model_dir):
    pipe = Pipeline.load(tiny_model_dir, device="cpu")
    pipe.warm_up()  # exports the ONNX graphs into this test's empty cache, starts the sessions
    assert pipe.info["unet_engine"] == "onnxruntime"
    res = pipe.generate("small right pleural effusion", steps=2, seed=1)
    assert res.params["unet_engine"] == "onnxruntime"
    assert os.environ.get("ORT_DISABLE_TELEMETRY") == "1"


def test_app_start_generation_and_warm_up_open_no_socket(socket_guard, tiny_model_dir, qtbot):
    pytest.importorskip("pytestqt")
    from PySide6.QtCore import Qt

    from cxrdesk.ui.mainwindow import MainWindow

    w = MainWindow(model=str(tiny_model_dir), preload=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    try:
        g = w.generator
        g.prompt_edit.setPlainText("Small left pleural effusion.")
        g.steps_spin.setValue(2)
        with qtbot.waitSignal(w.jobDone, timeout=240_000):
            qtbot.mouseClick(g.generate_button, Qt.LeftButton)
        qtbot.waitUntil(w.host.worker.warm_ready.is_set, timeout=240_000)
    finally:
        w.close()


_CONNECT = re.compile(r"connect\(\d+, \{sa_family=AF_INET6?, sin6?_port=htons\((\d+)\), "
                      r"(?:sin_addr=inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")")


@pytest.mark.skipif(not shutil.which("strace") or not sys.platform.startswith("linux"), reason="needs strace")
def test_batch_generation_with_warm_up_makes_no_connection_under_strace(tiny_model_dir, tmp_path):
    """generate --n 5 warms up (ONNX export, sessions): no connect() to anything but loopback,
    native code included (ONNX Runtime's telemetry looked up its collector here before)."""
    log = tmp_path / "strace.txt"
    env = dict(os.environ, CXRDESK_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("ORT_DISABLE_TELEMETRY", None)  # what a user's shell has: cxrdesk itself must turn it off
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(log), sys.executable, "-m",
                        "cxrdesk", "generate", "a chest radiograph", "--model", str(tiny_model_dir), "--steps", "2",
                        "--n", "5", "-o", str(tmp_path / "x.png"), "--quiet"],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0 and "ptrace" in r.stderr:
        pytest.skip("strace cannot trace here")
    assert r.returncode == 0, r.stderr
    assert any((tmp_path / "cache" / "onnx").glob("unet-*.onnx"))  # the warm-up ran
    remote = [m.group(0) for m in _CONNECT.finditer(log.read_text())
              if not ipaddress.ip_address(m.group(2) or m.group(3)).is_loopback
              or m.group(1) == "53"]  # a DNS query, even to a local resolver, is a lookup of a remote name
    assert not remote, remote
