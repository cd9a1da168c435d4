"""Argument types and the prompts shared by the benchmark scripts (run as `python bench/NAME.py`, so this folder is
on the import path)."""
from __future__ import annotations

import argparse


def labelled(value: str) -> tuple[str, str]:
    """LABEL=PATH -> (label, path), for the repeatable --model / --vae options."""
    label, sep, path = value.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"takes LABEL=PATH, not {value!r}")
    return label, path


# The prompts bench_fast and bench_preview_decoder draw (in turn, by film index).
PROMPTS = [
    "Normal chest radiograph",
    "Bilateral peripheral ground-glass opacities consistent with COVID-19 pneumonia",
    "Right lower lobe pneumonia",
    "Clear lungs, normal heart size, no effusion",
]
