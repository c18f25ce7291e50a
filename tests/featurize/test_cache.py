"""The feature cache: round trip, content keys, no model on a re-run, safe publication, ls/rm."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_runner import run_cli
from toy_data import write_jsonl

from featurize.cache.store import EntryPlan, FeatureStore
from featurize.cache.text_features import TextFeatures
from featurize.cli import main
from featurize.errors import CacheError
from featurize.text import build_text_encoder
from featurize.text.transformer import TransformerWordEncoder, WordFeatureOptions


def entries(cache: Path) -> list[Path]:
    return FeatureStore(cache).entries()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "toy.jsonl")


def featurize(capsys, data: Path, tiny_bert: Path, *extra: str) -> tuple[int, str]:
    args = [
        str(data),
        "--format",
        "jsonl",
        "--text",
        f"hf:{tiny_bert}",
        "--chunk-size",
        "5",
        "--fp32",
        *extra,
    ]
    code, _, err = run_cli(main, args, capsys)
    return code, " ".join(err.split())


def test_round_trip(capsys, data: Path, tiny_bert: Path) -> None:
    code, err = featurize(capsys, data, tiny_bert)
    assert code == 0, err
    (path,) = entries(Path(os.environ["MNER_CACHE_DIR"]))
    stored = TextFeatures.load(path)
    direct = build_text_encoder(f"hf:{tiny_bert}", WordFeatureOptions(bf16=False)).encode(
        [json.loads(line)["text"] for line in data.read_text().splitlines()]
    )
    assert len(stored) == 23 and stored.features.shape == (sum(map(len, direct)), 16)
    for i, expected in enumerate(direct):
        words, tags, features = stored.example(i)
        assert words == json.loads(data.read_text().splitlines()[i])["text"]
        assert tags == ["B-LOC" if w in ("york", "berlin") else "O" for w in words]
        np.testing.assert_allclose(features, expected, atol=1e-5)
    assert stored.image_ids[3] == ["3.jpg"]
    meta = stored.metadata
    assert meta["schema_version"] == 1 and meta["weights"].startswith("folder:")
    assert meta["layers"] == [-4, -3, -2, -1] and meta["pooling"] == "first"
    assert len(meta["dataset_fingerprint"]) == 64 and "transformers" in meta["library_versions"]


def test_rerun_loads_no_model(capsys, data: Path, tiny_bert: Path, monkeypatch) -> None:
    assert featurize(capsys, data, tiny_bert)[0] == 0
    (path,) = entries(Path(os.environ["MNER_CACHE_DIR"]))
    before = path.stat().st_mtime_ns

    def refuse(self):
        raise AssertionError("a model was loaded for a cached entry")

    monkeypatch.setattr(TransformerWordEncoder, "load", refuse)
    code, err = featurize(capsys, data, tiny_bert)
    assert code == 0 and "cached:" in err and "no model loaded" in err
    assert path.stat().st_mtime_ns == before


def test_key_follows_data_layers_and_pooling(capsys, data: Path, tiny_bert: Path, tmp_path: Path) -> None:
    assert featurize(capsys, data, tiny_bert)[0] == 0
    assert featurize(capsys, data, tiny_bert, "--layers", "last")[0] == 0
    assert featurize(capsys, data, tiny_bert, "--pooling", "mean")[0] == 0
    assert featurize(capsys, data, tiny_bert, "--batch-size", "2")[0] == 0  # same entry
    write_jsonl(data, seed=1)
    assert featurize(capsys, data, tiny_bert)[0] == 0
    found = entries(Path(os.environ["MNER_CACHE_DIR"]))
    assert len(found) == 4
    assert len({TextFeatures.load(p).metadata["key"] for p in found}) == 4


def test_half_written_entry_is_never_read_and_resumes(tiny_bert: Path, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "c")
    plan = EntryPlan("k" * 64, "toy/train/x.h5", n_items=7, chunk_size=3, metadata={"kind": "text"})
    build = store.begin(plan)
    rows = lambda r: {"words": (np.ones((2 * len(r), 4), np.float32), np.full(len(r), 2))}  # noqa: E731
    build.run(rows, chunks=[0])
    # A stray temporary file from a killed writer must not count as a chunk.
    (build.staging / "chunk-000001.h5.tmp-999").write_bytes(b"garbage")
    assert not store.is_published(plan) and store.entries() == []
    with pytest.raises(CacheError, match="not written yet"):
        build.publish(lambda handle: None)
    again = store.begin(plan)
    assert again.pending() == [1, 2]
    again.run(rows)
    path = again.publish(lambda handle: None)
    with h5py.File(path) as handle:
        assert handle["features/words"].shape == (14, 4)
        assert list(handle["offsets/words"][()]) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert not again.staging.exists()


def test_other_schema_version_is_refused(capsys, data: Path, tiny_bert: Path) -> None:
    assert featurize(capsys, data, tiny_bert)[0] == 0
    (path,) = entries(Path(os.environ["MNER_CACHE_DIR"]))
    with h5py.File(path, "a") as handle:
        handle.attrs["schema_version"] = 99
    with pytest.raises(CacheError, match="schema 99"):
        TextFeatures.load(path)


def test_ls_and_rm(capsys, data: Path, tiny_bert: Path) -> None:
    assert featurize(capsys, data, tiny_bert)[0] == 0
    assert featurize(capsys, data, tiny_bert, "--pooling", "mean")[0] == 0
    code, out, _ = run_cli(main, ["ls"], capsys)
    assert (
        code == 0 and out.count("toy.jsonl") == 2 and "last4/first/fp32" in out and "last4/mean/fp32" in out
    )
    key = TextFeatures.load(entries(Path(os.environ["MNER_CACHE_DIR"]))[0]).metadata["key"]
    code, out, _ = run_cli(main, ["rm", key[:10]], capsys)
    assert code == 0 and "removed" in out
    assert len(entries(Path(os.environ["MNER_CACHE_DIR"]))) == 1
    code, out, _ = run_cli(main, ["rm", "--all"], capsys)
    assert code == 0 and entries(Path(os.environ["MNER_CACHE_DIR"])) == []
    code, _, _ = run_cli(main, ["rm", "--all"], capsys)
    assert code == 1
