"""``annotate ocr-eval``: character error rate of each OCR engine and language setting against
reference transcriptions.

CER = (substitutions + insertions + deletions) / reference characters, summed over all boxes
(rapidfuzz's Levenshtein distance), after the same clean-up the tool applies before labelling:
hyphenated line breaks rejoined and whitespace runs collapsed to one space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurize import ocr
from featurize.errors import ConfigError, DataFormatError
from featurize.ocr_text import rejoin_lines
from featurize.readers.jsonl import json_object


@dataclass
class Reference:
    image: Path
    box: list[float] | None
    text: str


def read_references(path: Path, images: Path) -> list[Reference]:
    """``{"image": "<file under --images>", "box": [x0, y0, x1, y1] or null, "text": "..."}`` per line."""
    refs = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the references ({err})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = json_object(line, Path(path), number)
        if not isinstance(record.get("image"), str) or not isinstance(record.get("text"), str):
            raise DataFormatError(Path(path), number, 'needs "image" (a file name) and "text"')
        file = images / record["image"]
        if not file.is_file():
            raise DataFormatError(Path(path), number, f"image {file} not found")
        box = record.get("box")
        if box is not None and (not isinstance(box, list) or len(box) != 4):
            raise DataFormatError(Path(path), number, '"box" must be [x0, y0, x1, y1] or null')
        refs.append(Reference(file, box, record["text"]))
    if not refs:
        raise ConfigError(f"{path}: no references")
    return refs


def cer(hypothesis: str, reference: str) -> tuple[int, int]:
    from rapidfuzz.distance import Levenshtein

    hyp, ref = rejoin_lines(hypothesis), rejoin_lines(reference)
    return Levenshtein.distance(hyp, ref), len(ref)


def evaluate(refs: list[Reference], engine: str, lang: str) -> dict[str, Any]:
    from PIL import Image

    runner = ocr.ENGINES.get(engine)
    edits = chars = 0
    seconds = 0.0
    worst: list[tuple[float, str, str]] = []
    for ref in refs:
        with Image.open(ref.image) as img:
            image = img.convert("RGB")
        if ref.box:
            image = image.crop(tuple(round(v) for v in ref.box))
        result = runner.run(image, lang)
        seconds += result.seconds
        e, n = cer(result.text, ref.text)
        edits, chars = edits + e, chars + n
        worst.append((e / max(n, 1), ref.image.name, rejoin_lines(result.text)))
    worst.sort(reverse=True)
    return {
        "engine": engine,
        "lang": lang,
        "boxes": len(refs),
        "reference chars": chars,
        "edits": edits,
        "CER %": round(100 * edits / max(chars, 1), 2),
        "worst box": f"{worst[0][1]} ({100 * worst[0][0]:.0f} %)",
        "seconds": round(seconds, 1),
    }


def ocr_report(
    images: Path,
    reference: Path,
    engines: list[str],
    langs: list[str],
    command: str,
    note: Callable[[str], None] = lambda _message: None,
) -> Any:
    """``annotate ocr-eval``: every available engine x language setting against the references;
    an engine that cannot run here is skipped with a note. Returns the report table."""
    from heads.report_table import Report

    refs = read_references(reference, images)
    rows = []
    for name in engines:
        problem = ocr.ENGINES.get(name).available()
        if problem:
            note(f"{name}: {problem}: skipped")
            continue
        for setting in langs:
            rows.append(evaluate(refs, name, setting))
    if not rows:
        raise ConfigError("no OCR engine could run")
    table = Report(
        f"OCR character error rate on {len(refs)} transcribed boxes",
        ["engine", "lang", "boxes", "reference chars", "edits", "CER %", "worst box", "seconds"],
        rows,
        command=command,
    )
    table.notes.append(
        "CER after rejoining hyphenated line breaks and collapsing whitespace, as the tool does."
    )
    return table
