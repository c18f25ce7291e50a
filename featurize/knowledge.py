"""LLM-generated auxiliary knowledge per example (PGIM, Li et al. 2023), read as a second segment.

A knowledge file holds, per example, a text a chat model wrote about the words and the image
(the entities it sees with their kinds, then a short reasoning). Two layouts are read:

- TSV: ``<id><TAB><text>`` per line (PGIM's published files: ``<IMGID><TAB><knowledge>``);
- JSON lines: ``{"id": ..., "knowledge": ...}`` per line (a file ending in ``.jsonl``).

An id is matched against each example's image ids (file name without suffix) first, then its
example id, so one file serves the Twitter sets (keyed by image) and any user corpus (keyed by
example). An example with no line keeps an empty context; how many there are is counted.
``featurize knowledge`` writes the TSV layout (:func:`write_knowledge`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from featurize.atomic import atomic_write_text
from featurize.errors import ConfigError, DataFormatError
from featurize.example import Example
from featurize.readers.text_file import read_lines

MAX_KNOWLEDGE_CHARS = 100_000  # one example's text; PGIM's longest is under 3,000


def _clean(text: str) -> str:
    """One line of single-spaced words: the form PGIM's files have and featurize splits."""
    return " ".join(text.split())


def read_knowledge(path: Path) -> dict[str, str]:
    """Id -> knowledge text. Raises :class:`DataFormatError` naming the file and line."""
    path = Path(path)
    jsonl = path.suffix.lower() == ".jsonl"
    out: dict[str, str] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        if jsonl:
            key, text = _json_line(line, path, number)
        else:
            key, sep, text = line.partition("\t")
            if not sep:
                raise DataFormatError(path, number, "expected '<id><TAB><knowledge text>'")
            key = key.strip()
            if not key:
                raise DataFormatError(path, number, "the id before the tab is empty")
        if len(text) > MAX_KNOWLEDGE_CHARS:
            raise DataFormatError(
                path, number, f"{len(text):,} characters of knowledge (at most {MAX_KNOWLEDGE_CHARS:,})"
            )
        if key in out:
            raise DataFormatError(path, number, f"id {key!r} appears twice")
        out[key] = _clean(text)
    return out


def _json_line(line: str, path: Path, number: int) -> tuple[str, str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, number, f"not JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(record, dict):
        raise DataFormatError(path, number, 'expected an object {"id": ..., "knowledge": ...}')
    key, text = record.get("id"), record.get("knowledge")
    if not isinstance(key, (str, int)) or isinstance(key, bool) or str(key).strip() == "":
        raise DataFormatError(path, number, '"id" must be a non-empty string')
    if not isinstance(text, str):
        raise DataFormatError(path, number, '"knowledge" must be a string')
    return str(key).strip(), text


def write_knowledge(path: Path, rows: Iterable[tuple[str, str]]) -> int:
    """Write ``(id, text)`` rows as TSV (atomically); returns the number written. Tabs and line
    breaks inside a text become spaces, so every row stays one ``<id><TAB><text>`` line."""
    lines = []
    for key, text in rows:
        if "\t" in key or "\n" in key or not key.strip():
            raise ValueError(f"id {key!r} cannot be written to a TSV line")
        lines.append(f"{key}\t{_clean(text)}\n")
    atomic_write_text(Path(path), "".join(lines))
    return len(lines)


def example_key(example: Example) -> str:
    """The id a written knowledge line carries: the example's first image id (without suffix)
    when it has one, as PGIM keys the Twitter sets, else its example id."""
    return Path(example.image_ids[0]).stem if example.image_ids else example.id


@dataclass(frozen=True)
class Joined:
    texts: list[str | None]
    found: int
    missing: int


def join_knowledge(examples: Sequence[Example], knowledge: dict[str, str]) -> Joined:
    """Per example, its knowledge text (None where the file has none or an empty one)."""
    texts: list[str | None] = []
    for example in examples:
        text = None
        for image_id in example.image_ids:
            text = knowledge.get(Path(image_id).stem)
            if text is not None:
                break
        if text is None:
            text = knowledge.get(example.id)
        texts.append(text or None)
    found = sum(t is not None for t in texts)
    return Joined(texts, found, len(texts) - found)


def knowledge_file(dataset: str, default: str | None, data_root: Path, given: Path | None) -> Path:
    """The file ``--context knowledge`` reads: ``--knowledge FILE``, else the dataset's own
    (PGIM's for t15/t17, under the data root)."""
    if given is not None:
        return Path(given)
    if default is None:
        raise ConfigError(
            f"--context knowledge: dataset {dataset} has no knowledge file of its own; pass "
            '--knowledge FILE (TSV <id><TAB><text>, or JSONL {"id", "knowledge"}; '
            "`featurize knowledge` writes one)"
        )
    path = data_root / default
    if not path.is_file():
        raise ConfigError(
            f"--context knowledge: {path} not found; point --data-dir at the folder that holds "
            f"{default}, or pass --knowledge FILE"
        )
    return path
