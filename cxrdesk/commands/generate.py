"""`cxrdesk generate` and `cxrdesk info`."""
from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from ..core.fsutil import check_path_length
from ..core.generation.pipeline import MAX_PROMPT_CHARS, MAX_SEED
from ..core.generation.sampling import DEFAULT_SAMPLER, SAMPLERS
from . import CONDITION_NOISE_HELP, INTERVAL_HELP, CliError, interval_arg


# From this many images on, `generate` prepares the faster UNet graphs first (Pipeline.warm_up: ONNX
# Runtime, exported once per model, or a traced graph): they pay for themselves.
WARM_UP_FROM = 5
MAX_PROMPTS_BYTES = 1024 * 1024  # a --prompts file: 100 prompts are a few KB


def _int(name):
    def parse(v):
        try:
            return int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, not {v!r}") from None
    return parse


def _float(name):
    def parse(v):
        try:
            f = float(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, not {v!r}") from None
        if f != f:
            raise argparse.ArgumentTypeError(f"{name} must be a number, not {v!r}")
        return f
    return parse


def register(sub) -> None:
    g = sub.add_parser("generate", help="generate synthetic chest radiographs from text (headless)",
                       description="Generate synthetic chest radiographs. For education, not for diagnosis.")
    g.add_argument("prompt", nargs="?", help="radiology text, e.g. 'small left pleural effusion'")
    g.add_argument("--prompts", metavar="FILE",
                   help="instead of one prompt, a text file with one prompt per line (blank lines and lines "
                        "starting with # are skipped): a teaching set in one run, files numbered by prompt "
                        "(cxr_01.png, or cxr_01_001.png ... with --n), one DICOM series per prompt in one study")
    g.add_argument("-o", "--output", default="cxr.png",
                   help="output PNG; with --n > 1 files are numbered (cxr_001.png, ...)")
    g.add_argument("--negative", default="", help="negative prompt")
    g.add_argument("--steps", type=_int("steps"), default=None,
                   help="denoising steps (default 20; with --fast, the student's own, e.g. 8)")
    g.add_argument("--fast", action="store_true",
                   help="draw with the model folder's distilled student: a film in a few UNet calls instead of "
                        "40 (made by 'cxrdesk train distill'; with its own sampler unless --sampler names one; the "
                        "guidance interval and negative prompt do not apply)")
    g.add_argument("--guidance", type=_float("guidance"), default=None,
                   help="prompt adherence (CFG scale); default: the value the model recommends")
    g.add_argument("--guidance-interval", type=interval_arg, default=None, metavar="LO,HI",
                   help=INTERVAL_HELP + " (default: the model's)")
    g.add_argument("--condition-noise", type=_float("condition noise"), default=None, metavar="S",
                   help=CONDITION_NOISE_HELP + " (default: the model's)")
    g.add_argument("--seed", type=_int("seed"), default=-1, help="-1 = random (the seed used is printed)")
    g.add_argument("--size", type=_int("size"), default=256, help="256, 512 or 768")
    g.add_argument("--sampler", default=DEFAULT_SAMPLER, help=", ".join(SAMPLERS) + f" (default {DEFAULT_SAMPLER}: the one the model recommends)")
    g.add_argument("--n", type=_int("n"), default=1, help="number of images")
    g.add_argument("--model", help="model folder (default: the embedded model)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")
    g.add_argument("--dicom", metavar="DIR",
                   help="also write DICOM files into DIR (one series; with --prompts, one series per prompt)")
    g.add_argument("--unknown", action="store_true",
                   help="export as unknowns (a quiz): no prompt or finding word in the PNG text chunks or DICOM "
                        "attributes, only 'case 01' ...; the answers go to OUTPUT_answers.csv. Without it, "
                        "the prompt is recorded in every file (PNG Description, DICOM ImageComments)")
    g.add_argument("--bits", type=_int("bits"), default=8, choices=[8, 16], help="PNG bit depth")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("info", help="show the model's components, sizes, device and version")
    i.add_argument("--model", help="model folder (default: the embedded model)")
    i.add_argument("--device", default="auto")
    i.set_defaults(func=cmd_info)


def _load(model, device):
    from ..core.errors import PipelineError
    from ..core.generation.pipeline import Pipeline

    try:
        return Pipeline.load(model, device=device)
    except PipelineError as exc:
        raise CliError(str(exc)) from None


def _out_paths(output: str, n: int) -> list[Path]:
    out = Path(output)
    if out.suffix.lower() != ".png":
        raise CliError(f"output must be a .png file, not {output!r}")
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i + 1:03d}{out.suffix}") for i in range(n)]


