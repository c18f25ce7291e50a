"""File-format readers, registered by ``--format`` name.

Each reader turns one file into examples and raises :class:`DataFormatError` with the file
and line for anything it cannot read, including input over the size limits of
:mod:`featurize.limits`. Tag checks that need dataset knowledge (allowed types: a named
dataset's own, or a user file's ``--types``) happen here too, so the first bad line is the
one reported. ``tests/test_fuzz_readers.py`` holds every registered reader to this.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from featurize.example import Example
from featurize.registry import Registry

Reader = Callable[[Path, "set[str] | None"], list[Example]]
READERS: Registry[Reader] = Registry("format")

# Imported for their registrations.
from featurize.readers import conll, hipe, jsonl  # noqa: E402,F401
