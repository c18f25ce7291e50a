"""``cnn``: pooled features of an ImageNet CNN (EfficientNet-Lite0 by default, 1280-d), and
with ``--patches`` its last feature map as a grid of regions (7x7 = 49 for Lite0), the
region features that UMT-style cross-attention heads read."""

from __future__ import annotations

from typing import Any

from PIL import Image

from featurize.errors import ConfigError
from featurize.vision import VISION_ENCODERS
from featurize.vision.classifier import ClassifierEncoder, ClassifierNet, ClassifierSpec, parse_classifier
from featurize.vision.encoder import VisionOptions


class CnnEncoder(ClassifierEncoder):
    def __init__(self, options: VisionOptions, spec: ClassifierSpec, name: str = "cnn") -> None:
        super().__init__(options, spec, name)

    def identity(self) -> dict[str, object]:
        return {**self._model_identity(), "pooled": self.spec.pooling, **self.options.describe()}

    def _load(self) -> None:
        self._use(self.spec.build())

    def _encode_batch(self, images: list[Image.Image]) -> dict[str, Any]:
        net: ClassifierNet = self._model
        tokens, pooled, _ = net.run(self._transform(images).to(self.device))
        out = {"pooled": pooled}
        if self.options.patches:
            if tokens is None:
                raise ConfigError(
                    f"--vision {self.name}: {self.spec.label} has no feature map to give as patches"
                )
            out["patches"] = tokens
        return out


@VISION_ENCODERS.register("cnn", label="EfficientNet-Lite0 (ImageNet CNN)", gives="vector")
def cnn(options: VisionOptions, source: str | None) -> CnnEncoder:
    return CnnEncoder(options, parse_classifier(source, f"cnn={source}"))
