"""Lessons: an ordered set of teaching cases, saved as a plain, versionable file (no Qt).

A lesson is a title plus cases. Each case is a prompt to generate (or ``film``: a PNG made
earlier, e.g. an edited film) with the answer shown on reveal (default: the findings the prompt
names, :func:`cxrdesk.core.data.findings.mentioned_findings`, or "Normal" when it names none), an
optional teaching note and an optional fixed seed (the same film every run).

Files (the CLI and the app share them):

- ``.toml`` (written by :func:`save_lesson` with a small writer of its own, read with tomllib)::

      format = "cxrdesk-lesson"
      version = 1
      title = "Pleural disease"

      [[cases]]
      prompt = "Small right pleural effusion"
      answer = "Effusion"          # optional
      note = "Blunted right costophrenic angle."   # optional
      seed = 1234                  # optional

- ``.json``: the same keys, ``{"format": ..., "title": ..., "cases": [{...}, ...]}``;
- anything else (``.txt``): a plain prompt list, one case per line, blank lines and lines starting
  with ``#`` skipped (what ``cxrdesk generate --prompts`` reads); the title is the file's name.

Every problem (missing, empty, malformed file, unknown key, bad value) raises
:class:`LessonError` with one line naming the file and the case. The files a lesson run writes (films,
answer key, quiz results): :mod:`cxrdesk.core.lesson_export`.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .generation.limits import MAX_PROMPT_CHARS, MAX_SEED

FORMAT = "cxrdesk-lesson"
VERSION = 1
MAX_FILE_BYTES = 1024 * 1024
MAX_CASES = 100
MAX_TEXT = 2000  # answer, note
MAX_TITLE = 200
NORMAL_ANSWER = "Normal"
CASE_KEYS = ("prompt", "film", "answer", "note", "seed")
LESSON_KEYS = ("format", "version", "title", "cases", "steps", "guidance")


class LessonError(ValueError):
    """A lesson file or value cannot be used; the message is one line."""


def _one_line(text: Any, limit: int = 120) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


@dataclass
class Case:
    """One case: ``prompt`` to generate, or ``film`` (a PNG path, relative to the lesson file)."""

    prompt: str = ""
    film: str = ""
    answer: str = ""  # empty: the prompt's findings (see :meth:`answer_text`)
    note: str = ""
    seed: int | None = None

    def findings(self, prompt: str | None = None) -> list[str]:
        """The findings (VOCAB labels) the prompt asks for, negated ones left out."""
        from .data.findings import mentioned_findings

        return [f for f in mentioned_findings(prompt if prompt is not None else self.prompt) if f != "No Finding"]

    def answer_text(self, prompt: str | None = None) -> str:
        """The answer shown on reveal: ``answer`` when set, else the prompt's findings, else Normal.
        ``prompt`` stands in for a film case's recorded prompt."""
        if self.answer.strip():
            return self.answer.strip()
        return ", ".join(self.findings(prompt)) or NORMAL_ANSWER

    def is_normal(self, prompt: str | None = None) -> bool:
        """True when the answer is normal (no finding named, or an answer of "normal")."""
        if self.answer.strip():
            return self.answer.strip().lower() in ("normal", "no finding", "normal chest radiograph")
        return not self.findings(prompt)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {}
        if self.film:
            d["film"] = self.film
        else:
            d["prompt"] = self.prompt
        if self.answer:
            d["answer"] = self.answer
        if self.note:
            d["note"] = self.note
        if self.seed is not None:
            d["seed"] = int(self.seed)
        return d


