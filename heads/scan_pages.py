"""Scanned pages in, entities out: ``heads predict --model RUN --scans DIR --out entities.jsonl``.

Per scan: OCR of the whole page (:func:`featurize.ocr.read_page`: every word with its box),
the words cut into the tokens the head was trained on (punctuation apart, a word hyphenated
at a line end rejoined), the page cut into sentences (the historical sets train on
sentences), the head's tags with each word's confidence, and the entities: text, type,
score (the mean confidence of its words), the box on the scan (the union of its words'
boxes) and one box per line it spans.

A bad scan (not an image, unreadable, no words found) is a line with an ``error`` and the
run goes on. OCR is the slow part (seconds a page), so its words are cached per scan under
``<cache>/ocr/``, keyed by the image's bytes, the engine (and its version) and the
language: a re-run, or a run with another model, reads no page twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurize.atomic import atomic_write_text
from featurize.document_context import neighbour_texts
from featurize.errors import ConfigError
from featurize.images import IMAGE_SUFFIXES
from featurize.ocr import ENGINES, OcrWord, read_page
from featurize.ocr_text import tokenize

OCR_CACHE_VERSION = 2  # 2: Tesseract's sparse-text fallback
SENTENCE_ENDS = {".", "!", "?"}
MAX_SENTENCE = 120  # tokens: a page without full stops is still cut into pieces a head reads
HYPHENS = "-\u00ad\u2010\u2011\u2e17=¬"
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ScanSettings:
    """How pages are read; every field but ``cache`` is part of the OCR cache key."""

    engine: str = "tesseract"
    lang: str = "deu"
    min_confidence: float = 30.0  # words the engine is less sure of are dropped (picture noise)
    min_width: int = 1600  # small scans are enlarged to this width before OCR
    cache: Path | None = None


@dataclass
class Token:
    text: str
    boxes: list[Box]  # one, or two for a word rejoined across a line break
    line: tuple[int, int, int]


@dataclass
class ScanResult:
    """One scan's line of ``entities.jsonl``."""

    scan: str  # path relative to the scans folder
    path: Path
    width: int = 0
    height: int = 0
    tokens: list[Token] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    ocr: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scan": self.scan}
        if self.error is not None:
            return out | {"error": self.error, "ocr": self.ocr}
        words = [
            {"text": t.text, "box": list(union(t.boxes)), "tag": tag, "confidence": round(c, 4)}
            for t, tag, c in zip(self.tokens, self.tags, self.confidences)
        ]
        return out | {
            "width": self.width,
            "height": self.height,
            "ocr": self.ocr,
            "entities": self.entities,
            "words": words,
        }


def union(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def list_scans(folder: Path, option: str = "--scans") -> list[Path]:
    """Every file of the folder, recursively and sorted: a file that is not an image is listed
    as a bad scan, not silently passed over (``annotate serve --images`` lists its scans so too)."""
    if not folder.is_dir():
        raise ConfigError(f"{option} {folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ConfigError(f"{option} {folder}: the folder is empty")
    return files


def check_settings(settings: ScanSettings) -> None:
    """Refuse an engine that cannot run here before any page is read."""
    if settings.engine not in ENGINES:
        raise ConfigError(f"--ocr-engine {settings.engine!r}: choose one of {', '.join(ENGINES)}")
    engine = ENGINES.get(settings.engine)
    problem = engine.available()
    if problem:
        raise ConfigError(f"OCR engine {settings.engine}: {problem}")
    check = getattr(engine, "check_languages", None)
    if check is not None:
        check(settings.lang)


# --------------------------------------------------------------------------- OCR, cached


class OcrCache:
    """``<folder>/<key>.json``: one scan's words, written atomically."""

    def __init__(self, folder: Path | None, settings: ScanSettings) -> None:
        self.folder = folder
        self.settings = settings
        self._version = ENGINES.get(settings.engine).version() if folder else ""

    def key(self, data: bytes) -> str:
        s = self.settings
        h = hashlib.sha256(data)
        h.update(json.dumps([OCR_CACHE_VERSION, s.engine, self._version, s.lang, s.min_width]).encode())
        return h.hexdigest()[:32]

    def get(self, key: str) -> list[OcrWord] | None:
        if self.folder is None:
            return None
        path = self.folder / f"{key}.json"
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))["words"]
            return [OcrWord.from_json(r) for r in rows]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or damaged: read the page again

    def put(self, key: str, words: list[OcrWord]) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        body = {"version": OCR_CACHE_VERSION, "words": [w.to_json() for w in words]}
        atomic_write_text(self.folder / f"{key}.json", json.dumps(body, ensure_ascii=False))


