"""Per-user locations: data folder (history, logs, settings) and resource files.

The data folder is ``platformdirs.user_data_dir("cxrdesk")`` unless the environment variable
``CXRDESK_DATA_DIR`` points elsewhere (tests use that to stay isolated).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "cxrdesk"


def data_dir() -> Path:
    env = os.environ.get("CXRDESK_DATA_DIR")
    if env:
        p = Path(env).expanduser()
    else:
        import platformdirs

        p = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    p.mkdir(parents=True, exist_ok=True)
    return p


def results_dir() -> Path:
    p = data_dir() / "results"
    p.mkdir(parents=True, exist_ok=True)
    return p


def logs_dir() -> Path:
    p = data_dir() / "logs"
    p.mkdir(parents=True, exist_ok=True)
    return p


def settings_path() -> Path:
    return data_dir() / "settings.ini"


def resource_path(name: str) -> Path:
    """A file shipped in ``cxrdesk/resources`` (falls back to the repository's ``resources/``)."""
    here = Path(__file__).resolve().parent.parent / "resources" / name
    if here.exists():
        return here
    if getattr(sys, "frozen", False):
        frozen = Path(getattr(sys, "_MEIPASS", "")) / "cxrdesk" / "resources" / name
        if frozen.exists():
            return frozen
    return Path(__file__).resolve().parents[2] / "resources" / name
