"""Readers against the real files in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurize.datasets import LoadOptions, load_dataset
from featurize.images import MissingImages
from featurize.labels import count_entities


def entities(split) -> int:
    return sum(sum(count_entities(e.labels).values()) for e in split.examples)


def test_t17_counts() -> None:
    data = load_dataset("t17")
    assert [len(data.splits[s].examples) for s in ("train", "dev", "test")] == [3373, 723, 723]
    assert [entities(data.splits[s]) for s in ("train", "dev", "test")] == [6049, 1324, 1351]
    first = data.splits["train"].examples[0]
    assert first.image_ids == ["17_06_12483"]
    assert first.words[:4] == ["New", "Post", ":", "Blackburn"]
    assert first.labels[3:8] == ["B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"]
    assert first.caption  # BLIP-2 captions join by image id


def test_t15_counts_label_map_and_i_starts() -> None:
    data = load_dataset("t15")
    assert [len(data.splits[s].examples) for s in ("train", "dev", "test")] == [4000, 1000, 3257]
    assert [data.splits[s].i_starts for s in ("train", "dev", "test")] == [186, 53, 135]
    tags = {t for e in data.splits["train"].examples for t in e.labels}
    assert "B-MISC" in tags and not any(t.endswith("OTHER") for t in tags)
    # A no-break space is a token of T15 (valid.txt line 9658): kept as given.
    assert "\u00a0" in [w for e in data.splits["dev"].examples for w in e.words]


def test_t15_label_map_option_and_repair() -> None:
    data = load_dataset("t15", LoadOptions(label_map={"OTHER": "MIS"}, repair_iob=True), ["dev"])
    dev = data.splits["dev"]
    assert dev.repaired == 53 and dev.i_starts == 0
    assert "B-MIS" in {t for e in dev.examples for t in e.labels}
    kept = load_dataset("t15", LoadOptions(label_map={}), ["dev"])
    assert "B-OTHER" in {t for e in kept.splits["dev"].examples for t in e.labels}


def test_fingerprint_changes_with_reader_options() -> None:
    a = load_dataset("t15", LoadOptions(), ["dev"]).fingerprints["dev"]
    b = load_dataset("t15", LoadOptions(repair_iob=True), ["dev"]).fingerprints["dev"]
    c = load_dataset("t15", LoadOptions(), ["dev"]).fingerprints["dev"]
    assert a != b and a == c


def test_hipe_documents_and_sentences() -> None:
    data = load_dataset("hipe-de")
    train = data.splits["train"].examples
    assert len({e.id.rsplit(":", 1)[0] for e in train}) == 103
    assert len({e.id.rsplit(":", 1)[0] for e in data.splits["dev"].examples}) == 33
    assert len({e.id.rsplit(":", 1)[0] for e in data.splits["test"].examples}) == 49
    assert train[0].words == ["Frankreich", "."] and train[0].labels == ["B-loc", "O"]
    assert sum(len(e.words) for e in train) > 80_000


@pytest.mark.parametrize("name", ["ehri-de", "ehri-cs"])
def test_ehri_contiguous_split(name: str) -> None:
    data = load_dataset(name)
    sizes = [len(data.splits[s].examples) for s in ("train", "dev", "test")]
    assert sizes[0] > 7 * sizes[1] and abs(sizes[1] - sizes[2]) <= 1
    assert "B-PERS" in {t for e in data.splits["train"].examples for t in e.labels}


def test_images_resolved_and_missing_policy(data_dir: Path) -> None:
    images = data_dir / "twitter_sample" / "twitter_2015" / "images"
    keep = load_dataset("t15", LoadOptions(images=images), ["dev"]).splits["dev"]
    assert keep.images_found == 5 and keep.images_missing == 995 and len(keep.examples) == 1000
    found = [e for e in keep.examples if e.image_paths[0]]
    assert len(found) == 5 and all(Path(p).is_file() for e in found for p in e.image_paths)
    drop = load_dataset("t15", LoadOptions(images=images, missing_images=MissingImages.drop), ["dev"])
    assert len(drop.splits["dev"].examples) == 5 and drop.splits["dev"].dropped_missing_image == 995


def test_jsonl_sample_file_reads_without_conversion(data_dir: Path) -> None:
    path = data_dir / "twitter_sample" / "twitter_2015" / "texts" / "train" / "train.json"
    data = load_dataset(str(path), LoadOptions(format="jsonl", label_map={"OTHER": "MISC"}))
    (split,) = data.splits.values()
    assert len(split.examples) == 5
    assert split.examples[0].image_ids == ["27.jpg"] and split.examples[0].id == "27"
