"""Generated results on disk: one 16-bit PNG (exact 12-bit values) plus a JSON sidecar each.

Pure Python (no Qt): the generation worker saves each image the moment it exists, so nothing is
lost if the application dies afterwards. Layout::

    <data dir>/results/<YYYY-MM-DD>/<id>.png          16-bit PNG, parameters in text chunks
    <data dir>/results/<YYYY-MM-DD>/<id>.json         parameters, metrics, step metrics
    <data dir>/results/<YYYY-MM-DD>/<id>_attention.npz  attention maps (uint8), optional
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.fsutil import atomic_write


@dataclass
class HistoryEntry:
    id: str
    created: str
    params: dict
    metrics: dict = field(default_factory=dict)
    step_metrics: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    image_path: str = ""
    attention_path: str = ""
    attention_words: list = field(default_factory=list)
    _image: np.ndarray | None = field(default=None, repr=False, compare=False)
    _attention: dict | None = field(default=None, repr=False, compare=False)

    @property
    def seed(self) -> int:
        return int(self.params.get("seed", -1))

    @property
    def prompt(self) -> str:
        return str(self.params.get("prompt", ""))

    def image(self) -> np.ndarray:
        """The stored image (uint16, 12-bit values)."""
        if self._image is None:
            from ..core.imaging.pngio import read_png

            self._image = read_png(self.image_path).pixels
        return self._image

    def attention(self) -> dict:
        """word -> float32 map in [0, 1] (empty when none was recorded)."""
        if self._attention is None:
            self._attention = {}
            if self.attention_path and os.path.exists(self.attention_path):
                try:
                    with np.load(self.attention_path) as z:
                        self._attention = {k: z[k].astype(np.float32) / 255.0 for k in z.files}
                except (OSError, ValueError):
                    self._attention = {}
        return self._attention

    def summary(self) -> str:
        p = self.params
        return (f"seed {p.get('seed')}, {sampler_text(p)}, "
                f"adherence {p.get('guidance_scale')}, {p.get('width')}x{p.get('height')}")


def sampler_text(params: dict) -> str:
    """How a film was drawn, where the sampler is shown: "20 steps, dpm++-karras", or for fast mode
    "fast (distilled, 4 steps)" (the distilled student; no sampler or negative prompt applied)."""
    if params.get("fast"):
        return f"fast (distilled, {params.get('steps')} steps)"
    return f"{params.get('steps')} steps, {params.get('sampler')}"


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


class HistoryStore:
    """Saves and lists generated results under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def save(self, image_u16: np.ndarray, params: dict, metrics: dict | None = None,
             step_metrics: list | None = None, attention: dict | None = None,
             timings: dict | None = None) -> HistoryEntry:
        from ..core.imaging.pngio import write_png

        now = _dt.datetime.now()
        folder = self.root / now.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        eid = f"{now.strftime('%H%M%S')}_{int(params.get('seed', 0))}_{secrets.token_hex(2)}"
        img_path = folder / f"{eid}.png"
        write_png(img_path, image_u16, params, bits=16)
        att_path = ""
        if attention:
            att_path = str(folder / f"{eid}_attention.npz")
            q = {k: np.round(np.clip(v, 0, 1) * 255).astype(np.uint8) for k, v in attention.items()}
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, **q)
            os.replace(tmp, att_path)
        entry = HistoryEntry(id=eid, created=now.isoformat(timespec="seconds"), params=dict(params),
                             metrics=dict(metrics or {}), step_metrics=list(step_metrics or []),
                             timings=dict(timings or {}), image_path=str(img_path),
                             attention_path=att_path, attention_words=sorted(attention or {}))
        entry._image = image_u16
        entry._attention = {k: np.asarray(v, np.float32) for k, v in (attention or {}).items()}
        self.update(entry)
        return entry

    def update(self, entry: HistoryEntry) -> None:
        """(Re)write ``entry``'s JSON beside its image, e.g. after provenance was added to its params
        (a lesson's case, an edit's region); atomic. OSError when the folder cannot be written."""
        img = Path(entry.image_path)
        atomic_write(img.with_name(f"{entry.id}.json"), lambda fh, t=json.dumps(_jsonable({
            "id": entry.id, "created": entry.created, "params": entry.params, "metrics": entry.metrics,
            "step_metrics": entry.step_metrics, "timings": entry.timings, "image": img.name,
            "attention": Path(entry.attention_path).name if entry.attention_path else "",
            "attention_words": entry.attention_words,
        }), indent=1): fh.write(t), mode="w")

    def load(self, json_path: str | os.PathLike) -> HistoryEntry | None:
        p = Path(json_path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            img = p.parent / d["image"]
            if not img.is_file():
                return None
            return HistoryEntry(id=d["id"], created=d.get("created", ""), params=d.get("params", {}),
                                metrics=d.get("metrics", {}), step_metrics=d.get("step_metrics", []),
                                timings=d.get("timings", {}), image_path=str(img),
                                attention_path=str(p.parent / d["attention"]) if d.get("attention") else "",
                                attention_words=d.get("attention_words", []))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def recent(self, limit: int = 50) -> list[HistoryEntry]:
        """The newest ``limit`` saved results, oldest first."""
        if not self.root.is_dir():
            return []
        files = sorted(self.root.glob("*/*.json"), key=lambda f: (f.parent.name, f.name))
        out = []
        for f in reversed(files):
            e = self.load(f)
            if e is not None:
                out.append(e)
            if len(out) >= limit:
                break
        return list(reversed(out))
