"""``--context neighbours``: the sentences around a sentence of a document, read as a second
segment, so the encoder sees what a newspaper column or a book page says before and after it.

The historical sets are cut into sentences (HIPE at ``EndOfSentence``), and a name is often
only clear from its neighbours ("Herr Weber ... er" / "in Bern"). The neighbours are found
from the example ids alone: ``<document>:<n>`` (the HIPE reader's ids, and any JSONL file
that names its examples so) with consecutive ``n`` in one document. The cache stores ids and
words, so the heads rebuild the same texts from a cached split as featurize made them.
"""

from __future__ import annotations

from collections.abc import Sequence

NEIGHBOURS = 1  # sentences on each side
SEPARATOR = " … "  # between the sentence before and the one after


def _place(example_id: str) -> tuple[str, int] | None:
    document, sep, number = example_id.rpartition(":")
    if not sep or not document or not number.isdigit():
        return None
    return document, int(number)


def neighbour_texts(
    example_ids: Sequence[str], words: Sequence[Sequence[str]], width: int = NEIGHBOURS
) -> list[str | None]:
    """Per example, the ``width`` sentences before and after it in its document (None for an
    example without a document id, or alone in its document)."""
    where = {place: i for i, place in enumerate(_place(e) for e in example_ids) if place is not None}
    out: list[str | None] = []
    for example_id in example_ids:
        place = _place(example_id)
        if place is None:
            out.append(None)
            continue
        document, n = place
        before = [where.get((document, n - k)) for k in range(width, 0, -1)]
        after = [where.get((document, n + k)) for k in range(1, width + 1)]
        left = " ".join(" ".join(words[i]) for i in before if i is not None)
        right = " ".join(" ".join(words[i]) for i in after if i is not None)
        text = SEPARATOR.join(part for part in (left, right) if part)
        out.append(text or None)
    return out
