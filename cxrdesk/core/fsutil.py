"""Small file-system helpers shared by the core, the CLI and the UI."""
from __future__ import annotations

import errno
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Callable


# Our temporary files: ".{name, cut to fit}.{pid}.{8 hex}.cxrdesk.tmp" beside the target.
_TMP_RE = re.compile(r"^\..*\.(\d+)\.[0-9a-f]{8}\.cxrdesk\.tmp$", re.S)
STALE_TMP_SECONDS = 10 * 60  # a temporary file of ours this old, of a process that is gone, is stranded
NAME_MAX = 255  # bytes in one file name on every file system cxrdesk writes to


def temp_name(name: str) -> str:
    """The hidden temporary name for a file ``name`` being written: within :data:`NAME_MAX` bytes
    however long ``name`` is (the target's own name may use all 255)."""
    tail = f".{os.getpid()}.{secrets.token_hex(4)}.cxrdesk.tmp"
    room = NAME_MAX - 1 - len(tail)
    head = os.fsencode(name)[:room].decode("utf-8", "ignore")  # no character cut in two
    return "." + head + tail


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, OSError):
        return True  # someone else's process (or an odd number): assume it may still be writing
    return True


def clean_stale_temps(folder: str | os.PathLike, older_than: float = STALE_TMP_SECONDS) -> list[Path]:
    """Remove our temporary files in ``folder`` that a killed process left behind: names of our
    pattern, older than ``older_than`` seconds, whose process is gone (or older than a day). Never
    raises; returns what was removed."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TMP_RE.match(e.name)
        if not m:
            continue
        try:
            age = now - e.stat(follow_symlinks=False).st_mtime
            if not e.is_file(follow_symlinks=False) or age < older_than:
                continue
            if age < 86400 and _pid_alive(int(m.group(1))):
                continue
            os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            continue
    return removed


def atomic_write(path: str | os.PathLike, writer: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``writer(fileobj)`` on a temporary file beside ``path``, then rename it into place.

    On any error the temporary file is removed and ``path`` is left untouched, so a crash or a
    full disk never leaves a partial file. The temporary name is our own rather than mkstemp's,
    whose 0600 mode would stick to the result (exports must stay readable by other users); it fits
    in 255 bytes whatever the target's name. A process killed mid-write cannot remove its temporary
    file: the next write into the same folder removes such stranded ones (:func:`clean_stale_temps`).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    clean_stale_temps(folder)
    tmp = folder / temp_name(path.name)
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


def check_path_length(path: str | os.PathLike) -> None:
    """Raise ``OSError(ENAMETOOLONG)`` when ``path`` has a component over :data:`NAME_MAX` bytes or
    is longer than the system allows in all, before any work goes into the file."""
    raw = os.fsencode(path)
    limit = 4096
    try:
        limit = os.pathconf(os.path.dirname(os.path.abspath(raw)) or b"/", "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        pass
    if len(os.path.abspath(raw)) >= limit or any(len(part) > NAME_MAX for part in raw.split(b"/")):
        raise OSError(errno.ENAMETOOLONG, "file name too long", os.fsdecode(raw))


def has_dicm_magic(path: str | os.PathLike) -> bool:
    """True when the file has the DICOM Part 10 preamble marker ('DICM' at offset 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False
