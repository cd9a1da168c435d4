"""``cxrdesk export`` (PNG/DICOM export of images) and ``cxrdesk send`` (C-STORE / C-ECHO)."""
from __future__ import annotations

import sys
from pathlib import Path

from . import CliError


def register(subparsers) -> None:
    ex = subparsers.add_parser(
        "export", help="export image(s) as DICOM Secondary Capture and/or PNG",
        description="Export PNG (or DICOM) images as synthetic Secondary Capture DICOM and/or PNG. "
                    "The prompt and generation parameters are taken from the PNG text chunks "
                    "written by cxrdesk, when present. Several images become one series.")
    ex.add_argument("images", nargs="+", metavar="IMAGE", help="PNG written by cxrdesk (or any PNG/JPEG/DICOM)")
    ex.add_argument("--dicom", metavar="OUT", help="DICOM file to write; a folder when several images are given")
    ex.add_argument("--png", metavar="OUT", help="PNG file to write; a folder when several images are given")
    ex.add_argument("--8bit", dest="eight_bit", action="store_true",
                    help="8-bit output (default: 12-bit DICOM, 16-bit PNG)")
    ex.add_argument("--window", nargs=2, type=float, metavar=("CENTER", "WIDTH"),
                    help="window in 12-bit units (0-4095); default: the one stored in the PNG, if any")
    ex.add_argument("--apply-window", action="store_true", help="PNG: bake the window into the pixels")
    ex.add_argument("--burn-mark", action="store_true", help="burn a small 'SYNTHETIC' mark into the pixels")
    ex.add_argument("--patient-name", default=None, help="synthetic patient name (default SYNTHETIC^CXRDESK)")
    ex.add_argument("--patient-id", default=None, help="synthetic patient ID (default CXRDESK-SYNTHETIC)")
    ex.add_argument("--series-description", default=None, help="extra text after 'SYNTHETIC - NOT FOR DIAGNOSIS'")
    ex.set_defaults(func=run_export)

    se = subparsers.add_parser(
        "send", help="send DICOM files to a PACS (C-STORE); --echo tests the connection",
        description="Send DICOM files or folders to a PACS. Files that fail are kept in the retry "
                    "queue (resend them with --retry-queue).")
    se.add_argument("paths", nargs="*", metavar="FILE_OR_DIR")
    se.add_argument("--host", default="127.0.0.1", help="PACS host (default 127.0.0.1)")
    se.add_argument("--port", type=int, help="PACS DICOM port")
    se.add_argument("--called-aet", help="the PACS's AE title")
    se.add_argument("--aet", default="CXRDESK", help="our AE title (default CXRDESK)")
    se.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    se.add_argument("--echo", action="store_true", help="C-ECHO first (alone when no files are given)")
    se.add_argument("--retry-queue", action="store_true",
                    help="resend the queued files (to their own PACS, or to the one given)")
    se.add_argument("--queue-file", default=None, help="retry queue file (default: in the user data folder)")
    se.add_argument("--no-queue", action="store_true", help="do not keep failed files in the retry queue")
    se.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    se.set_defaults(func=run_send)


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------

def _load_input(path: Path):
    """(12-bit array, metadata, window-or-None) from a PNG/JPEG or DICOM file."""
    from ..core.dicom import reader
    from ..core.imaging import pngio
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    with open(path, "rb") as fh:
        head = fh.read(132)
    if path.suffix.lower() in (".dcm", ".dicom") or head[128:132] == b"DICM":
        try:
            img = reader.read_dicom(path)
            arr = pngio.to_stored12(img.normalized("range"))
        except reader.DicomError as exc:
            raise CliError(str(exc)) from None
        meta = dict(img.params)
        win = None
        if img.window is not None and img.photometric == "MONOCHROME2":
            lo, hi = img.value_range
            f = 4095.0 / max(hi - lo, 1)
            win = ((img.window.center - lo) * f, img.window.width * f)
        return arr, meta, win
    try:
        png = pngio.read_png(path)
    except pngio.ImageFormatError as exc:
        raise CliError(str(exc)) from None
    meta = {k: v for k, v in png.metadata.items()
            if k not in ("bits_stored", "window", "window_units", "window_applied", "burned_in_mark", "synthetic")}
    return png.pixels, meta, png.window