@dataclass
class Lesson:
    title: str
    cases: list[Case] = field(default_factory=list)
    steps: int | None = None  # optional lesson-wide settings (the CLI's options override them)
    guidance: float | None = None
    path: Path | None = None  # where it was loaded from (film paths are relative to its folder)

    def film_path(self, case: Case) -> Path:
        p = Path(case.film).expanduser()
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"format": FORMAT, "version": VERSION, "title": self.title}
        if self.steps is not None:
            d["steps"] = int(self.steps)
        if self.guidance is not None:
            d["guidance"] = float(self.guidance)
        d["cases"] = [c.to_dict() for c in self.cases]
        return d

    def validate(self) -> None:
        """Raise LessonError (one line) on the first bad value; film files must exist."""
        check_lesson_dict(self.to_dict(), self.path.name if self.path else "lesson")
        for i, c in enumerate(self.cases):
            if c.film and not self.film_path(c).is_file():
                raise LessonError(f"{self.path.name if self.path else 'lesson'}: case {i + 1}: "
                                  f"film not found: {_one_line(c.film)}")


def take_cases(lesson: Lesson, n: int) -> Lesson:
    """The lesson with exactly ``n`` cases (``cxrdesk lesson run --n``): its first ``n`` in order when
    ``n`` is at most its number of cases; beyond that the cycle goes on through its prompt cases again,
    each repeat with a new seed (a fixed seed ``s`` becomes ``s + 1``, ``s + 2`` ... on each round, so its
    repeats are drawn the same every run; a case without one draws a random seed as always). Film cases are
    not repeated: a film cannot be drawn again. LessonError (one line) when ``n`` is not from 1 to
    :data:`MAX_CASES`, or when repeats are needed and the lesson has only films."""
    name = lesson.path.name if lesson.path else "lesson"
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CASES:
        raise LessonError(f"the number of cases must be from 1 to {MAX_CASES}, not {n}")
    cases = [replace(c) for c in lesson.cases[:n]]
    pool = [c for c in lesson.cases if not c.film]
    if len(cases) < n and not pool:
        raise LessonError(f"{name}: {len(lesson.cases)} film case(s) and no prompt; a film cannot be drawn "
                          f"again, so at most {len(lesson.cases)} case(s)")
    k = 0
    while len(cases) < n:
        c = pool[k % len(pool)]
        rnd = 1 + k // len(pool)
        cases.append(replace(c, seed=None if c.seed is None else (c.seed + rnd) % (MAX_SEED + 1)))
        k += 1
    return replace(lesson, cases=cases)


def case_label(i: int) -> str:
    """'case 01' for index 0: what an unknown is called (never its answer)."""
    return f"case {i + 1:02d}"


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------

def _text(where: str, key: str, v: Any, limit: int, required: bool = False) -> str:
    if not isinstance(v, str):
        raise LessonError(f"{where}: {key} must be text, not {type(v).__name__}")
    if "\0" in v:
        raise LessonError(f"{where}: {key} contains a NUL byte")
    if len(v) > limit:
        raise LessonError(f"{where}: {key} is {len(v)} characters; at most {limit}")
    if required and not v.strip():
        raise LessonError(f"{where}: {key} is empty")
    return v


