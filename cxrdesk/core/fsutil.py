"""Small file-system helpers shared by the core, the CLI and the UI."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, writer: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``writer(fileobj)`` on a temporary file beside ``path``, then rename it into place.

    On any error the temporary file is removed and ``path`` is left untouched, so a crash or a
    full disk never leaves a partial file. The temporary name is our own rather than mkstemp's,
    whose 0600 mode would stick to the result (exports must stay readable by other users).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    kwargs = {} if "b" in mode else {"encoding": "utf-8"}
    try:
        with open(tmp, mode.replace("w", "x"), **kwargs) as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def has_dicm_magic(path: str | os.PathLike) -> bool:
    """True when the file has the DICOM Part 10 preamble marker ('DICM' at offset 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False
