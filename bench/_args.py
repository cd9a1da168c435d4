"""Argument types shared by the benchmark scripts (run as `python bench/NAME.py`, so this folder is
on the import path)."""
from __future__ import annotations

import argparse


def labelled(value: str) -> tuple[str, str]:
    """LABEL=PATH -> (label, path), for the repeatable --model / --vae options."""
    label, sep, path = value.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"takes LABEL=PATH, not {value!r}")
    return label, path
