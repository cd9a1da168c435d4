"""The files a lesson run writes: each case's film (PNG, DICOM), the answer key and a trainee's quiz
results (spreadsheet-safe CSV). The lessons themselves: core.lessons."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from .lessons import Lesson, case_label

ANSWER_KEY_FIELDS = ("case", "file", "answer", "normal", "findings", "note", "prompt", "seed", "dicom")
QUIZ_FIELDS = ("trainee", "case", "called", "finding", "correct", "answer", "note", "time",
               "mark", "location")  # mark: "x y" in image pixels where the trainee clicked


def case_file_stem(i: int) -> str:
    """'case_01' for index 0: the exported files' name."""
    return f"case_{i + 1:02d}"


def export_case(out_dir: str | os.PathLike, index: int, image: Any, params: dict, *, unknown: bool,
                dicom_dir: str | os.PathLike | None = None, study_uid: str | None = None,
                bits: int = 8) -> dict:
    """Write case ``index``'s film as ``out_dir/case_NN.png`` (and ``dicom_dir/case_NN.dcm``, one
    series "case NN" per case, in the study ``study_uid``). ``unknown``: anonymised provenance
    (no prompt or finding word in the files); otherwise the full parameters as any export.
    Returns {"file", "dicom", "prompt", "seed", "study_uid"} for the answer key."""
    from .imaging.pngio import write_png

    stem = case_file_stem(index)
    meta = dict(params or {})
    meta["case"] = case_label(index)
    png = write_png(Path(out_dir) / f"{stem}.png", image, meta, bits=bits, unknown=unknown)
    row = {"file": png.name, "dicom": "", "prompt": str(meta.get("prompt") or ""), "seed": meta.get("seed"),
           "study_uid": study_uid}
    if dicom_dir is not None:
        from .dicom.writer import SeriesContext, write_dicom

        ctx = SeriesContext.new(study_uid=study_uid, series_number=index + 1,
                                series_description=case_label(index))
        from .regions import without_region

        dcm = write_dicom(Path(dicom_dir) / f"{stem}.dcm", image, without_region(meta), context=ctx,
                          instance_number=1, unknown=unknown)
        row["dicom"] = str(Path(dicom_dir).name + "/" + dcm.name)
        row["study_uid"] = ctx.study_uid
    return row


def answer_key_rows(lesson: Lesson, results: list[dict]) -> list[dict]:
    """Rows of the answer key. ``results[i]``: {"file", "prompt", "seed", "dicom"} for case i."""
    rows = []
    for i, (c, r) in enumerate(zip(lesson.cases, results)):
        prompt = r.get("prompt", c.prompt) or ""
        rows.append({
            "case": i + 1, "file": r.get("file", ""), "answer": c.answer_text(prompt),
            "normal": "normal" if c.is_normal(prompt) else "abnormal",
            "findings": "; ".join(c.findings(prompt)), "note": c.note, "prompt": prompt,
            "seed": "" if r.get("seed") is None else r["seed"], "dicom": r.get("dicom", ""),
        })
    return rows


def _csv_safe(v: Any) -> Any:
    """A spreadsheet would run text starting with = + - @ as a formula: quote it with '."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@"):
        return "'" + v
    return v


def _write_csv(path: str | os.PathLike, fields: tuple[str, ...], rows: list[dict]) -> Path:
    """A CSV for spreadsheets (UTF-8 with BOM, formula-safe cells), written atomically."""
    from .fsutil import atomic_write

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_safe(v) for k, v in r.items()})
    data = ("\ufeff" + buf.getvalue()).encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))


def write_answer_key(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write the answer key CSV (UTF-8 with BOM for spreadsheets; atomic)."""
    return _write_csv(path, ANSWER_KEY_FIELDS, rows)


def read_answer_key(path: str | os.PathLike) -> list[dict]:
    """The rows of an answer key (or quiz results) CSV as dicts."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def write_quiz_results(path: str | os.PathLike, rows: list[dict]) -> Path:
    """One trainee's answers as CSV (atomic, UTF-8 with BOM; the caller adds a score row)."""
    return _write_csv(path, QUIZ_FIELDS, rows)
