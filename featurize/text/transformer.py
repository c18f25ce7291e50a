"""Word features from any Hugging Face transformer encoder: subwords in, one vector per word out.

Word/subword alignment follows Hugging Face's ``run_ner.py`` (``is_split_into_words`` and
``word_ids()``); on top of that: a word that tokenizes to nothing (a lone variation selector
or a no-break space, both in Twitter-2015) is read as the unknown token so every word gets a
vector, and sequences longer than the model are cut into overlapping windows (windows.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from featurize.errors import ConfigError
from featurize.text.windows import plan_windows
from featurize.weights import WeightsSource

POOLINGS = ("first", "mean", "last")
# Models whose position table holds two slots for padding_idx: usable length is 2 shorter.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "mpnet", "camembert", "longformer"}


def parse_layers(spec: str) -> list[int]:
    """``last`` -> [-1]; ``last4`` -> [-4, -3, -2, -1]; ``-2,-1`` or ``6`` as given."""
    spec = spec.strip().lower()
    if spec == "last":
        return [-1]
    match = re.fullmatch(r"last(\d+)", spec)
    if match:
        k = int(match.group(1))
        if k < 1:
            raise ConfigError("--layers lastK needs K >= 1")
        return list(range(-k, 0))
    try:
        layers = [int(part) for part in spec.split(",")]
    except ValueError:
        raise ConfigError(
            f"--layers {spec!r}: use 'last', 'lastK' (mean of the last K) or indices like -4,-3"
        ) from None
    return layers


@dataclass(frozen=True)
class WordFeatureOptions:
    layers: str = "last4"
    pooling: str = "first"
    max_length: int | None = None
    stride: int | None = None
    batch_size: int = 32
    bf16: bool = False
    sort_by_length: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"--pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}")
        parse_layers(self.layers)
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")

    def describe(self) -> dict[str, object]:
        """What changes the stored numbers (batch size and sorting only change speed)."""
        return {
            "layers": parse_layers(self.layers),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "stride": self.stride,
            "precision": "bf16" if self.bf16 else "fp32",
        }


@dataclass
class EncodeStats:
    words: int = 0
    empty_words: int = 0
    windowed_examples: int = 0
    windows: int = 0


class TransformerWordEncoder:
    """A text encoder found by name; the model is loaded on first use, never to compute a key."""

    def __init__(self, name: str, weights: WeightsSource, options: WordFeatureOptions) -> None:
        self.name = name
        self.weights = weights
        self.options = options
        self.stats = EncodeStats()
        self._model: Any = None
        self._tokenizer: Any = None

    def identity(self) -> dict[str, object]:
        return {"encoder": self.name, "weights": self.weights.identity(), **self.options.describe()}

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own bar counts words; theirs only adds noise
        folder = self.weights.folder()
        self._tokenizer = AutoTokenizer.from_pretrained(folder)
        if not self._tokenizer.is_fast:
            raise ConfigError(f"{folder}: word alignment needs a fast tokenizer (tokenizer.json)")
        self._model = AutoModel.from_pretrained(folder)
        device = self.options.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = torch.device(device)
        self._model.to(self._device).eval()
        probe = self._tokenizer(["a"], is_split_into_words=True)
        ids, word_ids = probe["input_ids"], probe.word_ids()
        first = word_ids.index(0)
        last = len(word_ids) - 1 - word_ids[::-1].index(0)
        self._prefix, self._suffix = ids[:first], ids[last + 1 :]
        self._max_length = self._resolve_max_length()
        self.dim = int(self._model.config.hidden_size)
        n_hidden = int(self._model.config.num_hidden_layers) + 1
        self._layers = parse_layers(self.options.layers)
        for layer in self._layers:
            if not -n_hidden <= layer < n_hidden:
                raise ConfigError(
                    f"--layers {self.options.layers}: the model has {n_hidden} hidden states "
                    "(embeddings + layers)"
                )

    def _resolve_max_length(self) -> int:
        config = self._model.config
        limit = getattr(config, "max_position_embeddings", None) or 512
        if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
            limit -= 2
        tokenizer_limit = self._tokenizer.model_max_length
        if tokenizer_limit and tokenizer_limit < 1_000_000:
            limit = min(limit, tokenizer_limit)
        if self.options.max_length is not None:
            if self.options.max_length > limit:
                raise ConfigError(f"--max-length {self.options.max_length} exceeds the model's {limit}")
            limit = self.options.max_length
        if limit <= len(self._prefix) + len(self._suffix) + 1:
            raise ConfigError(f"--max-length {limit} leaves no room for words")
        return limit

    # -- encoding ------------------------------------------------------------------------
    def _word_pieces(self, sentences: list[list[str]]) -> list[list[list[int]]]:
        encoded = self._tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
        unk = self._tokenizer.unk_token_id
        result = []
        for i, words in enumerate(sentences):
            pieces: list[list[int]] = [[] for _ in words]
            for token, word in zip(encoded["input_ids"][i], encoded.word_ids(i)):
                if word is not None:
                    pieces[word].append(token)
            for word, ids in enumerate(pieces):
                if not ids:
                    if unk is None:
                        raise ConfigError(
                            f"word {words[word]!r} has no subwords and the tokenizer has no unknown token"
                        )
                    ids.append(unk)
                    self.stats.empty_words += 1
            result.append(pieces)
        return result

    def encode(
        self, sentences: list[list[str]], progress: Callable[[int], None] | None = None
    ) -> list[np.ndarray]:
        """One ``(n_words, dim)`` float32 array per sentence."""
        import torch

        self.load()
        capacity = self._max_length - len(self._prefix) - len(self._suffix)
        stride = self.options.stride if self.options.stride is not None else capacity // 2
        pieces = self._word_pieces(sentences)
        # Each window is one model input: (sentence, start, end); remember who reads what.
        jobs: list[tuple[int, int, int]] = []
        owners: list[list[int]] = []
        flat: list[list[int]] = []
        words_per_job: list[int] = []
        for s, word_pieces in enumerate(pieces):
            ids = [t for p in word_pieces for t in p]
            windows, owner = plan_windows(len(ids), capacity, stride)
            first_job = len(jobs)
            jobs.extend((s, w.start, w.end) for w in windows)
            owners.append([first_job + o for o in owner])
            flat.append(ids)
            counts = [0] * len(windows)
            position = 0
            for p in word_pieces:
                counts[owner[position]] += 1
                position += len(p)
            words_per_job.extend(counts)
            if len(windows) > 1:
                self.stats.windowed_examples += 1
            self.stats.windows += len(windows)
            self.stats.words += len(word_pieces)

        order = list(range(len(jobs)))
        if self.options.sort_by_length:
            order.sort(key=lambda j: jobs[j][2] - jobs[j][1], reverse=True)
        outputs: list[np.ndarray | None] = [None] * len(jobs)
        pad = self._tokenizer.pad_token_id
        if pad is None:
            pad = self._tokenizer.eos_token_id or 0
        autocast = torch.autocast(self._device.type, dtype=torch.bfloat16, enabled=self.options.bf16)
        with torch.inference_mode(), autocast:
            for begin in range(0, len(order), self.options.batch_size):
                batch = order[begin : begin + self.options.batch_size]
                inputs = [
                    self._prefix + flat[jobs[j][0]][jobs[j][1] : jobs[j][2]] + self._suffix for j in batch
                ]
                width = max(len(x) for x in inputs)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, ids in enumerate(inputs):
                    input_ids[row, : len(ids)] = torch.tensor(ids)
                    mask[row, : len(ids)] = 1
                hidden = self._model(
                    input_ids=input_ids.to(self._device),
                    attention_mask=mask.to(self._device),
                    output_hidden_states=True,
                ).hidden_states
                mixed = torch.stack([hidden[i] for i in self._layers]).float().mean(0).cpu().numpy()
                skip = len(self._prefix)
                for row, j in enumerate(batch):
                    outputs[j] = mixed[row, skip : skip + jobs[j][2] - jobs[j][1]]
                if progress:
                    progress(sum(words_per_job[j] for j in batch))

        result = []
        for s, word_pieces in enumerate(pieces):
            job_of = owners[s]
            subword = np.empty((len(flat[s]), self.dim), dtype=np.float32)
            for position in range(len(flat[s])):
                j = job_of[position]
                subword[position] = outputs[j][position - jobs[j][1]]
            words = np.empty((len(word_pieces), self.dim), dtype=np.float32)
            position = 0
            for w, p in enumerate(word_pieces):
                span = subword[position : position + len(p)]
                if self.options.pooling == "first":
                    words[w] = span[0]
                elif self.options.pooling == "last":
                    words[w] = span[-1]
                else:
                    words[w] = span.mean(0)
                position += len(p)
            result.append(words)
        return result