def _read_prompts(args) -> list[str]:
    """The prompt, or the --prompts file's prompts (one per line; blank and # lines skipped)."""
    if args.prompts and args.prompt is not None:
        raise CliError("give a prompt or --prompts FILE, not both")
    if not args.prompts:
        if args.prompt is None or not args.prompt.strip():
            raise CliError("the prompt is empty: describe the radiograph, e.g. 'normal chest radiograph'")
        return [args.prompt]
    try:
        with open(args.prompts, "rb") as fh:  # bounded: --prompts /dev/zero must not read forever
            data = fh.read(MAX_PROMPTS_BYTES + 1)
        if len(data) > MAX_PROMPTS_BYTES:
            raise CliError(f"prompts file {args.prompts} is larger than {MAX_PROMPTS_BYTES // 1024} KB")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise CliError(f"prompts file not found: {args.prompts}") from None
    except UnicodeDecodeError:
        raise CliError(f"prompts file {args.prompts} is not UTF-8 text") from None
    except OSError as exc:
        raise CliError(f"cannot read prompts file {args.prompts}: {exc.strerror or exc}") from None
    prompts = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    for i, p in enumerate(prompts):
        if len(p) > MAX_PROMPT_CHARS or "\0" in p:
            raise CliError(f"{args.prompts}: prompt {i + 1} is not a prompt "
                           f"({'a NUL byte' if chr(0) in p else f'{len(p)} characters; at most {MAX_PROMPT_CHARS}'})")
    if not prompts:
        raise CliError(f"no prompts in {args.prompts} (one per line; # starts a comment line)")
    if len(prompts) > 100:
        raise CliError(f"{args.prompts} has {len(prompts)} prompts; at most 100 per run")
    return prompts


def _check_writable(path: Path) -> None:
    try:
        check_path_length(path)
    except OSError:
        raise CliError(f"output path too long for this system: {str(path)[:80]}...") from None
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CliError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise CliError(f"cannot write to {parent}")

def _dicom_folder(path) -> Path:
    """Create a DICOM output folder (and its parents) and check it can be written; CliError otherwise."""
    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create DICOM folder {d}: {exc.strerror}") from None
    _check_writable(d / "x.dcm")
    return d


@contextmanager
def cli_errors():
    """A generation's bad settings, cancellation and output errors as one line and exit 2."""
    from ..core.errors import GenerationCancelled, PipelineError

    try:
        yield
    except PipelineError as exc:
        raise CliError(str(exc)) from None
    except GenerationCancelled:
        raise CliError("cancelled") from None
    except OSError as exc:
        raise CliError(f"cannot write output: {exc.strerror or exc}") from None


