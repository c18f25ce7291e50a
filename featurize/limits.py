"""The largest input any reader accepts, declared once.

A line over :data:`MAX_LINE_BYTES`, a token over :data:`MAX_TOKEN_CHARS` characters or an
example over :data:`MAX_EXAMPLE_WORDS` words is refused with the file and line
(:class:`DataFormatError`) before any encoder reads it: such input is a broken file (a lost
line end, a base64 blob pasted as one word), not text, and encoding it would cost minutes and
gigabytes (a 5 MB one-token line: 75 s and 1.2 GB before these limits existed).

The limits leave a wide margin over the data here (measured on ../shared/data): the longest
token is 113 characters (a row of dashes in EHRI-cs; T15/T17 at most 41, HIPE 33), the
longest line 1,325 bytes (a PGIM knowledge line; the data files at most 554), the longest
example 1,108 words (a HIPE-2020 German sentence; T15/T17 at most 50, EHRI 194).

featurize's readers (umt, conll, jsonl, hipe, and the captions, knowledge and image-map
files) and ``heads predict``'s inputs (``--input`` files and ``--text``) all check them.
"""

from __future__ import annotations

from pathlib import Path

from featurize.errors import DataFormatError

MAX_TOKEN_CHARS = 1_000
MAX_LINE_BYTES = 1_000_000
MAX_EXAMPLE_WORDS = 20_000


def shown(text: str, width: int = 40) -> str:
    """``repr`` of a token or tag for a message, cut to about ``width`` characters."""
    return repr(text) if len(text) <= width else repr(text[:width]) + f"... ({len(text):,} characters)"


def token_problem(token: str) -> str | None:
    """Why a token is refused (empty, or over :data:`MAX_TOKEN_CHARS`), or None."""
    if not token:
        return "empty token"
    if len(token) > MAX_TOKEN_CHARS:
        return f"token of {len(token):,} characters, over the limit of {MAX_TOKEN_CHARS:,}: {shown(token)}"
    return None


def check_token(token: str, path: str | Path, line: int | None) -> None:
    problem = token_problem(token)
    if problem is not None:
        raise DataFormatError(path, line, problem)


def words_problem(count: int) -> str | None:
    """Why an example of ``count`` words is refused, or None."""
    if count > MAX_EXAMPLE_WORDS:
        return f"example of more than {MAX_EXAMPLE_WORDS:,} words (the limit)"
    return None


def check_words(count: int, path: str | Path, line: int | None, start: int | None = None) -> None:
    """An example may have at most :data:`MAX_EXAMPLE_WORDS` words; ``line`` is where it went
    over, ``start`` where the example began (a missing blank line or sentence end is likely)."""
    problem = words_problem(count)
    if problem is not None:
        began = f", it began at line {start}" if start is not None and start != line else ""
        raise DataFormatError(path, line, f"{problem}{began}: a missing example boundary?")
