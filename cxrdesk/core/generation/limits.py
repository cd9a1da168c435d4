"""What a generation request may ask for (no heavy imports: lesson files and the CLI check against these)."""

SIZES = (256, 512, 768)
MAX_STEPS = 200
MAX_SEED = 2 ** 63 - 1  # what torch, numpy and the JSON in PNG/DICOM all hold
MAX_PROMPT_CHARS = 4000  # the encoder reads 64 tokens; longer text is a mistake or an attack
