"""``--context knowledge``: LLM knowledge files read (TSV and JSONL), joined by image or example
id, cut to a subword budget that is part of the key, stored beside the features so the heads
read back what featurize read; kinds combine (``captions+knowledge``)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import pytest
from cli_runner import run_cli
from finetune_runs import fine, save_tuned
from rich.console import Console

from featurize.contexts import JOIN, canonical, context_parts, default_budget, join_parts
from featurize.errors import ConfigError, DataFormatError
from featurize.example import Example
from featurize.knowledge import join_knowledge, read_knowledge, write_knowledge


def _toy(tmp_path: Path, n: int = 12) -> Path:
    lines = []
    for i in range(n):
        words = ["visit", "Berlin" if i % 2 else "York", f"w{i}"]
        labels = ["O", "B-LOC", "O"]
        lines.append(json.dumps({"id": f"ex{i}", "text": words, "label": labels, "image": [f"img{i}.jpg"]}))
    path = tmp_path / "toy.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _knowledge(tmp_path: Path, n: int = 12, skip: tuple[int, ...] = (3,)) -> Path:
    rows = [
        (
            f"img{i}" if i % 3 else f"ex{i}",
            f"Named entities: {'Berlin' if i % 2 else 'York'} (location) ... " * 8,
        )
        for i in range(n)
        if i not in skip
    ]
    path = tmp_path / "knowledge.tsv"
    write_knowledge(path, rows)
    return path


# -- the file ----------------------------------------------------------------------------------
def test_tsv_and_jsonl_read_alike(tmp_path: Path) -> None:
    tsv = tmp_path / "k.tsv"
    tsv.write_text("img1\tNamed  entities:\t1. Paris (location)\n\nimg2\t\n")
    jsonl = tmp_path / "k.jsonl"
    jsonl.write_text(
        json.dumps({"id": "img1", "knowledge": "Named  entities:\t1. Paris (location)"})
        + "\n"
        + json.dumps({"id": "img2", "knowledge": ""})
        + "\n"
    )
    assert (
        read_knowledge(tsv)
        == read_knowledge(jsonl)
        == {"img1": "Named entities: 1. Paris (location)", "img2": ""}
    )
    written = tmp_path / "out.tsv"
    assert write_knowledge(written, [("a", "x\ty\nz"), ("b", "w")]) == 2
    assert read_knowledge(written) == {"a": "x y z", "b": "w"}


@pytest.mark.parametrize(
    ("name", "text", "line", "problem"),
    [
        ("k.tsv", "img1\tok\nimg2 no tab\n", 2, "expected '<id><TAB><knowledge text>'"),
        ("k.tsv", "img1\tok\n\timg2\n", 2, "the id before the tab is empty"),
        ("k.tsv", "img1\tok\nimg1\tagain\n", 2, "appears twice"),
        (
            "k.jsonl",
            '{"id": "a", "knowledge": "x"}\n{"id": "b", "knowledge": 3}\n',
            2,
            '"knowledge" must be a string',
        ),
        ("k.jsonl", '{"id": "a", "knowledge": "x"}\n{"id": "b",\n', 2, "not JSON"),
        ("k.jsonl", '["a", "x"]\n', 1, "expected an object"),
        ("k.jsonl", '{"knowledge": "x"}\n', 1, '"id" must be a non-empty string'),
    ],
)
def test_a_malformed_file_names_its_line(
    tmp_path: Path, name: str, text: str, line: int, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataFormatError) as err:
        read_knowledge(path)
    assert err.value.line == line and problem in err.value.message and str(path) in str(err.value)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "k.tsv"
    path.write_bytes(b"a\tok\nb\t\xff\xfe\n")
    with pytest.raises(DataFormatError, match=r"k.tsv:2: not valid UTF-8"):
        read_knowledge(path)


def test_joined_by_image_id_then_example_id() -> None:
    examples = [
        Example("e0", ["a"], ["O"], image_ids=["17_06_1.jpg"]),
        Example("e1", ["b"], ["O"], image_ids=["nothing.jpg"]),
        Example("e2", ["c"], ["O"]),
        Example("e3", ["d"], ["O"], image_ids=["empty"]),
    ]
    joined = join_knowledge(examples, {"17_06_1": "K1", "e1": "K2", "empty": ""})
    assert joined.texts == ["K1", "K2", None, None]
    assert (joined.found, joined.missing) == (2, 2)


def test_pgim_files_cover_the_umt_splits(data_dir: Path) -> None:
    """PGIM's published knowledge joins every T17 tweet and all but the last tweet of each T15
    split (train 33008, valid 370925, test 1418707), as ../shared/data/SOURCES.md says."""
    from featurize.datasets import LoadOptions, load_dataset

    for name, file, missing in (
        ("t17", "pgim_twitter2017.tsv", {}),
        ("t15", "pgim_twitter2015.tsv", {"train": "33008", "dev": "370925", "test": "1418707"}),
    ):
        knowledge = read_knowledge(data_dir / "knowledge" / file)
        dataset = load_dataset(name, LoadOptions(data_dir=data_dir, use_captions=False))
        for split, loaded in dataset.splits.items():
            joined = join_knowledge(loaded.examples, knowledge)
            absent = [Path(e.image_ids[0]).stem for e, t in zip(loaded.examples, joined.texts) if t is None]
            assert absent == ([missing[split]] if split in missing else []), (name, split)


# -- kinds and budgets -------------------------------------------------------------------------
def test_contexts_combine_in_one_order() -> None:
    assert context_parts("knowledge+captions") == ["captions", "knowledge"]
    assert canonical("knowledge+captions") == "captions+knowledge" == canonical("captions+knowledge")
    assert default_budget("captions") is None and default_budget("knowledge") == default_budget(
        "captions+knowledge"
    )
    assert join_parts([["a caption", None, None], ["knowledge", "k2", None]]) == [
        f"a caption{JOIN}knowledge",
        "k2",
        None,
    ]
    for bad in ("knowledge+knowledge", "pictures", "captions+"):
        if bad == "captions+":
            assert canonical(bad) == "captions"
            continue
        with pytest.raises(ConfigError):
            context_parts(bad)


def test_budget_cuts_the_segment_and_is_in_the_key(tmp_path: Path, tiny_bert: Path) -> None:
    """Another budget is another entry; the budget is the count of context subwords read (the
    first ones); half a window caps it; the stored strings are the uncut texts."""
    from featurize.build import TextContext, text_plan
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.text import build_text_encoder
    from featurize.text.transformer import WordFeatureOptions

    encoder = build_text_encoder(f"hf:{tiny_bert}", WordFeatureOptions(max_length=40))
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho"
    for budget, expected in ((None, 18), (4, 4), (500, 18)):
        encoder.context_budget = budget
        plan = encoder.plan([["york"]], [text])
        assert len(plan.context_ids[0]) == min(
            expected,
            len(
                encoder._tokenizer(text.split(), is_split_into_words=True, add_special_tokens=False)[
                    "input_ids"
                ]
            ),
        )
    encoder.context_budget = 4
    first = encoder.plan([["york"]], [text]).context_ids[0]
    encoder.context_budget = None
    assert encoder.plan([["york"]], [text]).context_ids[0][:4] == first  # the first ones are kept

    dataset = load_dataset(
        str(_toy(tmp_path)), LoadOptions(format="jsonl", split_fractions=(0.5, 0.25, 0.25))
    )
    texts = ["k"] * len(dataset.splits["train"].examples)
    keys = {
        text_plan(dataset, "train", encoder, 256, TextContext("knowledge", texts, budget)).key
        for budget in (None, 32, 64)
    }
    assert len(keys) == 3
    # a context without a budget keeps the key it had before budgets existed
    assert "budget" not in TextContext("captions", texts).identity()


def test_featurized_knowledge_is_what_the_heads_read(tmp_path: Path, tiny_bert: Path) -> None:
    from featurize.api import featurize_dataset
    from heads.data import load_split
    from heads.inputs import EntryIndex, InputSpec

    toy, knowledge = _toy(tmp_path), _knowledge(tmp_path)
    output = io.StringIO()
    paths = featurize_dataset(
        toy,
        format="jsonl",
        split_fractions="0.5,0.25,0.25",
        text=f"hf:{tiny_bert}",
        context="knowledge,captions+knowledge",
        knowledge=knowledge,
        context_budget=16,
        cache_dir=tmp_path / "cache",
        console=Console(file=output, width=200),
    )
    said = output.getvalue()
    assert "knowledge for 5 of 6 examples; 1 without (an empty context)" in said  # ex3 has none
    assert "second segments were cut to their budget" in said
    assert "subwords/s" in said
    assert len(paths[f"text:hf:{tiny_bert}"]) == 3 * 3  # plain, knowledge, captions+knowledge per split
    index = EntryIndex(tmp_path / "cache")
    read = read_knowledge(knowledge)
    for split in ("train", "dev", "test"):
        data = load_split(index, InputSpec("toy.jsonl", f"hf:{tiny_bert}", context="knowledge"), split)
        examples = [read.get(f"img{i}") or read.get(f"ex{i}") for i in (int(e[2:]) for e in data.example_ids)]
        assert data.contexts == examples
        entry = next(
            e for e in index.entries if e.meta.get("context") == "knowledge" and e.meta.get("split") == split
        )
        assert entry.meta["context_budget"] == 16
        assert entry.meta["examples_without_context"] == sum(t is None for t in examples)
        with h5py.File(entry.path) as handle:
            assert "strings/contexts" in handle
        plain = load_split(index, InputSpec("toy.jsonl", f"hf:{tiny_bert}"), split)
        assert not (data.features == plain.features).all()
    # captions+knowledge: the toy has no captions, so the segment is the knowledge alone
    combined = load_split(
        index, InputSpec("toy.jsonl", f"hf:{tiny_bert}", context="knowledge+captions"), "train"
    )
    assert (
        combined.contexts
        == load_split(index, InputSpec("toy.jsonl", f"hf:{tiny_bert}", context="knowledge"), "train").contexts
    )
    # asking for a budget that was not featurized says how to make it
    with pytest.raises(Exception, match="--context-budget 8"):
        load_split(
            index, InputSpec("toy.jsonl", f"hf:{tiny_bert}", context="knowledge", context_budget=8), "train"
        )


def test_knowledge_cli_errors_are_one_line(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed knowledge file: one line with file and line, exit 2, nothing in the cache;
    a dataset without its own file asks for --knowledge."""
    from featurize.cli import main as featurize_main

    toy = _toy(tmp_path)
    bad = tmp_path / "bad.tsv"
    bad.write_text("img0\tfine\nimg1 broken\n")
    common = [
        str(toy),
        "--format",
        "jsonl",
        "--split-fractions",
        "0.5,0.25,0.25",
        "--text",
        f"hf:{tiny_bert}",
    ]
    cache = tmp_path / "cache"
    args = [*common, "--context", "knowledge", "--knowledge", str(bad), "--cache-dir", str(cache)]
    code, _, err = run_cli(featurize_main, args, capsys)
    assert code == 2 and f"{bad}:2: expected '<id><TAB><knowledge text>'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(cache.rglob("*.h5"))
    code, _, err = run_cli(
        featurize_main, [*common, "--context", "knowledge", "--cache-dir", str(cache)], capsys
    )
    assert code == 2 and "pass --knowledge FILE" in " ".join(err.split())
    code, _, err = run_cli(
        featurize_main, [*common, "--context", "pictures", "--cache-dir", str(cache)], capsys
    )
    assert code == 2 and "unknown kind 'pictures'" in err


