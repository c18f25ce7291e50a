"""The thesis's cross-attention model (§8.2.1): text attends to the image (its patch grid when
cached with ``--patches``, else the pooled vector as a single patch) and the image attends to
the text; residual additions, concatenation, a classifier, CRF optional.

Examples without a usable image get a zero image side, so they are tagged from their text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from heads.data import Batch
from heads.dropout import Dropout
from heads.tagger import HEADS, BiLSTM, Dims, HeadHyper, Tagger


@dataclass
class CrossAttentionHyper(HeadHyper):
    width: int = 256  # both sides are projected to this width
    heads: int = 4
    patches: bool = False  # attend over the cached patch grid instead of the pooled vector
    lstm: int = 0  # BiLSTM units per direction over the fused sequence (0: none, as in the thesis)


@HEADS.register("cross-attention", fusion=True)
class CrossAttention(Tagger):
    Hyper = CrossAttentionHyper
    modalities = ("both", "text", "image")
    description = (
        "cross-attention fusion: text<->image attention, residuals, concat, classifier (thesis 8.2.1)"
    )

    def __init__(
        self, tags: list[str], dims: Dims, hyper: CrossAttentionHyper, modality: str = "both"
    ) -> None:
        super().__init__(tags, dims, hyper, modality)
        w = hyper.width
        self.drop = Dropout(hyper.dropout)
        width = 0
        if modality in ("both", "text"):
            self.text_proj = nn.Sequential(nn.Linear(dims.text, w), nn.GELU())
            width += w
        if modality in ("both", "image"):
            self.image_proj = nn.Sequential(nn.Linear(dims.image, w), nn.GELU())
            width += w
        if modality == "both":
            self.text_to_image = nn.MultiheadAttention(
                w, hyper.heads, dropout=hyper.dropout, batch_first=True
            )
            self.image_to_text = nn.MultiheadAttention(
                w, hyper.heads, dropout=hyper.dropout, batch_first=True
            )
        self.lstm = BiLSTM(width, hyper.lstm) if hyper.lstm else None
        self.out = nn.Linear(self.lstm.size_out if self.lstm else width, len(tags))

    @classmethod
    def needs(cls, hyper: HeadHyper, modality: str, has_text: bool) -> frozenset[str]:
        image = "patches" if getattr(hyper, "patches", False) else "image"
        return frozenset({"text", image} if modality == "both" else {"text" if modality == "text" else image})

    def _image(self, batch: Batch) -> Tensor:
        """(B, P, w) projected image patches (P = 1 for the pooled vector), zero without an image."""
        assert batch.has_image is not None
        grid = batch.patches if self.hyper.patches and batch.patches is not None else batch.image.unsqueeze(1)  # type: ignore[union-attr]
        present = batch.has_image.to(grid.dtype).view(-1, 1, 1)
        return self.image_proj(self.drop(grid)) * present

    def emissions(self, batch: Batch) -> Tensor:
        length = batch.mask.shape[1]
        parts = []
        if self.modality == "text":
            parts.append(self.text_proj(self.drop(batch.text)))
        elif self.modality == "image":
            parts.append(self._image(batch).mean(1, keepdim=True).expand(-1, length, -1))
        else:
            text = self.text_proj(self.drop(batch.text))
            image = self._image(batch)
            present = batch.has_image.to(text.dtype).view(-1, 1, 1)  # type: ignore[union-attr]
            attended, _ = self.text_to_image(text, image, image, need_weights=False)
            text = text + attended * present  # residual; no image, nothing to attend to
            back, _ = self.image_to_text(image, text, text, key_padding_mask=~batch.mask, need_weights=False)
            image = (image + back * present).mean(1, keepdim=True)
            parts += [text, image.expand(-1, length, -1)]
        fused = self.drop(torch.cat(parts, dim=-1))
        if self.lstm is not None:
            fused = self.drop(self.lstm(fused, batch.mask))
        return self.out(fused)

    def component_of(self, name: str) -> str:
        return {
            "text_proj": "text",
            "image_proj": "vision",
            "text_to_image": "fusion",
            "image_to_text": "fusion",
            "lstm": "inner_lstm",
            "out": "dense",
        }[name.split(".")[0]]
