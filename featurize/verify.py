"""``featurize verify``: every cache entry, and every saved model under the given folders,
checked against the checksums recorded when it was written.

Statuses: ``ok`` (every byte matches), ``unverified-old`` (written before checksums: it reads
whole, a safetensors header parses, but there is nothing to compare with), ``damaged``
(truncated, flipped bytes, not the file its name says, or a file missing). The exit code is 0
when nothing is damaged and 2 otherwise, like every refusal of the toolkit.

Saved models are found by their ``config.json`` (formats in :data:`MODEL_FORMATS`); this module
reads them with :mod:`featurize.integrity` and imports nothing of ``heads``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import h5py
import typer
from rich.console import Console
from rich.table import Table

from featurize.cache.integrity import fix as entry_fix
from featurize.cache.integrity import reading, verify_entry
from featurize.cache.store import FeatureStore, cache_dir
from featurize.cli_options import CacheDir
from featurize.console_app import stdout_console
from featurize.errors import IntegrityError
from featurize.integrity import CHECKSUMS, CONFIG, MODEL_FIX, check_safetensors, verify_config, verify_files

# The config formats of saved models: heads.checkpoint.FORMAT (a torch head, a fine-tuned run
# folder) and heads.crf_suite.FORMAT (a CRFsuite tagger); tests/heads/test_checkpoint_integrity.py
# keeps them in step.
MODEL_FORMATS = ("mner-head", "mner-crfsuite")
OK, OLD, DAMAGED = "ok", "unverified-old", "damaged"


@dataclass
class Check:
    path: Path
    kind: str
    status: str
    reason: str = ""


def entry_names(path: Path, root: Path) -> dict[str, str]:
    """What an entry's path says of it (``<dataset>/<split>/<kind>-<encoder>[+<context>]-<key>.h5``,
    slugs): for an entry too damaged to read its attributes."""
    parts = path.relative_to(root).parts if path.is_relative_to(root) else path.parts[-3:]
    stem, _, key = path.stem.rpartition("-")
    kind, _, encoder = stem.partition("-")
    return {
        "key": key,
        "dataset": parts[0] if len(parts) >= 3 else "?",
        "split": parts[-2] if len(parts) >= 2 else "?",
        "kind": kind,
        "encoder": encoder,
    }


def check_entry(path: Path) -> Check:
    kind = "entry"
    try:
        with reading(path), h5py.File(path, "r") as handle:
            kind = f"{handle.attrs.get('kind', '?')} entry"
        verified = verify_entry(path)
    except IntegrityError as err:
        return Check(path, kind, DAMAGED, err.reason)
    if not verified:
        return Check(path, kind, OLD, "written before checksums; every byte reads")
    return Check(path, kind, OK)


def model_folders(root: Path) -> Iterator[Path]:
    """Folders under ``root`` (itself included) holding a saved model's config.json."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if CONFIG in files and _model_format(Path(folder) / CONFIG) is not None:
            dirs[:] = []  # a fine-tuned run's encoder folders are checked with it
            yield Path(folder)


def _model_format(path: Path) -> str | None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    fmt = config.get("format") if isinstance(config, dict) else None
    return fmt if fmt in MODEL_FORMATS else None


def check_model(folder: Path) -> Check:
    path = folder / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return Check(folder, "model", DAMAGED, f"{path} is not readable JSON ({err})")
    kind = "crfsuite tagger" if config.get("format") == MODEL_FORMATS[1] else "head"
    if config.get("fine_tuned"):
        kind = "fine-tuned run"
    try:
        if not verify_config(config, path):
            for weights in sorted(folder.rglob("*.safetensors")):
                check_safetensors(weights)
            return Check(folder, kind, OLD, "saved before checksums; safetensors headers read")
        verify_files(folder, config)
    except IntegrityError as err:
        where = os.path.relpath(err.path, folder)
        return Check(folder, kind, DAMAGED, f"{where}: {err.reason}")
    n = len(config[CHECKSUMS]["files"])
    return Check(folder, kind, OK, f"{n} file{'' if n == 1 else 's'} and the config")


def checks(store: FeatureStore | None, folders: list[Path]) -> Iterator[Check]:
    if store is not None:
        for path in store.entries():
            yield check_entry(path)
    for folder in folders:
        if folder.is_file() and folder.suffix == ".h5":
            yield check_entry(folder)
            continue
        for found in model_folders(folder):
            yield check_model(found)


def verify(
    folders: Annotated[
        list[Path] | None,
        typer.Argument(help="Folders to search for saved models (run folders, e.g. runs/), or entry files."),
    ] = None,
    cache: CacheDir = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Check only the FOLDERS, not the cache's entries.")
    ] = False,
) -> None:
    """Check cache entries and saved models against their recorded checksums (exit 2 if any is damaged)."""
    out, console = stdout_console(), Console(stderr=True)
    for folder in folders or []:
        if not folder.exists():
            raise typer.BadParameter(f"{folder} does not exist", param_hint="FOLDERS")
    store = None if no_cache else FeatureStore(cache_dir(cache))
    table = Table()
    table.add_column("path", overflow="fold")  # whole, for `featurize rm PATH`
    for column in ("kind", "status", "reason"):
        table.add_column(column)
    found = list(checks(store, list(folders or [])))
    style = {OK: "green", OLD: "yellow", DAMAGED: "red"}
    for check in found:
        table.add_row(str(check.path), check.kind, f"[{style[check.status]}]{check.status}[/]", check.reason)
    if not found:
        where = ([str(store.root)] if store else []) + [str(f) for f in folders or []]
        out.print(f"nothing to verify in {', '.join(where) or 'no folder'}")
        return
    out.print(table)
    counts = {status: sum(c.status == status for c in found) for status in (OK, OLD, DAMAGED)}
    out.print(
        f"{len(found)} checked: {counts[OK]} ok, {counts[OLD]} unverified (written before checksums), "
        f"{counts[DAMAGED]} damaged",
        highlight=False,
    )
    for check in found:
        if check.status == DAMAGED:
            fix = entry_fix(check.path) if check.kind.endswith("entry") else MODEL_FIX
            console.print(f"damaged: {check.path} ({check.reason}); {fix}", highlight=False, markup=False)
    if counts[DAMAGED]:
        raise typer.Exit(2)
