"""cxrdesk: synthetic chest X-rays from radiology text, for teaching. Not for diagnosis."""
__version__ = "0.1.0"

__all__ = ["Pipeline", "__version__"]


def __getattr__(name):
    # Lazy: importing cxrdesk (for --version, the GUI's first paint) must not import torch.
    if name == "Pipeline":
        from .core.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
