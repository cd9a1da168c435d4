"""cxrdesk: synthetic chest X-rays from radiology text, for teaching. Not for diagnosis."""
import os as _os

__version__ = "0.1.0"

# No network at run time: ONNX Runtime's telemetry (Microsoft 1DS, which looks up
# mobile.events.data.microsoft.com when its first session starts, on Linux too) is off before anything
# can import it; core.generation.onnx_graphs also calls onnxruntime.disable_telemetry_events().
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = ["Pipeline", "__version__"]


def __getattr__(name):
    # Lazy: importing cxrdesk (for --version, the GUI's first paint) must not import torch.
    if name == "Pipeline":
        from .core.generation.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