def cmd_generate(args) -> int:
    from ..core.errors import PipelineError
    from ..core.generation.pipeline import SIZES
    from ..core.imaging.pngio import write_png

    if args.n < 1 or args.n > 1000:
        raise CliError(f"--n must be from 1 to 1000, not {args.n}")
    if args.size not in SIZES:
        raise CliError(f"--size must be one of {', '.join(map(str, SIZES))}, not {args.size}")
    prompts = _read_prompts(args)
    if args.seed >= 0 and args.seed + args.n * len(prompts) - 1 > MAX_SEED:
        raise CliError(f"--seed must be from 0 to {MAX_SEED} (or -1 for a random one), not {args.seed}"
                       + (" (with --n, every image takes the next seed)" if args.seed <= MAX_SEED else ""))
    if not args.prompts:
        jobs = [(prompts[0], _out_paths(args.output, args.n))]
    else:  # numbered by prompt: cxr_01.png, or cxr_01_001.png ... with --n
        out = _out_paths(args.output, 1)[0]
        jobs = [(p, _out_paths(str(out.with_name(f"{out.stem}_{i + 1:02d}{out.suffix}")), args.n))
                for i, p in enumerate(prompts)]
    for _, outs in jobs:
        for o in outs:
            _check_writable(o)
    key_path = _out_paths(args.output, 1)[0].with_name(f"{Path(args.output).stem}_answers.csv")
    if args.unknown:
        _check_writable(key_path)
    key_cases, key_results = [], []
    if args.dicom:
        _dicom_folder(args.dicom)
    pipe = _load(args.model, args.device)
    if pipe.model.random_weights:
        print("cxrdesk: warning: this model has random weights (a test model): it draws noise", file=sys.stderr)
    if args.guidance is None:
        args.guidance = pipe.default_guidance(args.fast)
    if args.guidance_interval is None:
        args.guidance_interval = pipe.model.guidance_interval
    if args.condition_noise is not None:
        from ..core.generation.sampling import check_condition_noise

        try:
            check_condition_noise(args.condition_noise)
        except PipelineError as exc:
            raise CliError(str(exc)) from None
    if args.fast and pipe.model.student is None:
        raise CliError(f"--fast: {pipe.model.student_note}")
    if args.steps is None:
        args.steps = pipe.model.student["steps"] if args.fast else 20
    from ..core.data.findings import rare_findings, rare_note, weak_findings, weak_note

    for i, (prompt, _) in enumerate(jobs):
        which = f"prompt {i + 1}: " if len(jobs) > 1 else ""
        try:  # validate every prompt before the loop, so a bad value fails before any work
            pipe.check_inputs(prompt, args.steps, args.guidance, args.size, args.size, args.sampler,
                          args.guidance_interval, negative_prompt=args.negative)
        except PipelineError as exc:
            raise CliError(f"{which}{exc}") from None
        rare = rare_findings(prompt, (pipe.model.training or {}).get("label_counts", {}))
        if rare:
            print(f"cxrdesk: note: {which}{rare_note(rare)}", file=sys.stderr)
        for f in weak_findings(prompt, pipe.model.findings_check):
            print(f"cxrdesk: note: {which}{weak_note(f)}", file=sys.stderr)
    total = sum(len(outs) for _, outs in jobs)
    if total >= WARM_UP_FROM:  # costs 0.5-4 s once and saves a quarter of every image's time
        pipe.warm_up()
    from tqdm import tqdm

    show = not args.quiet
    bar = tqdm(total=total * args.steps, desc="generating", unit="step", disable=not show, file=sys.stderr)
    seed = args.seed
    study = None
    made = 0
    try:
        with cli_errors():
            for i, (prompt, outs) in enumerate(jobs):
                series = None
                if args.dicom:  # one series per prompt, all in one study
                    from ..core.dicom.writer import SeriesContext

                    series = SeriesContext.new(study_uid=study, series_number=i + 1,
                                               series_description=f"case {i + 1:02d}" if len(jobs) > 1 else None)
                    study = series.study_uid
                for k, out in enumerate(outs):
                    s = seed + made if seed is not None and seed >= 0 else -1
                    made += 1
                    res = pipe.generate(prompt, negative_prompt=args.negative, steps=args.steps,
                                        guidance_scale=args.guidance, guidance_interval=args.guidance_interval, seed=s,
                                        width=args.size, height=args.size, sampler=args.sampler,
                                        on_step=lambda *_: bar.update(1), preview_every=0, fast=args.fast,
                                        condition_noise=args.condition_noise)
                    if k == 0 and res.params["prompt_truncated"]:
                        print(f"cxrdesk: warning: the prompt is longer than the encoder takes; it was cut to "
                              f"{res.params['max_tokens']} tokens", file=sys.stderr)
                    meta = {**res.params, "case": f"case {i + 1:02d}"} if args.unknown else res.params
                    write_png(out, res.image_u16, meta, bits=args.bits, unknown=args.unknown)
                    line = f"{out}  seed={res.seed}"
                    if args.dicom:
                        from ..core.dicom.writer import write_dicom

                        dcm = Path(args.dicom) / f"{out.stem}.dcm"
                        write_dicom(dcm, res.image_u16, meta, context=series, instance_number=k + 1,
                                    unknown=args.unknown)
                        line += f"  dicom={dcm}"
                    if args.unknown:
                        from ..core.lessons import Case

                        key_cases.append(Case(prompt=prompt))
                        key_results.append({"file": out.name, "prompt": prompt, "seed": res.seed,
                                            "dicom": f"{dcm.name}" if args.dicom else "", "case": i + 1})
                    if res.params["upscale"]:
                        line += f"  ({res.params['upscale']})"
                    tqdm.write(line, file=sys.stdout)
            if args.unknown:  # the answers: a separate file, never in the films
                from ..core.lesson_export import answer_key_rows, write_answer_key
                from ..core.lessons import Lesson

                rows = answer_key_rows(Lesson("answers", key_cases), key_results)
                for row, r in zip(rows, key_results):
                    row["case"] = r["case"]
                write_answer_key(key_path, rows)
                tqdm.write(f"{key_path}  (answer key)", file=sys.stdout)
    finally:
        bar.close()
    return 0


