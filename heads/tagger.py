"""What every torch head shares: emissions -> CRF (or softmax) loss and decoding, components.

A head is one file in ``heads/models/`` with a ``@HEADS.register("name")`` line (the package
imports every module in it): a subclass of ``Tagger`` with a hyperparameter dataclass. The base class owns the output layer's loss and
decoding, so each head only says how it turns a batch into per-word tag scores, which
inputs it needs, and which component each of its parameters belongs to (the optimiser gives
each component its own learning rate).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import _VF, Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from featurize.errors import ConfigError
from featurize.registry import Registry
from heads.crf import LinearChainCRF
from heads.data import Batch

COMPONENTS = ("text", "vision", "fusion", "inner_lstm", "crf", "dense")
CRF_MODULE = "crf"  # the attribute holding the output CRF: its parameters are the crf component
MODALITIES = ("both", "text", "image")


@dataclass
class Dims:
    """Input widths a head is built for; saved with the checkpoint and checked on load."""

    text: int = 0
    image: int = 0
    words: int = 0  # word vocabulary size (heads with their own embeddings)
    chars: int = 0
    labels: int = 1001  # ImageNet classes + padding


@dataclass
class HeadHyper:
    """Options every head has. Subclasses add their own fields with defaults."""

    crf: bool = True
    constrain: str = "decode"  # BIO transition constraints: none, decode or both (train and decode)
    dropout: float = 0.3


class Tagger(nn.Module):
    Hyper: ClassVar[type[HeadHyper]] = HeadHyper
    modalities: ClassVar[tuple[str, ...]] = ("text",)
    description: ClassVar[str] = ""

    def __init__(self, tags: list[str], dims: Dims, hyper: HeadHyper, modality: str = "text") -> None:
        super().__init__()
        if modality not in self.modalities:
            raise ConfigError(f"this head takes --modality {', '.join(self.modalities)}, not {modality!r}")
        self.tags = tags
        self.dims = dims
        self.hyper = hyper
        self.modality = modality
        self.crf = LinearChainCRF(tags, hyper.constrain) if hyper.crf else None

    # -- what a head defines --------------------------------------------------------------
    @classmethod
    def needs(cls, hyper: HeadHyper, modality: str, has_text: bool) -> frozenset[str]:
        """Batch fields this head reads (text, image, patches, word_ids, char_ids, label_ids)."""
        return frozenset({"text"})

    def emissions(self, batch: Batch) -> Tensor:  # (B, T, K)
        raise NotImplementedError

    def component_of(self, name: str) -> str:
        """The optimiser component of a parameter, by its dotted name."""
        raise NotImplementedError

    def default_learning_rates(self) -> dict[str, float]:
        """Per-component rates this head needs beyond the preset for cached features (a word
        embedding trained from scratch needs 10x the rate of a projection of frozen features)."""
        return {}

    # -- shared ---------------------------------------------------------------------------
    def loss(self, batch: Batch, class_weights: Tensor | None = None) -> Tensor:
        scores = self.emissions(batch).float()  # the CRF and the softmax in fp32 under bf16 autocast
        if self.crf is not None:
            return self.crf.nll(scores, batch.tags, batch.mask)
        return F.cross_entropy(scores[batch.mask], batch.tags[batch.mask], weight=class_weights)

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[list[int]]:
        scores = self.emissions(batch)
        if self.crf is not None:
            return self.crf.decode(scores, batch.mask)
        best = scores.argmax(-1)
        return [best[r, : int(n)].tolist() for r, n in enumerate(batch.lengths)]

    @torch.no_grad()
    def tag_probabilities(self, batch: Batch) -> Tensor:
        """(B, T, K): the CRF's marginals (forward-backward), or the softmax of a linear output."""
        scores = self.emissions(batch).float()
        if self.crf is not None:
            return self.crf.marginals(scores, batch.mask).exp()
        return scores.softmax(-1)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups: dict[str, list[nn.Parameter]] = {c: [] for c in COMPONENTS}
        for name, param in self.named_parameters():
            component = "crf" if name.partition(".")[0] == CRF_MODULE else self.component_of(name)
            if component not in groups:
                raise RuntimeError(f"{type(self).__name__}: {name} maps to unknown component {component}")
            groups[component].append(param)
        return {c: p for c, p in groups.items() if p}


