"""Give memory the process no longer uses back to the system (no Qt here).

Loading a model (float16 weights converted to float32) and the warm-up (tracing and exporting the
UNet and decoder graphs) allocate hundreds of MB of short-lived buffers. Python frees them, but glibc
keeps the freed heap pages mapped, so the app idled at 1.1 GB resident. :func:`release` collects
garbage and asks glibc to return free pages (``malloc_trim``); elsewhere it only collects.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

_libc = None


def _malloc_trim():
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if hasattr(lib, "malloc_trim"):  # glibc; musl has none
                    lib.malloc_trim.argtypes = [ctypes.c_size_t]
                    _libc = lib
            except OSError:
                pass
    return _libc.malloc_trim if _libc else None


def release() -> None:
    """Collect garbage and return the heap's free pages to the system where the C library allows.

    With automatic collection switched off, the host decides where collection runs (the app: on its GUI
    thread only, ui/gcguard, since a cycle holding a Qt object must not be freed in a worker thread), so
    this collects nothing then and only trims."""
    if gc.isenabled():
        gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
