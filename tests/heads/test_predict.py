"""``heads predict`` on real weights: features computed live must give the tags the cache gives.

A small real subset of Twitter-2017 (the first tweets of each UMT split plus every tweet whose
photo is in the public sample) is featurized with MiniLM and the EfficientNet CNN; a
bilstm-crf (text), a linear fusion head (text + cnn) and a CRFsuite with cluster features
train on it for a few epochs. Prediction then reruns the encoders on the words.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from rich.console import Console

from featurize.errors import ConfigError, DataFormatError, MnerError
from heads.families import load as Predictor  # a run folder -> heads.predictor.Predictor
from heads.input_files import PredictInput, collect_inputs, inputs_from_texts, read_inputs
from heads.predictor import entities, format_predictions
from heads.words import tokenize, tokenizer_style

pytestmark = pytest.mark.slow  # loads the real MiniLM and EfficientNet-Lite0

IMAGE_MAP = ROOT / "featurize" / "image_maps" / "twitter2017-sample.tsv"
DATASET = "t17predict"  # a folder's dataset name is its own name
SUBSET = {"train.txt": 150, "valid.txt": 60, "test.txt": 60}


@dataclass
class Runs:
    cache: Path
    data: Path
    images: Path
    bilstm: Path
    linear: Path
    crf: Path


def _write_subset(source: Path, folder: Path) -> None:
    lines = IMAGE_MAP.read_text(encoding="utf-8").splitlines()
    with_photo = {line.split("\t")[0] for line in lines if line.strip() and not line.startswith("#")}
    folder.mkdir(parents=True)
    for name, first in SUBSET.items():
        blocks = [b for b in (source / name).read_text(encoding="utf-8").split("\n\n") if b.strip()]
        kept = [
            b for i, b in enumerate(blocks) if i < first or b.split("\n")[0][len("IMGID:") :] in with_photo
        ]
        (folder / name).write_text("\n\n".join(kept) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Runs:
    from featurize.cache.store import FeatureStore
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as featurize
    from heads.crf_suite_run import run_crfsuite
    from heads.experiment import RunSpec
    from heads.experiment import run as train
    from heads.inputs import InputSpec
    from heads.train_config import TrainConfig

    root = tmp_path_factory.mktemp("predict")
    cache, folder = root / "cache", root / DATASET
    images = data_dir / "twitter_sample" / "twitter_2017" / "images"
    _write_subset(data_dir / "twitter2017", folder)
    dataset = load_dataset(str(folder), LoadOptions(format="umt", images=images, image_map=IMAGE_MAP))
    assert dataset.name == DATASET
    quiet = Console(file=io.StringIO())
    featurize(dataset, RunPlan(text=["minilm"], vision=["cnn"]), FeatureStore(cache), quiet)
    config = TrainConfig(epochs=6, patience=6, threads=1)
    train(RunSpec("bilstm-crf", InputSpec(DATASET, "minilm"), train=config), cache, root / "bilstm")
    train(RunSpec("linear", InputSpec(DATASET, "minilm", "cnn"), train=config), cache, root / "linear")
    options = {"c1": "0.1", "c2": "0.05", "clusters": "20", "max_iterations": "30"}
    run_crfsuite(
        RunSpec("crf", InputSpec(DATASET, "minilm"), options=options), cache, root / "crf", quiet=True
    )
    return Runs(cache, folder, images, root / "bilstm", root / "linear", root / "crf")


def _cached(runs: Runs, folder: Path, split: str = "train"):
    """The split as the head reads it from the cache, and the tags heads.trainer.predict_tags gives."""
    from heads import checkpoint
    from heads.data import Batcher, fill_missing_image_dims, load_split
    from heads.inputs import EntryIndex, InputSpec
    from heads.trainer import predict_tags as predict

    model, config = checkpoint.load(folder)
    inputs = InputSpec(**config["inputs"])
    needs = type(model).needs(model.hyper, model.modality, bool(inputs.text))
    data = load_split(EntryIndex(runs.cache), inputs, split)
    if inputs.vision:
        fill_missing_image_dims([data], model.dims.image)
    return model, needs, data, predict(model, Batcher(data, model.tags, None, needs))


# --------------------------------------------------------------------------- words and spans


def test_tokenize_follows_the_datasets_rules() -> None:
    text = "RT @CNN: It's #NBA night... in New York!! http://t.co/x1Y. :) U.S. 10,000 (well-known)"
    assert tokenize(text, "tweet") == [
        "RT",
        "@CNN",
        ":",
        "It",
        "'",
        "s",
        "#NBA",
        "night",
        "...",
        "in",
        "New",
        "York",
        "!!",
        "http://t.co/x1Y",
        ".",
        ":)",
        "U.S",
        ".",
        "10,000",
        "(",
        "well-known",
        ")",
    ]
    split = tokenize(text, "split")
    assert split[:10] == ["RT", "@", "CNN", ":", "It", "'", "s", "#", "NBA", "night"]
    assert split[10:13] == [".", ".", "."] and "http://t.co/x1Y" in split
    assert tokenize("day⚾️!", "tweet") == ["day", "⚾️", "!"]
    assert tokenize("  \t ") == []
    assert tokenizer_style("t17") == "split" and tokenizer_style("t15") == "tweet"
    assert tokenizer_style("t17", "tweet") == "tweet"
    with pytest.raises(ConfigError):
        tokenizer_style("t17", "spaces")


def test_entities_are_seqeval_spans() -> None:
    words = ["Barack", "Obama", "visits", "New", "York", "with", "Apple", "Inc", "staff"]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "I-ORG", "I-ORG", "O"]
    assert entities(words, tags) == [
        {"text": "Barack Obama", "type": "PER", "start": 0, "end": 2},
        {"text": "New York", "type": "LOC", "start": 3, "end": 5},
        {"text": "Apple Inc", "type": "ORG", "start": 6, "end": 8},  # I- opens a span, as conlleval counts
    ]


# --------------------------------------------------------------------------- the key test


def test_live_features_give_the_cached_tags(runs: Runs) -> None:
    model, _, data, reference = _cached(runs, runs.bilstm)
    assert sum(t != "O" for tags in reference for t in tags) > 0, "the head predicts no entity at all"
    predictor = Predictor(runs.bilstm, runs.cache)
    live = predictor.text_features([PredictInput(w) for w in data.words[:8]])
    for i, vectors in enumerate(live):
        cached = data.features[data.offsets[i] : data.offsets[i + 1]]
        cosine = (cached * vectors).sum(1) / np.linalg.norm(cached, axis=1) / np.linalg.norm(vectors, axis=1)
        assert cosine.min() > 0.999  # bf16 where native: other batches round a little differently
    predictions = predictor.predict([PredictInput(w, id=i) for w, i in zip(data.words, data.example_ids)])
    assert [p.tags for p in predictions] == reference
    assert [p.id for p in predictions] == data.example_ids


def test_json_and_conll_output(runs: Runs) -> None:
    _, _, data, reference = _cached(runs, runs.bilstm)
    tagged = [i for i, tags in enumerate(reference) if any(t != "O" for t in tags)][:3] + [0]
    predictor = Predictor(runs.bilstm, runs.cache)
    predictions = predictor.predict([PredictInput(data.words[i], id=f"n{i}") for i in tagged])
    rows = [json.loads(line) for line in format_predictions(predictions, "json").splitlines()]
    assert len(rows) == len(tagged)
    for row, i in zip(rows, tagged):
        assert set(row) == {"id", "words", "tags", "entities"}
        assert row["words"] == data.words[i] and row["tags"] == reference[i]
        inside = set()
        for span in row["entities"]:
            assert span["text"] == " ".join(row["words"][span["start"] : span["end"]])
            assert all(t[2:] == span["type"] for t in row["tags"][span["start"] : span["end"]])
            inside.update(range(span["start"], span["end"]))
        assert inside == {k for k, t in enumerate(row["tags"]) if t != "O"}
    assert any(row["entities"] for row in rows)
    conll = format_predictions(predictions, "conll")
    blocks = conll.split("\n\n")
    assert len(blocks) == len(tagged) and conll.endswith("\n") and not conll.endswith("\n\n")
    first = [line.split("\t") for line in blocks[0].splitlines()]
    assert first == [[w, t] for w, t in zip(data.words[tagged[0]], reference[tagged[0]])]


def test_raw_text_and_input_files(runs: Runs, tmp_path: Path) -> None:
    predictor = Predictor(runs.bilstm, runs.cache)
    style = predictor.tokenizer_style()
    (one,) = predictor.predict(inputs_from_texts(["Kawhi Leonard wins the #NBA fan vote in San Antonio!"]))
    assert one.words == [
        "Kawhi",
        "Leonard",
        "wins",
        "the",
        "#NBA",
        "fan",
        "vote",
        "in",
        "San",
        "Antonio",
        "!",
    ]
    assert len(one.tags) == len(one.words) and one.id == "text:1"

    text = tmp_path / "tweets.txt"
    text.write_text(
        "Justin Bieber is in Paris\nNew Post : Blackburn Festival of Voice 2017\n", encoding="utf-8"
    )
    assert [i.words[:2] for i in read_inputs(text, style=style)] == [["Justin", "Bieber"], ["New", "Post"]]
    jsonl = tmp_path / "tweets.jsonl"
    jsonl.write_text(
        json.dumps({"text": ["Justin", "Bieber"], "id": "a"})
        + "\n"
        + json.dumps({"text": "Meet @Diplo in L.A.", "caption": "a man"})
        + "\n",
        encoding="utf-8",
    )
    found = read_inputs(jsonl, style="tweet")
    assert [i.id for i in found] == ["a", "tweets:2"] and found[1].words == [
        "Meet",
        "@Diplo",
        "in",
        "L.A",
        ".",
    ]
    umt = read_inputs(runs.data / "test.txt", images=runs.images, image_map=IMAGE_MAP)
    assert len(umt) >= SUBSET["test.txt"] and sum(bool(i.images) for i in umt) == 2
    notes: list[str] = []
    plain = read_inputs(runs.data / "test.txt", note=notes.append)
    assert not any(i.images for i in plain) and "text-only" in notes[0]
    predictions = predictor.predict(collect_inputs(["Justin Bieber"], text, style=style))
    assert [p.id for p in predictions] == ["text:1", "tweets:1", "tweets:2"]

    bad = tmp_path / "gap.txt"
    bad.write_text("Justin Bieber\n\nParis\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"gap\.txt:2: empty line"):
        read_inputs(bad)
    with pytest.raises(ConfigError, match="--text number 2 is empty"):
        inputs_from_texts(["Paris", " "])


# --------------------------------------------------------------------------- images


def test_image_head_with_and_without_an_image(runs: Runs) -> None:
    from featurize.cache.image_features import ImageFeatures
    from heads.inputs import EntryIndex, InputSpec

    model, needs, data, reference = _cached(runs, runs.linear)
    assert "image" in needs
    entry = EntryIndex(runs.cache).image_entry(InputSpec(DATASET, "minilm", "cnn"), "train")
    cached = ImageFeatures.load(entry.path)
    position = {eid: j for j, eid in enumerate(cached.example_ids)}
    with_photo = [i for i, eid in enumerate(data.example_ids) if cached.images_of(position[eid])]
    assert with_photo and data.has_image[with_photo].all()
    photo = {i: Path(cached.files[cached.images_of(position[data.example_ids[i]])[0]]) for i in with_photo}

    notes: list[str] = []
    predictor = Predictor(runs.linear, runs.cache, note=notes.append)
    inputs = [PredictInput(data.words[i], [photo[i]]) for i in with_photo]
    live = predictor.image_features(inputs)
    assert np.allclose(live["pooled"], data.image[with_photo], atol=1e-4)
    predictions = predictor.predict(inputs)
    assert [p.tags for p in predictions] == [reference[i] for i in with_photo]
    assert not notes

    # Without the image: what the head gives the same tweet with zero image features.
    from heads.data import Batcher
    from heads.trainer import predict_tags as predict

    data.image[:] = 0
    data.has_image[:] = False
    blind = predict(model, Batcher(data, model.tags, None, needs))
    predictions = predictor.predict([PredictInput(data.words[i]) for i in with_photo])
    assert [p.tags for p in predictions] == [blind[i] for i in with_photo]
    assert "no image" in notes[-1]


# --------------------------------------------------------------------------- CRFsuite


def test_crfsuite_run_with_cluster_features(runs: Runs) -> None:
    from heads.crf_suite import CrfSuiteTagger
    from heads.crf_suite_run import _vectors
    from heads.data import load_split
    from heads.inputs import EntryIndex, InputSpec

    data = load_split(EntryIndex(runs.cache), InputSpec(DATASET, "minilm"), "dev")
    reference = CrfSuiteTagger.load(runs.crf).predict(data.words, _vectors(data))
    notes: list[str] = []
    predictor = Predictor(runs.crf, runs.cache, note=notes.append)
    assert predictor.identity["text:minilm"]["layers"] == [-4, -3, -2, -1]  # found with its cache entry
    predictions = predictor.predict([PredictInput(w) for w in data.words])
    assert [p.tags for p in predictions] == reference
    assert not notes


# --------------------------------------------------------------------------- errors


def test_errors_name_what_is_wrong(runs: Runs, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such run folder"):
        Predictor(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a run folder"):
        Predictor(tmp_path / "empty")

    garbage = tmp_path / "broken.jpg"
    garbage.write_bytes(b"\x00 not a jpeg \xff" * 50)
    predictor = Predictor(runs.linear, runs.cache)
    with pytest.raises(MnerError, match="broken.jpg"):
        predictor.predict(inputs_from_texts(["Paris"], image=garbage))
    with pytest.raises(ConfigError, match="nowhere.jpg"):
        predictor.predict(inputs_from_texts(["Paris"], image=tmp_path / "nowhere.jpg"))
    with pytest.raises(ConfigError, match="apply to --text"):
        collect_inputs([], tmp_path / "x.txt", image=garbage)

    captions = tmp_path / "captions-run"
    shutil.copytree(runs.bilstm, captions)
    config = json.loads((captions / "config.json").read_text(encoding="utf-8"))
    config["inputs"]["context"] = "captions"
    config.pop("checksums", None)  # an edited config fails its checksum: read it as one saved before them
    (captions / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigError, match="--caption"):
        Predictor(captions, runs.cache).predict(inputs_from_texts(["Paris"]))


def test_cli_predict(runs: Runs, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from cli_runner import run_cli

    import heads.cli

    if not hasattr(heads.cli, "predict"):
        pytest.skip("heads.cli has no predict command yet")
    argv = ["predict", "--model", str(runs.bilstm), "--cache-dir", str(runs.cache)]
    code, out, _ = run_cli(heads.cli.main, [*argv, "--text", "Justin Bieber is in Paris"], capsys)
    assert code == 0
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["words"] == ["Justin", "Bieber", "is", "in", "Paris"]
    code, out, _ = run_cli(heads.cli.main, [*argv, "--text", "Paris", "--format", "conll"], capsys)
    assert code == 0 and out.splitlines()[0].split("\t")[0] == "Paris"
    code, _, err = run_cli(
        heads.cli.main, ["predict", "--model", str(tmp_path / "nope"), "--text", "x"], capsys
    )
    assert code == 2 and "no such run folder" in err
