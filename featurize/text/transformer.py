"""Word features from any Hugging Face transformer encoder: subwords in, one vector per word out.

Word/subword alignment follows Hugging Face's ``run_ner.py`` (``is_split_into_words`` and
``word_ids()``); on top of that: a word that tokenizes to nothing (a lone variation selector
or a no-break space, both in Twitter-2015) is read as the unknown token so every word gets a
vector, and sequences longer than the model are cut into overlapping windows (windows.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from featurize.errors import ConfigError
from featurize.text.windows import plan_windows
from featurize.weights import WeightsSource

POOLINGS = ("first", "mean", "last")  # plus "auto": the encoder's own default
# How the weights are held in memory: "8bit" (bitsandbytes LLM.int8, the thesis's way to fit
# Llama 3.1 8B), "bf16" or "fp32". Part of the cache key: the numbers differ.
WEIGHT_FORMATS = ("fp32", "bf16", "8bit")  # plus "auto": the encoder's own default
# Models whose position table holds two slots for padding_idx: usable length is 2 shorter.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "mpnet", "camembert", "longformer"}


def native_bf16(device: str = "auto") -> bool:
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    if device == "cuda":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def layers_label(layers: object) -> str:
    """``[-4, -3, -2, -1]`` -> ``last4``: the inverse of ``parse_layers`` for display and matching."""
    if isinstance(layers, list) and layers == list(range(-len(layers), 0)):
        return "last" if len(layers) == 1 else f"last{len(layers)}"
    return ",".join(str(n) for n in layers) if isinstance(layers, list) else str(layers)


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
    pooling: str = "auto"
    max_length: int | None = None
    stride: int | None = None
    batch_size: int = 32
    bf16: bool | None = None  # None: bf16 autocast where the hardware runs it natively
    sort_by_length: bool = True
    # what "length" is: the whole input, second segment included ("input"), or only the words
    # being tagged ("words": the order before second segments were budgeted, kept so
    # `bench featurize --context` can measure the two in one run). Speed only, not in the key.
    sort_by: str = "input"
    device: str = "auto"
    weights_format: str = "auto"

    def __post_init__(self) -> None:
        if self.weights_format not in (*WEIGHT_FORMATS, "auto"):
            raise ConfigError(
                f"weights format {self.weights_format!r}: choose one of {', '.join(WEIGHT_FORMATS)}"
            )
        if self.pooling not in (*POOLINGS, "auto"):
            raise ConfigError(f"--pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}")
        parse_layers(self.layers)
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        if self.sort_by not in ("input", "words"):
            raise ConfigError(f"sort_by {self.sort_by!r}: input or words")

    def resolved(self, pooling: str = "first", weights_format: str = "fp32") -> WordFeatureOptions:
        """Fill "auto" fields with an encoder's defaults."""
        return replace(
            self,
            pooling=pooling if self.pooling == "auto" else self.pooling,
            weights_format=weights_format if self.weights_format == "auto" else self.weights_format,
        )

    @property
    def use_bf16(self) -> bool:
        """bf16 autocast: on request, or by default where it is native (AVX512-BF16/AMX CPUs,
        Ampere+ GPUs). ``bench featurize`` measured word vectors within cosine 0.9999 of fp32
        there and 1.7x faster; elsewhere it would be emulated and slow, so fp32 stays."""
        if self.bf16 is not None:
            return self.bf16
        return native_bf16(self.device)

    def describe(self) -> dict[str, object]:
        """What changes the stored numbers (batch size and sorting only change speed)."""
        return {
            "layers": parse_layers(self.layers),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "stride": self.stride,
            "precision": "bf16" if self.use_bf16 else "fp32",
            **({"weights_format": self.weights_format} if self.weights_format != "fp32" else {}),
        }


