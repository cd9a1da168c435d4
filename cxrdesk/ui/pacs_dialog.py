"""Send to PACS: destination settings, C-ECHO test, C-STORE of the current image, retry queue.

Network work runs on a pool thread (``cxrdesk.core.dicom.pacs`` is blocking); the dialog stays
responsive and a send can be cancelled between files.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (QDialog, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QSpinBox, QVBoxLayout)

from .paths import data_dir
from .tasks import run_task


def _queue():
    from ..core.dicom.pacs_queue import QUEUE_ENV, RetryQueue
    if os.environ.get(QUEUE_ENV):
        return RetryQueue()
    return RetryQueue(data_dir() / "pacs_retry_queue.json")


def _send_image(settings, image, metadata, window, context, presentation, cancel):
    """Send the image and, where ``presentation`` (keyword arguments of
    ``presentation.write_presentation_state``) is given, its presentation state after it."""
    from ..core.dicom import pacs
    from ..core.dicom.writer import write_dicom

    with tempfile.TemporaryDirectory(prefix="cxrdesk-send-") as tmp:
        path = write_dicom(Path(tmp) / "synthetic.dcm", image, metadata, window=window, context=context)
        paths = [path]
        if presentation is not None:
            from ..core.dicom.presentation import presentation_path, write_presentation_state

            kw = dict(presentation)
            paths.append(write_presentation_state(presentation_path(path), path, kw.pop("annotations", ()), **kw))
        return pacs.send_files(settings, paths, cancel=cancel, queue=_queue())


def _echo(settings):
    from ..core.dicom import pacs
    return pacs.echo(settings)


def _retry(cancel):
    from ..core.dicom import pacs
    return pacs.retry_queue(queue=_queue(), cancel=cancel)


class PacsDialog(QDialog):
    def __init__(self, settings: QSettings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Send to PACS")
        self.s = settings
        self._payload = None
        self._cancel = threading.Event()
        self._busy = False
        lay = QVBoxLayout(self)
        note = QLabel("Sends the current image as a DICOM Secondary Capture marked "
                      "<b>SYNTHETIC - NOT FOR DIAGNOSIS</b> (SyntheticData YES, synthetic patient).")
        note.setWordWrap(True)
        lay.addWidget(note)
        self.presentation_note = QLabel("Its annotations go with it as a presentation state (a second "
                                        "file: arrows and text a viewer draws over the film, the pixels "
                                        "left clean).")
        self.presentation_note.setWordWrap(True)
        self.presentation_note.hide()
        lay.addWidget(self.presentation_note)
        form = QFormLayout()
        self.called = QLineEdit(str(settings.value("pacs/called_aet", "ORTHANC")))
        self.called.setToolTip("The PACS's AE title (called AE)")
        self.host = QLineEdit(str(settings.value("pacs/host", "127.0.0.1")))
        self.host.setToolTip("Host name or IP address of the PACS")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(int(settings.value("pacs/port", 4242)))
        self.port.setToolTip("DICOM port of the PACS (often 104 or 4242)")
        self.calling = QLineEdit(str(settings.value("pacs/calling_aet", "CXRDESK")))
        self.calling.setToolTip("Our AE title (calling AE), as configured on the PACS")
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1, 120)
        self.timeout.setValue(float(settings.value("pacs/timeout", 10.0)))
        self.timeout.setSuffix(" s")
        self.timeout.setToolTip("Time-out for connecting and for each response")
        form.addRow("Remote AE title", self.called)
        form.addRow("Host", self.host)
        form.addRow("Port", self.port)
        form.addRow("Our AE title", self.calling)
        form.addRow("Time-out", self.timeout)
        lay.addLayout(form)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.status)
        row = QHBoxLayout()
        self.echo_button = QPushButton("Test connection")
        self.echo_button.setToolTip("C-ECHO: check that the PACS answers")
        self.echo_button.clicked.connect(self.test_connection)
        self.send_button = QPushButton("Send")
        self.send_button.setToolTip("C-STORE the current image; failures are kept in the retry queue")
        self.send_button.clicked.connect(self.send)
        self.retry_button = QPushButton("Retry queued")
        self.retry_button.setToolTip("Resend files that failed earlier (kept in the retry queue)")
        self.retry_button.clicked.connect(self.retry)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop sending before the next file")
        self.cancel_button.clicked.connect(self._cancel.set)
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip("Close this dialog")
        self.close_button.clicked.connect(self.reject)
        for b in (self.echo_button, self.send_button, self.retry_button, self.cancel_button, self.close_button):
            row.addWidget(b)
        lay.addLayout(row)
        self._update_queue()

    def set_payload(self, image, metadata, window, context, presentation: dict | None = None) -> None:
        """What Send sends: the image (written with ``metadata``, ``window`` and ``context``) and, when
        ``presentation`` is given, a presentation state of it (``write_presentation_state`` arguments)."""
        self._payload = (image, metadata, window, context, presentation)
        self.presentation_note.setVisible(presentation is not None)

    def _settings(self):
        from ..core.dicom import pacs
        st = pacs.PacsSettings(called_aet=self.called.text(), host=self.host.text(), port=self.port.value(),
                               calling_aet=self.calling.text(), timeout=self.timeout.value())
        st = st.validate()
        for k, v in (("called_aet", st.called_aet), ("host", st.host), ("port", st.port),
                     ("calling_aet", st.calling_aet), ("timeout", st.timeout)):
            self.s.setValue(f"pacs/{k}", v)
        return st

    def _start(self, text: str) -> None:
        self._busy = True
        self._cancel.clear()
        self.status.setText(text)
        for b in (self.echo_button, self.send_button, self.retry_button):
            b.setEnabled(False)
        self.cancel_button.setEnabled(True)

    def _finish(self, text: str) -> None:
        self._busy = False
        self.status.setText(text)
        self.echo_button.setEnabled(True)
        self.send_button.setEnabled(self._payload is not None)
        self.cancel_button.setEnabled(False)
        self._update_queue()

    def _update_queue(self) -> None:
        try:
            n = len(_queue())
        except Exception:  # noqa: BLE001
            n = 0
        self.retry_button.setText(f"Retry queued ({n})")
        self.retry_button.setEnabled(n > 0 and not self._busy)

    def test_connection(self) -> None:
        try:
            st = self._settings()
        except Exception as exc:  # noqa: BLE001
            self.status.setText(f"Check the settings: {exc}")
            return
        self._start(f"Testing {st.describe()} ...")
        run_task(_echo, st, owner=self, done=self._finish, error=lambda m: self._finish(f"Connection failed: {m}"))

    def send(self) -> None:
        if self._payload is None:
            return
        try:
            st = self._settings()
        except Exception as exc:  # noqa: BLE001
            self.status.setText(f"Check the settings: {exc}")
            return
        self._start(f"Sending to {st.describe()} ...")
        run_task(_send_image, st, *self._payload, self._cancel, owner=self, done=self._report,
                 error=lambda m: self._finish(f"Sending failed: {m}"))

    def retry(self) -> None:
        self._start("Resending queued files ...")
        run_task(_retry, self._cancel, owner=self, done=self._report, error=lambda m: self._finish(f"Retry failed: {m}"))

    def _report(self, report) -> None:
        lines = [report.summary()]
        for r in report.results:
            if not r.ok and r.message:
                lines.append(r.message)
        self._finish("\n".join(lines))

    def reject(self) -> None:
        if self._busy:
            self._cancel.set()
            self.status.setText("Cancelling ... (the dialog closes when the current file is done)")
            return
        super().reject()
