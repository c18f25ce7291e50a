"""The entity list at the head of a knowledge text, read: which names a chat model lists, and
as what kind.

PGIM's answers (and those ``featurize knowledge`` asks for in the same shape) begin with the
entities the model sees, as numbered items ``1. Kawhi Leonard (person/player)``, then a
reasoning. ``bench knowledge`` measures how often those names and kinds agree with the gold
mentions; the heads' ``--knowledge-hints`` turn them into per-word features
(:mod:`heads.knowledge_hints`). A text in another shape lists nothing here, which is never an
error: its words still reach the encoder as a second segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENTITY_TYPES = ("PER", "LOC", "ORG", "MISC")

_REASONING = re.compile(r"\breasoning\s*:", re.IGNORECASE)
# a numbered ("1.", "2)") or bulleted ("-", "*", "•") item: a name, then its kind in brackets
_ITEM = re.compile(r"(?:\b\d+[.)]|(?<!\S)[-*•])\s*([^()\n]+?)\s*\(([^)]*)\)")
# the kind words PGIM's answers use, read onto the four Twitter types (first match wins)
_KINDS = (
    (
        "PER",
        (
            "person",
            "people",
            "player",
            "singer",
            "actor",
            "actress",
            "artist",
            "politician",
            "rapper",
            "musician",
            "athlete",
            "celebrity",
            "president",
            "character",
            "author",
            "user",
        ),
    ),
    (
        "LOC",
        (
            "location",
            "place",
            "city",
            "country",
            "state",
            "region",
            "continent",
            "town",
            "venue",
            "street",
            "area",
            "island",
            "stadium",
            "building",
        ),
    ),
    (
        "ORG",
        (
            "organization",
            "organisation",
            "team",
            "company",
            "band",
            "league",
            "club",
            "group",
            "party",
            "university",
            "school",
            "network",
            "brand",
            "agency",
            "government",
            "news",
            "media",
        ),
    ),
)


@dataclass(frozen=True)
class ListedEntity:
    name: str  # as the text writes it
    kind: str  # the words in brackets after it
    type: str  # that kind read onto PER / LOC / ORG / MISC


def entity_list(text: str) -> str:
    """The part of a knowledge text before its reasoning (all of it when it has none)."""
    found = _REASONING.search(text)
    return text[: found.start()] if found else text


def kind_type(kind: str) -> str:
    """The type a knowledge text's kind words name: PER, LOC, ORG, else MISC."""
    lowered = kind.lower()
    for name, words in _KINDS:
        if any(word in lowered for word in words):
            return name
    return "MISC"


def listed_entities(text: str) -> list[ListedEntity]:
    """Each item of the text's entity list, in order (none when it has no such list)."""
    return [
        ListedEntity(name.strip(), kind.strip(), kind_type(kind))
        for name, kind in _ITEM.findall(entity_list(text))
        if name.strip()
    ]