def check_lesson_dict(data: Any, name: str = "lesson") -> Lesson:
    """A :class:`Lesson` from parsed TOML/JSON ``data``; LessonError (one line) on any problem."""
    if not isinstance(data, dict):
        raise LessonError(f"{name}: a lesson must be a table/object with a title and cases")
    unknown = [k for k in data if k not in LESSON_KEYS]
    if unknown:
        raise LessonError(f"{name}: unknown key {_one_line(unknown[0], 40)!r} (known: {', '.join(LESSON_KEYS)})")
    if "format" in data and data["format"] != FORMAT:
        raise LessonError(f"{name}: format must be {FORMAT!r}, not {_one_line(data['format'], 40)!r}")
    if "version" in data:
        v = data["version"]
        if not isinstance(v, int) or isinstance(v, bool):
            raise LessonError(f"{name}: version must be a whole number")
        if v > VERSION:
            raise LessonError(f"{name}: lesson format version {v} is newer than this cxrdesk reads ({VERSION})")
    title = _text(name, "title", data.get("title", Path(name).stem), MAX_TITLE, required=True).strip()
    steps = data.get("steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 200):
        raise LessonError(f"{name}: steps must be a whole number from 1 to 200")
    guidance = data.get("guidance")
    if guidance is not None:
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
                or not 0 <= guidance <= 30:
            raise LessonError(f"{name}: guidance must be a number from 0 to 30")
        guidance = float(guidance)
    cases = data.get("cases")
    if cases is None:
        raise LessonError(f"{name}: no cases (add [[cases]] tables, each with a prompt)")
    if not isinstance(cases, list):
        raise LessonError(f"{name}: cases must be a list")
    if not cases:
        raise LessonError(f"{name}: the lesson has no cases")
    if len(cases) > MAX_CASES:
        raise LessonError(f"{name}: {len(cases)} cases; at most {MAX_CASES} per lesson")
    out = []
    for i, c in enumerate(cases):
        where = f"{name}: case {i + 1}"
        if not isinstance(c, dict):
            raise LessonError(f"{where}: a case must be a table/object with a prompt")
        bad = [k for k in c if k not in CASE_KEYS]
        if bad:
            raise LessonError(f"{where}: unknown key {_one_line(bad[0], 40)!r} (known: {', '.join(CASE_KEYS)})")
        prompt = _text(where, "prompt", c.get("prompt", ""), MAX_PROMPT_CHARS)
        film = _text(where, "film", c.get("film", ""), 1000)
        if bool(prompt.strip()) == bool(film.strip()):
            raise LessonError(f"{where}: give a prompt or a film (a PNG file), not "
                              + ("both" if prompt.strip() else "neither"))
        seed = c.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED):
            raise LessonError(f"{where}: seed must be a whole number from 0 to {MAX_SEED}")
        out.append(Case(prompt=prompt.strip(), film=film.strip(),
                        answer=_text(where, "answer", c.get("answer", ""), MAX_TEXT).strip(),
                        note=_text(where, "note", c.get("note", ""), MAX_TEXT).strip(), seed=seed))
    return Lesson(title=title, cases=out, steps=steps, guidance=guidance)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------

def parse_prompt_list(text: str, name: str = "lesson") -> Lesson:
    """A plain prompt list (one case per line, blank and # lines skipped) as a lesson."""
    prompts = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return check_lesson_dict({"title": Path(name).stem or "lesson", "cases": [{"prompt": p} for p in prompts]}, name)


def parse_lesson(text: str, name: str = "lesson.toml") -> Lesson:
    """Parse lesson text; the format follows ``name``'s suffix (.toml, .json, else a prompt list)."""
    suffix = Path(name).suffix.lower()
    if suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise LessonError(f"{name}: not valid TOML ({_one_line(exc)})") from None
        return check_lesson_dict(data, name)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise LessonError(f"{name}: not valid JSON ({_one_line(exc)})") from None
        return check_lesson_dict(data, name)
    return parse_prompt_list(text, name)


