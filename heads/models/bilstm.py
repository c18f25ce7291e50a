"""The thesis's BiLSTM text module trained from scratch (§8.3.1.2): a trainable embedding of
word ids (lowercased, optionally stemmed with ``--stem``), a BiLSTM, a CRF; with ``--vision``
the example's image vector is appended to every word (the thesis's BiLSTM + image models).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from heads.data import Batch
from heads.dropout import Dropout
from heads.tagger import HEADS, BiLSTM, Dims, HeadHyper, Tagger


@dataclass
class WordBiLSTMHyper(HeadHyper):
    embedding: int = 300
    hidden: int = 128
    image_proj: int = 128  # width the image vector is projected to before it joins each word
    dropout: float = 0.5


@HEADS.register("bilstm")
class WordBiLSTM(Tagger):
    Hyper = WordBiLSTMHyper
    modalities = ("text", "both")
    description = "BiLSTM on trainable word embeddings (--stem), optional image vector; CRF (thesis 8.3.1.2)"

    def __init__(self, tags: list[str], dims: Dims, hyper: WordBiLSTMHyper, modality: str = "text") -> None:
        super().__init__(tags, dims, hyper, modality)
        self.drop = Dropout(hyper.dropout)
        self.embedding = nn.Embedding(dims.words, hyper.embedding, padding_idx=0)
        width = hyper.embedding
        if modality == "both":
            self.image_proj = nn.Sequential(nn.Linear(dims.image, hyper.image_proj), nn.GELU())
            width += hyper.image_proj
        self.lstm = BiLSTM(width, hyper.hidden)
        self.out = nn.Linear(self.lstm.size_out, len(tags))

    @classmethod
    def needs(cls, hyper: HeadHyper, modality: str, has_text: bool) -> frozenset[str]:
        return frozenset({"word_ids", "image"} if modality == "both" else {"word_ids"})

    def emissions(self, batch: Batch) -> Tensor:
        x = self.drop(self.embedding(batch.word_ids))
        if self.modality == "both":
            assert batch.image is not None and batch.has_image is not None
            image = self.image_proj(batch.image) * batch.has_image.to(x.dtype).unsqueeze(1)
            x = torch.cat([x, image.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)
        return self.out(self.drop(self.lstm(x, batch.mask)))

    def default_learning_rates(self) -> dict[str, float]:
        return {"text": 1e-2}  # the embedding is trained from scratch (measured on T17, tests/test_heads.py)

    def component_of(self, name: str) -> str:
        return {"embedding": "text", "image_proj": "vision", "lstm": "inner_lstm", "out": "dense"}[
            name.split(".")[0]
        ]