def read_scan(path: Path, rel: str, settings: ScanSettings, cache: OcrCache) -> ScanResult:
    """The scan's OCR words (cached) as a result without tags yet."""
    import io

    from PIL import Image, UnidentifiedImageError

    result = ScanResult(rel, path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        result.error = f"not an image file ({path.suffix or 'no suffix'})"
        return result
    try:
        data = path.read_bytes()  # read once: the cache key and the image
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            image = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        reason = str(err).replace(str(path), path.name)[:120]  # the scan's name, not the server's path
        result.error = f"cannot be read as an image ({type(err).__name__}: {reason})"
        return result
    result.width, result.height = image.size
    key = cache.key(data)
    started = time.perf_counter()
    words = cache.get(key)
    cached = words is not None
    if words is None:
        words = read_page(settings.engine, image, settings.lang, settings.min_width)
        cache.put(key, words)
    kept = [w for w in words if w.confidence >= settings.min_confidence]
    result.ocr = {
        "engine": settings.engine,
        "lang": settings.lang,
        "words": len(words),
        "dropped_low_confidence": len(words) - len(kept),
        "seconds": round(time.perf_counter() - started, 2),
        "cached": cached,
    }
    result.tokens = page_tokens(kept)
    if not result.tokens:
        result.error = (
            "no words found by OCR"
            if not words
            else f"OCR found only words under confidence {settings.min_confidence:g}"
        )
    return result


# --------------------------------------------------------------------------- words to tokens


def rejoin_hyphenated(words: list[OcrWord]) -> list[tuple[str, list[Box], tuple[int, int, int]]]:
    """Words with their boxes, a word broken at a line end ("Kir-" / "che") rejoined with both
    boxes; a capital after the break keeps the hyphen ("Ost-" / "Bayern": a compound), as
    :func:`featurize.ocr_text.rejoin_lines` does for a caption's text."""
    out: list[tuple[str, list[Box], tuple[int, int, int]]] = []
    skip = False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        nxt = words[i + 1] if i + 1 < len(words) else None
        breaks = (
            nxt is not None
            and len(word.text) > 1
            and word.text[-1] in HYPHENS
            and word.text[-2].isalpha()
            and nxt.line[:2] == word.line[:2]  # same block and paragraph
            and nxt.line[2] != word.line[2]  # the next word opens a new line
            and nxt.text[:1].isalpha()
        )
        if breaks and nxt is not None:
            joined = word.text[:-1] + ("-" if nxt.text[0].isupper() else "") + nxt.text
            out.append((joined, [word.box, nxt.box], word.line))
            skip = True
        else:
            out.append((word.text, [word.box], word.line))
    return out


def page_tokens(words: list[OcrWord]) -> list[Token]:
    """The page's tokens in reading order: each OCR word split as the datasets split words
    (punctuation apart), each piece with its share of the word's box (by characters)."""
    tokens: list[Token] = []
    for text, boxes, line in rejoin_hyphenated(words):
        pieces = tokenize(text)
        if len(boxes) > 1 or len(pieces) == 1:
            tokens += [Token(p, list(boxes), line) for p in pieces]
            continue
        x0, y0, x1, y1 = boxes[0]
        total = max(1, len(text))
        at = 0
        for piece in pieces:
            begin = text.find(piece, at)
            begin = at if begin < 0 else begin
            end = begin + len(piece)
            at = end
            left = x0 + (x1 - x0) * begin // total
            right = max(left + 1, x0 + (x1 - x0) * end // total)
            tokens.append(Token(piece, [(left, y0, right, y1)], line))
    return tokens


def sentences(tokens: list[Token]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` token ranges: a paragraph is cut after ., ! or ? when a capital or a
    digit follows and the sentence has three tokens or more, and after ``MAX_SENTENCE``."""
    start = 0
    for i, token in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        end_here = (
            nxt is None
            or nxt.line[:2] != token.line[:2]
            or i + 1 - start >= MAX_SENTENCE
            or (
                token.text in SENTENCE_ENDS
                and i + 1 - start >= 3
                and bool(re.match(r"[\W\d]*[A-ZÄÖÜ0-9]", nxt.text))
            )
        )
        if end_here:
            yield start, i + 1
            start = i + 1


# --------------------------------------------------------------------------- entities


def page_entities(result: ScanResult) -> list[dict[str, Any]]:
    """Entities of the tagged page with their boxes: the union, and one per line spanned."""
    from heads.predictor import entities

    spans = entities([t.text for t in result.tokens], result.tags, result.confidences)
    out = []
    for span in spans:
        start, end = int(span["start"]), int(span["end"])  # type: ignore[call-overload]
        words = result.tokens[start:end]
        lines: dict[tuple[int, int, int], list[Box]] = {}
        for token in words:
            for box in token.boxes:
                lines.setdefault(token.line, []).append(box)
        by_line = [list(union(boxes)) for boxes in lines.values()]
        if any(len(t.boxes) > 1 for t in words):  # a rejoined word: its two halves' lines
            by_line = [list(b) for t in words for b in t.boxes]
        out.append(
            {
                "text": join_words([t.text for t in words]),
                "type": span["type"],
                "score": span["score"],
                "box": list(union([b for t in words for b in t.boxes])),
                "boxes": by_line,
                "start": start,
                "end": end,
            }
        )
    return out


def join_words(words: list[str]) -> str:
    """Tokens back into text: no space before closing punctuation or after an opening one."""
    text = ""
    for word in words:
        glue = "" if not text or word in ",.;:!?)]»“" or text[-1] in "([„«" else " "
        text += glue + word
    return text


# --------------------------------------------------------------------------- the run


def tag_scans(
    predictor: Any,
    folder: Path,
    settings: ScanSettings,
    on_scan: Callable[[ScanResult], None] = lambda _r: None,
) -> list[ScanResult]:
    """Every scan of ``folder`` read, tagged and its entities found, in the folder's order."""
    from heads.input_files import PredictInput

    check_settings(settings)
    root = folder.resolve()
    cache = OcrCache(settings.cache, settings)
    results = []
    for path in list_scans(root):
        result = read_scan(path, path.relative_to(root).as_posix(), settings, cache)
        if result.error is None:
            ranges = list(sentences(result.tokens))
            images = [path] if predictor.reads_images else []
            words = [[t.text for t in result.tokens[a:b]] for a, b in ranges]
            around: list[str | None] = [None] * len(words)
            if predictor.inputs.context == "neighbours":  # the page's sentences around each one
                around = neighbour_texts([f"page:{k}" for k in range(len(words))], words)
            inputs = [
                PredictInput(w, images, around[k], id=f"{result.scan}:{a}")
                for k, (w, (a, _b)) in enumerate(zip(words, ranges))
            ]
            for prediction in predictor.predict(inputs, scores=True):
                result.tags += prediction.tags
                result.confidences += prediction.confidences or []
            result.entities = page_entities(result)
        results.append(result)
        on_scan(result)
    return results


def jsonl(results: list[ScanResult]) -> str:
    """One JSON line per scan, as ``--out`` holds them (or stdout without it)."""
    return "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in results)
