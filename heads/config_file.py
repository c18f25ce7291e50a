"""Versioned JSON configs: every saved model names its format and version, and a reader
refuses what it was not written for instead of guessing (torch-free, so the CRFsuite head
can use it without importing torch)."""

from __future__ import annotations

import json
from pathlib import Path

from featurize.errors import ConfigError


def read_versioned_json(path: Path, fmt: str, version: int, what: str) -> dict[str, object]:
    """A JSON config that names its format and version; anything else is refused by name."""
    if not path.is_file():
        raise ConfigError(f"{path.parent} is not {what}: {path} is missing")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != fmt:
        raise ConfigError(f"{path}: not a {fmt} config")
    if config.get("format_version") != version:
        raise ConfigError(
            f"{path}: format version {config.get('format_version')}, this toolkit reads {version}"
        )
    return config
