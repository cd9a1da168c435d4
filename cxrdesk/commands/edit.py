"""`cxrdesk edit`: redraw a painted region of a film from text and keep the rest exactly.

    cxrdesk edit INPUT --mask MASK.png "PROMPT" -o OUT.png [--strength S] [--steps N] [--seed S] [--dicom DIR]

INPUT is a PNG, JPEG or DICOM film; MASK a grey image of any size (scaled to the input), non-zero =
redraw. The result is a synthetic film: its PNG and DICOM say so, with a synthetic patient and new
UIDs, and carry nothing of a source DICOM's identity.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import CliError
from .generate import _check_writable, _dicom_folder, _float, _int, _load, cli_errors


def register(sub) -> None:
    e = sub.add_parser("edit", help="redraw a masked region of a film from text (the rest stays as it was)",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    e.add_argument("input", help="the film: PNG, JPEG or DICOM")
    e.add_argument("prompt", help="what the region should show, e.g. 'left pleural effusion' or 'clear lung'")
    e.add_argument("--mask", required=True, help="grey image, non-zero = redraw; any size (scaled to the film)")
    e.add_argument("-o", "--output", default="edited.png", help="output PNG (default edited.png)")
    e.add_argument("--strength", type=_float("strength"), default=None,
                   help="how much of the region is redrawn, above 0 up to 1 (1: drawn anew; default 0.85)")
    e.add_argument("--steps", type=_int("steps"), default=20)
    e.add_argument("--seed", type=_int("seed"), default=-1, help="-1 = random (the seed used is printed)")
    e.add_argument("--guidance", type=_float("guidance"), default=None,
                   help="guidance scale (default: the value the model recommends)")
    e.add_argument("--negative", default="", help="negative prompt")
    e.add_argument("--dicom", metavar="DIR", help="also write a synthetic DICOM Secondary Capture into DIR")
    e.add_argument("--model", help="model folder (default: the embedded model)")
    e.add_argument("--device", default="auto", help="auto, cpu or cuda")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_edit)


def read_film(path: Path):
    """(pixels, bits) of a PNG/JPEG/DICOM film: uint8 (8), uint16 at 12 bits (12) or float [0, 1] (None)."""
    import numpy as np

    if not path.is_file():
        raise CliError(f"no such file: {path}")
    if _is_dicom(path):
        from ..core.dicom.reader import DicomError, read_dicom

        try:
            return read_dicom(path).normalized("auto"), None
        except (DicomError, ValueError) as exc:
            raise CliError(str(exc)) from None
    from ..core.imaging.imagefile import ImageReadError, read_grey

    try:
        img = read_grey(path)
    except ImageReadError as exc:
        raise CliError(str(exc)) from None
    if img.dtype == np.uint8:
        return img, 8
    return img.astype(np.float32) / 65535.0, None


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise CliError(f"cannot read {path.name}: {exc.strerror}") from None
    return head[128:132] == b"DICM" or path.suffix.lower() in (".dcm", ".dicom")


def cmd_edit(args) -> int:
    from ..core.generation.editing import EditError
    from ..core.imaging.imagefile import ImageReadError, read_grey
    from ..core.imaging.pngio import write_png

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise CliError(f"output must be a .png file, not {args.output!r}")
    _check_writable(out)
    if not args.prompt.strip():
        raise CliError("the prompt is empty: describe what the region should show, e.g. 'clear lung'")
    film, bits = read_film(Path(args.input))
    mask_path = Path(args.mask)
    try:
        mask = read_grey(mask_path)
    except ImageReadError as exc:
        raise CliError(f"mask: {exc}") from None
    if args.dicom:
        _dicom_folder(args.dicom)
    pipe = _load(args.model, args.device)
    from tqdm import tqdm

    bar = tqdm(total=args.steps, desc="editing", unit="step", disable=args.quiet, file=sys.stderr)
    kwargs = {} if args.strength is None else {"strength": args.strength}
    try:
        with cli_errors():
            res = pipe.edit(film, mask, args.prompt, negative_prompt=args.negative, steps=args.steps,
                            seed=args.seed, guidance_scale=args.guidance, preview_every=0,
                            on_step=lambda i, n, _p: bar.update(1) if bar.n < args.steps else None, **kwargs)
    except EditError as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()
    from ..core.generation.editing import prepare_mask
    from ..core.regions import encode_region, without_region

    # the region redrawn travels in the PNG's provenance (a quiz outlines it on reveal); not in the
    # DICOM, whose ImageComments hold 10240 characters
    res.params["edit"] = dict(res.params["edit"], region=encode_region(prepare_mask(mask, res.image_u16.shape)))
    with cli_errors():
        # an 8-bit film stays 8-bit, so every pixel outside the redrawn region is the input's own
        write_png(out, res.image_u16, res.params, bits=8 if bits == 8 else 16)
        line = f"{out}  seed={res.seed}  region {res.params['edit']['mask_area']:.1%} of the film"
        if args.dicom:
            from ..core.dicom.writer import SeriesContext, write_dicom

            dcm = Path(args.dicom) / f"{out.stem}.dcm"
            ctx = SeriesContext.new(series_description="SYNTHETIC - edited film - NOT FOR DIAGNOSIS")
            write_dicom(dcm, res.image_u16, without_region(res.params), context=ctx, instance_number=1)
            line += f"  dicom={dcm}"
    print(line)
    return 0
