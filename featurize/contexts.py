"""The kinds of second text segment (``--context``) and how several combine.

A context is text read after an example's words (``[CLS] words [SEP] context [SEP]``); only the
words' vectors are kept. Its kinds are registered here with their traits, so featurize, the
heads and the grid read one list:

- ``budget``: the default subword budget of the segment (None: half a window, the cut every
  context had before budgets existed, so those cache keys did not change). Knowledge is long
  (PGIM's: a median of 124 to 140 MPNet subwords per split, the longest 270): how much of it is read was chosen on
  validation (docs/knowledge.md, "How much knowledge to read").
- ``order``: where the kind goes in a combined context (``captions+knowledge``): the short,
  literal description of the picture first, then the model's knowledge.

Kinds combine with ``+``; the combined text joins the parts with :data:`JOIN`.
"""

from __future__ import annotations

from collections.abc import Sequence

from featurize.errors import ConfigError
from featurize.registry import Registry

CONTEXT_KINDS: Registry[str] = Registry("context", defaults={"budget": None, "order": 0})
CONTEXT_KINDS.register("captions", order=0)("the image's caption (BLIP-2 for the Twitter sets)")
CONTEXT_KINDS.register("labels", order=1)("the image's top-5 ImageNet label words")
CONTEXT_KINDS.register("neighbours", order=2)("the sentences before and after it in its document")
# 256 subwords: of 64, 128 and 256, the best T17 dev entity F1 of CWI on MPNet features (seed 0:
# 87.38, 87.58, 87.97; docs/knowledge.md has the table and the commands). For MPNet that is
# all of every T17 text (its cap is half a window, 254); for longer windows it bounds the cost.
CONTEXT_KINDS.register("knowledge", budget=256, order=3)(
    "LLM-written auxiliary knowledge (PGIM's, or `featurize knowledge`)"
)

JOIN = " | "  # between the parts of a combined context


def context_parts(name: str) -> list[str]:
    """``captions+knowledge`` -> its kinds in their reading order; a clear error for others."""
    parts = [p.strip() for p in name.split("+") if p.strip()]
    if not parts:
        raise ConfigError(f"--context {name!r}: name a kind ({', '.join(CONTEXT_KINDS)})")
    for part in parts:
        if part not in CONTEXT_KINDS:
            raise ConfigError(
                f"--context {name!r}: unknown kind {part!r}; choose from {', '.join(CONTEXT_KINDS)}, "
                "joined with + for several"
            )
    if len(set(parts)) != len(parts):
        raise ConfigError(f"--context {name!r} names a kind twice")
    return sorted(parts, key=lambda p: CONTEXT_KINDS.trait(p, "order"))


def canonical(name: str) -> str:
    """The one spelling of a context (``knowledge+captions`` -> ``captions+knowledge``), as
    entries and runs record it."""
    return name if name == "none" else "+".join(context_parts(name))


def default_budget(name: str) -> int | None:
    """The subword budget a context gets when none is asked for: the largest of its kinds'
    (None when no kind has one: half a window)."""
    if name == "none":
        return None
    budgets = [CONTEXT_KINDS.trait(p, "budget") for p in context_parts(name)]
    given = [b for b in budgets if b is not None]
    if not given:
        return None
    return max(given)


def join_parts(parts: Sequence[Sequence[str | None]]) -> list[str | None]:
    """Per example, its parts' texts joined (None when every part is empty)."""
    out: list[str | None] = []
    for texts in zip(*parts):
        present = [t for t in texts if t]
        out.append(JOIN.join(present) if present else None)
    return out
