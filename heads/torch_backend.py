"""Tagging with a saved torch head: the torch family's backend of :class:`heads.predictor.Predictor`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from heads.inputs import InputSpec

IMAGE_NEEDS = frozenset({"image", "patches", "label_ids"})


class TorchBackend:
    """A torch head (``model.safetensors`` + ``config.json``), decoded by the trainer's own
    prediction function."""

    def __init__(self, folder: Path) -> None:
        from heads import checkpoint

        self.model, self.config = checkpoint.load(folder)
        self.inputs = InputSpec(**self.config["inputs"])
        self.tags = list(self.model.tags)
        self.needs = type(self.model).needs(self.model.hyper, self.model.modality, bool(self.inputs.text))
        self.head = str(self.config.get("head"))
        self.vocab = checkpoint.vocabularies(self.config)

    def tag(
        self, words: list[list[str]], features: list[np.ndarray] | None, images: dict[str, Any]
    ) -> list[list[str]]:
        from heads.trainer import predict_tags

        return predict_tags(self.model, self._batcher(words, features, images))

    def tag_scored(
        self, words: list[list[str]], features: list[np.ndarray] | None, images: dict[str, Any]
    ) -> tuple[list[list[str]], list[list[float]]]:
        """Tags and, per word, the probability of its tag (CRF marginals or softmax)."""
        from heads.trainer import predict_tags, tag_confidences

        batcher = self._batcher(words, features, images)
        tags = predict_tags(self.model, batcher)
        return tags, tag_confidences(self.model, batcher, tags)

    def _batcher(
        self, words: list[list[str]], features: list[np.ndarray] | None, images: dict[str, Any]
    ) -> Any:
        from heads import checkpoint
        from heads.data import Batcher, SplitData

        n = len(words)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(w) for w in words], out=offsets[1:])
        data = SplitData(
            "predict",
            [list(w) for w in words],
            [["O"] * len(w) for w in words],
            [str(i) for i in range(n)],
            np.concatenate(features, axis=0) if features else None,
            offsets,
        )
        if self.needs & IMAGE_NEEDS:
            width = int(self.model.dims.image) or 1
            data.has_image = np.zeros(n, dtype=bool)
            data.image = np.zeros((n, width), dtype=np.float32)
            data.label_ids = np.zeros((n, 5), dtype=np.int64)
            if "pooled" in images:
                data.image = images["pooled"]
                data.has_image = images["has_image"].copy()
            if "label_ids" in images:
                data.label_ids = images["label_ids"]
                data.has_image = data.has_image | images["has_image"]
            if "patches" in self.needs:
                data.patches = images.get("patches") or [None] * n
        checkpoint.check_dims(self.config, data.text_dim, data.image_dim if "pooled" in images else 0)
        return Batcher(data, self.tags, self.vocab, self.needs)
