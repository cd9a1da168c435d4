"""Core: no Qt below here. Strictly offline: no code path may reach a model hub."""
import os as _os

for _k, _v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1"),
               ("DIFFUSERS_VERBOSITY", "error"), ("TRANSFORMERS_VERBOSITY", "error")):
    _os.environ.setdefault(_k, _v)
