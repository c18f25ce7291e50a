"""A toy JSONL dataset (random words, York and Berlin as LOC) for tests that need a dataset but
not the real data: the fast tier runs without ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ["the", "new", "york", "city", "berlin", "abc", "xyz", "@", "#", "!"]


def write_jsonl(path: Path, n: int = 23, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), size=int(rng.integers(1, 12)))]
        labels = ["B-LOC" if w in ("york", "berlin") else "O" for w in words]
        lines.append(json.dumps({"text": words, "label": labels, "image": [f"{i}.jpg"]}))
    path.write_text("\n".join(lines) + "\n")
    return path
