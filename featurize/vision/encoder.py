"""What every vision encoder offers the cache builder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class VisionOptions:
    patches: bool = False  # also return the patch grid (ViT) for cross-attention heads
    batch_size: int | None = None  # None: the encoder's own default (measured, see torch_encoder.py)
    device: str = "auto"

    def describe(self) -> dict[str, object]:
        """What changes the stored numbers (batch size and device only change speed)."""
        return {"patches": self.patches}


class VisionEncoder:
    """Per-image features. The model is loaded on first use, never to compute a key.

    ``encode`` takes RGB images (already EXIF-rotated and converted by
    ``featurize.vision.images.load_image``) and returns arrays whose first axis is the image:
    ``pooled`` (n, d) float32 for feature encoders, plus ``patches`` (n, p, d) float32 when
    ``options.patches``; the ``labels`` encoder returns ``top5_ids`` (n, 5) int64 and
    ``top5_probs`` (n, 5) float32 and names its classes in ``class_names()``.
    """

    name: str

    def identity(self) -> dict[str, object]:
        raise NotImplementedError

    def load(self) -> None:
        raise NotImplementedError

    def encode(self, images: list[Image.Image]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def class_names(self) -> list[str] | None:
        return None