def test_a_knowledge_head_trains_and_predicts_with_knowledge(tmp_path: Path, tiny_bert: Path) -> None:
    from featurize.api import featurize_dataset
    from heads.experiment import RunSpec
    from heads.families import family_of_head, load
    from heads.inputs import InputSpec
    from heads.train_config import TrainConfig

    featurize_dataset(
        _toy(tmp_path, 24),
        format="jsonl",
        split_fractions="0.5,0.25,0.25",
        text=f"hf:{tiny_bert}",
        context="knowledge",
        knowledge=_knowledge(tmp_path, 24),
        cache_dir=tmp_path / "cache",
        console=Console(file=io.StringIO()),
    )
    inputs = InputSpec("toy.jsonl", f"hf:{tiny_bert}", context="knowledge")
    spec = RunSpec("linear", inputs, "text", train=TrainConfig(epochs=2, seed=0))
    folder = tmp_path / "run"
    family_of_head("linear").train(spec, tmp_path / "cache", folder, quiet=True)
    predictor = load(folder, tmp_path / "cache")
    with pytest.raises(ConfigError, match="give each input its knowledge"):
        predictor.predict(["visit Berlin"])
    with_knowledge = predictor.predict(["visit Berlin"], knowledge=["Berlin (location)"])
    assert with_knowledge[0].words == ["visit", "Berlin"]
    assert predictor.text_encoder(f"hf:{tiny_bert}").context_budget == default_budget("knowledge")


