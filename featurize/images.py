"""Resolving the image ids of examples to files, and what to do when a file is missing."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from featurize.example import Split

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

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        self.root = root
        self._by_name: dict[str, Path] = {}
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                self._by_name.setdefault(path.name, path)
                self._by_name.setdefault(path.stem, path)

    def __len__(self) -> int:
        return len({str(p) for p in self._by_name.values()})

    def find(self, image_id: str) -> Path | None:
        name = Path(image_id).name
        return self._by_name.get(name) or self._by_name.get(Path(name).stem)


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
