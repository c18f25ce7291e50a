"""Reading an image entry back: per-image arrays and which images each example uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurize.cache.integrity import reading, verify_data
from featurize.cache.schema import read_attrs, read_strings
from featurize.cache.store import open_entry
from featurize.errors import CacheError


@dataclass
class ImageFeatures:
    path: Path
    metadata: dict[str, object]
    arrays: dict[str, np.ndarray]  # name -> rows (pooled, patches, top5_ids, top5_probs, status)
    offsets: dict[str, np.ndarray]  # name -> (n_images + 1,): image i owns rows offsets[i]:offsets[i+1]
    files: list[str]
    example_ids: list[str]
    example_items: np.ndarray
    example_offsets: np.ndarray

    @classmethod
    def load(cls, path: Path) -> ImageFeatures:
        """Read an entry whole and check it against its checksums (an IntegrityError naming the
        file when it is damaged)."""
        with open_entry(path) as handle, reading(path):
            metadata = read_attrs(handle)
            if metadata.get("kind") != "image":
                raise CacheError(f"{path} is a {metadata.get('kind')!r} entry, not an image entry")
            arrays = {name: handle[f"features/{name}"][()] for name in handle["features"]}
            offsets = {name: handle[f"offsets/{name}"][()] for name in handle["offsets"]}
            example_items = handle["example_images/items"][()]
            example_offsets = handle["example_images/offsets"][()]
            loaded = {f"features/{k}": v for k, v in arrays.items()} | {
                f"offsets/{k}": v for k, v in offsets.items()
            }
            loaded |= {"example_images/items": example_items, "example_images/offsets": example_offsets}
            verify_data(handle, path, loaded)
            return cls(
                path=path,
                metadata=metadata,
                arrays=arrays,
                offsets=offsets,
                files=read_strings(handle, "strings/image_files"),
                example_ids=read_strings(handle, "strings/example_ids"),
                example_items=example_items,
                example_offsets=example_offsets,
            )

    def images_of(self, example: int) -> list[int]:
        """The images of an example that were found and decoded."""
        items = self.example_items[self.example_offsets[example] : self.example_offsets[example + 1]]
        # status holds one row per image: 1 decoded, 2 unreadable.
        return [int(i) for i in items if self.arrays["status"][i] == 1]

    def rows(self, name: str, image: int) -> np.ndarray:
        start, end = self.offsets[name][image], self.offsets[name][image + 1]
        return self.arrays[name][start:end]

    def example_vector(self, example: int, name: str = "pooled") -> np.ndarray | None:
        """Mean of the example's image vectors, or None when it has no usable image."""
        vectors = [self.rows(name, i) for i in self.images_of(example)]
        vectors = [v for v in vectors if len(v)]
        return np.concatenate(vectors).mean(0) if vectors else None

    def label_words(self, example: int, k: int = 5) -> list[str]:
        """The top-k ImageNet class names of the example's first usable image (the CWI/MSB input)."""
        names = self.metadata.get("class_names")
        if names is None or "top5_ids" not in self.arrays:
            raise CacheError(f"{self.path} holds no image labels (featurize with --vision labels)")
        for image in self.images_of(example):
            ids = self.rows("top5_ids", image)
            if len(ids):
                return [str(names[int(c)]) for c in ids[0][:k]]
        return []
