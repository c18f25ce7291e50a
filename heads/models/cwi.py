"""The preprint's Character-Word-Image model (CWI, §3.1) and its attention variant.

- Characters: an embedding and a stack of 1-D convolutions with growing kernels (2, 3, 4) and
  doubling filters (16, 32, 64), each max-pooled over the word and concatenated (the skip
  connections of the preprint's figure 4). The preprint's targeted dropout, group norm and
  SineReLU are kept as group norm + SineReLU + ordinary dropout.
- Words: cached encoder features (``--text``), since GloVe/fastText are not available here,
  or a trainable embedding when ``--text none``.
- Image: the top-5 ImageNet label words of the example's image (``--vision labels``),
  embedded and read by an LSTM; its last state joins every word. No image: zeros.
- ``cwi``: the three are concatenated, then BiLSTM and CRF. ``cwi-attention``: each is
  projected to one width and a modality attention (a softmax over the three per word, as in
  the preprint's equations 14-16) mixes them before the BiLSTM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from heads.data import Batch
from heads.dropout import Dropout
from heads.tagger import HEADS, BiLSTM, Dims, HeadHyper, Tagger, missing_bf16_lstm
from heads.vocab import MAX_CHARS

_SINE_SCALE = 0.0025 * math.sqrt(2)  # epsilon (sin x - cos x) = epsilon sqrt(2) sin(x - pi/4)


class _SineReLUFunction(torch.autograd.Function):
    """One ``where`` and one cosine in the backward pass; autograd's chain through ``where``,
    ``mul`` and ``sin`` took two ``where`` and two multiplications over the whole tensor (the
    activation was a sixth of a CWI training step)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ANN001 - torch's signature
        ctx.save_for_backward(x)
        return torch.where(x > 0, x, torch.sin(x - math.pi / 4).mul_(_SINE_SCALE))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001
        (x,) = ctx.saved_tensors
        slope = torch.cos(x - math.pi / 4).mul_(_SINE_SCALE)
        return grad * torch.where(x > 0, 1.0, slope).to(grad.dtype)


class SineReLU(nn.Module):
    """ReLU for x > 0, epsilon * (sin x - cos x) below (preprint eq. 12), epsilon = 0.0025."""

    def forward(self, x: Tensor) -> Tensor:
        # sin x - cos x = sqrt(2) sin(x - pi/4): one transcendental instead of two
        return _SineReLUFunction.apply(x)


WIDTHS = (8, 12, MAX_CHARS)  # characters a word is padded to, by its own length


class CharCNN(nn.Module):
    def __init__(
        self,
        n_chars: int,
        embedding: int = 32,
        filters: tuple[int, ...] = (16, 32, 64),
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_chars, embedding, padding_idx=0)
        convs, posts, width = [], [], embedding
        for kernel, n in zip((2, 3, 4), filters):
            # padding k // 2 on both sides, cropped back to the word's length in forward: the
            # even kernels (2, 4) have no symmetric "same" padding.
            convs.append(nn.Conv1d(width, n, kernel, padding=kernel // 2))
            posts.append(nn.Sequential(nn.GroupNorm(4, n), SineReLU(), Dropout(dropout)))
            width = n
        self.convs = nn.ModuleList(convs)
        self.posts = nn.ModuleList(posts)
        self.size_out = sum(filters)

    def forward(self, chars: Tensor) -> Tensor:
        """(B, T, C) character ids -> (B, T, sum(filters)); only real words are computed (a
        padded batch is often half padding), and each distinct word once (a training batch of
        64 tweets holds 35-42 % repeats: "the", "RT", ":", "@"). Padded positions come back
        as zeros. In training the copies of a word share their dropout masks in the CNN.

        Each word is padded to the first of ``WIDTHS`` that holds it, whatever else is in the
        batch: its features never depend on its neighbours (the group norm sees the padding),
        and a batch with one 20-character URL no longer pads every word to 20 (90 % of T17's
        words have at most 8 characters: about 8.5 positions a word instead of 20).
        """
        b, t, c = chars.shape
        real = chars[:, :, 0] != 0  # every real word has at least one character
        words, copies = torch.unique(chars[real], dim=0, return_inverse=True)  # (N, C), (words,)
        if words.shape[1] < WIDTHS[-1]:
            words = nn.functional.pad(words, (0, WIDTHS[-1] - words.shape[1]))
        lengths = (words != 0).sum(1)
        pooled = words.new_zeros((words.shape[0], self.size_out), dtype=torch.float32)
        low = 0
        for width in WIDTHS:
            group = ((lengths > low) & (lengths <= width)).nonzero().squeeze(1)
            low = width
            if group.numel():
                out = self._encode(words[group, :width])
                pooled = pooled.to(out.dtype).index_copy(0, group, out)
        result = chars.new_zeros((b, t, self.size_out), dtype=pooled.dtype)
        result[real] = pooled[copies]
        return result

    def _encode(self, words: Tensor) -> Tensor:
        """(N, W) ids -> (N, sum(filters)): convolutions, max over the word's own characters."""
        width = words.shape[1]
        pad = (words == 0).unsqueeze(1)
        x = self.embedding(words).transpose(1, 2)  # (N, E, W)
        pooled = []
        for conv, post in zip(self.convs, self.posts):
            x = post(conv(x)[..., :width])
            pooled.append(x.masked_fill(pad, -1e4).max(dim=2).values)
        return torch.cat(pooled, dim=1)


class LabelWordsLSTM(nn.Module):
    def __init__(self, n_labels: int, embedding: int = 50, hidden: int = 100) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_labels, embedding, padding_idx=0)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True)
        self.size_out = hidden

    def forward(self, label_ids: Tensor) -> Tensor:
        """(B, 5) class ids + 1 (0: none) -> (B, hidden); zeros where the example has no labels."""
        embedded = self.embedding(label_ids)
        try:
            _, (h, _) = self.lstm(embedded)
        except RuntimeError as err:
            if not missing_bf16_lstm(err):
                raise
            with torch.autocast(embedded.device.type, enabled=False):
                _, (h, _) = self.lstm(embedded.float())
        return h[-1] * (label_ids[:, :1] > 0).to(h.dtype)


