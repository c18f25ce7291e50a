"""The thesis's partial-prediction model (§8.2.3): a text classifier and an image classifier
each predict the tags; a dense layer over their two softmax outputs makes the final
prediction (CRF optional on top). ``--modality text`` / ``image`` keeps one classifier.

The text classifier is projection + BiLSTM over the cached word features; the image
classifier sees one vector per example through the thesis's up-/down-projection adapter
(§8.3.2), so its a-priori prediction is the same for every word of an example.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from heads.data import Batch
from heads.dropout import Dropout
from heads.tagger import HEADS, BiLSTM, Dims, HeadHyper, Tagger


@dataclass
class PartialHyper(HeadHyper):
    proj: int = 256
    hidden: int = 128  # text classifier BiLSTM units per direction (0: a dense text classifier)
    image_up: int = 1024  # the image adapter's up-projection
    aux: float = 1.0  # weight of each partial classifier's own cross-entropy in the loss (0: final loss only)


@HEADS.register("partial", fusion=True)
class PartialPrediction(Tagger):
    Hyper = PartialHyper
    modalities = ("both", "text", "image")
    description = (
        "partial prediction: text and image classifiers, dense layer over their softmaxes (thesis 8.2.3)"
    )

    def __init__(self, tags: list[str], dims: Dims, hyper: PartialHyper, modality: str = "both") -> None:
        super().__init__(tags, dims, hyper, modality)
        k = len(tags)
        self.drop = Dropout(hyper.dropout)
        inputs = 0
        if modality in ("both", "text"):
            self.text_proj = nn.Sequential(nn.Linear(dims.text, hyper.proj), nn.GELU())
            self.text_lstm = BiLSTM(hyper.proj, hyper.hidden) if hyper.hidden else None
            self.text_out = nn.Linear(self.text_lstm.size_out if self.text_lstm else hyper.proj, k)
            inputs += k
        if modality in ("both", "image"):
            self.image_adapter = nn.Sequential(
                nn.Linear(dims.image, hyper.image_up),
                nn.GELU(),
                nn.Linear(hyper.image_up, hyper.proj),
                nn.GELU(),
            )
            self.image_out = nn.Linear(hyper.proj, k)
            inputs += k
        self.final = nn.Linear(inputs, k)

    @classmethod
    def needs(cls, hyper: HeadHyper, modality: str, has_text: bool) -> frozenset[str]:
        return frozenset({"text", "image"} if modality == "both" else {modality})

    def partial_logits(self, batch: Batch) -> list[Tensor]:
        parts = []
        if self.modality in ("both", "text"):
            x = self.text_proj(self.drop(batch.text))
            if self.text_lstm is not None:
                x = self.text_lstm(x, batch.mask)
            parts.append(self.text_out(self.drop(x)))
        if self.modality in ("both", "image"):
            assert batch.image is not None and batch.has_image is not None
            image = self.image_out(self.drop(self.image_adapter(self.drop(batch.image))))
            image = image * batch.has_image.to(image.dtype).unsqueeze(1)
            parts.append(image.unsqueeze(1).expand(-1, batch.mask.shape[1], -1))
        return parts

    def emissions(self, batch: Batch) -> Tensor:
        return self.final(torch.cat([p.log_softmax(-1) for p in self.partial_logits(batch)], dim=-1))

    def loss(self, batch: Batch, class_weights: Tensor | None = None) -> Tensor:
        """The final prediction's loss plus, weighted by ``aux``, each classifier's own, so the
        a-priori predictions are predictions and not just features (the softmax between them
        and the final layer otherwise starves them of gradient early in training)."""
        parts = self.partial_logits(batch)
        scores = self.final(torch.cat([p.log_softmax(-1) for p in parts], dim=-1))
        if self.crf is not None:
            total = self.crf.nll(scores, batch.tags, batch.mask)
        else:
            total = F.cross_entropy(scores[batch.mask], batch.tags[batch.mask], weight=class_weights)
        if self.hyper.aux:
            for p in parts:
                total = total + self.hyper.aux * F.cross_entropy(
                    p[batch.mask], batch.tags[batch.mask], weight=class_weights
                )
        return total

    def component_of(self, name: str) -> str:
        first = name.split(".")[0]
        if first.startswith("text"):
            return "inner_lstm" if first == "text_lstm" else "text"
        if first.startswith("image"):
            return "vision"
        return "dense"
