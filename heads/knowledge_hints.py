"""Per-word features from a knowledge text's entity list (``--knowledge-hints``).

A frozen encoder reads the knowledge as a second segment, but a head sees only the vectors of
the words being tagged: whether the chat model listed a word's name, and as what kind, reaches
it only as far as the encoder's attention happened to carry it. These columns say it
directly, per word, appended to the word's features:

- ``listed PER/LOC/ORG/MISC``: the word is inside an occurrence of a listed name (all of the
  name's words, in order), with the kind it was given read onto the four types;
- ``begins a listed name``: the first word of such an occurrence;
- ``part of a PER/LOC/ORG/MISC name``: the word is one of a listed name's words without the
  whole name occurring (``Kawhi`` for ``Kawhi Leonard``);
- ``named in the text``: the word (3 characters or more) occurs anywhere in the second segment
  (the knowledge; with ``captions+knowledge`` the caption too).

Words and names are compared lower-cased without punctuation, so ``#NBAAwards`` matches
``NBAAwards`` and ``Leonard's`` does not match ``Leonard``. The columns are computed from the
texts the cache stores (``strings/contexts``, before any subword budget's cut), from a
prediction's ``--knowledge`` text, and in fine-tuning from each batch's texts: the same
function everywhere, so a head reads the same columns in all three.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from featurize.knowledge_entities import ENTITY_TYPES, listed_entities

HINT_COLUMNS = (
    *(f"listed {t}" for t in ENTITY_TYPES),
    "begins a listed name",
    *(f"part of a {t} name" for t in ENTITY_TYPES),
    "named in the text",
)
HINT_DIM = len(HINT_COLUMNS)
_NOT_WORD = re.compile(r"[^\w]")


def _normal(word: str) -> str:
    return _NOT_WORD.sub("", word.lower())


def word_hints(words: Sequence[str], text: str | None) -> np.ndarray:
    """``(len(words), HINT_DIM)`` float32 columns for one example; zeros without a text."""
    hints = np.zeros((len(words), HINT_DIM), dtype=np.float32)
    if not text:
        return hints
    n_types = len(ENTITY_TYPES)
    begins, partial, named = n_types, n_types + 1, 2 * n_types + 1
    normal = [_normal(w) for w in words]
    listed = []
    for item in listed_entities(text):
        parts = [p for p in (_normal(t) for t in item.name.split()) if p]
        if parts:
            listed.append((parts, ENTITY_TYPES.index(item.type)))
    # whole names, longest first; a word already inside a longer name keeps that one
    for parts, kind in sorted(listed, key=lambda p: -len(p[0])):
        size = len(parts)
        for start in range(len(words) - size + 1):
            if normal[start : start + size] == parts and not hints[start : start + size, : begins + 1].any():
                hints[start, begins] = 1
                hints[start : start + size, kind] = 1
    for parts, kind in listed:
        for i, word in enumerate(normal):
            if len(word) > 1 and word in parts and not hints[i, :n_types].any():
                hints[i, partial + kind] = 1
    mentioned = {w for w in (_normal(t) for t in text.split()) if w}
    for i, word in enumerate(normal):
        if len(word) > 2 and word in mentioned:
            hints[i, named] = 1
    return hints


def hints_for(words: Sequence[Sequence[str]], texts: Sequence[str | None] | None) -> list[np.ndarray]:
    """:func:`word_hints` of each example (zeros for all when there are no texts)."""
    if texts is None:
        texts = [None] * len(words)
    return [word_hints(w, t) for w, t in zip(words, texts)]
