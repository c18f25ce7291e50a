"""From OCR output to the words a user labels or a head tags: hyphenated line breaks rejoined, lines joined,
words and punctuation split apart (the way the project's datasets split them)."""

from __future__ import annotations

import re

# A word broken at a line end: "Kir-\nche" -> "Kirche". The old typesetting's double hyphen
# (U+2E17, often read as "=") and the soft hyphen count too. A capital after the break is a
# compound ("Ost-\nBayern" -> "Ost-Bayern"): its hyphen stays.
_BREAK = re.compile(r"(\w)[-\u00ad\u2010\u2011\u2e17=¬]\s*\n\s*(\w)")
_TOKEN = re.compile(r"\w+(?:['’.\-]\w+)*|[^\w\s]")


def rejoin_lines(text: str) -> str:
    """One line of text from an OCR block: broken words rejoined, line breaks become spaces."""

    def join(match: re.Match[str]) -> str:
        before, after = match.group(1), match.group(2)
        return f"{before}-{after}" if after.isupper() else before + after

    text = _BREAK.sub(join, text.replace("\r\n", "\n"))
    return re.sub(r"\s+", " ", text).strip()


def tokenize(text: str) -> list[str]:
    """Words (with inner hyphens, apostrophes and dots: "Maria-Hilf", "St.Georg") and each
    punctuation mark on its own ("Dürrmaul", ",", "1938", ".")."""
    return _TOKEN.findall(text)
