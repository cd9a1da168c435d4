"""`cxrdesk lesson run` and `cxrdesk lesson check`: a lesson's films, answer key and handout, headless."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from . import CliError
from .generate import _int, cli_errors


def register(sub) -> None:
    from ..core.lessons import MAX_CASES

    p = sub.add_parser("lesson", help="a lesson (a set of teaching cases): films, answer key, slides",
                       description="Make a lesson's films, answer key and handout. For education, not for diagnosis.")
    lsub = p.add_subparsers(dest="lesson_command", metavar="ACTION")
    lsub.required = True
    r = lsub.add_parser("run", help="generate every case: DIR/case_01.png ..., DIR/answers.csv, optional DICOM and PPTX",
                        description="Generate every case of a lesson file (.toml, .json, or a prompt list: one "
                                    "prompt per line, # comments) into DIR: case_01.png ..., answers.csv (the "
                                    "answer key), dicom/ with --dicom, a PPTX handout with --pptx; --n N "
                                    "makes a set of N cases.")
    r.add_argument("lesson", help="lesson file (.toml, .json or a .txt prompt list)")
    r.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (created if missing)")
    r.add_argument("--unknown", action="store_true",
                   help="export the films as unknowns: no prompt or finding word in any PNG text chunk or "
                        "DICOM attribute (the answers are only in answers.csv)")
    r.add_argument("--dicom", action="store_true", help="also write DIR/dicom/case_01.dcm ... (one series per case)")
    r.add_argument("--pptx", nargs="?", const="", default=None, metavar="FILE",
                   help="also write a PPTX handout (default DIR/lesson.pptx): title slide, one film per "
                        "slide with the SYNTHETIC mark, the answers as --answers says")
    r.add_argument("--answers", choices=["after", "end"], default="after",
                   help="in the handout, each answer on the slide after its film (default) or all at the end")
    r.add_argument("--n", type=_int("--n"), default=None, metavar="N",
                   help=f"make N cases (1 to {MAX_CASES}): the lesson's first N in order, or when N is more than "
                        "it has, its prompt cases again in turn with new seeds (a fixed seed S is drawn as S+1, "
                        "S+2 ... on each repeat; films are not repeated), case_01 ... case_N. Default: every "
                        "case once")
    r.add_argument("--steps", type=int, default=None, help="sampling steps (default: the lesson's, else 20)")
    r.add_argument("--guidance", type=float, default=None,
                   help="prompt adherence (default: the lesson's, else the model's recommendation)")
    r.add_argument("--bits", type=int, default=8, choices=[8, 16], help="PNG bit depth")
    r.add_argument("--model", help="model folder (default: the embedded model)")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_lesson_run)
    c = lsub.add_parser("check", help="validate a lesson file and list its cases and answers (no generation)")
    c.add_argument("lesson")
    c.set_defaults(func=cmd_lesson_check)


def _lesson(path: str):
    from ..core.lessons import LessonError, load_lesson

    try:
        return load_lesson(path)
    except LessonError as exc:
        raise CliError(str(exc)) from None


def cmd_lesson_check(args) -> int:
    lesson = _lesson(args.lesson)
    print(f"{lesson.title}: {len(lesson.cases)} case{'s' if len(lesson.cases) != 1 else ''}")
    for i, c in enumerate(lesson.cases):
        what = c.prompt if not c.film else f"film {c.film}"
        seed = f"  seed={c.seed}" if c.seed is not None else ""
        print(f"{i + 1:3d}. {what}  ->  {c.answer_text()}{seed}")
    return 0


def _out_dir(path: str) -> Path:
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise CliError(f"{d} is a file, not a folder")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create output folder {d}: {exc.strerror or exc}") from None
    if not os.access(d, os.W_OK):
        raise CliError(f"cannot write to {d}")
    return d


def cmd_lesson_run(args) -> int:
    from ..core.handout import HandoutCase, write_handout
    from ..core.lesson_export import answer_key_rows, export_case, write_answer_key
    from ..core.lessons import MAX_CASES, LessonError, load_film, take_cases
    from ..core.errors import PipelineError
    from ..core.generation.pipeline import Pipeline
    from ..core.generation.sampling import DEFAULT_SAMPLER

    n = getattr(args, "n", None)
    if n is not None and not 1 <= n <= MAX_CASES:
        raise CliError(f"--n must be from 1 to {MAX_CASES} cases, not {n}")
    lesson = _lesson(args.lesson)  # every problem with the file before any folder or model
    if n is not None:
        try:
            lesson = take_cases(lesson, n)
        except LessonError as exc:
            raise CliError(f"--n {n}: {exc}") from None
    steps = args.steps if args.steps is not None else (lesson.steps or 20)
    if not 1 <= steps <= 200:
        raise CliError(f"--steps must be from 1 to 200, not {steps}")
    pptx = None
    if args.pptx is not None:
        pptx = Path(args.pptx) if args.pptx else Path(args.out) / "lesson.pptx"
        if pptx.suffix.lower() != ".pptx":
            raise CliError(f"the handout must be a .pptx file, not {pptx.name!r}")
    films = {}
    for i, c in enumerate(lesson.cases):  # read film cases up front: a bad file fails before generation
        if c.film:
            try:
                films[i] = load_film(lesson, c)
            except LessonError as exc:
                raise CliError(f"case {i + 1}: {exc}") from None
    out = _out_dir(args.out)
    if pptx is not None and not pptx.parent.is_dir():
        raise CliError(f"handout folder does not exist: {pptx.parent}")
    dicom_dir = None
    if args.dicom:
        dicom_dir = out / "dicom"
        try:
            dicom_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot create DICOM folder {dicom_dir}: {exc.strerror or exc}") from None
    planned = {f"case_{i + 1:02d}" for i in range(len(lesson.cases))}
    stale = sorted(p.name for p in out.glob("case_*.png") if p.stem not in planned)
    if stale:  # never deleted: they may be someone's; said so the set is not mixed up unnoticed
        print(f"cxrdesk: note: {out} also holds {len(stale)} older case file(s) not in this lesson "
              f"({', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''})", file=sys.stderr)
    to_generate = [i for i, c in enumerate(lesson.cases) if not c.film]
    pipe = None
    guidance = args.guidance if args.guidance is not None else lesson.guidance
    if to_generate:
        try:
            pipe = Pipeline.load(args.model, device=args.device)
        except PipelineError as exc:
            raise CliError(str(exc)) from None
        if pipe.model.random_weights:
            print("cxrdesk: warning: this model has random weights (a test model): it draws noise", file=sys.stderr)
        if guidance is None:
            guidance = pipe.model.guidance
        for i in to_generate:
            try:
                pipe.check_inputs(lesson.cases[i].prompt, steps, guidance, 256, 256, DEFAULT_SAMPLER,
                              pipe.model.guidance_interval, seed=lesson.cases[i].seed)
            except PipelineError as exc:
                raise CliError(f"case {i + 1}: {exc}") from None
        if len(to_generate) >= 5:
            pipe.warm_up()
    from tqdm import tqdm

    bar = tqdm(total=len(to_generate) * steps, desc="lesson", unit="step", disable=args.quiet, file=sys.stderr)
    rows, handout, study = [], [], None
    try:
        with cli_errors():
            for i, c in enumerate(lesson.cases):
                if c.film:
                    image, params = films[i]
                else:
                    res = pipe.generate(c.prompt, steps=steps, guidance_scale=guidance,
                                        guidance_interval=pipe.model.guidance_interval,
                                        seed=c.seed if c.seed is not None else -1,
                                        on_step=lambda *_: bar.update(1), preview_every=0)
                    image, params = res.image_u16, res.params
                row = export_case(out, i, image, params, unknown=args.unknown, dicom_dir=dicom_dir,
                                  study_uid=study, bits=args.bits)
                study = row["study_uid"] or study
                rows.append(row)
                handout.append(HandoutCase(image=image, answer=c.answer_text(row["prompt"]), note=c.note))
                tqdm.write(f"{out / row['file']}  seed={row['seed']}" + (f"  dicom={out / row['dicom']}" if row["dicom"] else ""),
                           file=sys.stdout)
            key = write_answer_key(out / "answers.csv", answer_key_rows(lesson, rows))
            print(f"{key}  (answer key)")
            if pptx is not None:
                write_handout(pptx, lesson.title, handout, answers=args.answers)
                print(f"{pptx}  (handout, {len(handout)} films, answers {args.answers})")
    finally:
        bar.close()
    return 0
