"""Raw text into words, the way the datasets a head was trained on cut theirs.

A head only ever saw its dataset's words; a new text must be split the same way, or a
hashtag that training saw as "#NBA" arrives as "#", "NBA". The rules are those of the UMT
Twitter sets (see :func:`tokenize`); each dataset names its style in its registry entry
(``DatasetSpec.tokenizer``), so no code tests a dataset's name.
"""

from __future__ import annotations

import re
import unicodedata

from featurize.errors import ConfigError

TOKENIZER_STYLES = ("auto", "tweet", "split")

_URL = re.compile(r"^(?:https?:|www\.)", re.IGNORECASE)
_EMOTICON = re.compile(r"^[:;=8xX][-o*'^]?[)(\]\[dDpPoO/\\|*3]$|^<3$")
_APOSTROPHES = "'’"
# Kept at the end of a URL: the characters a URL may end with; the rest is punctuation after it.
_URL_TRAILING = ".,;:!?)]}\"'”’…"


def _is_punct(ch: str) -> bool:
    """Punctuation and symbols (emoji included), but not ``_``: it belongs to user names."""
    category = unicodedata.category(ch)
    return ch != "_" and (category.startswith("P") or category.startswith("S"))


def _is_mark(ch: str) -> bool:
    """Variation selectors, zero-width joiners, combining marks: part of the symbol before them."""
    return unicodedata.category(ch) in ("Mn", "Me", "Cf")


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _runs(text: str, style: str) -> list[str]:
    """Punctuation split into tokens: one per character (``split``), or runs of one repeated
    character kept together (``tweet``: "...", "!!", "--", as Twitter-2015 has them)."""
    if style == "split":
        return list(text)
    out: list[str] = []
    for ch in text:
        if out and (out[-1][-1] == ch or _is_mark(ch)):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _split_apostrophes(core: str) -> list[str]:
    """``It's`` -> ``It ' s``, ``don't`` -> ``don ' t``, ``O'Hare`` -> ``O ' Hare``: both UMT
    datasets split every apostrophe between letters off as its own token."""
    out: list[str] = []
    current = ""
    for i, ch in enumerate(core):
        inside = 0 < i < len(core) - 1 and core[i - 1].isalnum() and core[i + 1].isalnum()
        if ch in _APOSTROPHES and inside:
            out.extend([current, ch])
            current = ""
        else:
            current += ch
    out.append(current)
    return [t for t in out if t]


def _chunk(chunk: str, style: str) -> list[str]:
    if _URL.match(chunk):
        end = len(chunk)
        while end > 1 and chunk[end - 1] in _URL_TRAILING:
            end -= 1
        return [chunk[:end], *_runs(chunk[end:], style)]
    if _EMOTICON.match(chunk):
        return [chunk]
    start = 0
    while start < len(chunk) and (_is_punct(chunk[start]) or start and _is_mark(chunk[start])):
        # "#tag" and "@user" keep their sign (tweet style) or have it split off (split style).
        if chunk[start] in "#@" and start + 1 < len(chunk) and _is_word_char(chunk[start + 1]):
            break
        start += 1
    end = len(chunk)
    while end > start and (_is_punct(chunk[end - 1]) or _is_mark(chunk[end - 1])):
        end -= 1
    while end < len(chunk) and _is_mark(chunk[end]):  # a mark belongs to the word it follows
        end += 1
    lead, core, trail = chunk[:start], chunk[start:end], chunk[end:]
    words = _runs(lead, style)
    if core[:1] in ("#", "@") and style == "split":
        words.append(core[0])
        core = core[1:]
    words.extend(_split_apostrophes(core))
    words.extend(_runs(trail, style))
    return words


def tokenize(text: str, style: str = "tweet") -> list[str]:
    """Words of a raw tweet, split the way the UMT Twitter datasets split theirs.

    The rule: split on whitespace; a chunk that starts with ``http:``, ``https:`` or ``www.``
    is one URL word (punctuation after it, as in "see http://t.co/x.", is split off); an
    emoticon (``:)``, ``;-(``, ``<3``) stays one word; otherwise the punctuation and symbols
    (emoji included) at the start and end of a chunk become words of their own, while
    punctuation inside it stays ("U.S.", "10,000", "well-known", "Giants_101"). An apostrophe
    between letters is split off ("It's" -> "It", "'", "s"), as both datasets do. ``#`` and
    ``@`` before a word character start a hashtag or a mention:

    - ``tweet`` (Twitter-2015's words): ``#NBA`` and ``@user`` are one word each; a run of one
      repeated punctuation character is one word ("...", "!!").
    - ``split`` (Twitter-2017's words): ``#`` and ``@`` are split off ("#", "NBA"), and every
      punctuation character is a word of its own (". . .").

    A word the head never saw spelled that way still gets a vector, so the difference costs
    accuracy, not correctness; :func:`tokenizer_style` picks the style of the head's dataset.
    """
    if style not in ("tweet", "split"):
        raise ConfigError(f"tokenizer style {style!r}: choose tweet or split")
    words: list[str] = []
    for chunk in text.split():
        words.extend(_chunk(chunk, style))
    return words


def tokenizer_style(dataset: str | None, style: str = "auto") -> str:
    """``auto``: the style the dataset's registry entry names (``split`` for t17, whose words have
    "#" and "@" split off), ``tweet`` for any other dataset (a user's file among them)."""
    from featurize.datasets import DATASETS

    if style not in TOKENIZER_STYLES:
        raise ConfigError(f"--tokenizer {style!r}: choose one of {', '.join(TOKENIZER_STYLES)}")
    if style != "auto":
        return style
    return DATASETS.get(dataset).tokenizer if dataset in DATASETS else "tweet"
