"""Core: no Qt below here. Strictly offline: no code path may reach a model hub."""
import os as _os

for _k, _v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1"),
               ("DIFFUSERS_VERBOSITY", "error"), ("TRANSFORMERS_VERBOSITY", "error"),
               # Threads that sleep instead of spinning: on a shared 2-core machine the default
               # spin-wait made 2-thread runs many times slower whenever another process was busy.
               ("OMP_WAIT_POLICY", "PASSIVE")):
    _os.environ.setdefault(_k, _v)