def load_lesson(path: str | os.PathLike) -> Lesson:
    """Read and validate a lesson file (see the module's docstring); LessonError on any problem."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:  # bounded: a lesson is a few KB
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise LessonError(f"lesson file not found: {path}") from None
    except IsADirectoryError:
        raise LessonError(f"{path} is a folder, not a lesson file") from None
    except OSError as exc:
        raise LessonError(f"cannot read lesson file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise LessonError(f"lesson file {path.name} is larger than {MAX_FILE_BYTES // 1024} KB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LessonError(f"lesson file {path.name} is not UTF-8 text") from None
    if not text.strip():
        raise LessonError(f"lesson file {path.name} is empty")
    lesson = parse_lesson(text, path.name)
    lesson.path = path
    lesson.validate()
    return lesson


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(s: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in s:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    return toml_string(str(v))


def lesson_toml(lesson: Lesson) -> str:
    d = lesson.to_dict()
    lines = ["# cxrdesk lesson: one [[cases]] table per case (prompt or film; answer, note, seed optional)"]
    for k, v in d.items():
        if k != "cases":
            lines.append(f"{k} = {_toml_value(v)}")
    for c in d["cases"]:
        lines += ["", "[[cases]]"] + [f"{k} = {_toml_value(v)}" for k, v in c.items()]
    return "\n".join(lines) + "\n"


def lesson_text(lesson: Lesson, name: str) -> str:
    """The lesson as file text for ``name``'s suffix (.toml or .json)."""
    suffix = Path(name).suffix.lower()
    if suffix == ".toml":
        return lesson_toml(lesson)
    if suffix == ".json":
        return json.dumps(lesson.to_dict(), ensure_ascii=False, indent=2) + "\n"
    raise LessonError(f"save a lesson as .toml or .json, not {Path(name).suffix or 'no suffix'}")


def save_lesson(lesson: Lesson, path: str | os.PathLike) -> Path:
    """Validate and write ``lesson`` (atomic) as TOML or JSON by suffix; returns the path."""
    from .fsutil import atomic_write

    path = Path(path)
    check_lesson_dict(lesson.to_dict(), path.name)
    data = lesson_text(lesson, path.name).encode("utf-8")
    out = atomic_write(path, lambda fh: fh.write(data))
    lesson.path = path
    return out


# --------------------------------------------------------------------------------------------
# a film case's pixels
# --------------------------------------------------------------------------------------------

def load_film(lesson: Lesson, case: Case):
    """A film case's stored 12-bit pixels and recorded metadata (read_png); LessonError if unusable."""
    from .imaging.pngio import ImageFormatError, read_png

    path = lesson.film_path(case)
    try:
        png = read_png(path)
    except FileNotFoundError:
        raise LessonError(f"film not found: {path}") from None
    except (ImageFormatError, OSError) as exc:
        raise LessonError(f"film {path.name}: {_one_line(exc)}") from None
    return png.pixels, dict(png.metadata)


# --------------------------------------------------------------------------------------------
# quiz scoring (rapid-reporting style)
# --------------------------------------------------------------------------------------------

SCORE_RULE = ("Scoring: a normal film is correct when called normal; an abnormal film is correct when "
              "called abnormal with one of its findings. One point per correct case.")


# Distractors first taken from the findings a chest film is most often read for.
DISTRACTORS = ("Pneumothorax", "Effusion", "Cardiomegaly", "Pneumonia", "Mass", "Nodule", "Edema", "Atelectasis",
               "Consolidation", "Emphysema")


def finding_choices(lesson: Lesson, prompts: list[str] | None = None, distractors: int = 4) -> list[str]:
    """What a trainee picks a finding from: every abnormal answer and finding of the lesson, plus up
    to ``distractors`` other findings of the model's vocabulary (a fixed choice, not random)."""
    from .data.captions import VOCAB

    prompts = prompts or [c.prompt for c in lesson.cases]
    out: list[str] = []
    for c, p in zip(lesson.cases, prompts):
        if c.is_normal(p):
            continue
        for f in [c.answer_text(p)] + c.findings(p):
            if f and f not in out:
                out.append(f)
    order = list(DISTRACTORS) + [v for v in VOCAB if v not in DISTRACTORS]
    extra = [v for v in order if v not in out and v != "No Finding"][:max(0, distractors)]
    return sorted(out + extra, key=str.lower)


def score_case(case: Case, called_normal: bool, finding: str = "", prompt: str | None = None) -> bool:
    """The rule in :data:`SCORE_RULE`."""
    if case.is_normal(prompt):
        return bool(called_normal)
    if called_normal:
        return False
    f = (finding or "").strip().lower()
    return bool(f) and (f == case.answer_text(prompt).lower() or f in {x.lower() for x in case.findings(prompt)})