def hyper_from(cls: type[HeadHyper], values: dict[str, object]) -> HeadHyper:
    """Build a head's hyperparameters from strings or JSON values, refusing unknown names."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for this head; it takes: {', '.join(sorted(known))}"
        )
    defaults = cls()
    converted: dict[str, object] = {}
    for name, value in values.items():
        default = getattr(defaults, name)
        if isinstance(value, str) and not isinstance(default, str):
            try:
                if isinstance(default, bool):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    value = value.lower() in ("true", "1", "yes")
                elif isinstance(default, int):
                    value = int(value)
                elif isinstance(default, float):
                    value = float(value)
            except ValueError:
                raise ConfigError(f"option {name}={value!r}: expected {type(default).__name__}") from None
        converted[name] = value
    return cls(**converted)


def missing_bf16_lstm(err: RuntimeError) -> bool:
    """oneDNN has no bf16 LSTM primitive for some shapes on CPUs without native bf16 (seen on an
    AMD EPYC without AVX512-BF16: "could not create a primitive descriptor for the LSTM forward
    propagation primitive"). Callers then run that LSTM in fp32; shapes that work keep the fast
    path, so results where it ran are unchanged."""
    return "primitive descriptor" in str(err)


class BiLSTM(nn.Module):
    """A bidirectional LSTM over padded batches, run packed so padding costs nothing.

    Under bf16 autocast (``TrainConfig.precision``) it runs each direction as a dense LSTM
    instead: torch casts a dense LSTM to bf16 (oneDNN; about 2x faster fwd+bwd here) but
    leaves a packed one in fp32. The backward direction reads each sequence reversed within
    its own length, so padding never enters a valid position: the same recurrence as packed.
    """

    def __init__(self, size_in: int, hidden: int, layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(size_in, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.size_out = 2 * hidden

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if torch.is_autocast_enabled(x.device.type):
            try:
                return self._dense(x, mask)
            except RuntimeError as err:
                if not missing_bf16_lstm(err):
                    raise  # else the packed fp32 recurrence below, what torch itself would run
        lengths = mask.sum(1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out

    def _dense(self, x: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1, keepdim=True)
        steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
        # position t of the reversed sequence holds word len-1-t; padding stays where it is
        flip = torch.where(steps < lengths, lengths - 1 - steps, steps)
        weights = self.lstm._flat_weights  # l0 forward, l0 reverse, l1 forward, ... (4 each)
        h = x
        for layer in range(self.lstm.num_layers):
            fwd = weights[8 * layer : 8 * layer + 4]
            rev = weights[8 * layer + 4 : 8 * layer + 8]
            out_f = _VF.lstm(h, self._zeros(h), fwd, True, 1, 0.0, self.training, False, True)[0]
            h_rev = h.gather(1, flip.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
            out_r = _VF.lstm(h_rev, self._zeros(h), rev, True, 1, 0.0, self.training, False, True)[0]
            out_r = out_r.gather(1, flip.unsqueeze(-1).expand(-1, -1, out_r.shape[-1]))
            h = torch.cat([out_f, out_r], dim=-1)
        return h * mask.unsqueeze(-1).to(h.dtype)  # zeros at padding, as pad_packed_sequence gives

    def _zeros(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = x.new_zeros(1, x.shape[0], self.lstm.hidden_size)
        return z, z


# Every head, found by name. Traits: ``family`` (how it trains and loads: heads.families);
# ``grid_order`` (its place in the grid's longest-first schedule, None: by its modality);
# ``fusion`` (a thesis fusion head: its labels always name the modality); ``own_words`` (what
# it reads without --text, for reports: long and short form).
HEADS: Registry[type] = Registry(
    "head",
    defaults={"family": "torch", "grid_order": None, "fusion": False, "own_words": ("word ids", "words")},
    registrations="heads.models",
)
