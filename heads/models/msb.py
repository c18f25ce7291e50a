"""The preprint's multimodal small BERT (MSB) on cached features: the encoder read each tweet
with the image's label words or its caption as a second segment (``--context labels`` or
``captions`` at featurize time), and a linear layer (or a CRF, the default) tags the words.
``--context none`` is its text-only variant on the same encoder.

The preprint fine-tuned a small BERT; here the encoder is frozen and only the output layer
learns (issue 6 fine-tunes). ``hidden > 0`` adds one dense GELU layer before the output.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from heads.data import Batch
from heads.dropout import Dropout
from heads.tagger import HEADS, Dims, HeadHyper, Tagger


@dataclass
class MSBHyper(HeadHyper):
    hidden: int = 0


@HEADS.register("msb", grid_order=4)
class MultimodalSmallBert(Tagger):
    Hyper = MSBHyper
    description = "MSB: encoder features with label words/captions as 2nd segment (--context), linear or CRF"

    def __init__(self, tags: list[str], dims: Dims, hyper: MSBHyper, modality: str = "text") -> None:
        super().__init__(tags, dims, hyper, modality)
        self.drop = Dropout(hyper.dropout)
        self.dense = (
            nn.Sequential(nn.Linear(dims.text, hyper.hidden), nn.GELU()) if hyper.hidden else nn.Identity()
        )
        self.out = nn.Linear(hyper.hidden or dims.text, len(tags))

    def emissions(self, batch: Batch) -> Tensor:
        return self.out(self.drop(self.dense(self.drop(batch.text))))

    def component_of(self, name: str) -> str:
        return "dense"
