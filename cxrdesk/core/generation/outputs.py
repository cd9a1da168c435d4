"""What a generation returns: the film, its parameters, attention maps, step metrics and timings."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GenerationResult:
    image: np.ndarray  # float32 (H, W) in [0, 1]
    params: dict
    attention: dict = field(default_factory=dict)  # word -> float32 (H, W) in [0, 1]
    step_metrics: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.params["seed"])

    @property
    def image_u16(self) -> np.ndarray:
        """The stored image: 12-bit values (0..4095) in a uint16 array (pngio.to_stored12)."""
        from ..imaging.pngio import to_stored12

        return to_stored12(self.image)

    @property
    def image_u8(self) -> np.ndarray:
        return np.round(np.clip(self.image, 0, 1) * 255).astype(np.uint8)

    @property
    def pil(self):
        from PIL import Image

        return Image.fromarray(self.image_u8, mode="L")


def metrics_at_step(image: np.ndarray, step: int) -> dict:
    """Image metrics of one step's preview (metrics.image_metrics) with the step number."""
    from ..imaging.metrics import image_metrics

    m = image_metrics(image)
    m["step"] = step
    return m
