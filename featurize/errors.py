"""Errors that the command line turns into one clear message and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class MnerError(Exception):
    """Base class: anything the user can fix by changing input or options."""


class DataFormatError(MnerError):
    """Bad input data; names the file and (1-based) line so the user can open it there."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(MnerError):
    """An option, name or path that does not make sense."""


class CacheError(MnerError):
    """A cache entry that is missing, incomplete or of another schema."""


class IntegrityError(MnerError):
    """A saved file whose bytes are not what was written: damaged, truncated, or another kind of
    file under the expected name (a cache entry, a checkpoint's weights). The message names the
    file, what is wrong and what to do."""

    def __init__(self, path: str | Path, reason: str, fix: str) -> None:
        self.path = str(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"{self.path} is damaged ({reason}); {fix}")
