"""`cxrdesk enhance` and `cxrdesk metrics`: headless image enhancement and quality figures."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..core.fsutil import atomic_write
from . import CliError

_READ_EXT = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm"}
_WRITE_EXT = {".png": True, ".tif": True, ".tiff": True, ".jpg": False, ".jpeg": False}  # 16-bit?


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "enhance", help="enhance a radiograph with a preset (keeps the bit depth)",
        description="Enhance an 8/16-bit PNG, TIFF or JPEG with an enhancement preset and write it "
                    "with the same bit depth. Window/level is not applied: it stays a display setting.")
    p.add_argument("input", nargs="?", metavar="IN", help="input image (PNG, TIFF or JPEG)")
    p.add_argument("-o", "--output", metavar="OUT", help="output image (.png/.tif keep 16 bits; .jpg 8-bit only)")
    p.add_argument("--preset", default="Balanced",
                   help="enhancement preset (default Balanced; case and -/_ ignored; see --list)")
    p.add_argument("--compare", action="store_true",
                   help="print every preset's change of contrast/sharpness/entropy, SSIM and PSNR")
    p.add_argument("--list", action="store_true", help="list the presets and their parameters")
    p.set_defaults(func=run_enhance)

    m = subparsers.add_parser("metrics", help="print contrast, sharpness and entropy of images",
                              description="RMS contrast, variance of the Laplacian and 8-bit entropy.")
    m.add_argument("images", nargs="+", metavar="IMAGE")
    m.add_argument("--json", action="store_true", help="print one JSON object per image")
    m.set_defaults(func=run_metrics)


def resolve_preset(name: str) -> str:
    from ..core.imaging.enhancement import ENHANCEMENT_PRESETS

    def norm(s: str) -> str:
        return " ".join(s.replace("-", " ").replace("_", " ").lower().split())

    for key in ENHANCEMENT_PRESETS:
        if norm(key) == norm(name):
            return key
    raise CliError(f"unknown preset {name!r}; choose from: {', '.join(ENHANCEMENT_PRESETS)}")


def read_image(path: str | os.PathLike):
    """Read a grey-scale 8/16-bit image (colour is converted to grey, alpha dropped) through the
    bounded reader."""
    from ..core.imaging.imagefile import ImageReadError, read_grey

    p = Path(path)
    if not p.is_file():
        raise CliError(f"no such file: {p}")
    if p.suffix.lower() not in _READ_EXT:
        raise CliError(f"unsupported image type {p.suffix or '(none)'}: {p.name} "
                       f"(use {', '.join(sorted(_READ_EXT))})")
    try:
        return read_grey(p)
    except ImageReadError as exc:
        raise CliError(str(exc)) from None


def write_image_atomic(path: str | os.PathLike, img) -> None:
    """Encode by extension and write atomically (temporary file in the same folder, then replace)."""
    import cv2
    import numpy as np

    p = Path(path)
    ext = p.suffix.lower()
    if ext not in _WRITE_EXT:
        raise CliError(f"unsupported output type {ext or '(none)'}: use .png, .tif or .jpg")
    if img.dtype == np.uint16 and not _WRITE_EXT[ext]:
        raise CliError(f"{ext} holds 8 bits only; write 16-bit images as .png or .tif")
    if not p.parent.is_dir():
        raise CliError(f"output folder does not exist: {p.parent}")
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise CliError(f"cannot encode {p.name}")
    try:
        atomic_write(p, lambda fh: fh.write(buf.tobytes()))
    except OSError as exc:
        raise CliError(f"cannot write {p}: {exc.strerror or exc}") from None


def _fmt_pct(v: float) -> str:
    return f"{'+' if v >= 0 else '-'}inf" if math.isinf(v) else f"{v:+.1f}%"


def run_enhance(args) -> int:
    from ..core.imaging import enhancement, imaging, metrics
    if args.list:
        width = max(len(n) for n in enhancement.ENHANCEMENT_PRESETS)
        for name, params in enhancement.ENHANCEMENT_PRESETS.items():
            print(f"{name:<{width}}  {params.describe()}")
            fields = ", ".join(f"{k}={v}" for k, v in params.to_dict().items())
            print(f"{'':<{width}}  ({fields})")
        return 0
    if not args.input:
        raise CliError("give an input image (or --list)")
    if not args.output and not args.compare:
        raise CliError("give -o OUT to write the enhanced image, or --compare to print metrics")
    preset = resolve_preset(args.preset)
    if args.output:  # check the destination before spending time on the image
        ext = Path(args.output).suffix.lower()
        if ext not in _WRITE_EXT:
            raise CliError(f"unsupported output type {ext or '(none)'}: use .png, .tif or .jpg")
    img = read_image(args.input)
    bits = imaging.infer_bits(img)

    if args.output:
        out = enhancement.enhance(img, enhancement.ENHANCEMENT_PRESETS[preset], bits=bits)
        write_image_atomic(args.output, out)
        print(f"wrote {args.output} ({preset}, {out.shape[1]}x{out.shape[0]}, "
              f"{bits}-bit data in {out.dtype})")

    if args.compare:
        m = metrics.image_metrics(img, bits)
        print(f"original: contrast {m['contrast']:.4f}  sharpness {m['sharpness']:.1f}  "
              f"entropy {m['entropy']:.3f} bits")
        results = metrics.compare_presets(img, bits=bits)
        w = max(len("preset"), *(len(n) for n in results))
        print(f"{'preset':<{w}}  {'contrast':>9}  {'sharpness':>10}  {'entropy':>8}  {'SSIM':>6}  {'PSNR dB':>7}")
        for name, r in results.items():
            psnr = "inf" if math.isinf(r["psnr"]) else f"{r['psnr']:.2f}"
            print(f"{name:<{w}}  {_fmt_pct(r['contrast_pct']):>9}  {_fmt_pct(r['sharpness_pct']):>10}  "
                  f"{_fmt_pct(r['entropy_pct']):>8}  {r['ssim']:>6.3f}  {psnr:>7}")
    return 0


def run_metrics(args) -> int:
    from ..core.imaging import imaging, metrics
    imgs = [(path, read_image(path)) for path in args.images]  # fail before printing anything
    if args.json:
        for path, img in imgs:
            print(json.dumps({"image": path, "bits": imaging.infer_bits(img), **metrics.image_metrics(img)}))
        return 0
    w = max(len("image"), *(len(p) for p, _ in imgs))
    print(f"{'image':<{w}}  {'contrast':>8}  {'sharpness':>10}  {'entropy':>7}  {'mean':>6}")
    for path, img in imgs:
        m = metrics.image_metrics(img)
        print(f"{path:<{w}}  {m['contrast']:>8.4f}  {m['sharpness']:>10.1f}  {m['entropy']:>7.3f}  {m['mean']:>6.3f}")
    return 0
