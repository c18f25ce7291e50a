"""The feature store: content-keyed HDF5 entries, written in chunks and published atomically.

Life of an entry (see CACHE_SCHEMA.md for the file layout):

1. ``plan``: the entry's staging folder ``.staging/<key>/`` gets ``plan.json`` (item count,
   chunk size, metadata). The plan is a pure function of the key, so every process, and every
   worker of a later distributed run, agrees on chunk boundaries.
2. ``chunks``: each chunk ``chunk-000007.h5`` is computed under its own lock file, written to a
   temporary name and renamed into place. A chunk file that exists is complete. Processes
   working on one entry skip chunks that are done or locked by someone else, so two processes
   share the work instead of corrupting it; a killed process loses only its current chunk.
   A chunk may carry counts its computation reported (words without subwords, say); publishing
   sums them, so they cover the whole entry however many runs wrote its chunks.
3. ``publish``: under the entry lock, one step concatenates the chunks into
   ``<key>.h5.tmp-<pid>``, records the sha256 of every array and of the attributes
   (``featurize.cache.integrity``), flushes it and renames it to its final name
   (``featurize.atomic``). Only then does the entry exist; readers never see half an entry.

An entry that exists but is damaged (truncated, flipped bytes, not HDF5) is not published for
:meth:`FeatureStore.is_published`: it is removed, with a note, and built again. Locks are
released by the kernel when their holder dies and their files are removed on release;
:meth:`FeatureStore.clean` removes what dead processes left (``featurize.cache.locks``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from featurize.atomic import atomic_write, atomic_write_text
from featurize.cache import integrity
from featurize.cache.integrity import READ_ERRORS, reading, verify_attributes, verify_entry
from featurize.cache.locks import StoreLock, stale_temporary, sweep_locks
from featurize.cache.schema import SCHEMA_VERSION, read_attrs, write_attrs
from featurize.errors import CacheError, IntegrityError
from featurize.integrity import one_line

CACHE_DIR_ENV = "MNER_CACHE_DIR"

# One chunk's content: name -> (rows, lengths); item i owns lengths[i] consecutive rows.
ChunkArrays = dict[str, tuple[np.ndarray, np.ndarray]]
Note = Callable[[str], None]


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


@dataclass
class Chunk:
    """What a chunk's computation returns when it also has counts to keep (stored with the chunk,
    summed over all chunks at publish into the entry attribute ``json:counts``)."""

    arrays: ChunkArrays
    counts: dict[str, int] = field(default_factory=dict)


class FeatureStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths ---------------------------------------------------------------------------
    def path(self, plan: EntryPlan) -> Path:
        return self.root / plan.relpath

    def staging(self, key: str) -> Path:
        return self.root / ".staging" / key

    def _lock(self, name: str) -> StoreLock:
        return StoreLock(self.root / ".locks" / f"{name}.lock")

    def is_published(self, plan: EntryPlan, note: Note | None = None) -> bool:
        """Whether the entry exists and every byte of it checks out (an entry written before
        checksums: every byte reads). A damaged entry is removed (with a ``note``) so that the
        caller builds it again."""
        path = self.path(plan)
        if not path.is_file():
            return False
        try:
            verify_entry(path)
            return True
        except IntegrityError:
            pass
        with self._lock(plan.key):
            try:  # another process may have rebuilt it meanwhile
                verify_entry(path)
                return True
            except IntegrityError as err:
                reason = err.reason
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                raise CacheError(
                    f"{path} is damaged ({reason}) and cannot be removed ({err.strerror}): remove it by hand"
                ) from None
        if note is not None:
            note(f"  damaged cache entry {path} ({reason}): removed, building it again")
        return False

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
            try:
                found = json.loads(plan_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                found = None  # a damaged plan: its chunks cannot be trusted either
            if found != wanted:
                # Same key but another chunking: the finished chunks do not fit, start over.
                shutil.rmtree(staging)
                staging.mkdir(parents=True)
        if not plan_file.is_file():
            atomic_write_text(plan_file, json.dumps(wanted, indent=1), hidden=False)
        return EntryBuild(self, plan, staging)

    # -- listing, removal and clean-up ---------------------------------------------------
    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(
            p
            for p in self.root.rglob("*.h5")
            if not any(part.startswith(".") for part in p.relative_to(self.root).parts)
        )

    def remove(self, path: Path) -> None:
        """Remove an entry (and any staged chunks of its key); a damaged one too."""
        key = ""
        try:
            with reading(path), h5py.File(path, "r") as handle:
                key = str(handle.attrs.get("key", ""))
        except IntegrityError:
            pass  # unreadable: its key is lost with it, the file goes all the same
        with self._lock(key or path.stem):
            path.unlink(missing_ok=True)
            if key:
                shutil.rmtree(self.staging(key), ignore_errors=True)

    def _temporaries(self) -> Iterator[Path]:
        """Temporaries of entries (beside them) and of chunks and plans (in staging folders)."""
        if not self.root.is_dir():
            return
        for folder, dirs, files in os.walk(self.root):
            here = Path(folder)
            if here == self.root:
                dirs[:] = [d for d in dirs if not d.startswith(".") or d == ".staging"]
            else:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if ".tmp-" in name:
                    yield here / name

    def clean(self, note: Note | None = None) -> dict[str, int]:
        """Remove what dead processes left behind: temporaries of entries and chunks whose writer
        is gone, lock files nobody holds, staging folders of entries already published (a run
        killed between its rename and its clean-up). Safe while other processes work on the
        cache: nothing a live process holds or may still write is touched."""
        counts = {"temporaries": 0, "locks": 0, "staging": 0}
        if not self.root.is_dir():
            return counts
        now = time.time()
        for path in self._temporaries():
            if stale_temporary(path, now):
                path.unlink(missing_ok=True)
                counts["temporaries"] += 1
        counts["locks"] = sweep_locks(self.root / ".locks")
        staging_root = self.root / ".staging"
        for staging in sorted(staging_root.iterdir()) if staging_root.is_dir() else []:
            try:
                plan = json.loads((staging / "plan.json").read_text(encoding="utf-8"))
                published = (self.root / str(plan["relpath"])).is_file() and plan["key"] == staging.name
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not published:
                continue
            lock = self._lock(staging.name)
            if lock.acquire(blocking=False):
                try:
                    shutil.rmtree(staging, ignore_errors=True)
                    counts["staging"] += 1
                finally:
                    lock.release()
        if note is not None and any(counts.values()):
            note(
                f"  cleaned up after dead processes: {counts['temporaries']} temporary files, "
                f"{counts['locks']} lock files, {counts['staging']} staging folders of published entries"
            )
        return counts


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
        if not lock.acquire(blocking=wait):
            yield False
            return
        try:
            yield not self.done(chunk)
        finally:
            lock.release()

    def run(
        self,
        compute: Callable[[range], ChunkArrays | Chunk],
        chunks: list[int] | None = None,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        """Compute the given (default: all pending) chunks that no other process is working on,
        then wait for the ones that were busy elsewhere and compute any their owner left.
        ``compute`` returns the chunk's arrays, or a :class:`Chunk` with counts as well."""

        def write(chunk: int) -> None:
            result = compute(self.plan.chunk_range(chunk))
            if isinstance(result, Chunk):
                self.write_chunk(chunk, result.arrays, result.counts)
            else:
                self.write_chunk(chunk, result)

        todo = self.pending() if chunks is None else [c for c in chunks if not self.done(c)]
        busy = []
        for chunk in todo:
            with self.claim(chunk, wait=False) as mine:
                if mine:
                    write(chunk)
                elif not self.done(chunk):
                    busy.append(chunk)
                    continue
            if on_chunk:
                on_chunk(chunk)
        for chunk in busy:
            with self.claim(chunk, wait=True) as mine:
                if mine:
                    write(chunk)
            if on_chunk:
                on_chunk(chunk)

    def write_chunk(self, chunk: int, arrays: ChunkArrays, counts: dict[str, int] | None = None) -> None:
        expected = len(self.plan.chunk_range(chunk))
        target = self.chunk_path(chunk)

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as handle:
                for name, (rows, lengths) in arrays.items():
                    if len(lengths) != expected or int(lengths.sum()) != len(rows):
                        raise CacheError(f"chunk {chunk} of {name}: lengths do not match rows")
                    handle.create_dataset(f"{name}/rows", data=rows)
                    handle.create_dataset(f"{name}/lengths", data=lengths.astype(np.int64))
                if counts is not None:
                    handle.attrs["json:counts"] = json.dumps({k: int(v) for k, v in counts.items()})

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
                    counts = self._merge(out)
                    write_extra(out)
                    extra: dict[str, object] = {"counts": counts} if counts is not None else {}
                    write_attrs(
                        out,
                        {
                            **self.plan.metadata,
                            **extra,
                            "schema_version": SCHEMA_VERSION,
                            "key": self.plan.key,
                            "n_items": self.plan.n_items,
                            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        },
                    )
                    integrity.record(out)  # last: it covers every array and attribute above

            atomic_write(final, write, hidden=False, fsync=True)
            shutil.rmtree(self.staging, ignore_errors=True)
        return final

    def _drop(self, chunk: int, err: BaseException) -> None:
        """A staged chunk that cannot be read is removed; the next run computes it again."""
        path = self.chunk_path(chunk)
        path.unlink(missing_ok=True)
        raise CacheError(
            f"{path} was unreadable ({one_line(err)}): removed; run the same command again to compute it anew"
        ) from None

    def _merge(self, out: h5py.File) -> dict[str, int] | None:
        """Concatenate the chunks' arrays. A chunk may lack an array or hold zero rows of it
        (say, a chunk whose images were all unreadable): its items then own no rows. Returns the
        chunks' counts summed (None when a chunk has none: one written before counts were kept)."""
        shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        counts: dict[str, int] | None = {}
        for chunk in range(self.plan.n_chunks):
            try:
                with h5py.File(self.chunk_path(chunk), "r") as handle:
                    for name in handle:
                        rows = handle[f"{name}/rows"]
                        if name not in shapes or (rows.shape[0] and not shapes[name][0]):
                            shapes[name] = (tuple(rows.shape[1:]) if rows.shape[0] else (), rows.dtype)
                    raw = handle.attrs.get("json:counts")
                    if raw is None or counts is None:
                        counts = None
                    else:
                        for k, v in json.loads(raw).items():
                            counts[k] = counts.get(k, 0) + int(v)
            except READ_ERRORS as err:
                self._drop(chunk, err)
        for name, (tail, dtype) in shapes.items():
            out.create_dataset(
                f"features/{name}", shape=(0, *tail), maxshape=(None, *tail), dtype=dtype, chunks=True
            )
            out.create_dataset(f"offsets/{name}", data=np.zeros(1, np.int64), maxshape=(None,))
        for chunk in range(self.plan.n_chunks):
            n_items = len(self.plan.chunk_range(chunk))
            try:  # read the chunk whole first: a failure to write the output is not the chunk's
                with h5py.File(self.chunk_path(chunk), "r") as handle:
                    parts = {
                        name: (handle[f"{name}/rows"][()], handle[f"{name}/lengths"][()])
                        for name in shapes
                        if name in handle
                    }
            except READ_ERRORS as err:
                self._drop(chunk, err)
            for name in shapes:
                features, offsets = out[f"features/{name}"], out[f"offsets/{name}"]
                rows, lengths = parts.get(name, (np.zeros((0,)), np.zeros(n_items, np.int64)))
                size = features.shape[0]
                if len(rows):
                    features.resize(size + len(rows), axis=0)
                    features[size:] = rows
                start = offsets.shape[0]
                offsets.resize(start + len(lengths), axis=0)
                offsets[start:] = size + np.cumsum(lengths)
        return counts


def open_entry(path: Path) -> h5py.File:
    """Open a published entry read-only after checking its schema version and its attributes'
    checksum (the arrays are checked by whoever reads them: ``verify_data``). A file that cannot
    be read as an entry is an IntegrityError naming it."""
    if not path.is_file():
        raise CacheError(f"no cache entry at {path}")
    if not os.access(path, os.R_OK):
        raise CacheError(f"{path}: no permission to read it")
    with reading(path):
        handle = h5py.File(path, "r")
    try:
        with reading(path):
            version = read_attrs(handle).get("schema_version")
            if version != SCHEMA_VERSION:
                raise CacheError(
                    f"{path} has cache schema {version}, this toolkit reads schema {SCHEMA_VERSION}: "
                    "remove it (featurize rm) and featurize again"
                )
            verify_attributes(handle, path)
    except BaseException:
        handle.close()
        raise
    return handle
