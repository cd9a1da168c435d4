"""Bounded, validated JSON objects from files and text chunks that a user may have edited or crafted.

``json.loads`` raises ``RecursionError`` (not ``ValueError``) on deeply nested input, reads a file of
any size, and returns whatever type the text holds. :func:`parse_object` and :func:`load_object`
return a ``dict`` or raise :class:`JsonObjectError` with one line, whatever the input.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 4 * 1024 ** 2  # a model folder's JSON files and a PNG's text chunk are a few KB
_MISSING = object()


class JsonObjectError(ValueError):
    """Text or a file is not a JSON object; the message is one line."""


def parse_object(text: str | bytes, what: str = "JSON", default: Any = _MISSING) -> dict:
    """``text`` as a JSON object. Invalid JSON, nesting too deep for Python, a value that is not an
    object (or text over :data:`MAX_JSON_BYTES`): ``default`` when given, else :class:`JsonObjectError`."""
    try:
        if len(text) > MAX_JSON_BYTES:
            raise JsonObjectError(f"{what}: too large ({len(text) // 1024} KB)")
        try:
            value = json.loads(text)
        except RecursionError:
            raise JsonObjectError(f"{what}: nested too deeply") from None
        except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise JsonObjectError(f"{what}: not valid JSON ({' '.join(str(exc).split())[:120]})") from None
        if not isinstance(value, dict):
            raise JsonObjectError(f"{what}: expected a JSON object {{...}}, found {type(value).__name__}")
        return value
    except JsonObjectError:
        if default is _MISSING:
            raise
        return default


def load_object(path: str | os.PathLike, what: str | None = None) -> dict:
    """The JSON object in the file ``path`` (read at most :data:`MAX_JSON_BYTES`); :class:`JsonObjectError`
    for a file that cannot be read or does not hold one."""
    p = Path(path)
    what = what or p.name
    try:
        with open(p, "rb") as fh:
            data = fh.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise JsonObjectError(f"{what}: cannot read ({exc.strerror or exc})") from None
    return parse_object(data, what)
