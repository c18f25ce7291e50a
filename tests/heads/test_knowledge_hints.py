"""``--knowledge-hints``: per-word columns read from a knowledge text's entity list, appended to
the word features alike in training on the cache, in prediction and in fine-tuning, and planned
by the grid beside each knowledge row."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from finetune_runs import fine, save_tuned
from rich.console import Console

from featurize.errors import ConfigError
from featurize.knowledge import write_knowledge
from featurize.knowledge_entities import listed_entities
from heads.knowledge_hints import HINT_COLUMNS, HINT_DIM, word_hints

KAWHI = (
    "Named entities: 1. Kawhi Leonard (person/player) 2. NBA (league/organization) "
    "3. #NBAAwards (event/award ceremony) 4. Block of the Year (award) Reasoning: Leonard won "
    "the fan vote; San Antonio is proud."
)


def _columns(row: np.ndarray) -> set[str]:
    return {name for name, value in zip(HINT_COLUMNS, row) if value}


def test_listed_names_are_marked_with_their_kinds() -> None:
    words = ["Kawhi", "Leonard", "wins", "#NBAAwards", "block", ",", "Kawhi", "fans", "in", "Antonio"]
    hints = word_hints(words, KAWHI)
    assert hints.shape == (len(words), HINT_DIM) and hints.dtype == np.float32
    assert _columns(hints[0]) == {"listed PER", "begins a listed name", "named in the text"}
    assert _columns(hints[1]) == {"listed PER", "named in the text"}
    assert _columns(hints[2]) == set()  # "wins" is in no list and not in the text
    assert _columns(hints[3]) == {"listed MISC", "begins a listed name", "named in the text"}
    assert _columns(hints[4]) == {"part of a MISC name", "named in the text"}  # of "Block of the Year"
    assert _columns(hints[5]) == set()
    assert _columns(hints[6]) == {"part of a PER name", "named in the text"}  # Kawhi without Leonard
    assert _columns(hints[7]) == set()  # "fan" is in the text, "fans" is not
    assert _columns(hints[8]) == set()  # two letters: too short to count as named
    assert _columns(hints[9]) == {"named in the text"}  # in the reasoning, listed nowhere


def test_no_text_or_no_list_gives_what_it_can() -> None:
    assert not word_hints(["Kawhi"], None).any()
    assert not word_hints(["Kawhi"], "").any()
    free = word_hints(["Kawhi", "won"], "A text about Kawhi with no list.")
    assert _columns(free[0]) == {"named in the text"} and not free[1].any()


def test_bulleted_lists_and_kinds_are_read() -> None:
    items = listed_entities(
        "Entities: - Spider-Man (character) - Prague (city) * Skoda (company) 2) Gold (award)"
    )
    assert [(e.name, e.type) for e in items] == [
        ("Spider-Man", "PER"),
        ("Prague", "LOC"),
        ("Skoda", "ORG"),
        ("Gold", "MISC"),
    ]


def test_hints_need_a_knowledge_context() -> None:
    from heads.inputs import InputSpec

    with pytest.raises(ConfigError, match="--knowledge-hints reads the knowledge"):
        InputSpec("t17", "mpnet", context="captions", knowledge_hints=True)
    with pytest.raises(ConfigError, match="--knowledge-hints"):
        InputSpec("t17", "mpnet", knowledge_hints=True)
    spec = InputSpec("t17", "mpnet", context="knowledge+captions", knowledge_hints=True)
    assert spec.describe()["knowledge_hints"] is True
    assert "knowledge_hints" not in InputSpec("t17", "mpnet", context="knowledge").describe()


# -- through the stages on a toy corpus ------------------------------------------------------------
def _toy(tmp_path: Path, n: int = 24) -> tuple[Path, Path]:
    lines, rows = [], []
    for i in range(n):
        city = ("Berlin", "York", "Prague")[i % 3]
        words = ["visit", city, f"w{i}", "with", "Anna"]
        labels = ["O", "B-LOC", "O", "O", "B-PER"]
        lines.append(json.dumps({"id": f"ex{i}", "text": words, "label": labels, "image": [f"img{i}.jpg"]}))
        if i != 5:  # one example without knowledge: zeros
            rows.append(
                (f"img{i}", f"Named entities: 1. {city} (city) 2. Anna (person) Reasoning: a trip to {city}.")
            )
    data = tmp_path / "toy.jsonl"
    data.write_text("\n".join(lines) + "\n")
    knowledge = tmp_path / "knowledge.tsv"
    write_knowledge(knowledge, rows)
    return data, knowledge


@pytest.fixture()
def toy_cache(tmp_path: Path, tiny_bert: Path) -> Path:
    from featurize.api import featurize_dataset

    data, knowledge = _toy(tmp_path)
    featurize_dataset(
        data,
        format="jsonl",
        split_fractions="0.5,0.25,0.25",
        text=f"hf:{tiny_bert}",
        context="knowledge",
        knowledge=knowledge,
        context_budget=8,
        bf16=False,
        cache_dir=tmp_path / "cache",
        console=Console(file=io.StringIO()),
    )
    return tmp_path / "cache"


def test_the_cached_split_carries_the_columns(toy_cache: Path, tiny_bert: Path) -> None:
    from heads.data import load_split
    from heads.inputs import EntryIndex, InputSpec

    index = EntryIndex(toy_cache)
    plain = load_split(index, InputSpec("toy.jsonl", f"hf:{tiny_bert}", context="knowledge"), "train")
    hinted = load_split(
        index, InputSpec("toy.jsonl", f"hf:{tiny_bert}", context="knowledge", knowledge_hints=True), "train"
    )
    assert hinted.text_dim == plain.text_dim + HINT_DIM
    assert plain.features is not None and hinted.features is not None
    np.testing.assert_array_equal(hinted.features[:, : plain.text_dim], plain.features)
    assert plain.offsets is not None
    for i, words in enumerate(plain.words):
        rows = hinted.features[plain.offsets[i] : plain.offsets[i + 1], plain.text_dim :]
        # read from the whole stored text, not the 8 subwords the encoder read of it
        np.testing.assert_array_equal(rows, word_hints(words, plain.contexts[i]))  # type: ignore[index]
    assert hinted.features[:, plain.text_dim].sum() > 0  # the cities are listed


def test_a_hints_head_predicts_what_it_scored(toy_cache: Path, tiny_bert: Path) -> None:
    from heads.experiment import RunSpec
    from heads.families import family_of_head, load
    from heads.input_files import PredictInput
    from heads.inputs import InputSpec
    from heads.train_config import TrainConfig

    inputs = InputSpec("toy.jsonl", f"hf:{tiny_bert}", context="knowledge", knowledge_hints=True)
    spec = RunSpec("linear", inputs, "text", train=TrainConfig(epochs=3, seed=0, threads=1))
    folder = toy_cache.parent / "run"
    family_of_head("linear").train(spec, toy_cache, folder, quiet=True)
    assert json.loads((folder / "run.json").read_text())["inputs"]["knowledge_hints"] is True
    from heads import checkpoint
    from heads.data import Batcher, load_split
    from heads.inputs import EntryIndex
    from heads.trainer import predict_tags

    test = load_split(EntryIndex(toy_cache), inputs, "test")
    model, _ = checkpoint.load(folder)
    assert model.dims.text == test.text_dim
    needs = type(model).needs(model.hyper, model.modality, True)
    scored = predict_tags(model, Batcher(test, model.tags, None, needs))
    items = [
        PredictInput(list(w), knowledge=test.contexts[i], id=str(i))  # type: ignore[index]
        for i, w in enumerate(test.words)
    ]
    assert [p.tags for p in load(folder, toy_cache).predict(items)] == scored


def test_fine_tuning_appends_the_columns_and_predicts_alike(toy_cache: Path, tiny_bert: Path) -> None:
    from heads.experiment import RunSpec
    from heads.families import load
    from heads.finetune import LiveEncoders, build_model, evaluate_split
    from heads.input_files import PredictInput
    from heads.inputs import InputSpec
    from heads.train_config import TrainConfig
    from heads.trainer import fit

    config = fine()
    inputs = InputSpec("toy.jsonl", f"hf:{tiny_bert}", context="knowledge", knowledge_hints=True)
    spec = RunSpec("linear", inputs, "text", train=TrainConfig(seed=0, epochs=1, threads=1))
    model, extras, identity = build_model(spec, config, toy_cache, None, lambda _m: None)
    assert model.knowledge_hints and model.head.dims.text == model.text[0].dim + HINT_DIM
    fit(LiveEncoders(model, extras, config), config)
    test = extras["data"]["test"]
    _, expected = evaluate_split(model, test, extras["vocab"], extras["needs"], 64)
    folder = save_tuned(toy_cache.parent / "tuned", model, extras, identity)
    items = [
        PredictInput(list(w), knowledge=test.contexts[i] or "none", id=str(i))
        for i, w in enumerate(test.words)
    ]
    assert [p.tags for p in load(folder).predict(items)] == expected


def test_the_grid_plans_a_hints_row_beside_each_knowledge_row(toy_cache: Path, tiny_bert: Path) -> None:
    from bench.grid import GridOptions, plan
    from heads.inputs import EntryIndex

    index = EntryIndex(toy_cache)
    cells, _ = plan(index, GridOptions(heads=["linear"], seeds=1, visions=[]))
    rows = [(c.context, c.knowledge_hints) for c in cells if c.text == f"hf:{tiny_bert}"]
    assert rows == [("none", False), ("knowledge", False), ("knowledge", True)]
    plain = next(c for c in cells if c.context == "knowledge" and not c.knowledge_hints)
    assert "knowledge_hints" not in plain.identity()  # keys of stores written before hints stay
    hinted = next(c for c in cells if c.knowledge_hints)
    assert hinted.key != plain.key and "+hints" in hinted.label
    off, _ = plan(index, GridOptions(heads=["linear"], seeds=1, visions=[], knowledge_hints=False))
    assert not any(c.knowledge_hints for c in off)


def test_bench_finetune_best_takes_the_winners_hints(tmp_path: Path) -> None:
    """A winner file written with hints makes ``bench finetune --best`` fine-tune with them (its
    frozen cell is the grid's cell, key included); ``--no-knowledge-hints`` overrides it."""
    from bench import finetune_bench, winners
    from bench.grid import GRID_TRAIN, Cell

    path = tmp_path / "winners.json"
    winner = {
        "head": "cwi",
        "modality": "text",
        "text": "mpnet",
        "vision": None,
        "context": "captions+knowledge",
        "knowledge_hints": True,
        "train": GRID_TRAIN.key_settings(),
    }
    path.write_text(
        json.dumps({"format": winners.FORMAT, "format_version": winners.VERSION, "datasets": {"t17": winner}})
    )
    choice = finetune_bench.choose("t17", True, path, None, None, None, None, None)
    assert choice.knowledge_hints and finetune_bench.frozen_cell(choice, 0).inputs().knowledge_hints
    grid_cell = Cell(
        "t17",
        "cwi",
        "text",
        "mpnet",
        None,
        "captions+knowledge",
        0,
        GRID_TRAIN.key_settings(),
        knowledge_hints=True,
    )
    assert finetune_bench.frozen_cell(choice, 0).key == grid_cell.key
    off = finetune_bench.choose("t17", True, path, None, None, None, None, None, False)
    assert not off.knowledge_hints and "knowledge_hints" in off.source
