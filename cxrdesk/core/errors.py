"""The exception types of model loading and generation."""


class PipelineError(Exception):
    """A user-facing problem with a model or a request (one readable line)."""


class ModelLoadError(PipelineError):
    """A model folder that cannot be loaded."""


class GenerationCancelled(Exception):
    """A generation stopped by its cancel event."""
