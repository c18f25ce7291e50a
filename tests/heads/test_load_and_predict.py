"""The Python API for the common jobs: featurize a dataset, train a head, ``heads.load`` a run
folder and tag raw strings with it, batched. A toy dataset and a tiny random BERT: no shared data."""

from __future__ import annotations

from pathlib import Path

import pytest
from toy_data import write_jsonl

import heads
from featurize.errors import ConfigError


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> dict[str, Path]:
    """toy.jsonl featurized with the tiny BERT (split 60/20/20), a torch head and the crf head."""
    from featurize.cache.store import FeatureStore
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as featurize
    from heads.inputs import InputSpec

    root = tmp_path_factory.mktemp("api")
    data = write_jsonl(root / "toy.jsonl", n=40)
    dataset = load_dataset(str(data), LoadOptions(format="jsonl", split_fractions=(0.6, 0.2, 0.2)))
    cache = root / "cache"
    import io

    from rich.console import Console

    text = f"hf:{tiny_bert}"
    featurize(dataset, RunPlan(text=[text]), FeatureStore(cache), Console(file=io.StringIO()))
    config = heads.TrainConfig(epochs=3, threads=1)
    heads.train(
        heads.RunSpec("bilstm-crf", InputSpec(dataset.name, text), train=config), cache, root / "bilstm"
    )
    crf = heads.RunSpec("crf", InputSpec(dataset.name, None), options={"max_iterations": "20"}, train=config)
    from heads.families import family_of_head

    family_of_head("crf").train(crf, cache, root / "crf", quiet=True)
    return {"cache": cache, "bilstm": root / "bilstm", "crf": root / "crf"}


@pytest.mark.parametrize("run", ["bilstm", "crf"])
def test_load_and_predict_raw_strings(trained: dict[str, Path], run: str) -> None:
    tagger = heads.load(trained[run], cache_dir=trained["cache"])
    texts = ["the new york city !", "berlin abc", "xyz"]
    results = tagger.predict(texts, images=[None, None, None])
    assert [r.words for r in results] == [t.split() for t in texts]
    for r in results:
        assert len(r.tags) == len(r.words) and set(r.tags) <= set(tagger.tags)
        for span in r.entities:  # spans are what the tags say, word indices end-exclusive
            assert r.tags[span["start"]].endswith(str(span["type"]))
            assert span["text"] == " ".join(r.words[span["start"] : span["end"]])
    # batched or one at a time, word lists or strings: the same tags
    one_by_one = [tagger.predict([t], batch_size=1)[0].tags for t in texts]
    assert one_by_one == [r.tags for r in results]
    as_words = tagger.predict([t.split() for t in texts], batch_size=2)
    assert [r.tags for r in as_words] == [r.tags for r in results]


def test_predict_refuses_mismatched_lists(trained: dict[str, Path]) -> None:
    tagger = heads.load(trained["bilstm"], cache_dir=trained["cache"])
    with pytest.raises(ConfigError, match="2 inputs but 1 images"):
        tagger.predict(["a", "b"], images=[None])
    with pytest.raises(ConfigError, match="a list of inputs"):
        tagger.predict("the new york")  # type: ignore[arg-type]


def test_load_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such run folder"):
        heads.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a run folder"):
        heads.load(tmp_path / "empty")
