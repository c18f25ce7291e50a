"""``--context neighbours``: the sentences around each sentence of a document as a second
segment; the heads rebuild from the cache exactly the texts featurize read."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from rich.console import Console

from featurize.document_context import SEPARATOR, neighbour_texts


def test_neighbours_stay_inside_their_document() -> None:
    ids = ["a:0", "a:1", "a:2", "b:0", "tweet-17", "c:5"]
    words = [["A0"], ["A1", "x"], ["A2"], ["B0"], ["T"], ["C5"]]
    assert neighbour_texts(ids, words) == [
        "A1 x",
        f"A0{SEPARATOR}A2",
        "A1 x",
        None,  # alone in its document
        None,  # no document id
        None,
    ]
    assert neighbour_texts(ids, words, width=2)[0] == "A1 x A2"


def test_featurized_neighbours_are_what_the_heads_read(tmp_path: Path, tiny_bert: Path) -> None:
    from featurize.cache.store import FeatureStore
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as featurize
    from heads.data import load_split
    from heads.inputs import EntryIndex, InputSpec

    lines = []
    for doc in ("nzz-1", "nzz-2"):
        for n in range(6):
            words = [f"w{n}", "in", "Bern" if n % 2 else "Zürich"]
            lines.append(json.dumps({"id": f"{doc}:{n}", "text": words, "label": ["O", "O", "B-loc"]}))
    path = tmp_path / "news.jsonl"
    path.write_text("\n".join(lines) + "\n")
    dataset = load_dataset(str(path), LoadOptions(format="jsonl", split_fractions=(0.5, 0.25, 0.25)))
    store = FeatureStore(tmp_path / "cache")
    featurize(
        dataset,
        RunPlan(text=[f"hf:{tiny_bert}"], contexts=["neighbours"]),
        store,
        Console(file=io.StringIO()),
    )
    index = EntryIndex(tmp_path / "cache")
    spec = InputSpec(dataset.name, f"hf:{tiny_bert}", context="neighbours")
    for split, examples in dataset.splits.items():
        data = load_split(index, spec, split)
        expected = neighbour_texts([e.id for e in examples.examples], [e.words for e in examples.examples])
        assert data.contexts == expected
        entry = next(
            e for e in index.entries if e.meta.get("context") == "neighbours" and e.meta.get("split") == split
        )
        digest = hashlib.sha256(json.dumps(data.contexts, ensure_ascii=False).encode()).hexdigest()
        assert entry.meta["context_identity"]["sha256"] == digest  # the texts the encoder read
        plain = load_split(index, InputSpec(dataset.name, f"hf:{tiny_bert}"), split)
        assert data.features.shape == plain.features.shape and not (data.features == plain.features).all()
