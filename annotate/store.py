"""The dataset being built: a JSONL file in the thesis's format, crops beside it, a small
sidecar with the type set and the skipped scans.

```
dataset.jsonl             one accepted item per line: {"text", "image", "label", ...}
dataset-crops/<scan>.png  the picture of each item (the whole scan when no box was drawn)
dataset.annotate.json     {"format": "mner-annotate", "version": 1, "types": [...], "skipped": [...]}
```

Appending writes one whole line with one ``write`` on an ``O_APPEND`` descriptor and syncs it;
undo and edits rewrite the file to a temporary name and rename it. A line torn by a crash
(the last one, unterminated) is reported and dropped on the next write, never parsed as data.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from featurize.atomic import atomic_write, atomic_write_bytes
from featurize.errors import ConfigError, DataFormatError

FORMAT, VERSION = "mner-annotate", 1
DEFAULT_TYPES = ("PER", "LOC", "BUI", "MIS")  # HiCBaM's set (thesis §6.4)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


def check_types(types: list[str]) -> list[str]:
    if not types or len(types) > 9:
        raise ConfigError("--types: between 1 and 9 entity types (keys 1-9 label them)")
    for t in types:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", t):
            raise ConfigError(f"--types: {t!r} is not a type name (letters, digits, _)")
    if len(set(types)) != len(types):
        raise ConfigError("--types: a type is named twice")
    return types


def check_labels(labels: list[str], types: list[str]) -> None:
    for i, tag in enumerate(labels):
        if tag == "O":
            continue
        prefix, _, kind = tag.partition("-")
        if prefix not in ("B", "I") or kind not in types:
            raise ConfigError(f"label {i + 1} {tag!r}: use O or B-/I- with a type of {', '.join(types)}")
        if prefix == "I" and (i == 0 or labels[i - 1] == "O" or labels[i - 1][2:] != kind):
            raise ConfigError(f"label {i + 1} {tag!r} continues no {kind} span")


@dataclass
class Dataset:
    out: Path
    types: list[str]
    items: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    torn: str | None = None  # a warning about a torn last line

    @classmethod
    def open(cls, out: Path, types: list[str] | None = None) -> Dataset:
        out = Path(out)
        if out.suffix.lower() != ".jsonl":
            raise ConfigError(f"--out {out}: the dataset is a JSON-lines file; give it a .jsonl name")
        if out.exists() and not out.is_file():
            raise ConfigError(f"--out {out} is not a file")
        out.parent.mkdir(parents=True, exist_ok=True)
        meta_path = out.with_suffix(".annotate.json")
        meta: dict[str, Any] = {}
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ConfigError(f"{meta_path}: not readable JSON ({err})") from None
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ConfigError(f"{meta_path}: not a {FORMAT} v{VERSION} file")
        stored = meta.get("types")
        if types is not None and stored and list(stored) != list(types):
            raise ConfigError(
                f"{out} was labelled with types {', '.join(stored)}; --types {','.join(types)} would mix two sets"
            )
        dataset = cls(
            out, check_types(list(types or stored or DEFAULT_TYPES)), skipped=list(meta.get("skipped", []))
        )
        dataset._read()
        dataset._write_meta()
        return dataset

    @property
    def crops(self) -> Path:
        return self.out.parent / f"{self.out.stem}-crops"

    def _read(self) -> None:
        if not self.out.is_file():
            return
        raw = self.out.read_bytes()
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:  # no newline after the last line: a write that did not finish
            self.torn = f"{self.out}: the last line was cut off by a crash and is ignored"
            lines.pop()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DataFormatError(self.out, number, f"not valid JSON ({err})") from None
            if not isinstance(item, dict) or not {"text", "label"} <= set(item):
                raise DataFormatError(self.out, number, 'not an item (needs "text" and "label")')
            self.items.append(item)

    def _write_meta(self) -> None:
        meta = {"format": FORMAT, "version": VERSION, "types": self.types, "skipped": self.skipped}
        _atomic_write(self.out.with_suffix(".annotate.json"), json.dumps(meta, indent=1).encode())

    def _rewrite(self) -> None:
        data = b"".join(_line(item) for item in self.items)
        _atomic_write(self.out, data)
        self.torn = None

    def find(self, source: str) -> int | None:
        for i, item in enumerate(self.items):
            if item.get("source") == source:
                return i
        return None

    def status(self, source: str) -> str:
        if self.find(source) is not None:
            return "done"
        return "skipped" if source in self.skipped else "todo"

    def save(self, item: dict[str, Any], crop: Any) -> dict[str, Any]:
        """Add an item (or replace the item of the same scan) with its picture crop."""
        check_labels(list(item["label"]), self.types)
        if len(item["text"]) != len(item["label"]) or not item["text"]:
            raise ConfigError("an item needs one label per token and at least one token")
        self.crops.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", Path(item["source"]).stem) + ".png"
        _atomic_save_png(crop, self.crops / name)
        item = {
            "text": list(item["text"]),
            "image": [f"{self.crops.name}/{name}"],
            "label": list(item["label"]),
        } | {k: v for k, v in item.items() if k not in ("text", "label", "image")}
        item["saved"] = datetime.now().isoformat(timespec="microseconds")  # undo takes the latest
        at = self.find(item["source"])
        if item["source"] in self.skipped:
            self.skipped.remove(item["source"])
            self._write_meta()
        if at is not None or self.torn:
            if at is not None:
                self.items[at] = item
            else:
                self.items.append(item)
            self._rewrite()
        else:
            self.items.append(item)
            _append(self.out, _line(item))
        return item

    def undo(self) -> dict[str, Any] | None:
        """Remove the last saved item (its crop too)."""
        if not self.items:
            return None
        latest = max(range(len(self.items)), key=lambda i: (self.items[i].get("saved", ""), i))
        item = self.items.pop(latest)
        self._rewrite()
        for rel in item.get("image", []):
            path = self.out.parent / rel
            if path.is_file() and not any(rel in other.get("image", []) for other in self.items):
                path.unlink()
        return item

    def skip(self, source: str) -> None:
        if source not in self.skipped and self.find(source) is None:
            self.skipped.append(source)
            self._write_meta()


def _line(item: dict[str, Any]) -> bytes:
    return (json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8")


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)  # one write of a whole line
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data, fsync=True)


def _atomic_save_png(image: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def list_scans(folder: Path) -> list[Path]:
    """Every file of the folder (recursively, sorted), images or not: a non-image shows as an
    error in the page rather than silently vanishing."""
    from heads.scan_pages import list_scans as every_file

    return every_file(folder, "--images")
