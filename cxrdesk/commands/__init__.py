"""CLI subcommands: each module defines ``register(subparsers)`` adding its commands.

Commands signal a user error by raising :class:`CliError` (one line, exit 2); the entry point
turns it into ``cxrdesk: error: ...`` without a traceback.
"""


class CliError(Exception):
    pass


MODULES = ["generate", "train", "evaluate", "dicom", "enhance"]