def test_the_grid_plans_knowledge_rows_beside_text_only(tmp_path: Path, tiny_bert: Path) -> None:
    """``bench heads`` finds knowledge entries in the cache: a knowledge row and a combined row
    next to the text-only one, for the same head and encoder, each also with hints."""
    from bench.grid import GridOptions, plan
    from featurize.api import featurize_dataset
    from heads.inputs import EntryIndex

    featurize_dataset(
        _toy(tmp_path),
        format="jsonl",
        split_fractions="0.5,0.25,0.25",
        text=f"hf:{tiny_bert}",
        context="knowledge,captions+knowledge",
        knowledge=_knowledge(tmp_path),
        cache_dir=tmp_path / "cache",
        console=Console(file=io.StringIO()),
    )
    cells, _ = plan(EntryIndex(tmp_path / "cache"), GridOptions(heads=["linear"], seeds=1, visions=[]))
    contexts = [(c.context, c.knowledge_hints) for c in cells if c.text == f"hf:{tiny_bert}"]
    assert contexts == [
        ("none", False),
        ("knowledge", False),
        ("knowledge", True),  # each knowledge row also with --knowledge-hints (heads.knowledge_hints)
        ("captions+knowledge", False),
        ("captions+knowledge", True),
    ]


def test_fine_tuning_reads_knowledge_to_its_budget_and_predicts_alike(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """``bench finetune --context knowledge``: the live encoder reads the stored texts to the
    entry's budget, and the saved run predicts what it scored, given each input's knowledge."""
    from featurize.api import featurize_dataset
    from heads.experiment import RunSpec
    from heads.families import load
    from heads.finetune import LiveEncoders, build_model, evaluate_split
    from heads.input_files import PredictInput
    from heads.inputs import InputSpec
    from heads.train_config import TrainConfig
    from heads.trainer import fit

    cache = tmp_path / "cache"
    featurize_dataset(
        _toy(tmp_path, 24),
        format="jsonl",
        split_fractions="0.5,0.25,0.25",
        text=f"hf:{tiny_bert}",
        context="knowledge",
        knowledge=_knowledge(tmp_path, 24),
        context_budget=8,
        bf16=False,
        cache_dir=cache,
        console=Console(file=io.StringIO()),
    )
    config = fine()
    inputs = InputSpec("toy.jsonl", f"hf:{tiny_bert}", context="knowledge")
    spec = RunSpec("linear", inputs, "text", train=TrainConfig(seed=0, epochs=1, threads=1))
    model, extras, identity = build_model(spec, config, cache, None, lambda _m: None)
    assert model.text[0].encoder.context_budget == 8
    fit(LiveEncoders(model, extras, config), config)
    test = extras["data"]["test"]
    _, expected = evaluate_split(model, test, extras["vocab"], extras["needs"], 64)
    folder = save_tuned(tmp_path / "run", model, extras, identity)
    items = [
        PredictInput(list(words), knowledge=test.contexts[i] or "none", id=str(i))
        for i, words in enumerate(test.words)
    ]
    assert [p.tags for p in load(folder).predict(items)] == expected
