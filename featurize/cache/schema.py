"""Version and helpers of the cache file layout documented in CACHE_SCHEMA.md.

Bump ``SCHEMA_VERSION`` whenever a reader written for the old layout would misread a new
file; entries of another version are refused, never guessed at.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

SCHEMA_VERSION = 1


def write_attrs(handle: h5py.File | h5py.Group, values: dict[str, object]) -> None:
    """Scalars as native attributes, anything else as JSON text (attribute ``json:<name>``)."""
    for name, value in values.items():
        if isinstance(value, (str, int, float, bool)) and not isinstance(value, np.generic):
            handle.attrs[name] = value
        else:
            handle.attrs[f"json:{name}"] = json.dumps(value, sort_keys=True, ensure_ascii=False)


def read_attrs(handle: h5py.File | h5py.Group) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in handle.attrs.items():
        if name.startswith("json:"):
            out[name[5:]] = json.loads(value)
        elif isinstance(value, np.generic):
            out[name] = value.item()
        else:
            out[name] = value
    return out


def write_strings(handle: h5py.File | h5py.Group, name: str, values: list[str]) -> None:
    """A list of strings as one UTF-8 byte array plus offsets: no variable-length dtypes, so any
    HDF5 reader (and numpy slicing) gets them without h5py's vlen support."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    handle.create_dataset(f"{name}/utf8", data=np.frombuffer(b"".join(encoded), dtype=np.uint8))
    handle.create_dataset(f"{name}/offsets", data=offsets)


def read_strings(handle: h5py.File | h5py.Group, name: str) -> list[str]:
    blob = handle[f"{name}/utf8"][()].tobytes()
    offsets = handle[f"{name}/offsets"][()]
    return [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]
