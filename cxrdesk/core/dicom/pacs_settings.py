"""PACS destination settings (:class:`PacsSettings`, checked by :meth:`~PacsSettings.validate`) and
:class:`PacsError`, the one-line failure of every PACS operation."""
from __future__ import annotations

from dataclasses import asdict, dataclass

DEFAULT_CALLING_AET = "CXRDESK"


class PacsError(Exception):
    """A PACS operation failed. ``kind`` is one of: config, unreachable, refused, rejected,
    timeout, aborted, failed, queue (the retry queue's lock could not be taken)."""

    def __init__(self, message: str, kind: str = "failed"):
        super().__init__(message)
        self.kind = kind


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
