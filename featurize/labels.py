"""BIO tag checks, renaming of entity types and the count (or repair) of spans that open with I-."""

from __future__ import annotations

import re
from collections.abc import Iterable

from featurize.errors import ConfigError, DataFormatError
from featurize.example import Example
from featurize.limits import MAX_TOKEN_CHARS, shown

TAG = re.compile(r"O|([BI])-(\S+)")  # matched whole (fullmatch): no line end may trail it


def tag_order(tags: Iterable[str]) -> list[str]:
    """O first, then by entity type with B- before I-: the code order of every cache entry and head."""
    return sorted(set(tags), key=lambda t: (t != "O", t[2:], t[:1]))


def parse_label_map(items: Iterable[str]) -> dict[str, str]:
    """``["OTHER=MISC"]`` -> ``{"OTHER": "MISC"}``; entity types, not full tags."""
    mapping: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"label map item {item!r} is not OLD=NEW")
        old, new = (part.strip() for part in item.split("=", 1))
        if not old or not new:
            raise ValueError(f"label map item {item!r} is not OLD=NEW")
        mapping[old] = new
    return mapping


def parse_types(value: str | Iterable[str]) -> frozenset[str]:
    """``--types PER,LOC`` (or a sequence of names) -> the declared entity types; blanks are
    dropped, and a tag (``B-PER``) or a name with whitespace is a :class:`ConfigError`."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    types = {str(part).strip() for part in parts} - {""}
    if not types:
        raise ConfigError("--types: name at least one entity type, e.g. --types PER,LOC,ORG")
    for kind in sorted(types):
        if TAG.fullmatch(kind) or kind.startswith(("B-", "I-")):
            raise ConfigError(f"--types {kind!r}: name entity types (PER), not tags (B-PER)")
        if not re.fullmatch(r"\S+", kind) or len(kind) > MAX_TOKEN_CHARS:
            raise ConfigError(f"--types {shown(kind)}: an entity type is one word without spaces")
    return frozenset(types)


def check_tag(tag: str, path: str, line: int | None, types: set[str] | frozenset[str] | None) -> None:
    """``O``, ``B-TYPE`` or ``I-TYPE`` with TYPE in ``types`` when they are declared."""
    if len(tag) > MAX_TOKEN_CHARS:
        raise DataFormatError(
            path, line, f"tag of {len(tag):,} characters, over the limit of {MAX_TOKEN_CHARS:,}: {shown(tag)}"
        )
    match = TAG.fullmatch(tag)
    if match is None:
        raise DataFormatError(path, line, f"unknown tag {shown(tag)}: expected O, B-TYPE or I-TYPE")
    if types is not None and match.group(2) is not None and match.group(2) not in types:
        raise DataFormatError(path, line, f"unknown tag {shown(tag)}: entity type not in {sorted(types)}")


def rename_types(labels: list[str], mapping: dict[str, str]) -> list[str]:
    if not mapping:
        return labels
    out = []
    for tag in labels:
        if tag != "O" and tag[2:] in mapping:
            tag = f"{tag[:2]}{mapping[tag[2:]]}"
        out.append(tag)
    return out


def span_starts_with_i(labels: list[str]) -> list[int]:
    """Positions of I- tags that open a span (after O, at the start, or after another type)."""
    found = []
    previous = "O"
    for i, tag in enumerate(labels):
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            found.append(i)
        previous = tag
    return found


def repair_i_starts(example: Example) -> int:
    """Turn span-opening I- tags into B- (the conlleval reading); returns how many changed."""
    positions = span_starts_with_i(example.labels)
    for i in positions:
        example.labels[i] = "B-" + example.labels[i][2:]
    return len(positions)


def entity_types(labels: Iterable[str]) -> list[str]:
    return sorted({tag[2:] for tag in labels if tag != "O"})


def count_entities(labels: list[str]) -> dict[str, int]:
    """Spans per type as conlleval counts them: B- opens one, so does an I- after O/another type."""
    counts: dict[str, int] = {}
    starts = set(span_starts_with_i(labels))
    for i, tag in enumerate(labels):
        if tag.startswith("B-") or i in starts:
            counts[tag[2:]] = counts.get(tag[2:], 0) + 1
    return counts
