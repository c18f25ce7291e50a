"""A trained head applied to new text (and images): entities out. ``heads.load`` returns one.

Heads train on cached tensors and never load an encoder; prediction is the one place where the
encoders run again, on the new input, with the settings the head was trained on. Those come
from the run folder: ``config.json`` holds, per input role (``text:mpnet``, ``vision:cnn``),
the encoder's identity as it was cached, and the encoders are rebuilt from it and checked
against it by :mod:`featurize.rebuild`.

Steps:

1. Words: pre-split word lists are taken as given; a raw string is split by
   :func:`heads.words.tokenize` in the style of the head's dataset.
2. Text features: each encoder of ``inputs.text`` (``minilm+mpnet`` is two) runs on the words;
   several are concatenated per word, in order, as ``heads.data.load_split`` concatenates
   cached entries. A head trained with a second segment (``--context captions``) needs a
   caption per input; one trained with ``--context labels`` reads the top-5 ImageNet label
   words of the input's image, made by the ``labels`` encoder exactly as ``featurize`` does;
   one trained with ``--context neighbours`` reads an input's ``caption`` as the text around
   it (``heads predict --scans`` gives each sentence its page's neighbouring sentences).
3. Image features, when the head reads them: the pooled vector (mean over an input's images),
   the patch grid and the label ids of its first image, as the cache reader gives them. An
   input without an image is read as text-only (zero image vector, ``has_image`` false): what
   training did for tweets whose image was missing.
4. The head's backend turns words and features into tags: ``heads.torch_backend.TorchBackend``
   for the torch heads, ``heads.crf_suite_run.CrfSuiteBackend`` for the sklearn-crfsuite
   baseline; both have the one :class:`HeadBackend` interface, and the head's family
   (:mod:`heads.families`) opens the right one (``heads.load`` does it all).
5. Spans from the BIO tags by seqeval's ``get_entities``, the function behind the entity F1 of
   every report, so a predicted span is what the metric would count.

Everything the user can get wrong is a :class:`featurize.errors.MnerError` with one line that
names the file (and line): a folder that is not a run, an image that cannot be read, a
context head without a caption, an empty input.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

from featurize.contexts import context_parts, join_parts
from featurize.errors import ConfigError
from featurize.rebuild import text_encoder_like, vision_encoder_like
from heads.input_files import PredictInput, load_images
from heads.inputs import InputSpec
from heads.words import tokenize, tokenizer_style

Note = Callable[[str], None]
OUTPUT_FORMATS = ("json", "conll")
IMAGE_NEEDS = frozenset({"image", "patches", "label_ids"})
DEFAULT_BATCH = 1024  # inputs featurized at a time: a large file never holds all its features at once


# --------------------------------------------------------------------------- outputs


@dataclass
class Prediction:
    """One tagged input: its words, one BIO tag per word, and the entity spans of those tags."""

    id: str
    words: list[str]
    tags: list[str]
    entities: list[dict[str, object]]
    confidences: list[float] | None = None  # per word, P(its tag); with ``predict(scores=True)``

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "words": self.words,
            "tags": self.tags,
            "entities": self.entities,
        }
        if self.confidences is not None:
            out["confidences"] = [round(c, 4) for c in self.confidences]
        return out


def entities(
    words: Sequence[str], tags: Sequence[str], confidences: Sequence[float] | None = None
) -> list[dict[str, object]]:
    """Spans of the BIO tags as seqeval's entity metric reads them (default, conlleval mode: a
    span may open with I-): ``{"text", "type", "start", "end"}``, word indices, end exclusive.
    With per-word ``confidences``, each span's ``score`` is their mean over its words."""
    from seqeval.metrics.sequence_labeling import get_entities

    if len(words) != len(tags):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    out: list[dict[str, object]] = []
    for kind, start, end in get_entities(list(tags)):
        span: dict[str, object] = {
            "text": " ".join(words[start : end + 1]),
            "type": kind,
            "start": start,
            "end": end + 1,
        }
        if confidences is not None:
            span["score"] = round(float(np.mean(confidences[start : end + 1])), 4)
        out.append(span)
    return out


