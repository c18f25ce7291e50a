"""One labelled text with its image links: the unit every reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Example:
    """A tweet or sentence.

    ``line`` is the 1-based line in ``source`` where the example starts, so later checks
    (tag validation, image lookup) can still point the user at the right place.
    """

    id: str
    words: list[str]
    labels: list[str]
    image_ids: list[str] = field(default_factory=list)
    source: str = ""
    line: int = 0
    image_paths: list[str | None] = field(default_factory=list)
    caption: str | None = None


@dataclass
class Split:
    """The examples of one split plus what the loader noticed on the way."""

    name: str
    examples: list[Example]
    sources: list[str]
    i_starts: int = 0
    repaired: int = 0
    images_missing: int = 0
    images_found: int = 0
    dropped_missing_image: int = 0
    captions_found: int = 0
    notes: list[str] = field(default_factory=list)
