"""What ``heads predict`` tags: ``--text`` values and input files (plain text, JSONL, CoNLL, UMT),
read into :class:`PredictInput` items with their image files and captions.

Every mistake in a file is a :class:`featurize.errors.DataFormatError` naming the file and line;
the size limits of featurize's readers (:mod:`featurize.limits`: line, token and words per text)
hold here too, for ``--text`` values as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurize.errors import ConfigError, DataFormatError
from featurize.limits import MAX_LINE_BYTES, check_token, check_words, token_problem, words_problem
from featurize.readers.jsonl import json_object
from heads.words import tokenize

Note = Callable[[str], None]
INPUT_FORMATS = ("auto", "text", "jsonl", "conll", "umt")


@dataclass
class PredictInput:
    """One text to tag: its words, its image files (none: text-only) and, for heads trained
    with a second segment, its caption and its LLM knowledge (``--context knowledge``)."""

    words: list[str]
    images: list[Path] = field(default_factory=list)
    caption: str | None = None
    id: str = ""
    knowledge: str | None = None


def inputs_from_texts(
    texts: Sequence[str | Sequence[str]],
    image: Path | Sequence[Path] | None = None,
    caption: str | None = None,
    style: str = "tweet",
    knowledge: str | None = None,
) -> list[PredictInput]:
    """``--text`` values (raw strings, or word lists taken as given), each with ``image``,
    ``caption`` and ``knowledge`` when given."""
    images = [] if image is None else [Path(image)] if isinstance(image, (str, Path)) else list(image)
    out = []
    for n, text in enumerate(texts, start=1):
        raw = text if isinstance(text, str) else " ".join(str(w) for w in text)
        try:
            size = len(raw.encode("utf-8"))
        except UnicodeEncodeError:
            raise ConfigError(f"--text number {n} is not valid UTF-8") from None
        if size > MAX_LINE_BYTES:
            raise ConfigError(f"--text number {n} is over the limit of {MAX_LINE_BYTES:,} bytes")
        words = tokenize(text, style) if isinstance(text, str) else [str(w) for w in text]
        if not words or any(not w for w in words):
            raise ConfigError(
                f"--text number {n} is empty" if not words else f"--text number {n} has an empty word"
            )
        problem = words_problem(len(words)) or next(filter(None, map(token_problem, words)), None)
        if problem is not None:
            raise ConfigError(f"--text number {n}: {problem}")
        out.append(PredictInput(words, [Path(p) for p in images], caption, f"text:{n}", knowledge))
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
    _check_size(words, path, number)
    return words


def _check_size(words: list[str], path: Path, number: int) -> None:
    check_words(len(words), path, number)
    for word in words:
        check_token(word, path, number)


def _find_image(value: str, base: Path, index: Any) -> Path | None:
    try:
        candidate = Path(value).expanduser()
        for path in (candidate, base / candidate) if not candidate.is_absolute() else (candidate,):
            if path.is_file():
                return path
    except (OSError, RuntimeError, ValueError):  # a name too long, ~user unknown, a NUL byte
        pass
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
            _check_size(words, path, number)
            out.append(PredictInput(words, id=f"{path.stem}:{number}"))
        return out
    if fmt == "jsonl":
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                raise DataFormatError(path, number, "empty line: one JSON object per line")
            record = json_object(line, path, number)
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
            texts = {}
            for text_key in ("caption", "knowledge"):
                value = record.get(text_key)
                if value is not None and not isinstance(value, str):
                    raise DataFormatError(path, number, f'"{text_key}" must be a string')
                texts[text_key] = value
            example_id = str(record.get("id", f"{path.stem}:{number}"))
            out.append(PredictInput(words, found, texts["caption"], example_id, texts["knowledge"]))
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
    knowledge: str | None = None,
) -> list[PredictInput]:
    """What ``heads predict`` tags: the ``--text`` values (with ``--image``/``--caption``/
    ``--knowledge``) and then the inputs of ``--input``."""
    if not texts and input_file is None:
        raise ConfigError("nothing to tag: give --text TEXT (repeatable) or --input FILE")
    if (image is not None or caption is not None or knowledge is not None) and not texts:
        raise ConfigError(
            "--image, --caption and --knowledge apply to --text; give them per input in a JSONL --input file"
        )
    out = inputs_from_texts(texts or [], image, caption, style, knowledge)
    if input_file is not None:
        out += read_inputs(input_file, input_format, style, images, image_map, note)
    return out


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