def cmd_info(args) -> int:
    import platform

    import torch

    from .. import __version__
    from ..core.generation.sampling import interval_text

    pipe = _load(args.model, args.device)
    i = pipe.info
    where = interval_text(i["guidance_interval"])
    print(f"cxrdesk {__version__}  (python {platform.python_version()}, torch {torch.__version__})")
    print(f"model:        {i['name']}  [{i['hash']}]")
    print(f"folder:       {i['folder']}")
    if i["random_weights"]:
        print("WARNING:      random weights (test model) - draws noise")
    print(f"device:       {i['device']} ({i['dtype']}), {torch.get_num_threads()} CPU threads")
    scale = "each channel normalised" if pipe.vae.config.get("latents_mean") is not None else "one scale"
    print(f"native size:  {i['native_size']}x{i['native_size']}, latents {'x'.join(map(str, i['latent_shape']))} ({scale})")
    print(f"unet:         {i['params']['unet'] / 1e6:.2f} M parameters ({i['prediction_type']} prediction)")
    print(f"vae:          {i['params']['vae'] / 1e6:.2f} M parameters, {i['image_channels']}-channel output")
    print(f"text encoder: {i['text_encoder']}, {i['params']['text_encoder'] / 1e6:.2f} M parameters")
    zero = " (zero terminal SNR)" if pipe.scheduler_config.get("rescale_betas_zero_snr") else ""
    print(f"sampling:     {i['sampler']}{zero}, guidance {i['guidance']:g} recommended"
          + (f" ({where})" if where else "")
          + (f", start-noise offset {i['noise_offset']:g}" if i["noise_offset"] else ""))
    student = i.get("student")
    if student:
        rec = student.get("sampler")
        how = ("of the model's sampler" if rec == "model" else "(consistency sampling)" if rec == "lcm"
               else f"of {rec}")
        g = f", guidance {student['guidance']:g}" if "guidance" in student else ""
        print(f"fast mode:    a distilled student, {student['steps']} steps {how}{g}, one UNet call each (distilled "
              f"{student['distill_steps']} training steps): generate --fast")
    else:
        print(f"fast mode:    none ({i.get('student_note')})")
    from ..core.generation import preview_decoder

    pd, pd_note = preview_decoder.record(pipe.folder)
    if pd:
        held = pd.get("held_out") or {}
        print(f"previews:     a tiny preview decoder ({pd.get('params', 0) / 1e3:.0f} k parameters, {pd.get('steps')} "
              f"training steps" + (f", {held['mae_grey']:.1f} grey levels from the VAE's films on held-out latents"
                                   if "mae_grey" in held else "") + "); final films: the VAE decoder")
    else:
        print(f"previews:     the linear latent map ({pd_note})")
    print(f"load time:    {i['load_seconds']:.2f} s")
    from ..core.generation import onnx_graphs

    graphs = onnx_graphs.cached(i["hash"])
    if graphs:
        size = sum(f.stat().st_size for f in graphs) / 1e6
        print(f"fast graphs:  {len(graphs)} cached for ONNX Runtime ({size:.0f} MB in {graphs[0].parent})")
    else:
        print(f"fast graphs:  none yet (the app, evaluate and generate --n {WARM_UP_FROM} make them once,"
              f" in {onnx_graphs.cache_dir()})")
    return 0