@dataclass
class EncodePlan:
    """What :meth:`TransformerWordEncoder.plan` returns: per sentence its words' subword ids
    (``pieces``), its context's ids and its concatenated ids (``flat``); per model input
    (``jobs``: sentence, first and end subword) the words it owns; per sentence and subword
    the job whose output is kept (``owners``)."""

    pieces: list[list[list[int]]]
    context_ids: list[list[int] | None]
    jobs: list[tuple[int, int, int]] = field(default_factory=list)
    owners: list[list[int]] = field(default_factory=list)
    flat: list[list[int]] = field(default_factory=list)
    words_per_job: list[int] = field(default_factory=list)


@dataclass
class EncodeStats:
    words: int = 0
    empty_words: int = 0
    windowed_examples: int = 0  # examples longer than one window
    windows: int = 0  # the windows those examples were read in (a one-window example counts none)
    context_truncated: int = 0
    input_subwords: int = 0  # subwords read: the words' and the second segments' (no special tokens)


class TransformerWordEncoder:
    """A text encoder found by name; the model is loaded on first use, never to compute a key."""

    def __init__(self, name: str, weights: WeightsSource, options: WordFeatureOptions) -> None:
        self.name = name
        self.weights = weights
        self.options = options.resolved()
        self.stats = EncodeStats()
        # Subwords of a second segment read at most (None: half a window). Set per context by
        # whoever encodes (featurize.build, featurize.rebuild from a stored identity); it is
        # part of the context's identity, not of the encoder's, so plain entries keep their keys.
        self.context_budget: int | None = None
        self._model: Any = None
        self._tokenizer: Any = None

    def identity(self) -> dict[str, object]:
        return {"encoder": self.name, "weights": self.weights.identity(), **self.options.describe()}

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own bar counts words; theirs only adds noise
        hf_logging.set_verbosity_error()  # e.g. a decoder's unused LM head is expected, not news
        folder = self.weights.folder()
        self._tokenizer = AutoTokenizer.from_pretrained(folder)
        if not self._tokenizer.is_fast:
            raise ConfigError(f"{folder}: word alignment needs a fast tokenizer (tokenizer.json)")
        device = self.options.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = torch.device(device)
        self._model = _load_model(folder, self.options.weights_format, self._device)
        self._model.eval()
        try:
            probe = self._tokenizer(["a"], is_split_into_words=True)
        except ValueError:
            # Byte-level BPE (GPT-2, SmolLM2, Llama 3) takes pre-split words only with a space
            # before each, which is also how those words look inside running text.
            self._tokenizer = AutoTokenizer.from_pretrained(folder, add_prefix_space=True)
            probe = self._tokenizer(["a"], is_split_into_words=True)
        _split_words_as_in_running_text(self._tokenizer)
        ids, word_ids = probe["input_ids"], probe.word_ids()
        first = word_ids.index(0)
        last = len(word_ids) - 1 - word_ids[::-1].index(0)
        self._prefix, self._suffix = ids[:first], ids[last + 1 :]
        self._pair_layout(probe)
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

    def _pair_layout(self, single: Any) -> None:
        """Special tokens around a second segment (``[CLS] A [SEP] B [SEP]`` for BERT, whatever
        the tokenizer's pair template says elsewhere) and the segment ids it gives B."""
        pair = self._tokenizer(["a"], ["b"], is_split_into_words=True)
        ids, sequence = pair["input_ids"], pair.sequence_ids()
        a_end = sequence.index(0) + 1
        b_start = sequence.index(1) if 1 in sequence else len(ids)
        b_end = len(sequence) - sequence[::-1].index(1) if 1 in sequence else len(ids)
        self._pair_prefix = ids[: sequence.index(0)]
        self._pair_middle = ids[a_end:b_start]
        self._pair_suffix = ids[b_end:]
        types = pair.get("token_type_ids")
        uses_types = types is not None and getattr(self._model.config, "type_vocab_size", 1) > 1
        self._second_type = int(types[b_start]) if uses_types and b_start < len(ids) else None

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

    def _window_size(self, context: list[int] | None) -> tuple[int, int]:
        if context is None:
            capacity = self._max_length - len(self._prefix) - len(self._suffix)
        else:
            specials = len(self._pair_prefix) + len(self._pair_middle) + len(self._pair_suffix)
            capacity = self._max_length - specials - len(context)
        stride = self.options.stride if self.options.stride is not None else capacity // 2
        return capacity, min(stride, capacity - 1)

    def _input(self, window: list[int], context: list[int] | None) -> tuple[list[int], int | None]:
        """Model input ids for one window, and where the second segment starts (None: none)."""
        if context is None:
            return self._prefix + window + self._suffix, None
        head = self._pair_prefix + window + self._pair_middle
        return head + context + self._pair_suffix, len(head)

    def context_limit(self) -> int:
        """Subwords of a second segment kept: the budget, and never over half a window, so the
        words being tagged always keep at least half of the model's length. The first subwords
        are kept (a knowledge text names its entities first, its reasoning after)."""
        self.load()
        specials = len(self._pair_prefix) + len(self._pair_middle) + len(self._pair_suffix)
        half = (self._max_length - specials) // 2
        return half if self.context_budget is None else max(0, min(self.context_budget, half))

    def _context_ids(self, contexts: list[str | None] | None, n: int) -> list[list[int] | None]:
        """Subwords of each example's second segment, cut to :meth:`context_limit`."""
        if contexts is None:
            return [None] * n
        limit = self.context_limit()
        split = [text.split() if text else [] for text in contexts]
        present = [i for i, words in enumerate(split) if words]
        encoded = self._tokenizer(
            [split[i] for i in present], is_split_into_words=True, add_special_tokens=False
        )
        out: list[list[int] | None] = [None] * n
        for row, i in enumerate(present):
            ids = list(encoded["input_ids"][row])
            if len(ids) > limit:
                self.stats.context_truncated += 1
                ids = ids[:limit]
            out[i] = ids or None
        return out

    def plan(self, sentences: list[list[str]], contexts: list[str | None] | None = None) -> EncodePlan:
        """Subwords of every word, and the model inputs (windows) that read them: shared by
        :meth:`encode` and the trainable path (featurize/text/trainable.py), so a fine-tuned
        encoder sees exactly the inputs its cached features came from."""
        self.load()
        context_ids = self._context_ids(contexts, len(sentences))
        pieces = self._word_pieces(sentences)
        plan = EncodePlan(pieces, context_ids)
        for s, word_pieces in enumerate(pieces):
            ids = [t for p in word_pieces for t in p]
            capacity, stride = self._window_size(context_ids[s])
            windows, owner = plan_windows(len(ids), capacity, stride)
            first_job = len(plan.jobs)
            plan.jobs.extend((s, w.start, w.end) for w in windows)
            plan.owners.append([first_job + o for o in owner])
            plan.flat.append(ids)
            counts = [0] * len(windows)
            position = 0
            for p in word_pieces:
                counts[owner[position]] += 1
                position += len(p)
            plan.words_per_job.extend(counts)
            if len(windows) > 1:
                self.stats.windowed_examples += 1
                self.stats.windows += len(windows)
            self.stats.words += len(word_pieces)
        return plan

    def batch_inputs(self, plan: EncodePlan, batch: list[int]) -> dict[str, Any]:
        """Padded model inputs (CPU tensors) of the windows ``batch`` of ``plan``."""
        import torch

        inputs = [
            self._input(
                plan.flat[plan.jobs[j][0]][plan.jobs[j][1] : plan.jobs[j][2]],
                plan.context_ids[plan.jobs[j][0]],
            )
            for j in batch
        ]
        pad = self._tokenizer.pad_token_id
        if pad is None:
            pad = self._tokenizer.eos_token_id or 0
        width = max(len(x[0]) for x in inputs)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        types = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, second) in enumerate(inputs):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
            if second is not None and self._second_type:
                types[row, second : len(ids)] = self._second_type
        out = {"input_ids": input_ids, "attention_mask": mask}
        if self._second_type:
            out["token_type_ids"] = types
        return out

    def skip(self, plan: EncodePlan, job: int) -> int:
        """Special tokens before the first word of window ``job``."""
        return len(self._prefix if plan.context_ids[plan.jobs[job][0]] is None else self._pair_prefix)

    def mix_layers(self, hidden: Any) -> Any:
        """The configured hidden states, averaged (``--layers``)."""
        import torch

        return torch.stack([hidden[i] for i in self._layers]).float().mean(0)

    def encode(
        self,
        sentences: list[list[str]],
        progress: Callable[[int], None] | None = None,
        contexts: list[str | None] | None = None,
    ) -> list[np.ndarray]:
        """One ``(n_words, dim)`` float32 array per sentence.

        ``contexts`` (a caption, an image's label words) are read as a second segment after
        the sentence, as ITA and the preprint's MSB do; vectors are kept for the sentence's
        words only.
        """
        import torch

        self.load()
        plan = self.plan(sentences, contexts)
        pieces, jobs, flat = plan.pieces, plan.jobs, plan.flat
        owners, words_per_job = plan.owners, plan.words_per_job
        order = list(range(len(jobs)))
        context_ids = plan.context_ids
        lengths = [jobs[j][2] - jobs[j][1] + len(context_ids[jobs[j][0]] or ()) for j in range(len(jobs))]
        self.stats.input_subwords += sum(lengths)
        if self.options.sort_by_length:
            # by the whole input, second segment included: a batch pads to its longest input,
            # and a long knowledge text beside a short tweet is most of that length
            if self.options.sort_by == "words":
                order.sort(key=lambda j: jobs[j][2] - jobs[j][1], reverse=True)
            else:
                order.sort(key=lambda j: lengths[j], reverse=True)
        outputs: list[np.ndarray | None] = [None] * len(jobs)
        autocast = torch.autocast(self._device.type, dtype=torch.bfloat16, enabled=self.options.use_bf16)
        with torch.inference_mode(), autocast:
            for begin in range(0, len(order), self.options.batch_size):
                batch = order[begin : begin + self.options.batch_size]
                inputs = {k: v.to(self._device) for k, v in self.batch_inputs(plan, batch).items()}
                hidden = self._model(**inputs, output_hidden_states=True).hidden_states
                mixed = self.mix_layers(hidden).cpu().numpy()
                for row, j in enumerate(batch):
                    skip = self.skip(plan, j)
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