def _outputs(target: str, inputs: list[Path], suffix: str) -> list[Path]:
    from ..core.fsutil import check_path_length

    t = Path(target)
    try:
        check_path_length(t)
    except OSError:
        raise CliError(f"output path too long for this system: {target[:80]}...") from None
    if len(inputs) == 1 and not t.is_dir():
        if not t.parent.is_dir():
            raise CliError(f"output folder does not exist: {t.parent}")
        return [t]
    if t.exists() and not t.is_dir():
        raise CliError(f"{t} must be a folder when exporting several images")
    t.mkdir(parents=True, exist_ok=True)
    names = [t / (p.stem + suffix) for p in inputs]
    if len(set(names)) != len(names):
        raise CliError("several inputs share a file name; export them separately")
    if any(n.resolve() == p.resolve() for n, p in zip(names, inputs)):
        raise CliError("an output would overwrite its input")
    return names


def run_export(args) -> int:
    from ..core.dicom import writer
    from ..core.imaging import pngio
    if not args.dicom and not args.png:
        raise CliError("nothing to do: give --dicom OUT and/or --png OUT")
    inputs = [Path(p) for p in args.images]
    loaded = [_load_input(p) for p in inputs]  # read everything first: fail before writing
    window = tuple(args.window) if args.window else None
    if window is not None and window[1] <= 0:
        raise CliError("--window WIDTH must be positive")
    written: list[Path] = []
    if args.dicom:
        from ..core.regions import without_region  # an edited film's region: too long for ImageComments

        outs = _outputs(args.dicom, inputs, ".dcm")
        ctx = writer.SeriesContext.new(patient_name=args.patient_name or writer.DEFAULT_PATIENT_NAME,
                                      patient_id=args.patient_id or writer.DEFAULT_PATIENT_ID,
                                      series_description=args.series_description)
        for (arr, meta, win), out in zip(loaded, outs):
            try:
                written.append(writer.write_dicom(out, arr, without_region(meta), window=window or win, context=ctx,
                                                 bits=8 if args.eight_bit else 12, burn_mark=args.burn_mark))
            except (OSError, ValueError) as exc:
                raise CliError(f"cannot write {out}: {exc}") from None
    if args.png:
        outs = _outputs(args.png, inputs, ".png")
        for (arr, meta, win), out in zip(loaded, outs):
            try:
                written.append(pngio.write_png(out, arr, meta, bits=8 if args.eight_bit else 16,
                                               window=window or win, apply_window=args.apply_window,
                                               burn_mark=args.burn_mark))
            except (OSError, ValueError) as exc:
                raise CliError(f"cannot write {out}: {exc}") from None
    for w in written:
        print(w)
    return 0


# ------------------------------------------------------------------------------------------
# send
# ------------------------------------------------------------------------------------------

def run_send(args) -> int:
    from ..core.dicom import pacs
    queue = None if args.no_queue else pacs.RetryQueue(args.queue_file)
    if not args.paths and not args.echo and not args.retry_queue:
        raise CliError("give files or folders to send, --echo, or --retry-queue")
    need_dest = bool(args.paths or args.echo)
    settings = None
    if need_dest or args.port or args.called_aet:
        if args.port is None or not args.called_aet:
            raise CliError("--port and --called-aet are required")
        settings = pacs.PacsSettings(called_aet=args.called_aet, host=args.host, port=args.port,
                                     calling_aet=args.aet, timeout=args.timeout)
        try:
            settings = settings.validate()
        except pacs.PacsError as exc:
            raise CliError(str(exc)) from None

    def progress(done, total, r):
        if not args.quiet:
            state = "sent" if r.ok else ("cancelled" if r.cancelled else "FAILED")
            extra = "" if r.ok and r.message == "stored" else f": {r.message}"
            print(f"[{done}/{total}] {state} {r.path}{extra}", flush=True)

    if args.echo:
        try:
            print(pacs.echo(settings))
        except pacs.PacsError as exc:
            raise CliError(str(exc)) from None

    rc = 0
    reports = []
    if args.paths:
        try:
            reports.append(pacs.send_files(settings, args.paths, progress=progress, queue=queue))
        except pacs.PacsError as exc:
            raise CliError(str(exc)) from None
    if args.retry_queue:
        if queue is None:
            raise CliError("--retry-queue and --no-queue exclude each other")
        try:
            reports.append(pacs.retry_queue(settings, queue=queue, progress=progress))
        except pacs.PacsError as exc:  # the queue's lock is held by a process that does not let go
            raise CliError(str(exc)) from None
    for rep in reports:
        if rep.ok:
            print(rep.summary())
            continue
        where = f" in the retry queue ({queue.path})" if queue is not None and rep.queued else ""
        if rep.sent == 0 and rep.error:
            msg = rep.error
            if rep.queued:
                msg += f"; {rep.queued} file(s) kept{where}"
            raise CliError(msg)
        print(f"cxrdesk: {rep.summary()}{where}", file=sys.stderr)
        rc = 1
    return rc