@dataclass
class CWIHyper(HeadHyper):
    word: int = 256  # cached features are projected to this width (or the trainable embedding's width)
    char_embedding: int = 32
    label_embedding: int = 50
    label_hidden: int = 100
    hidden: int = 128  # BiLSTM units per direction
    attention_width: int = 128  # cwi-attention: the common width of the three feature sets


@HEADS.register("cwi", grid_order=1)
class CWI(Tagger):
    Hyper = CWIHyper
    modalities = ("both", "text")
    description = "CWI: char CNN + word features + image label words (LSTM), BiLSTM, CRF (preprint 3.1)"
    attention = False

    def __init__(self, tags: list[str], dims: Dims, hyper: CWIHyper, modality: str = "both") -> None:
        super().__init__(tags, dims, hyper, modality)
        self.drop = Dropout(hyper.dropout)
        self.chars = CharCNN(dims.chars, hyper.char_embedding)
        if dims.text:
            self.words = nn.Sequential(nn.Linear(dims.text, hyper.word), nn.GELU())
        else:
            self.words = nn.Embedding(dims.words, hyper.word, padding_idx=0)
        sizes = [self.chars.size_out, hyper.word]
        if modality == "both":
            self.labels = LabelWordsLSTM(dims.labels, hyper.label_embedding, hyper.label_hidden)
            sizes.append(self.labels.size_out)
        if self.attention:
            w = hyper.attention_width
            self.to_common = nn.ModuleList(nn.Linear(s, w) for s in sizes)
            self.score = nn.Sequential(nn.Linear(w, w), nn.Tanh(), nn.Linear(w, 1, bias=False))
            width = w
        else:
            width = sum(sizes)
        self.lstm = BiLSTM(width, hyper.hidden)
        self.out = nn.Linear(self.lstm.size_out, len(tags))

    @classmethod
    def needs(cls, hyper: HeadHyper, modality: str, has_text: bool) -> frozenset[str]:
        needs = {"char_ids", "text" if has_text else "word_ids"}
        if modality == "both":
            needs.add("label_ids")
        return frozenset(needs)

    def features(self, batch: Batch) -> list[Tensor]:
        parts = [self.chars(batch.char_ids)]
        parts.append(
            self.words(self.drop(batch.text)) if batch.text is not None else self.words(batch.word_ids)
        )
        if self.modality == "both":
            image = self.labels(batch.label_ids)
            parts.append(image.unsqueeze(1).expand(-1, batch.mask.shape[1], -1))
        return parts

    def emissions(self, batch: Batch) -> Tensor:
        parts = self.features(batch)
        if self.attention:
            common = torch.stack(
                [torch.tanh(p(x)) for p, x in zip(self.to_common, parts)], dim=2
            )  # (B, T, M, w)
            weights = self.score(common).softmax(dim=2)  # (B, T, M, 1): how much each modality counts
            fused = (weights * common).sum(dim=2)
        else:
            fused = torch.cat(parts, dim=-1)
        return self.out(self.drop(self.lstm(self.drop(fused), batch.mask)))

    def default_learning_rates(self) -> dict[str, float]:
        # Without cached features the word embedding and the character CNN learn from scratch.
        return {} if self.dims.text else {"text": 1e-2}

    def component_of(self, name: str) -> str:
        return {
            "chars": "text",
            "words": "text",
            "labels": "vision",
            "to_common": "fusion",
            "score": "fusion",
            "lstm": "inner_lstm",
            "out": "dense",
        }[name.split(".")[0]]


@HEADS.register("cwi-attention", grid_order=1)
class CWIAttention(CWI):
    description = "CWI with modality attention over the char, word and image feature sets (preprint 3.1)"
    attention = True