def _split_words_as_in_running_text(tokenizer: Any) -> None:
    """Make pre-split words tokenize as they do inside a sentence.

    A byte-level BPE (GPT-2, SmolLM2, Llama 3) whose pre-tokenizer adds no prefix space reads
    each pre-split word as if it began the text: "world" becomes other ids than " world" in
    running text, ids the model rarely saw mid-sentence. Turning the prefix space on fixes it.
    """
    from tokenizers import pre_tokenizers

    split = tokenizer(["a", "world"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    running = tokenizer("a world", add_special_tokens=False)["input_ids"]
    if split == running:
        return
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = backend.pre_tokenizer if backend is not None else None
    if isinstance(pre, pre_tokenizers.ByteLevel) and not pre.add_prefix_space:
        pre.add_prefix_space = True
        backend.pre_tokenizer = pre


def _load_model(folder: Any, weights_format: str, device: Any) -> Any:
    """The encoder body without any task head (a decoder's LM head is not loaded)."""
    import torch
    from transformers import AutoModel

    if weights_format == "8bit":
        import logging

        from transformers import BitsAndBytesConfig

        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError("8-bit weights need bitsandbytes: pip install bitsandbytes") from None
        # It warns about an input cast once per layer call: hundreds of lines per batch.
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        return AutoModel.from_pretrained(
            folder,
            quantization_config=BitsAndBytesConfig(load_in_8bit=True),
            device_map=str(device),
        )
    dtype = torch.bfloat16 if weights_format == "bf16" else torch.float32
    return AutoModel.from_pretrained(folder, dtype=dtype).to(device)
