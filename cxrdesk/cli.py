"""The `cxrdesk` command: the GUI by default, subcommands for headless work."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .commands import MODULES, CliError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cxrdesk", description="Synthetic chest X-rays for teaching. Not for diagnosis.")
    p.add_argument("--version", action="version", version=f"cxrdesk {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    gui = sub.add_parser("gui", help="start the desktop application (the default)")
    gui.add_argument("--model", help="model folder to load instead of the embedded default")
    gui.set_defaults(func=run_gui)
    for name in MODULES:
        try:
            mod = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.commands.{name}":
                continue
            raise
        mod.register(sub)
    return p


def run_gui(args) -> int:
    from .ui.app import run

    return run(model=getattr(args, "model", None))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        args = parser.parse_args(["gui", *(argv or sys.argv[1:])])
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"cxrdesk: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the system refuses (too long, no permission, ...): one line, no traceback
        where = f": {str(exc.filename)[:120]}" if exc.filename else ""
        print(f"cxrdesk: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cxrdesk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
