"""Training on several corpora at once: ``--dataset a,b`` with a label map onto one scheme, and
scoring the model on each corpus. Toy corpora and a tiny random BERT: no shared data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from rich.console import Console

from featurize.errors import ConfigError
from heads.label_maps import SHIPPED, apply, resolve

WORDS = ["the", "new", "york", "city", "berlin", "abc", "xyz"]


def corpus(path: Path, place: str, n: int, seed: int, person: str | None = None) -> Path:
    """Words with York and Berlin tagged as ``place`` (LOC in one corpus, loc in the other) and,
    with ``person``, "abc" tagged as a person."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), size=int(rng.integers(2, 9)))]
        labels = [f"B-{place}" if w in ("york", "berlin") else "O" for w in words]
        if person:
            labels = [f"B-{person}" if w == "abc" else t for w, t in zip(words, labels)]
        lines.append(json.dumps({"text": words, "label": labels}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> dict[str, object]:
    from featurize.cache.store import FeatureStore
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as featurize

    root = tmp_path_factory.mktemp("corpora")
    names = []
    for name, place, seed, person in (("a", "LOC", 0, None), ("b", "loc", 1, None), ("c", "LOC", 2, "PER")):
        data = corpus(root / f"{name}.jsonl", place, 30, seed, person)
        dataset = load_dataset(str(data), LoadOptions(format="jsonl", split_fractions=(0.6, 0.2, 0.2)))
        featurize(
            dataset,
            RunPlan(text=[f"hf:{tiny_bert}"]),
            FeatureStore(root / "cache"),
            Console(file=io.StringIO()),
        )
        names.append(dataset.name)
    return {"root": root, "cache": root / "cache", "names": names, "text": f"hf:{tiny_bert}"}


def test_one_head_trains_on_both_and_is_scored_on_each(
    cache: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    import heads.cli
    from heads.data import load_split
    from heads.inputs import EntryIndex, InputSpec

    a, b, _ = cache["names"]
    both = f"{a},{b}"
    spec = InputSpec(both, cache["text"], label_map="LOC=LOC,loc=LOC")
    index = EntryIndex(cache["cache"])
    joined = load_split(index, spec, "dev")
    one = [load_split(index, InputSpec(name, cache["text"]), "dev") for name in (a, b)]
    assert len(joined) == sum(len(d) for d in one)
    assert joined.example_ids[0].startswith(f"{a}/") and joined.example_ids[-1].startswith(f"{b}/")
    assert {t for seq in joined.tags for t in seq} <= {"O", "B-LOC"}
    assert joined.features.shape[0] == sum(d.features.shape[0] for d in one)
    assert np.array_equal(joined.features[: one[0].features.shape[0]], one[0].features)

    out = cache["root"] / "run"
    argv = ["train", "--dataset", both, "--text", cache["text"], "--label-map", "LOC=LOC,loc=LOC"]
    argv += ["--epochs", "2", "--out", str(out), "--cache-dir", str(cache["cache"])]
    code, printed, err = run_cli(heads.cli.main, argv, capsys)
    assert code == 0, err
    assert "note: only 4 optimizer steps in all (36 training examples, batch 32" in " ".join(printed.split())
    record = json.loads((out / "run.json").read_text())
    assert record["inputs"]["dataset"] == both and record["inputs"]["label_map"] == "LOC=LOC,loc=LOC"
    for name in (a, b):  # scored on each corpus alone, read through the same label map
        code, printed, err = run_cli(
            heads.cli.main,
            [
                "eval",
                "--model",
                str(out),
                "--dataset",
                name,
                "--split",
                "test",
                "--cache-dir",
                str(cache["cache"]),
            ],
            capsys,
        )
        assert code == 0, err
        assert "entity F1" in printed


def test_bench_finetune_takes_several_corpora_with_a_label_map(
    cache: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bench finetune --dataset a,b --label-map``: the frozen cell and the fine-tuned run both
    read the union through the map; the map is part of both keys, and an unmapped cell's key is
    what it was before label maps existed."""
    import bench.cli
    from bench.grid import Cell

    a, b, _ = cache["names"]
    runs = tmp_path / "runs"
    argv = ["finetune", "--dataset", f"{a},{b}", "--head", "bilstm-crf", "--text", cache["text"]]
    argv += ["--label-map", "LOC=LOC,loc=LOC", "--epochs", "1", "--batch-size", "8"]
    argv += ["--runs", str(runs), "--cache-dir", str(cache["cache"])]
    code, out, err = run_cli(bench.cli.main, argv, capsys)
    assert code == 0, err
    lines = [json.loads(x) for x in (runs / "runs.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(x["cell"]["label_map"] == "LOC=LOC,loc=LOC" for x in lines)
    tuned = next(x for x in lines if x["cell"]["train"].get("fine_tune"))
    assert (
        json.loads((Path(tuned["model"]) / "run.json").read_text())["inputs"]["label_map"]
        == "LOC=LOC,loc=LOC"
    )
    frozen = next(x for x in lines if not x["cell"]["train"].get("fine_tune"))
    entries = frozen["record"]["entries"]["dev"]
    assert len(entries) == 2 and any(k.endswith(f"@{b}") for k in entries)  # both corpora's dev splits
    plain = Cell(a, "bilstm-crf", "text", "minilm", None, "none", 0)
    assert "label_map" not in plain.identity() and plain.key == Cell(**{**plain.identity()}).key
    mapped = Cell(a, "bilstm-crf", "text", "minilm", None, "none", 0, label_map="conll")
    assert mapped.key != plain.key


def test_a_type_the_map_does_not_name_is_one_clear_line(
    cache: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    import heads.cli

    a, b, _ = cache["names"]
    argv = ["train", "--dataset", f"{a},{b}", "--text", cache["text"], "--label-map", "LOC=LOC"]
    argv += ["--epochs", "1", "--out", str(cache["root"] / "bad"), "--cache-dir", str(cache["cache"])]
    code, _, err = run_cli(heads.cli.main, argv, capsys)
    assert code == 2 and "does not name type(s) loc" in err and b in err
    assert not (cache["root"] / "bad" / "model.safetensors").exists()


def test_a_corpus_with_a_type_the_model_lacks_is_scored_not_refused(
    cache: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trained on LOC only, scored on a corpus that also has PER: PER has no recall, no error."""
    import heads.cli

    a, _, c = cache["names"]
    out = cache["root"] / "only-a"
    argv = ["train", "--dataset", a, "--text", cache["text"], "--epochs", "1", "--out", str(out)]
    code, _, err = run_cli(heads.cli.main, [*argv, "--cache-dir", str(cache["cache"])], capsys)
    assert code == 0, err
    scores = cache["root"] / "c.json"
    argv = ["eval", "--model", str(out), "--dataset", c, "--split", "test", "--json", str(scores)]
    code, _, err = run_cli(heads.cli.main, [*argv, "--cache-dir", str(cache["cache"])], capsys)
    assert code == 0, err
    per_type = json.loads(scores.read_text())["test"]["entity_per_type"]
    assert per_type["PER"]["recall"] == 0.0 and per_type["PER"]["support"] > 0


def test_shipped_maps_and_dropped_types() -> None:
    assert set(resolve("hicbam").values()) == {"PER", "LOC", "BUI", "MIS", "O"}
    assert set(resolve("conll").values()) == {"PER", "LOC", "ORG", "MISC", "O"}
    for scheme in SHIPPED.values():  # every named dataset's types are covered
        assert {"pers", "loc", "org", "prod", "time", "PERS", "CAMP", "GHETTO", "DATE", "OTHER"} <= set(
            scheme
        )
    tags = [["B-pers", "I-pers", "O", "B-time", "I-time", "B-loc"]]
    assert apply(tags, resolve("hicbam"), "hipe-de") == [["B-PER", "I-PER", "O", "O", "O", "B-LOC"]]
    for bad in ("hicbam2", "LOC", "=LOC", "LOC="):
        with pytest.raises(ConfigError, match="--label-map"):
            resolve(bad)
