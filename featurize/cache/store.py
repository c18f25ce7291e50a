"""The feature store: content-keyed HDF5 entries, written in chunks and published atomically.

Life of an entry (see CACHE_SCHEMA.md for the file layout):

1. ``plan``: the entry's staging folder ``.staging/<key>/`` gets ``plan.json`` (item count,
   chunk size, metadata). The plan is a pure function of the key, so every process, and every
   worker of a later distributed run, agrees on chunk boundaries.
2. ``chunks``: each chunk ``chunk-000007.h5`` is computed under its own lock file, written to a
   temporary name and renamed into place. A chunk file that exists is complete. Processes
   working on one entry skip chunks that are done or locked by someone else, so two processes
   share the work instead of corrupting it; a killed process loses only its current chunk.
3. ``publish``: under the entry lock, one step concatenates the chunks into
   ``<key>.h5.tmp-<pid>``, flushes it and renames it to its final name (``featurize.atomic``).
   Only then does the entry exist; readers never see half an entry.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from filelock import FileLock, Timeout

from featurize.atomic import atomic_write, atomic_write_text
from featurize.cache.schema import SCHEMA_VERSION, read_attrs, write_attrs
from featurize.errors import CacheError

CACHE_DIR_ENV = "MNER_CACHE_DIR"

# One chunk's content: name -> (rows, lengths); item i owns lengths[i] consecutive rows.
ChunkArrays = dict[str, tuple[np.ndarray, np.ndarray]]


def cache_dir(option: Path | None) -> Path:
    if option is not None:
        return option
    return Path(os.environ.get(CACHE_DIR_ENV, "cache"))


@dataclass(frozen=True)
class EntryPlan:
    key: str
    relpath: str  # where the published file lives, relative to the cache root
    n_items: int
    chunk_size: int
    metadata: dict[str, object]

    @property
    def n_chunks(self) -> int:
        return max(1, -(-self.n_items // self.chunk_size))

    def chunk_range(self, chunk: int) -> range:
        start = chunk * self.chunk_size
        return range(start, min(start + self.chunk_size, self.n_items))


class FeatureStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths ---------------------------------------------------------------------------
    def path(self, plan: EntryPlan) -> Path:
        return self.root / plan.relpath

    def staging(self, key: str) -> Path:
        return self.root / ".staging" / key

    def _lock(self, name: str) -> FileLock:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / f"{name}.lock"))

    def is_published(self, plan: EntryPlan) -> bool:
        return self.path(plan).is_file()

    # -- writing -------------------------------------------------------------------------
    def begin(self, plan: EntryPlan) -> EntryBuild:
        """Open (or resume) the staging area of an entry."""
        staging = self.staging(plan.key)
        staging.mkdir(parents=True, exist_ok=True)
        plan_file = staging / "plan.json"
        wanted = {
            "key": plan.key,
            "relpath": plan.relpath,
            "n_items": plan.n_items,
            "chunk_size": plan.chunk_size,
        }
        if plan_file.is_file():
            found = json.loads(plan_file.read_text())
            if found != wanted:
                # Same key but another chunking: the finished chunks do not fit, start over.
                shutil.rmtree(staging)
                staging.mkdir(parents=True)
        if not plan_file.is_file():
            atomic_write_text(plan_file, json.dumps(wanted, indent=1), hidden=False)
        return EntryBuild(self, plan, staging)

    # -- listing and removal -------------------------------------------------------------
    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(
            p
            for p in self.root.rglob("*.h5")
            if not any(part.startswith(".") for part in p.relative_to(self.root).parts)
        )

    def remove(self, path: Path) -> None:
        with h5py.File(path, "r") as handle:
            key = str(handle.attrs.get("key", ""))
        with self._lock(key or path.stem):
            path.unlink()
            if key:
                shutil.rmtree(self.staging(key), ignore_errors=True)


class EntryBuild:
    """The chunks of one entry under construction."""

    def __init__(self, store: FeatureStore, plan: EntryPlan, staging: Path) -> None:
        self.store = store
        self.plan = plan
        self.staging = staging

    def chunk_path(self, chunk: int) -> Path:
        return self.staging / f"chunk-{chunk:06d}.h5"

    def done(self, chunk: int) -> bool:
        return self.chunk_path(chunk).is_file()

    def pending(self) -> list[int]:
        return [c for c in range(self.plan.n_chunks) if not self.done(c)]

    @contextmanager
    def claim(self, chunk: int, wait: bool) -> Iterator[bool]:
        """Hold chunk's lock; yields whether the caller must compute it."""
        lock = self.store._lock(f"{self.plan.key}.chunk-{chunk:06d}")
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            yield False
            return
        try:
            yield not self.done(chunk)
        finally:
            lock.release()

    def run(
        self,
        compute: Callable[[range], ChunkArrays],
        chunks: list[int] | None = None,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        """Compute the given (default: all pending) chunks that no other process is working on,
        then wait for the ones that were busy elsewhere and compute any their owner left."""
        todo = self.pending() if chunks is None else [c for c in chunks if not self.done(c)]
        busy = []
        for chunk in todo:
            with self.claim(chunk, wait=False) as mine:
                if mine:
                    self.write_chunk(chunk, compute(self.plan.chunk_range(chunk)))
                elif not self.done(chunk):
                    busy.append(chunk)
                    continue
            if on_chunk:
                on_chunk(chunk)
        for chunk in busy:
            with self.claim(chunk, wait=True) as mine:
                if mine:
                    self.write_chunk(chunk, compute(self.plan.chunk_range(chunk)))
            if on_chunk:
                on_chunk(chunk)

    def write_chunk(self, chunk: int, arrays: ChunkArrays) -> None:
        expected = len(self.plan.chunk_range(chunk))
        target = self.chunk_path(chunk)

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as handle:
                for name, (rows, lengths) in arrays.items():
                    if len(lengths) != expected or int(lengths.sum()) != len(rows):
                        raise CacheError(f"chunk {chunk} of {name}: lengths do not match rows")
                    handle.create_dataset(f"{name}/rows", data=rows)
                    handle.create_dataset(f"{name}/lengths", data=lengths.astype(np.int64))

        atomic_write(target, write, hidden=False, fsync=True)

    def publish(self, write_extra: Callable[[h5py.File], None]) -> Path:
        """Merge all chunks into the final file; idempotent and safe under concurrency."""
        final = self.store.path(self.plan)
        with self.store._lock(self.plan.key):
            if final.is_file():
                return final
            missing = self.pending()
            if missing:
                raise CacheError(f"entry {self.plan.key[:12]}: chunks {missing[:5]} not written yet")
            final.parent.mkdir(parents=True, exist_ok=True)

            def write(tmp: Path) -> None:
                with h5py.File(tmp, "w") as out:
                    self._merge(out)
                    write_extra(out)
                    write_attrs(
                        out,
                        {
                            **self.plan.metadata,
                            "schema_version": SCHEMA_VERSION,
                            "key": self.plan.key,
                            "n_items": self.plan.n_items,
                            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        },
                    )

            atomic_write(final, write, hidden=False, fsync=True)
            shutil.rmtree(self.staging, ignore_errors=True)
        return final

    def _merge(self, out: h5py.File) -> None:
        """Concatenate the chunks' arrays. A chunk may lack an array or hold zero rows of it
        (say, a chunk whose images were all unreadable): its items then own no rows."""
        shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for chunk in range(self.plan.n_chunks):
            with h5py.File(self.chunk_path(chunk), "r") as handle:
                for name in handle:
                    rows = handle[f"{name}/rows"]
                    if name not in shapes or (rows.shape[0] and not shapes[name][0]):
                        shapes[name] = (tuple(rows.shape[1:]) if rows.shape[0] else (), rows.dtype)
        for name, (tail, dtype) in shapes.items():
            out.create_dataset(
                f"features/{name}", shape=(0, *tail), maxshape=(None, *tail), dtype=dtype, chunks=True
            )
            out.create_dataset(f"offsets/{name}", data=np.zeros(1, np.int64), maxshape=(None,))
        for chunk in range(self.plan.n_chunks):
            n_items = len(self.plan.chunk_range(chunk))
            with h5py.File(self.chunk_path(chunk), "r") as handle:
                for name in shapes:
                    features, offsets = out[f"features/{name}"], out[f"offsets/{name}"]
                    if name in handle:
                        rows = handle[f"{name}/rows"][()]
                        lengths = handle[f"{name}/lengths"][()]
                    else:
                        rows, lengths = np.zeros((0,)), np.zeros(n_items, np.int64)
                    size = features.shape[0]
                    if len(rows):
                        features.resize(size + len(rows), axis=0)
                        features[size:] = rows
                    start = offsets.shape[0]
                    offsets.resize(start + len(lengths), axis=0)
                    offsets[start:] = size + np.cumsum(lengths)


def open_entry(path: Path) -> h5py.File:
    """Open a published entry read-only after checking its schema version."""
    if not path.is_file():
        raise CacheError(f"no cache entry at {path}")
    handle = h5py.File(path, "r")
    version = read_attrs(handle).get("schema_version")
    if version != SCHEMA_VERSION:
        handle.close()
        raise CacheError(
            f"{path} has cache schema {version}, this toolkit reads schema {SCHEMA_VERSION}: "
            "remove it (featurize rm) and featurize again"
        )
    return handle
