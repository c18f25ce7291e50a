"""The thesis's JSON-lines format: ``{"text": [...], "images": [...] | "image": [...], "label": [...]}``.

``tokens`` and ``image_id`` are read as aliases of ``text`` and ``image`` (the layout of the
public Twitter sample files), so those files need no conversion.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from featurize.errors import DataFormatError
from featurize.example import Example
from featurize.labels import check_tag
from featurize.limits import check_token, check_words
from featurize.readers import READERS
from featurize.readers.text_file import read_lines


def _strings(value: object, key: str, path: Path, number: int) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataFormatError(path, number, f"{key!r} must be a list of strings")
    return list(value)


@READERS.register("jsonl")
def read_jsonl(path: Path, types: set[str] | None = None) -> list[Example]:
    examples = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        record = json_object(line, path, number)
        text_key = "text" if "text" in record else "tokens"
        if text_key not in record or "label" not in record:
            raise DataFormatError(path, number, 'needs "text" (list of words) and "label"')
        words = _strings(record[text_key], text_key, path, number)
        labels = _strings(record["label"], "label", path, number)
        if len(words) != len(labels):
            raise DataFormatError(path, number, f"{len(words)} words but {len(labels)} labels")
        if not words:
            raise DataFormatError(path, number, "example has no words")
        check_words(len(words), path, number)
        for word in words:
            if not word:
                raise DataFormatError(path, number, "empty word")
            check_token(word, path, number)
        for tag in labels:
            check_tag(tag, str(path), number, types)
        images: list[str] = []
        for key in ("images", "image", "image_id"):
            if key in record and record[key] is not None:
                images = _strings(record[key], key, path, number)
                break
        examples.append(
            Example(
                id=str(record.get("id", f"{path.stem}:{number}")),
                words=words,
                labels=labels,
                image_ids=images,
                source=str(path),
                line=number,
            )
        )
    return examples


# A \uD800-\uDFFF escape: JSON lets it through alone, but no UTF-8 file or HDF5 string can hold it.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def json_object(line: str, path: Path, number: int) -> dict:
    """One JSONL line as an object, or one clear error naming the file and line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, number, f"not valid JSON: {err.msg}") from None
    except RecursionError:
        raise DataFormatError(path, number, "JSON nested too deeply to read") from None
    except ValueError as err:  # an integer of more digits than Python converts
        raise DataFormatError(path, number, f"JSON not readable: {str(err).split(':')[0]}") from None
    if not isinstance(record, dict):
        raise DataFormatError(path, number, "each line must be a JSON object")
    if _SURROGATE_ESCAPE.search(line):
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise DataFormatError(
                path, number, "a \\uD800-\\uDFFF escape without its pair: not a Unicode character"
            ) from None
    return record
