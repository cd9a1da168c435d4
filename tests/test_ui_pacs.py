"""Send-to-PACS dialog: an unreachable PACS is a message plus a queued copy; a real Orthanc receives."""
from __future__ import annotations

import socket

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("pynetdicom")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from cxrdesk.ui.pacs_dialog import PacsDialog, _queue  # noqa: E402
from cxrdesk.ui.paths import settings_path  # noqa: E402

from .test_pacs import _http_json, orthanc  # noqa: E402,F401 - reuse the Orthanc fixture


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def dialog(qtbot):
    dlg = PacsDialog(QSettings(str(settings_path()), QSettings.IniFormat))
    qtbot.addWidget(dlg)
    img = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)
    dlg.set_payload(img, {"prompt": "test", "seed": 1, "model": "tiny"}, (2048.0, 4096.0), None)
    dlg.show()
    dlg.timeout.setValue(2)
    dlg.send_button.setEnabled(True)
    return dlg


def test_unreachable_pacs_is_reported_and_queued(qtbot, dialog):
    dialog.host.setText("127.0.0.1")
    dialog.port.setValue(_closed_port())
    qtbot.mouseClick(dialog.echo_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dialog.echo_button.isEnabled(), timeout=30000)
    assert "Connection failed" in dialog.status.text()
    qtbot.mouseClick(dialog.send_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dialog.echo_button.isEnabled(), timeout=30000)
    assert "0 of 1 sent" in dialog.status.text()
    assert len(_queue()) == 1
    assert "Retry queued (1)" == dialog.retry_button.text()
    # settings are remembered
    s = QSettings(str(settings_path()), QSettings.IniFormat)
    assert int(s.value("pacs/port")) == dialog.port.value()


def test_send_to_orthanc(qtbot, dialog, orthanc):  # noqa: F811
    dialog.host.setText("127.0.0.1")
    dialog.port.setValue(orthanc["port"])
    dialog.called.setText(orthanc["aet"])
    qtbot.mouseClick(dialog.echo_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dialog.echo_button.isEnabled(), timeout=30000)
    assert "succeeded" in dialog.status.text()
    before = len(_http_json(orthanc["base"], "/instances"))
    qtbot.mouseClick(dialog.send_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dialog.echo_button.isEnabled(), timeout=30000)
    assert "1 of 1 sent" in dialog.status.text()
    assert len(_http_json(orthanc["base"], "/instances")) == before + 1
