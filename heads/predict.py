"""``heads predict``: a trained head applied to new text (and images), entities out.

Heads train on cached tensors and never load an encoder; prediction is the one place where the
encoders run again, on the new input, with the settings the head was trained on. Those come
from the run folder: ``config.json`` holds, per input role (``text:mpnet``, ``vision:cnn``),
the encoder's identity as it was cached (weights, layers, pooling, window, precision, vision
preprocessing), and the encoders built here are checked against it, so a head never reads
features computed another way (other weights, other layers) without saying so.

Steps, for a torch head:

1. Words: pre-split word lists are taken as given; a raw string is split by :func:`tokenize`,
   the way the tweets of the datasets are split (rules there).
2. Text features: each encoder of ``inputs.text`` (``minilm+mpnet`` is two) is built from the
   stored identity and run on the words; several are concatenated per word, in order, as
   ``heads.data.load_split`` concatenates cached entries. A head trained with a second segment
   (``--context captions``) needs a caption per input; one trained with ``--context labels``
   reads the top-5 ImageNet label words of the input's image, made by the ``labels`` encoder
   exactly as ``featurize`` makes them.
3. Image features, when the head reads them (``Tagger.needs``): the vision encoder of
   ``inputs.vision`` on the input's image file(s): the pooled vector (mean over an input's
   images), the patch grid and the label ids of its first image, as the cache reader does. An
   input without an image is read as text-only (zero image vector, ``has_image`` false): what
   training did for tweets whose image was missing.
4. A :class:`heads.data.SplitData` in memory with dummy ``O`` tags, batched by
   :class:`heads.data.Batcher` and decoded by :func:`heads.train.predict`.
5. Spans from the BIO tags by seqeval's ``get_entities``, the function behind the entity F1
   of every report, so a predicted span is what the metric would count.

A CRFsuite run folder (``crfsuite.json``) needs only the words, plus word vectors of its text
encoder when it was trained with cluster features; its encoder settings are read from the
cache entries named in its ``run.json`` when the cache still holds them, else featurize's
defaults are used (and said).

Everything the user can get wrong is a :class:`featurize.errors.MnerError` with one line that
names the file (and line): a folder that is not a run, an image that cannot be read, a
context head without a caption, an empty input line.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from featurize.errors import ConfigError, DataFormatError, MnerError

Note = Callable[[str], None]

OUTPUT_FORMATS = ("json", "conll")
INPUT_FORMATS = ("auto", "text", "jsonl", "conll", "umt")
TOKENIZER_STYLES = ("auto", "tweet", "split")
# Datasets whose words have "#" and "@" split off ("# NBA", "@ user"): Twitter-2017 as UMT ships it.
SPLIT_STYLE_DATASETS = {"t17"}
IMAGE_NEEDS = frozenset({"image", "patches", "label_ids"})


# --------------------------------------------------------------------------- words


_URL = re.compile(r"^(?:https?:|www\.)", re.IGNORECASE)
_EMOTICON = re.compile(r"^[:;=8xX][-o*'^]?[)(\]\[dDpPoO/\\|*3]$|^<3$")
_APOSTROPHES = "'’"
# Kept at the end of a URL: the characters a URL may end with; the rest is punctuation after it.
_URL_TRAILING = ".,;:!?)]}\"'”’…"


def _is_punct(ch: str) -> bool:
    """Punctuation and symbols (emoji included), but not ``_``: it belongs to user names."""
    category = unicodedata.category(ch)
    return ch != "_" and (category.startswith("P") or category.startswith("S"))


def _is_mark(ch: str) -> bool:
    """Variation selectors, zero-width joiners, combining marks: part of the symbol before them."""
    return unicodedata.category(ch) in ("Mn", "Me", "Cf")


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _runs(text: str, style: str) -> list[str]:
    """Punctuation split into tokens: one per character (``split``), or runs of one repeated
    character kept together (``tweet``: "...", "!!", "--", as Twitter-2015 has them)."""
    if style == "split":
        return list(text)
    out: list[str] = []
    for ch in text:
        if out and (out[-1][-1] == ch or _is_mark(ch)):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _split_apostrophes(core: str) -> list[str]:
    """``It's`` -> ``It ' s``, ``don't`` -> ``don ' t``, ``O'Hare`` -> ``O ' Hare``: both UMT
    datasets split every apostrophe between letters off as its own token."""
    out: list[str] = []
    current = ""
    for i, ch in enumerate(core):
        inside = 0 < i < len(core) - 1 and core[i - 1].isalnum() and core[i + 1].isalnum()
        if ch in _APOSTROPHES and inside:
            out.extend([current, ch])
            current = ""
        else:
            current += ch
    out.append(current)
    return [t for t in out if t]


def _chunk(chunk: str, style: str) -> list[str]:
    if _URL.match(chunk):
        end = len(chunk)
        while end > 1 and chunk[end - 1] in _URL_TRAILING:
            end -= 1
        return [chunk[:end], *_runs(chunk[end:], style)]
    if _EMOTICON.match(chunk):
        return [chunk]
    start = 0
    while start < len(chunk) and (_is_punct(chunk[start]) or start and _is_mark(chunk[start])):
        # "#tag" and "@user" keep their sign (tweet style) or have it split off (split style).
        if chunk[start] in "#@" and start + 1 < len(chunk) and _is_word_char(chunk[start + 1]):
            break
        start += 1
    end = len(chunk)
    while end > start and (_is_punct(chunk[end - 1]) or _is_mark(chunk[end - 1])):
        end -= 1
    while end < len(chunk) and _is_mark(chunk[end]):  # a mark belongs to the word it follows
        end += 1
    lead, core, trail = chunk[:start], chunk[start:end], chunk[end:]
    words = _runs(lead, style)
    if core[:1] in ("#", "@") and style == "split":
        words.append(core[0])
        core = core[1:]
    words.extend(_split_apostrophes(core))
    words.extend(_runs(trail, style))
    return words


def tokenize(text: str, style: str = "tweet") -> list[str]:
    """Words of a raw tweet, split the way the UMT Twitter datasets split theirs.

    The rule: split on whitespace; a chunk that starts with ``http:``, ``https:`` or ``www.``
    is one URL word (punctuation after it, as in "see http://t.co/x.", is split off); an
    emoticon (``:)``, ``;-(``, ``<3``) stays one word; otherwise the punctuation and symbols
    (emoji included) at the start and end of a chunk become words of their own, while
    punctuation inside it stays ("U.S.", "10,000", "well-known", "Giants_101"). An apostrophe
    between letters is split off ("It's" -> "It", "'", "s"), as both datasets do. ``#`` and
    ``@`` before a word character start a hashtag or a mention:

    - ``tweet`` (Twitter-2015's words): ``#NBA`` and ``@user`` are one word each; a run of one
      repeated punctuation character is one word ("...", "!!").
    - ``split`` (Twitter-2017's words): ``#`` and ``@`` are split off ("#", "NBA"), and every
      punctuation character is a word of its own (". . .").

    A word the head never saw spelled that way still gets a vector, so the difference costs
    accuracy, not correctness; :func:`tokenizer_style` picks the style of the head's dataset.
    """
    if style not in ("tweet", "split"):
        raise ConfigError(f"tokenizer style {style!r}: choose tweet or split")
    words: list[str] = []
    for chunk in text.split():
        words.extend(_chunk(chunk, style))
    return words


def tokenizer_style(dataset: str | None, style: str = "auto") -> str:
    """``auto``: ``split`` for the datasets whose words have "#" and "@" split off (t17), else ``tweet``."""
    if style not in TOKENIZER_STYLES:
        raise ConfigError(f"--tokenizer {style!r}: choose one of {', '.join(TOKENIZER_STYLES)}")
    if style != "auto":
        return style
    return "split" if dataset in SPLIT_STYLE_DATASETS else "tweet"


# --------------------------------------------------------------------------- inputs and outputs


@dataclass
class PredictInput:
    """One text to tag: its words, its image files (none: text-only) and, for heads trained
    with captions as a second segment, its caption."""

    words: list[str]
    images: list[Path] = field(default_factory=list)
    caption: str | None = None
    id: str = ""


@dataclass
class Prediction:
    id: str
    words: list[str]
    tags: list[str]
    entities: list[dict[str, object]]

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "words": self.words, "tags": self.tags, "entities": self.entities}


def entities(words: Sequence[str], tags: Sequence[str]) -> list[dict[str, object]]:
    """Spans of the BIO tags as seqeval's entity metric reads them (default, conlleval mode: a
    span may open with I-): ``{"text", "type", "start", "end"}``, word indices, end exclusive."""
    from seqeval.metrics.sequence_labeling import get_entities

    if len(words) != len(tags):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    return [
        {"text": " ".join(words[start : end + 1]), "type": kind, "start": start, "end": end + 1}
        for kind, start, end in get_entities(list(tags))
    ]


def format_predictions(predictions: Sequence[Prediction], fmt: str = "json") -> str:
    """``json``: one JSON object per line (``id``, ``words``, ``tags``, ``entities``);
    ``conll``: ``word<TAB>tag`` lines, a blank line between inputs."""
    if fmt == "json":
        return "".join(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in predictions)
    if fmt == "conll":
        return "\n".join("".join(f"{w}\t{t}\n" for w, t in zip(p.words, p.tags)) for p in predictions)
    raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(OUTPUT_FORMATS)}")


def inputs_from_texts(
    texts: Sequence[str | Sequence[str]],
    image: Path | Sequence[Path] | None = None,
    caption: str | None = None,
    style: str = "tweet",
) -> list[PredictInput]:
    """``--text`` values (raw strings, or word lists taken as given), each with ``image`` and
    ``caption`` when given."""
    images = [] if image is None else [Path(image)] if isinstance(image, (str, Path)) else list(image)
    out = []
    for n, text in enumerate(texts, start=1):
        words = tokenize(text, style) if isinstance(text, str) else [str(w) for w in text]
        if not words or any(not w for w in words):
            raise ConfigError(
                f"--text number {n} is empty" if not words else f"--text number {n} has an empty word"
            )
        out.append(PredictInput(words, [Path(p) for p in images], caption, f"text:{n}"))
    return out


def _looks_like_columns(lines: list[str]) -> bool:
    """Every non-blank line ``token<whitespace>...<BIO tag>``: a CoNLL file."""
    tag = re.compile(r"^(O|[BIES]-\S+)$")
    rows = [line for line in lines if line.strip() and not line.startswith("-DOCSTART-")]
    return bool(rows) and all(
        len(line.split()) >= 2
        and tag.match(line.split("\t")[-1].strip() if "\t" in line else line.split()[-1])
        for line in rows
    )


def detect_input_format(path: Path, lines: list[str]) -> str:
    """jsonl (``.jsonl``/``.json`` or a first line that opens an object), umt (an ``IMGID:``
    line), conll (every line ``token ... tag``), else text (one text per line)."""
    if path.suffix.lower() in (".jsonl", ".json"):
        return "jsonl"
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("{"):
        return "jsonl"
    if any(line.startswith("IMGID:") for line in lines):
        return "umt"
    if _looks_like_columns(lines):
        return "conll"
    return "text"


def _json_words(value: object, path: Path, number: int, style: str) -> list[str]:
    if isinstance(value, str):
        words = tokenize(value, style)
    elif isinstance(value, list) and all(isinstance(w, str) for w in value):
        words = list(value)
        if any(not w.strip() for w in words):
            raise DataFormatError(path, number, 'empty word in "text"')
    else:
        raise DataFormatError(path, number, '"text" must be a string or a list of words')
    if not words:
        raise DataFormatError(path, number, "empty text")
    return words


def _find_image(value: str, base: Path, index: Any) -> Path | None:
    candidate = Path(value).expanduser()
    for path in (candidate, base / candidate) if not candidate.is_absolute() else (candidate,):
        if path.is_file():
            return path
    return index.find(value) if index is not None else None


def read_inputs(
    path: Path,
    fmt: str = "auto",
    style: str = "tweet",
    images: Path | None = None,
    image_map: Path | None = None,
    note: Note | None = None,
) -> list[PredictInput]:
    """The inputs of a file:

    - ``text``: one raw text per line, split by :func:`tokenize`; an empty line is an error
      (file and line named).
    - ``jsonl``: one object per line, ``{"text": "raw string" or [words], "image": path or
      [paths], "caption": "...", "id": "..."}`` (``tokens``, ``images`` and ``image_id`` are
      read as in featurize's JSONL reader; labels are ignored). An image is a path (absolute,
      or relative to the JSONL file's folder or the working folder) or an id found in
      ``images``; one that is not found is an error naming the line.
    - ``conll`` / ``umt``: read by featurize's own readers (labels required there, ignored
      here); ``IMGID`` ids are found in ``images`` (``image_map`` as in featurize) and, as
      featurize's default ``--missing-images keep``, an id without a file leaves its tweet
      text-only.
    """
    from featurize.images import ImageIndex
    from featurize.readers import READERS
    from featurize.readers.text_file import read_lines

    if fmt not in INPUT_FORMATS:
        raise ConfigError(f"--input-format {fmt!r}: choose one of {', '.join(INPUT_FORMATS)}")
    path = Path(path)
    lines = read_lines(path)
    if fmt == "auto":
        fmt = detect_input_format(path, lines)
    index = ImageIndex(images, image_map) if images is not None else None
    out: list[PredictInput] = []
    if fmt == "text":
        for number, line in enumerate(lines, start=1):
            words = tokenize(line, style)
            if not words:
                raise DataFormatError(path, number, "empty line: one text per line")
            out.append(PredictInput(words, id=f"{path.stem}:{number}"))
        return out
    if fmt == "jsonl":
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                raise DataFormatError(path, number, "empty line: one JSON object per line")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(path, number, f"not valid JSON: {err.msg}") from None
            if not isinstance(record, dict):
                raise DataFormatError(path, number, "each line must be a JSON object")
            key = "text" if "text" in record else "tokens"
            if key not in record:
                raise DataFormatError(path, number, 'needs "text" (a string or a list of words)')
            words = _json_words(record[key], path, number, style)
            found: list[Path] = []
            for image_key in ("images", "image", "image_id"):
                value = record.get(image_key)
                if value is None:
                    continue
                values = [value] if isinstance(value, str) else value
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise DataFormatError(path, number, f'"{image_key}" must be a path or a list of paths')
                for v in values:
                    file = _find_image(v, path.parent, index)
                    if file is None:
                        where = f"{path.parent}" + (
                            f" or {images}" if images else "; pass --images DIR for ids"
                        )
                        raise DataFormatError(path, number, f"image {v!r} not found (looked in {where})")
                    found.append(file)
                break
            caption = record.get("caption")
            if caption is not None and not isinstance(caption, str):
                raise DataFormatError(path, number, '"caption" must be a string')
            out.append(PredictInput(words, found, caption, str(record.get("id", f"{path.stem}:{number}"))))
        return out
    examples = READERS.get(fmt)(path, None)
    unresolved = 0
    for example in examples:
        found = []
        for image_id in example.image_ids:
            file = index.find(image_id) if index is not None else None
            if file is None:
                unresolved += 1
            else:
                found.append(file)
        out.append(PredictInput(list(example.words), found, example.caption, example.id))
    if unresolved and note is not None:
        how = "not found under " + str(images) if images is not None else "no --images folder was given"
        note(f"{path}: {unresolved} image id(s) {how}: those inputs are read as text-only")
    return out


def collect_inputs(
    texts: Sequence[str] | None = None,
    input_file: Path | None = None,
    image: Path | None = None,
    caption: str | None = None,
    style: str = "tweet",
    input_format: str = "auto",
    images: Path | None = None,
    image_map: Path | None = None,
    note: Note | None = None,
) -> list[PredictInput]:
    """What ``heads predict`` tags: the ``--text`` values (with ``--image``/``--caption``) and
    then the inputs of ``--input``."""
    if not texts and input_file is None:
        raise ConfigError("nothing to tag: give --text TEXT (repeatable) or --input FILE")
    if (image is not None or caption is not None) and not texts:
        raise ConfigError(
            "--image and --caption apply to --text; give them per input in a JSONL --input file"
        )
    out = inputs_from_texts(texts or [], image, caption, style)
    if input_file is not None:
        out += read_inputs(input_file, input_format, style, images, image_map, note)
    return out


# --------------------------------------------------------------------------- encoders


def _normalised(value: object) -> object:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _differences(stored: dict[str, Any], actual: dict[str, Any], ignore: set[str]) -> list[str]:
    stored_n, actual_n = _normalised(stored), _normalised(actual)
    assert isinstance(stored_n, dict) and isinstance(actual_n, dict)
    return [
        f"{key}: trained {json.dumps(stored_n[key])}, here {json.dumps(actual_n.get(key))}"
        for key in sorted(stored_n)
        if key not in ignore and stored_n[key] != actual_n.get(key)
    ]


def _hub_spec(weights: object) -> str | None:
    """``hub:<repo>@<commit>`` -> ``hf:<repo>@<commit>``: weights that can be found again."""
    if isinstance(weights, str) and weights.startswith("hub:"):
        return "hf:" + weights[len("hub:") :]
    return None


def word_options(identity: dict[str, Any], device: str = "auto") -> Any:
    """The :class:`WordFeatureOptions` that reproduce a cached text entry's identity."""
    from featurize.text.transformer import WordFeatureOptions

    layers = identity.get("layers")
    if isinstance(layers, list) and layers:
        layers_text = ",".join(str(int(n)) for n in layers)
    elif isinstance(layers, str):
        layers_text = layers
    else:
        layers_text = "last4"
    precision = identity.get("precision")
    return WordFeatureOptions(
        layers=layers_text,
        pooling=str(identity.get("pooling") or "auto"),
        max_length=identity.get("max_length"),
        stride=identity.get("stride"),
        bf16=None if precision is None else precision == "bf16",
        device=device,
        weights_format=str(identity.get("weights_format") or "auto"),
    )


def build_text_encoder_like(name: str, identity: dict[str, Any], device: str = "auto") -> Any:
    """The text encoder ``name`` with the settings of ``identity``, checked against it."""
    from featurize.text import build_text_encoder

    options = word_options(identity, device)
    encoder = build_text_encoder(name, options)
    if not identity:
        return encoder
    problems = _differences(identity, encoder.identity(), {"context"})
    hub = _hub_spec(identity.get("weights"))
    if problems and hub and not name.startswith("hf:") and "=" not in name:
        encoder = build_text_encoder(f"{name}={hub}", options)  # trained as NAME=hf:<hub id>
        problems = _differences(identity, encoder.identity(), {"context"})
    if problems:
        raise ConfigError(
            f"text encoder {name} here is not the one the head was trained on ({'; '.join(problems)}): "
            "install the same weights, or retrain the head on features of these"
        )
    return encoder


def build_vision_encoder_like(
    name: str, identity: dict[str, Any], patches: bool = False, device: str = "auto"
) -> Any:
    """The vision encoder ``name`` (its default weights, or the hub snapshot it was trained
    with), checked against the stored identity (``patches`` aside: it does not change pooled)."""
    from featurize.vision import build_vision_encoder
    from featurize.vision.encoder import VisionOptions

    stored = identity.get("vision_encoder") if isinstance(identity.get("vision_encoder"), dict) else {}
    options = VisionOptions(patches=patches or bool(stored.get("patches")), device=device)
    encoder = build_vision_encoder(name, options)
    if not stored:
        return encoder
    problems = _differences(stored, encoder.identity(), {"patches"})
    hub = _hub_spec(stored.get("weights"))
    if problems and hub and "=" not in name:
        encoder = build_vision_encoder(f"{name}={hub}", options)
        problems = _differences(stored, encoder.identity(), {"patches"})
    if problems:
        raise ConfigError(
            f"vision encoder {name} here is not the one the head was trained on ({'; '.join(problems)}); "
            "a model or weights file given as NAME=SOURCE at featurize time cannot be found again from "
            "its identity: retrain the head, or featurize with the default weights"
        )
    return encoder


def load_images(inputs: Sequence[PredictInput]) -> tuple[list[Path], list[Any], list[list[int]]]:
    """The distinct image files of the inputs, decoded (an unreadable one is an error naming
    it), and which of them each input uses."""
    from featurize.vision.images import load_image

    files: list[Path] = []
    index: dict[Path, int] = {}
    used: list[list[int]] = []
    for item in inputs:
        mine = []
        for path in item.images:
            path = Path(path)
            if path not in index:
                if not path.is_file():
                    raise ConfigError(f"image {path} not found")
                index[path] = len(files)
                files.append(path)
            mine.append(index[path])
        used.append(mine)
    pictures = [load_image(path) for path in files]  # ImageError names the file
    return files, pictures, used


# --------------------------------------------------------------------------- the predictor

# Encoders built in this process, by role and settings: several heads (or Predictors) trained
# on the same features load each model once.
_ENCODERS: dict[str, Any] = {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


class Predictor:
    """A run folder loaded once; :meth:`predict` featurizes inputs and tags them.

    ``cache_root`` is only read for a CRFsuite run (its encoder settings live with its cache
    entries) or a checkpoint without ``input_identity``; ``note`` receives one-line remarks
    (inputs without an image, settings taken from defaults) for the user.
    """

    def __init__(
        self,
        folder: Path,
        cache_root: Path | None = None,
        device: str = "auto",
        note: Note | None = None,
        lora_weights: str = "adapter",
    ) -> None:
        from heads import checkpoint, finetuned
        from heads.crf_suite_run import MARKER, is_crfsuite_folder
        from heads.inputs import InputSpec

        self.folder = Path(folder)
        self.cache_root = cache_root
        self.device = device
        self.note: Note = note or (lambda _message: None)
        if not self.folder.is_dir():
            raise ConfigError(f"{self.folder}: no such run folder (give a folder written by `heads train`)")
        self.crfsuite: Any = None
        self.model: Any = None
        self.lora_weights = lora_weights
        self.fine_tuned: dict[str, Any] | None = None
        if is_crfsuite_folder(self.folder):
            from heads.crf_suite import CrfSuiteTagger

            saved = _read_json(self.folder / MARKER)
            try:
                self.inputs = InputSpec(**saved["inputs"])
            except (KeyError, TypeError) as err:
                raise ConfigError(f"{self.folder / MARKER}: no valid inputs ({err})") from None
            self.crfsuite = CrfSuiteTagger.load(self.folder)
            self.config: dict[str, Any] = {}
            self.tags = list(self.crfsuite.tags)
            self.needs = frozenset({"text"} if self.crfsuite.config.clusters else set())
            self.head = "crf"
            self.vocab = None
        else:
            self.model, self.config = checkpoint.load(self.folder)
            self.inputs = InputSpec(**self.config["inputs"])
            self.tags = list(self.model.tags)
            self.needs = type(self.model).needs(self.model.hyper, self.model.modality, bool(self.inputs.text))
            self.head = str(self.config.get("head"))
            self.vocab = checkpoint.vocabularies(self.config)
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
        from heads.experiment import input_identity
        from heads.inputs import EntryIndex

        entries = self.config.get("entries")
        if not isinstance(entries, dict) and (self.folder / "run.json").is_file():
            entries = _read_json(self.folder / "run.json").get("entries")
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
        parts = [self.inputs.text or "word ids"]
        if self.inputs.context != "none":
            parts.append(f"context {self.inputs.context}")
        if self.needs & IMAGE_NEEDS:
            parts.append(f"vision {self.inputs.vision}")
        from heads.finetuned import describe

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
            _ENCODERS[key] = build_text_encoder_like(name, identity, self.device)
        return _ENCODERS[key]

    def vision_encoder(self, name: str, patches: bool = False) -> Any:
        identity = self.identity.get(f"vision:{name}", {})
        tuned = (self.fine_tuned or {}).get("vision")
        if tuned and tuned.get("name") == name:
            from heads.finetuned import load_vision_weights

            key = f"tuned:vision:{name}:{patches}"
            if key not in self._own:
                encoder = build_vision_encoder_like(name, identity, patches, self.device)
                self._own[key] = load_vision_weights(self.folder, encoder, tuned)
            return self._own[key]
        key = json.dumps(["vision", name, identity, patches, self.device], sort_keys=True, default=str)
        if key not in _ENCODERS:
            _ENCODERS[key] = build_vision_encoder_like(name, identity, patches, self.device)
        return _ENCODERS[key]

    def _contexts(
        self, inputs: Sequence[PredictInput], label_words: list[str | None] | None
    ) -> list[str | None] | None:
        context = self.inputs.context
        if context == "none":
            return None
        if context == "captions":
            missing = [
                item.id or str(n)
                for n, item in enumerate(inputs, start=1)
                if not (item.caption or "").strip()
            ]
            if missing:
                shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
                raise ConfigError(
                    f"this head was trained with image captions as a second segment (--context captions): "
                    f'give each input a caption (--caption TEXT, or "caption" in a JSONL --input); missing for {shown}'
                )
            return [item.caption for item in inputs]
        return label_words if label_words is not None else [None] * len(inputs)  # no image: no label words

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

    # -- prediction ----------------------------------------------------------------------
    def predict(self, inputs: Sequence[PredictInput], chunk_size: int = 1024) -> list[Prediction]:
        """Tags and entity spans of every input, in order; ``chunk_size`` inputs are featurized
        at a time, so a large file never holds all its features at once."""
        inputs = list(inputs)
        for n, item in enumerate(inputs, start=1):
            if not item.words or any(not w for w in item.words):
                raise ConfigError(
                    f"input {item.id or n}: {'no words' if not item.words else 'an empty word'}"
                )
        if "text" in self.needs:
            self._contexts(inputs, [None] * len(inputs))  # a missing caption fails before any model loads
        with_images = sum(bool(item.images) for item in inputs)
        if self.reads_images and with_images < len(inputs):
            what = "zero image features" if self.needs & IMAGE_NEEDS else "no label words"
            self.note(
                f"{len(inputs) - with_images} of {len(inputs)} input(s) have no image: read as text-only "
                f"({what}), as training read tweets whose image was missing"
            )
        if not self.reads_images and with_images:
            self.note(f"{self.describe()} reads no image: the image(s) given are not used")
        out: list[Prediction] = []
        for begin in range(0, len(inputs), chunk_size):
            out += self._predict_chunk(inputs[begin : begin + chunk_size])
        return out

    def _predict_chunk(self, inputs: list[PredictInput]) -> list[Prediction]:
        images = self.image_features(inputs) if self.reads_images else {}
        features = None
        if "text" in self.needs:
            features = self.text_features(inputs, images.get("label_words"))
        if self.crfsuite is not None:
            tags = self.crfsuite.predict([item.words for item in inputs], features)
        else:
            tags = self._predict_torch(inputs, features, images)
        return [
            Prediction(item.id, list(item.words), list(t), entities(item.words, t))
            for item, t in zip(inputs, tags)
        ]

    def _predict_torch(
        self, inputs: list[PredictInput], features: list[np.ndarray] | None, images: dict[str, Any]
    ) -> list[list[str]]:
        from heads import checkpoint
        from heads.data import Batcher, SplitData
        from heads.train import predict

        n = len(inputs)
        words = [list(item.words) for item in inputs]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(w) for w in words], out=offsets[1:])
        data = SplitData(
            "predict",
            words,
            [["O"] * len(w) for w in words],
            [item.id or str(i) for i, item in enumerate(inputs)],
            np.concatenate(features, axis=0) if features else None,
            offsets,
        )
        if self.needs & IMAGE_NEEDS:
            width = int(self.model.dims.image) or 1
            data.has_image = np.zeros(n, dtype=bool)
            data.image = np.zeros((n, width), dtype=np.float32)
            data.label_ids = np.zeros((n, 5), dtype=np.int64)
            if "pooled" in images:
                data.image = images["pooled"]
                data.has_image = images["has_image"].copy()
            if "label_ids" in images:
                data.label_ids = images["label_ids"]
                data.has_image = data.has_image | images["has_image"]
            if "patches" in self.needs:
                data.patches = images.get("patches") or [None] * n
        checkpoint.check_dims(self.config, data.text_dim, data.image_dim if "pooled" in images else 0)
        batcher = Batcher(data, self.tags, self.vocab, self.needs)
        return predict(self.model, batcher)


def predict(
    model: Path,
    inputs: Sequence[PredictInput],
    cache_root: Path | None = None,
    device: str = "auto",
    note: Note | None = None,
) -> list[Prediction]:
    """Load the run folder ``model`` and tag ``inputs`` (see :class:`Predictor`)."""
    return Predictor(model, cache_root, device, note).predict(inputs)


__all__ = [
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "MnerError",
    "PredictInput",
    "Prediction",
    "Predictor",
    "build_text_encoder_like",
    "build_vision_encoder_like",
    "collect_inputs",
    "detect_input_format",
    "entities",
    "format_predictions",
    "inputs_from_texts",
    "load_images",
    "predict",
    "read_inputs",
    "tokenize",
    "tokenizer_style",
    "word_options",
]