def format_predictions(predictions: Sequence[Prediction], fmt: str = "json") -> str:
    """``json``: one JSON object per line (``id``, ``words``, ``tags``, ``entities``);
    ``conll``: ``word<TAB>tag`` lines, a blank line between inputs."""
    if fmt == "json":
        return "".join(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in predictions)
    if fmt == "conll":
        return "\n".join("".join(f"{w}\t{t}\n" for w, t in zip(p.words, p.tags)) for p in predictions)
    raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(OUTPUT_FORMATS)}")


# --------------------------------------------------------------------------- backends


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


class HeadBackend(Protocol):  # implemented by heads.torch_backend and heads.crf_suite_run
    """What a saved head of any family offers the predictor."""

    head: str  # its registered name
    inputs: InputSpec  # what it was trained on
    tags: list[str]
    needs: frozenset[str]  # batch fields it reads (heads.tagger.Tagger.needs)
    config: dict[str, Any]  # the saved config: input identities, cache entries, fine-tuned encoders

    def tag(
        self, words: list[list[str]], features: list[np.ndarray] | None, images: dict[str, Any]
    ) -> list[list[str]]:
        """Tags per input from its words, its text features (or None) and its image arrays."""
        ...

    def tag_scored(
        self, words: list[list[str]], features: list[np.ndarray] | None, images: dict[str, Any]
    ) -> tuple[list[list[str]], list[list[float]]]:
        """The tags and, per word, the probability the head gives its tag."""
        ...


# --------------------------------------------------------------------------- the predictor

# Encoders built in this process, by role and settings: several heads (or Predictors) trained
# on the same features load each model once.
_ENCODERS: dict[str, Any] = {}


