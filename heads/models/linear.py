"""The thesis's linear fusion model (§8.2.2): text and image each down-projected to half their
width, concatenated, a dense layer with GELU, a single-layer BiLSTM over the fused sequence,
a CRF. ``--modality text`` or ``image`` drops the other branch (the thesis's unimodal models).

An example without a usable image gets a zero image branch, so it is tagged from its text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from heads.data import Batch
from heads.dropout import Dropout
from heads.tagger import HEADS, BiLSTM, Dims, HeadHyper, Tagger


@dataclass
class LinearFusionHyper(HeadHyper):
    fusion: int = 256  # width of the dense fusion layer
    hidden: int = 128  # BiLSTM units per direction (128: 4x cheaper than 256 on a CPU, README)


@HEADS.register("linear", fusion=True)
class LinearFusion(Tagger):
    Hyper = LinearFusionHyper
    modalities = ("both", "text", "image")
    description = "linear fusion: halved projections, concat, dense+GELU, BiLSTM, CRF (thesis 8.2.2)"

    def __init__(self, tags: list[str], dims: Dims, hyper: LinearFusionHyper, modality: str = "both") -> None:
        super().__init__(tags, dims, hyper, modality)
        self.drop = Dropout(hyper.dropout)
        width = 0
        if modality in ("both", "text"):
            self.text_proj = nn.Linear(dims.text, dims.text // 2)
            width += dims.text // 2
        if modality in ("both", "image"):
            self.image_proj = nn.Linear(dims.image, dims.image // 2)
            width += dims.image // 2
        self.fusion = nn.Sequential(nn.Linear(width, hyper.fusion), nn.GELU())
        self.lstm = BiLSTM(hyper.fusion, hyper.hidden)
        self.out = nn.Linear(self.lstm.size_out, len(tags))

    @classmethod
    def needs(cls, hyper: HeadHyper, modality: str, has_text: bool) -> frozenset[str]:
        return frozenset({"text", "image"} if modality == "both" else {modality})

    def emissions(self, batch: Batch) -> Tensor:
        parts = []
        if self.modality in ("both", "text"):
            parts.append(self.text_proj(self.drop(batch.text)))
        if self.modality in ("both", "image"):
            assert batch.image is not None and batch.has_image is not None
            image = self.image_proj(self.drop(batch.image)) * batch.has_image.unsqueeze(1).to(
                batch.image.dtype
            )
            parts.append(image.unsqueeze(1).expand(-1, batch.mask.shape[1], -1))
        fused = self.fusion(torch.cat(parts, dim=-1))
        return self.out(self.drop(self.lstm(fused, batch.mask)))

    def component_of(self, name: str) -> str:
        return {
            "text_proj": "text",
            "image_proj": "vision",
            "fusion": "fusion",
            "lstm": "inner_lstm",
            "out": "dense",
        }[name.split(".")[0]]
