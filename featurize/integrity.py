"""Checksums of saved models, and the one-line refusal of a damaged file.

A saved model folder (a head checkpoint of ``heads train``, a ``bench finetune`` run folder, a
CRFsuite tagger) records in its ``config.json``::

    "checksums": {"algorithm": "sha256",
                  "files": {"model.safetensors": "<hex>", "encoders/text-x/model.safetensors": ...},
                  "config": "<hex>"}

``files`` holds the sha256 of every file its loader reads besides ``config.json`` (paths relative
to the folder, ``/``-separated); ``config`` is the sha256 of the config itself without this key
(canonical JSON: sorted keys, no spaces), so a changed hyperparameter is caught too. Loaders
verify what they read before reading it and refuse a mismatch with an
:class:`~featurize.errors.IntegrityError` naming the file. A folder saved before checksums
existed has no record: it is read as before (``featurize verify`` lists it as unverified).

This module is torch-free and knows no head: ``featurize verify`` checks run folders with it
without importing ``heads``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from featurize.errors import ConfigError, IntegrityError

CHECKSUMS = "checksums"
ALGORITHM = "sha256"
CONFIG = "config.json"
MODEL_FIX = "train it again, or restore the run folder from a copy"


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, ALGORITHM).hexdigest()


def config_digest(config: Mapping[str, Any]) -> str:
    """sha256 of a config without its checksum record, as canonical JSON."""
    body = {k: v for k, v in config.items() if k != CHECKSUMS}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def files_under(folder: Path, *subfolders: str) -> list[str]:
    """Every file under ``folder/<subfolder>`` (those that exist), relative and ``/``-separated."""
    found = []
    for sub in subfolders:
        root = folder / sub
        if root.is_dir():
            found += [p.relative_to(folder).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(found)


def with_checksums(folder: Path, config: Mapping[str, Any], files: Iterable[str]) -> dict[str, Any]:
    """``config`` as it will read back from JSON, plus its checksum record: the sha256 of each of
    ``files`` (relative to ``folder``) as they are on disk now, and of the config itself."""
    plain = json.loads(json.dumps({k: v for k, v in config.items() if k != CHECKSUMS}, ensure_ascii=False))
    record = {
        "algorithm": ALGORITHM,
        "files": {name: sha256_file(folder / name) for name in sorted(set(files))},
        "config": config_digest(plain),
    }
    return plain | {CHECKSUMS: record}


def recorded(config: Mapping[str, Any], config_path: Path, fix: str = MODEL_FIX) -> dict[str, Any] | None:
    """The checksum record of a config; None for a folder saved before checksums existed. A record
    that is there but malformed is damage."""
    if CHECKSUMS not in config:
        return None
    record = config[CHECKSUMS]
    files = record.get("files") if isinstance(record, dict) else None
    if (
        not isinstance(record, dict)
        or record.get("algorithm") != ALGORITHM
        or not isinstance(files, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
        or not isinstance(record.get("config"), str)
    ):
        raise IntegrityError(config_path, "its checksum record is malformed", fix)
    return record


def verify_config(config: Mapping[str, Any], config_path: Path, fix: str = MODEL_FIX) -> bool:
    """Check a config against the sha256 it records of itself; False when it records none."""
    record = recorded(config, config_path, fix)
    if record is None:
        return False
    if record["config"] != config_digest(config):
        raise IntegrityError(config_path, "its content differs from the sha256 recorded in it", fix)
    return True


def _inside(folder: Path, name: str, config_path: Path, fix: str) -> Path:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise IntegrityError(config_path, f"its checksum record names {name!r}, outside the folder", fix)
    return folder.joinpath(*relative.parts)


def verify_files(
    folder: Path,
    config: Mapping[str, Any],
    names: Iterable[str] | None = None,
    prefix: str | None = None,
    fix: str = MODEL_FIX,
) -> bool:
    """Check files of ``folder`` against the sha256 its config records: ``names``, or every
    recorded file (under ``prefix``, a ``/``-separated subfolder, when given). False when the
    config records no checksums (a folder saved before them); an IntegrityError naming the first
    file that is missing or differs."""
    config_path = folder / CONFIG
    record = recorded(config, config_path, fix)
    if record is None:
        return False
    files: dict[str, str] = record["files"]
    if names is None:
        chosen = [n for n in files if prefix is None or n.startswith(prefix.rstrip("/") + "/")]
    else:
        chosen = list(names)
    for name in chosen:
        path = _inside(folder, name, config_path, fix)
        if name not in files:
            raise IntegrityError(path, f"no sha256 of it is recorded in {config_path}", fix)
        if not path.is_file():
            raise IntegrityError(path, "the file is missing", fix)
        try:
            digest = sha256_file(path)
        except PermissionError:
            raise ConfigError(f"{path}: no permission to read it") from None
        except OSError as err:
            raise IntegrityError(path, f"unreadable: {err.strerror or err}", fix) from None
        if digest != files[name]:
            raise IntegrityError(path, f"its sha256 differs from the one recorded in {config_path}", fix)
    return True


def one_line(err: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_safetensors(path: Path, fix: str = MODEL_FIX) -> list[str]:
    """Parse a safetensors file's header (cheap: no tensor is read) and return its tensor names;
    anything else under that name (a pickle, a truncated or damaged file) is an IntegrityError.
    Nothing is ever unpickled: safetensors reads a JSON header and raw bytes only."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return list(handle.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise IntegrityError(path, f"not a readable safetensors file: {one_line(err)}", fix) from None


def load_safetensors(path: Path, fix: str = MODEL_FIX) -> dict[str, Any]:
    """All tensors of a safetensors file (torch), any failure to read it an IntegrityError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise IntegrityError(path, "the file is missing", fix)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise IntegrityError(path, f"not a readable safetensors file: {one_line(err)}", fix) from None
