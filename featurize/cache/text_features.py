"""Reading a text entry back: arrays loaded once into memory, sliced per example.

Heads train on these objects; nothing here imports torch or loads an encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurize.cache.integrity import reading, verify_data
from featurize.cache.schema import read_attrs, read_strings
from featurize.cache.store import open_entry
from featurize.errors import CacheError


@dataclass
class TextFeatures:
    path: Path
    metadata: dict[str, object]
    features: np.ndarray  # (n_words, dim)
    offsets: np.ndarray  # (n_examples + 1,)
    words: list[str]
    labels: np.ndarray  # (n_words,) codes into label_names
    label_names: list[str]
    example_ids: list[str]
    image_ids: list[list[str]]
    captions: list[str | None]
    contexts: list[str | None] | None = None  # the second segment as featurize read it (newer entries)

    @classmethod
    def load(cls, path: Path) -> TextFeatures:
        """Read an entry whole and check it against its checksums (an IntegrityError naming the
        file when it is damaged)."""
        with open_entry(path) as handle, reading(path):
            metadata = read_attrs(handle)
            if metadata.get("kind") != "text":
                raise CacheError(f"{path} is a {metadata.get('kind')!r} entry, not a text entry")
            labels = handle["labels/words"]
            features = handle["features/words"][()]
            offsets = handle["offsets/words"][()]
            codes = labels[()]
            loaded = {"features/words": features, "offsets/words": offsets, "labels/words": codes}
            verify_data(handle, path, loaded)  # before anything is decoded from them
            return cls(
                path=path,
                metadata=metadata,
                features=features,
                offsets=offsets,
                words=read_strings(handle, "strings/words"),
                labels=codes,
                label_names=read_attrs(labels)["names"],
                example_ids=read_strings(handle, "strings/example_ids"),
                image_ids=[s.split("\t") if s else [] for s in read_strings(handle, "strings/image_ids")],
                captions=[s or None for s in read_strings(handle, "strings/captions")],
                contexts=[s or None for s in read_strings(handle, "strings/contexts")]
                if "strings/contexts" in handle
                else None,
            )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, i: int) -> tuple[list[str], list[str], np.ndarray]:
        """Words, BIO tags and ``(n_words, dim)`` features of example ``i``."""
        start, end = self.offsets[i], self.offsets[i + 1]
        tags = [self.label_names[c] for c in self.labels[start:end]]
        return self.words[start:end], tags, self.features[start:end]
