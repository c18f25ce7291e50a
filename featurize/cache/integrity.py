"""Checksums of a cache entry, and the one-line report of a damaged one.

Publishing records, in the root attribute ``json:checksums``, the sha256 of every dataset's bytes
(as numpy reads them: C order, the stored dtype) and of all attributes but this one (canonical
JSON of every object's attributes)::

    {"algorithm": "sha256", "datasets": {"features/words": "<hex>", ...}, "attributes": "<hex>"}

Opening an entry checks the attributes (cheap); the readers (``TextFeatures.load``,
``ImageFeatures.load``) hash the arrays they load, and ``featurize`` itself checks every byte of
an entry before reporting it cached. An entry written before checksums has no record and is read
as before. Any failure to read an entry (truncated, flipped bytes, not HDF5 at all) is an
:class:`~featurize.errors.IntegrityError` naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from featurize.errors import CacheError, IntegrityError, MnerError
from featurize.integrity import one_line

ATTRIBUTE = "json:checksums"
ALGORITHM = "sha256"
BLOCK_BYTES = 64 << 20  # rows hashed per read when an array is not in memory already


def fix(path: Path) -> str:
    return f"`featurize rm {path}` or re-run featurize to rebuild it"


def damaged(path: Path, reason: str) -> IntegrityError:
    return IntegrityError(path, reason, fix(path))


# What h5py and numpy raise on a file that is not what it should be (OSError for a truncated or
# foreign file and for a damaged chunk, KeyError for a missing object, ValueError and friends for
# nonsense in headers and attributes).
READ_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError, UnicodeDecodeError)


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn any failure to read ``path`` into one IntegrityError naming it; the toolkit's own
    errors (another schema version, a wrong kind) pass through, and a file that is only locked
    or not readable by this user is a CacheError (it is not damaged: nothing may remove it)."""
    try:
        yield
    except MnerError:
        raise
    except READ_ERRORS as err:
        text = one_line(err)
        if isinstance(err, OSError):
            low = text.lower()
            if "unable to lock file" in low:
                raise CacheError(f"{path} is open for writing in another process ({text})") from None
            if isinstance(err, PermissionError) or "errno = 13" in low or "permission denied" in low:
                raise CacheError(f"{path}: no permission to read it") from None
        raise damaged(path, f"unreadable: {text}") from None


def dataset_names(handle: h5py.File) -> list[str]:
    names: list[str] = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


def array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def dataset_digest(dataset: h5py.Dataset) -> str:
    """sha256 of a dataset's bytes, read in blocks of rows (the same digest as of the whole array)."""
    if dataset.ndim == 0 or dataset.shape[0] == 0:
        return array_digest(dataset[()])
    row_bytes = max(1, dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64)))
    step = max(1, BLOCK_BYTES // row_bytes)
    digest = hashlib.sha256()
    for start in range(0, dataset.shape[0], step):
        digest.update(np.ascontiguousarray(dataset[start : start + step]).data)
    return digest.hexdigest()


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def attributes_digest(handle: h5py.File) -> str:
    objects: dict[str, h5py.HLObject] = {"/": handle}
    handle.visititems(lambda name, obj: objects.__setitem__(name, obj))
    table = {}
    for name, obj in objects.items():
        attrs = {k: _plain(v) for k, v in obj.attrs.items() if not (name == "/" and k == ATTRIBUTE)}
        if attrs:
            table[name] = attrs
    text = json.dumps(table, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record(handle: h5py.File) -> None:
    """Write the checksum record of an entry being published (its last attribute)."""
    checksums = {
        "algorithm": ALGORITHM,
        "datasets": {name: dataset_digest(handle[name]) for name in dataset_names(handle)},
        "attributes": attributes_digest(handle),
    }
    handle.attrs[ATTRIBUTE] = json.dumps(checksums, sort_keys=True)


def recorded(handle: h5py.File, path: Path) -> dict[str, object] | None:
    """The entry's checksum record; None for an entry written before checksums."""
    raw = handle.attrs.get(ATTRIBUTE)
    if raw is None:
        return None
    try:
        found = json.loads(raw)
        ok = (
            found.get("algorithm") == ALGORITHM
            and isinstance(found.get("datasets"), dict)
            and isinstance(found.get("attributes"), str)
        )
    except (ValueError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise damaged(path, "its checksum record is unreadable")
    return found


def verify_attributes(handle: h5py.File, path: Path) -> bool:
    """Check the attributes (and that the recorded datasets are the ones there); cheap. False for
    an entry written before checksums."""
    found = recorded(handle, path)
    if found is None:
        return False
    if attributes_digest(handle) != found["attributes"]:
        raise damaged(path, "its attributes differ from their recorded sha256")
    names = set(dataset_names(handle))
    expected = set(found["datasets"])  # type: ignore[arg-type]
    if names != expected:
        missing, extra = sorted(expected - names), sorted(names - expected)
        raise damaged(
            path,
            f"datasets missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}",
        )
    return True


def verify_data(handle: h5py.File, path: Path, loaded: Mapping[str, np.ndarray] | None = None) -> bool:
    """Check every dataset's bytes against the record; arrays already read (``loaded``, by dataset
    name) are hashed as they are, the others read in blocks. False for an entry written before
    checksums (nothing to check against)."""
    found = recorded(handle, path)
    if found is None:
        return False
    loaded = loaded or {}
    for name, digest in sorted(found["datasets"].items()):  # type: ignore[union-attr]
        if name not in handle:
            raise damaged(path, f"dataset {name} is missing")
        got = array_digest(loaded[name]) if name in loaded else dataset_digest(handle[name])
        if got != digest:
            raise damaged(path, f"{name} differs from its recorded sha256")
    return True


def verify_entry(path: Path) -> bool:
    """Read every byte of an entry and check it: True verified, False written before checksums
    (read whole without an error, nothing to compare with); an IntegrityError when damaged."""
    if not path.is_file():
        raise damaged(path, "the file is missing")
    with reading(path), h5py.File(path, "r") as handle:
        if not verify_attributes(handle, path):
            for name in dataset_names(handle):  # an old entry: at least every block must read
                dataset_digest(handle[name])
            return False
        return verify_data(handle, path)
