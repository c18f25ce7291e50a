"""A small real subset of Twitter-2017 in UMT format, featurized once for the head tests.

The subset is the first tweets of each UMT split plus every tweet whose image exists in the
public sample (``featurize/image_maps/twitter2017-sample.tsv``), so image heads see real photos.
Featurized with MiniLM (alone and with ImageNet label words as a second segment), the
EfficientNet CNN and the label words, it is the smallest cache every head can train on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_MAP = ROOT / "featurize" / "image_maps" / "twitter2017-sample.tsv"
DATASET = "t17mini"  # a folder's dataset name is its own name (featurize.datasets.spec_for)
# UMT file -> (file name in the subset, how many leading tweets to keep)
SUBSET = {"train.txt": ("train.txt", 250), "valid.txt": ("valid.txt", 100), "test.txt": ("test.txt", 100)}


def image_ids() -> set[str]:
    lines = IMAGE_MAP.read_text(encoding="utf-8").splitlines()
    return {line.split("\t")[0] for line in lines if line.strip() and not line.startswith("#")}


def read_blocks(path: Path) -> list[list[str]]:
    """The tweets of a UMT file, each as its lines (``IMGID:<id>`` first, then ``word<TAB>tag``)."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("IMGID:"):
            if current:
                blocks.append(current)
            current = [line]
        elif line.strip():
            current.append(line)
    if current:
        blocks.append(current)
    return blocks


def write_subset(source: Path, folder: Path) -> dict[str, int]:
    """Write the subset's split files into ``folder``; returns tweets per file."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = image_ids()
    counts = {}
    for name, (target, first) in SUBSET.items():
        blocks = read_blocks(source / name)
        kept = [b for i, b in enumerate(blocks) if i < first or b[0][len("IMGID:") :] in wanted]
        text = "\n\n".join("\n".join(b) for b in kept) + "\n"
        (folder / target).write_text(text, encoding="utf-8")
        counts[target] = len(kept)
    return counts


def featurize_argv(folder: Path, images: Path, cache: Path) -> list[str]:
    return [
        str(folder),
        "--format",
        "umt",
        "--text",
        "minilm",
        "--vision",
        "cnn,labels",
        "--context",
        "labels",
        "--images",
        str(images),
        "--image-map",
        str(IMAGE_MAP),
        "--cache-dir",
        str(cache),
    ]


@dataclass(frozen=True)
class Mini:
    cache: Path
    counts: dict[str, int]
