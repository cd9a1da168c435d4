"""What a generation request may ask for (no heavy imports: lesson files and the CLI check against these)."""
from ..errors import PipelineError

SIZES = (256, 512, 768)
MAX_STEPS = 200
MAX_SEED = 2 ** 63 - 1  # what torch, numpy and the JSON in PNG/DICOM all hold
MAX_PROMPT_CHARS = 4000  # the encoder reads 64 tokens; longer text is a mistake or an attack


def check_text(what: str, text: str) -> None:
    """PipelineError unless ``text`` is UTF-8 text (no undecodable bytes, as argv may carry) of at most
    :data:`MAX_PROMPT_CHARS` characters."""
    if not isinstance(text, str):
        raise PipelineError(f"the {what} must be text, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PipelineError(f"the {what} is not valid UTF-8 text (it holds undecodable bytes)") from None
    if len(text) > MAX_PROMPT_CHARS:
        raise PipelineError(f"the {what} is too long ({len(text)} characters; at most {MAX_PROMPT_CHARS})")
