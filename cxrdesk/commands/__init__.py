"""CLI subcommands: each module defines ``register(subparsers)`` adding its commands.

Commands signal a user error by raising :class:`CliError` (one line, exit 2); the entry point
turns it into ``cxrdesk: error: ...`` without a traceback.
"""


class CliError(Exception):
    pass


def interval_arg(value: str) -> tuple[float, float]:
    """argparse type for ``--guidance-interval LO,HI`` (fractions of the noise schedule)."""
    import argparse

    from ..core.errors import PipelineError
    from ..core.generation.sampling import check_interval

    try:
        return check_interval(value.replace(" ", "").split(","))
    except PipelineError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


INTERVAL_HELP = ("apply guidance only where the timestep t satisfies LO <= t/T <= HI (fractions of the noise "
                 "schedule, 0 = clean, 1 = pure noise); steps outside it run the UNet once instead of twice. "
                 "0,1 is everywhere")

CONDITION_NOISE_HELP = ("condition-annealed sampling (CADS): noise of this scale on the prompt's embedding at the "
                        "noisiest steps (t/T above 0.6, fully above 0.9), for more varied films of one prompt; 0 is "
                        "off; not in fast mode")

MODULES = ["generate", "edit", "lesson", "train", "evaluate", "dicom", "enhance"]