class Predictor:
    """A run folder loaded once; :meth:`predict` featurizes inputs and tags them.

    ``cache_root`` is only read for a CRFsuite run (its encoder settings live with its cache
    entries) or a checkpoint without ``input_identity``; ``note`` receives one-line remarks
    (inputs without an image, settings taken from defaults) for the user.
    """

    def __init__(
        self,
        folder: Path,
        backend: HeadBackend,
        cache_root: Path | None = None,
        device: str = "auto",
        note: Note | None = None,
        lora_weights: str = "adapter",
    ) -> None:
        from heads import finetuned

        self.folder = Path(folder)
        self.cache_root = cache_root
        self.device = device
        self.note: Note = note or (lambda _message: None)
        self.lora_weights = lora_weights
        self.backend = backend
        self.inputs = self.backend.inputs
        self.tags = self.backend.tags
        self.needs = self.backend.needs
        self.head = self.backend.head
        self.config = self.backend.config
        self.fine_tuned = finetuned.info(self.config)
        self.identity = self._identities()
        self._own: dict[str, Any] = {}  # a fine-tuned run's encoders: never shared with other runs

    # -- what the head was trained on --------------------------------------------------
    def _identities(self) -> dict[str, dict[str, Any]]:
        stored = self.config.get("input_identity")
        identity: dict[str, dict[str, Any]] = dict(stored) if isinstance(stored, dict) else {}
        roles = [f"text:{t}" for t in self.inputs.text_encoders if "text" in self.needs]
        if self.inputs.vision and self.needs & IMAGE_NEEDS:
            roles.append(f"vision:{self.inputs.vision}")
        missing = [r for r in roles if r not in identity]
        if missing:
            found = self._identities_from_cache(missing)
            identity.update(found)
            unknown = [r for r in missing if r not in found and r.startswith("text:")]
            if unknown:
                self.note(
                    f"{self.folder}: the encoder settings of {', '.join(unknown)} are not recorded "
                    "(nor found in the cache): featurize's defaults are used"
                )
        return identity

    def _identities_from_cache(self, roles: list[str]) -> dict[str, dict[str, Any]]:
        """Encoder settings of the cache entries the run was trained on (``run.json`` names them)."""
        from heads.inputs import EntryIndex, input_identity

        entries = self.config.get("entries")
        if not isinstance(entries, dict) and (self.folder / "run.json").is_file():
            entries = read_json(self.folder / "run.json").get("entries")
        train = entries.get("train") if isinstance(entries, dict) else None
        if not isinstance(train, dict) or self.cache_root is None or not Path(self.cache_root).is_dir():
            return {}
        index = EntryIndex(Path(self.cache_root))
        known = {e.key for e in index.entries}
        keys = {role: key for role, key in train.items() if role in roles and key in known}
        return input_identity(index, SimpleNamespace(entries=keys))  # type: ignore[arg-type]

    @property
    def dataset(self) -> str:
        return self.inputs.dataset

    def tokenizer_style(self, style: str = "auto") -> str:
        return tokenizer_style(self.dataset, style)

    @property
    def reads_images(self) -> bool:
        return bool(self.needs & IMAGE_NEEDS) or self.inputs.context == "labels" and "text" in self.needs

    def describe(self) -> str:
        from heads.finetuned import describe

        parts = [self.inputs.text or "word ids"]
        if self.inputs.context != "none":
            parts.append(f"context {self.inputs.context}")
        if self.needs & IMAGE_NEEDS:
            parts.append(f"vision {self.inputs.vision}")
        tuned = describe(self.config)
        return f"{self.head}{' ' + tuned if tuned else ''} trained on {self.dataset} ({', '.join(parts)})"

    # -- encoders ------------------------------------------------------------------------
    def text_encoder(self, name: str) -> Any:
        identity = self.identity.get(f"text:{name}", {})
        tuned = (self.fine_tuned or {}).get("text", {}).get(name)
        if tuned is not None:  # a fine-tuned run's own encoder: loaded once per Predictor
            from heads.finetuned import text_encoder

            key = f"tuned:text:{name}"
            if key not in self._own:
                self._own[key] = text_encoder(
                    self.folder, name, identity, tuned, self.device, self.lora_weights
                )
            return self._own[key]
        key = json.dumps(["text", name, identity, self.device], sort_keys=True, default=str)
        if key not in _ENCODERS:
            _ENCODERS[key] = text_encoder_like(name, identity, self.device)
        return _ENCODERS[key]

    def vision_encoder(self, name: str, patches: bool = False) -> Any:
        identity = self.identity.get(f"vision:{name}", {})
        tuned = (self.fine_tuned or {}).get("vision")
        if tuned and tuned.get("name") == name:
            from heads.finetuned import load_vision_weights

            key = f"tuned:vision:{name}:{patches}"
            if key not in self._own:
                encoder = vision_encoder_like(name, identity, patches, self.device)
                self._own[key] = load_vision_weights(self.folder, encoder, tuned)
            return self._own[key]
        key = json.dumps(["vision", name, identity, patches, self.device], sort_keys=True, default=str)
        if key not in _ENCODERS:
            _ENCODERS[key] = vision_encoder_like(name, identity, patches, self.device)
        return _ENCODERS[key]

    def _contexts(
        self, inputs: Sequence[PredictInput], label_words: list[str | None] | None
    ) -> list[str | None] | None:
        """Per input, the second segment the head was trained with, made as featurize made it
        (kinds joined by featurize.contexts.join_parts); a missing caption or knowledge text is
        an error naming the inputs, before any model loads."""
        context = self.inputs.context
        if context == "none":
            return None
        parts: list[list[str | None]] = []
        for kind in context_parts(context):
            if kind == "neighbours":  # the text around each input, where the caller has it
                parts.append([item.caption for item in inputs])
            elif kind in ("captions", "knowledge"):
                field_name = "caption" if kind == "captions" else "knowledge"
                texts = [getattr(item, field_name) for item in inputs]
                missing = [
                    item.id or str(n)
                    for n, (item, t) in enumerate(zip(inputs, texts), 1)
                    if not (t or "").strip()
                ]
                if missing:
                    shown = ", ".join(missing[:3]) + (
                        f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                    )
                    how = (
                        '--caption TEXT, or "caption" in a JSONL --input'
                        if kind == "captions"
                        else '--knowledge TEXT, or "knowledge" in a JSONL --input; `featurize knowledge` '
                        "asks a chat model for it"
                    )
                    raise ConfigError(
                        f"this head was trained with {context} as a second segment (--context {context}): "
                        f"give each input its {field_name} ({how}); missing for {shown}"
                    )
                parts.append(texts)
            else:  # label words; no image: none
                parts.append(label_words if label_words is not None else [None] * len(inputs))
        return join_parts(parts)

    def text_features(
        self, inputs: Sequence[PredictInput], label_words: list[str | None] | None = None
    ) -> list[np.ndarray]:
        """Per input, ``(n_words, D)``: every text encoder of the head, concatenated per word."""
        sentences = [item.words for item in inputs]
        contexts = self._contexts(inputs, label_words)
        parts = [
            self.text_encoder(name).encode(sentences, None, contexts) for name in self.inputs.text_encoders
        ]
        if not parts:
            raise ConfigError(f"{self.folder}: the head reads text features but names no text encoder")
        if self.inputs.knowledge_hints:  # the columns the cached path appends (heads.data.with_hints)
            from heads.knowledge_hints import hints_for

            parts.append(hints_for(sentences, contexts))
        return [np.concatenate([p[i] for p in parts], axis=1).astype(np.float32) for i in range(len(inputs))]

    def image_features(self, inputs: Sequence[PredictInput]) -> dict[str, Any]:
        """``pooled``/``patches``/``top5_ids`` per input of the head's vision encoder, and the
        label words for a ``--context labels`` head; ``has_image`` marks inputs with an image."""
        from featurize.pipeline import _label_words

        n = len(inputs)
        files, pictures, used = load_images(inputs)
        out: dict[str, Any] = {"has_image": np.array([bool(u) for u in used], dtype=bool)}
        if not files:
            return out  # no image at all: no vision model is loaded
        if self.needs & IMAGE_NEEDS and self.inputs.vision:
            encoder = self.vision_encoder(self.inputs.vision, "patches" in self.needs)
            arrays = encoder.encode(pictures)
            if "pooled" in arrays:
                width = int(arrays["pooled"].shape[1])
                pooled = np.zeros((n, width), dtype=np.float32)
                for i, mine in enumerate(used):
                    if mine:
                        pooled[i] = arrays["pooled"][mine].mean(0)
                out["pooled"] = pooled
            if "patches" in arrays:
                out["patches"] = [arrays["patches"][mine[0]] if mine else None for mine in used]
            if "top5_ids" in arrays:
                ids = np.zeros((n, 5), dtype=np.int64)
                for i, mine in enumerate(used):
                    if mine:
                        ids[i] = arrays["top5_ids"][mine[0]][:5] + 1
                out["label_ids"] = ids
        if self.inputs.context == "labels" and "text" in self.needs:
            labels = self.vision_encoder("labels")
            names = labels.class_names()
            top = labels.encode(pictures)["top5_ids"]
            out["label_words"] = [
                (_label_words([str(names[int(c)]) for c in top[mine[0]][:5]]) or None) if mine else None
                for mine in used
            ]
        return out

    def featurized(self, data: Any) -> Any:
        """A cached split (words, second segments, image files) with the features of a fine-tuned
        run's own encoders, computed as :meth:`predict` computes them (``heads eval``)."""
        from dataclasses import replace

        parts = [
            self.text_encoder(name).encode(data.words, None, data.contexts)
            for name in self.inputs.text_encoders
            if "text" in self.needs
        ]
        out = replace(data)
        if parts:
            out.features = np.concatenate(
                [np.concatenate([p[i] for p in parts], axis=1) for i in range(len(data))], axis=0
            ).astype(np.float32)
            if self.inputs.knowledge_hints:
                from heads.data import with_hints

                with_hints(out)
        tuned = (self.fine_tuned or {}).get("vision")
        if tuned and data.image_files is not None:
            inputs = [
                PredictInput(list(w), [Path(f) for f in fs]) for w, fs in zip(data.words, data.image_files)
            ]
            arrays = self.image_features(inputs)
            if "pooled" in arrays:
                out.image, out.has_image = arrays["pooled"], arrays["has_image"]
            if "patches" in arrays:
                out.patches = arrays["patches"]
        return out

    # -- prediction ----------------------------------------------------------------------
    def predict(
        self,
        inputs: Sequence[str | Sequence[str] | PredictInput],
        images: Sequence[str | Path | Sequence[str | Path] | None] | None = None,
        captions: Sequence[str | None] | None = None,
        tokenizer: str = "auto",
        batch_size: int = DEFAULT_BATCH,
        scores: bool = False,
        knowledge: Sequence[str | None] | None = None,
    ) -> list[Prediction]:
        """Tags and entity spans of every input, in order.

        An input is a raw string (split into words as the head's dataset was, see
        :func:`heads.words.tokenize`; ``tokenizer`` picks another style), a list of words taken
        as given, or a :class:`heads.input_files.PredictInput`. ``images`` gives per input an
        image path, a list of paths or None (text-only); ``captions`` per input its caption
        (heads trained with ``--context captions``), ``knowledge`` its LLM knowledge (``--context
        knowledge``, e.g. a line of a ``featurize knowledge`` file). ``batch_size`` inputs are featurized at a
        time, so a large file never holds all its features at once. ``scores``: also each word's
        confidence in its tag and each entity's ``score`` (the mean over its words).
        """
        items = self._items(inputs, images, captions, tokenizer, knowledge)
        for n, item in enumerate(items, start=1):
            if not item.words or any(not w for w in item.words):
                raise ConfigError(
                    f"input {item.id or n}: {'no words' if not item.words else 'an empty word'}"
                )
        if "text" in self.needs:
            self._contexts(items, [None] * len(items))  # a missing caption fails before any model loads
        with_images = sum(bool(item.images) for item in items)
        if self.reads_images and with_images < len(items):
            what = "zero image features" if self.needs & IMAGE_NEEDS else "no label words"
            self.note(
                f"{len(items) - with_images} of {len(items)} input(s) have no image: read as text-only "
                f"({what}), as training read tweets whose image was missing"
            )
        if not self.reads_images and with_images:
            self.note(f"{self.describe()} reads no image: the image(s) given are not used")
        out: list[Prediction] = []
        for begin in range(0, len(items), max(1, batch_size)):
            out += self._predict_batch(items[begin : begin + batch_size], scores)
        return out

    def _items(
        self,
        inputs: Sequence[str | Sequence[str] | PredictInput],
        images: Sequence[Any] | None,
        captions: Sequence[str | None] | None,
        tokenizer: str,
        knowledge: Sequence[str | None] | None = None,
    ) -> list[PredictInput]:
        if isinstance(inputs, str):
            raise ConfigError('predict takes a list of inputs: predict(["Obama visits Paris"])')
        inputs = list(inputs)
        for name, values in (("images", images), ("captions", captions), ("knowledge", knowledge)):
            if values is not None and len(values) != len(inputs):
                raise ConfigError(
                    f"{len(inputs)} inputs but {len(values)} {name}: give one per input (None for none)"
                )
        style = self.tokenizer_style(tokenizer) if any(isinstance(i, str) for i in inputs) else "tweet"
        items = []
        for n, value in enumerate(inputs):
            if isinstance(value, PredictInput):
                item = value
            else:
                words = tokenize(value, style) if isinstance(value, str) else [str(w) for w in value]
                item = PredictInput(words, id=f"input:{n + 1}")
            if images is not None and images[n] is not None:
                given = images[n]
                paths = [given] if isinstance(given, (str, Path)) else list(given)
                item = replace(item, images=[Path(p) for p in paths])
            if captions is not None and captions[n] is not None:
                item = replace(item, caption=captions[n])
            if knowledge is not None and knowledge[n] is not None:
                item = replace(item, knowledge=knowledge[n])
            items.append(item)
        return items

    def _predict_batch(self, inputs: list[PredictInput], scores: bool = False) -> list[Prediction]:
        images = self.image_features(inputs) if self.reads_images else {}
        features = None
        if "text" in self.needs:
            features = self.text_features(inputs, images.get("label_words"))
        words = [list(item.words) for item in inputs]
        if not scores:
            tags = self.backend.tag(words, features, images)
            return [
                Prediction(item.id, list(item.words), list(t), entities(item.words, t))
                for item, t in zip(inputs, tags)
            ]
        tags, confidences = self.backend.tag_scored(words, features, images)
        return [
            Prediction(item.id, list(item.words), list(t), entities(item.words, t, c), list(c))
            for item, t, c in zip(inputs, tags, confidences)
        ]
