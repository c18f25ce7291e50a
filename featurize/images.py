"""Resolving the image ids of examples to files, and what to do when a file is missing."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from featurize.errors import ConfigError, DataFormatError
from featurize.example import Split
from featurize.readers.text_file import read_lines

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


class MissingImages(str, Enum):
    """``keep`` (the default) keeps the example text-only, so text results stay comparable
    with the full split; ``drop`` removes it, for image-only studies."""

    keep = "keep"
    drop = "drop"


class ImageIndex:
    """Every image file below a folder, found by file name or by name without suffix.

    Looking up by stem lets ``IMGID:123`` find ``123.jpg``; indexing recursively lets one
    folder hold ``train/``, ``dev/`` and ``test/`` sub-folders.
    """

    def __init__(self, root: Path, mapping: Path | None = None) -> None:
        if not root.is_dir():
            raise ConfigError(f"image folder {root} does not exist")
        self.root = root
        self._mapped = read_image_map(mapping) if mapping else {}
        self._by_name: dict[str, Path] = {}
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                self._by_name.setdefault(path.name, path)
                self._by_name.setdefault(path.stem, path)

    def __len__(self) -> int:
        return len({str(p) for p in self._by_name.values()})

    def find(self, image_id: str) -> Path | None:
        mapped = self._mapped.get(image_id) or self._mapped.get(Path(image_id).stem)
        if mapped is not None:
            path = self.root / mapped
            return path if path.is_file() else None
        name = Path(image_id).name
        return self._by_name.get(name) or self._by_name.get(Path(name).stem)


def read_image_map(path: Path) -> dict[str, str]:
    """``<image id><TAB><path under the image folder>`` per line, for images saved under other
    names (the public Twitter-2017 sample renamed its images 1.jpg ... 5.jpg)."""
    mapping = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise DataFormatError(path, number, "expected '<image id><TAB><relative path>'")
        mapping[parts[0].strip()] = parts[1].strip()
    return mapping


def resolve_images(split: Split, index: ImageIndex, policy: MissingImages) -> None:
    """Fill ``image_paths``; count found and missing; drop examples if the policy says so."""
    kept = []
    for example in split.examples:
        example.image_paths = []
        for image_id in example.image_ids:
            found = index.find(image_id)
            example.image_paths.append(str(found) if found else None)
            if found:
                split.images_found += 1
            else:
                split.images_missing += 1
        complete = bool(example.image_ids) and all(example.image_paths)
        if policy is MissingImages.drop and not complete:
            split.dropped_missing_image += 1
            continue
        kept.append(example)
    split.examples = kept
