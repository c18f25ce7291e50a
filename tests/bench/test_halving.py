"""``bench heads --halving``: rungs and decisions follow the store alone; a paused run is the
first epochs of the full one, so a survivor's line is the exact grid's line for that cell; the
report names every configuration stopped at a rung."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_cli
from heads_data import DATASET, Mini

import bench.cli
from bench.grid import Cell
from bench.halving import DECISIONS, Halving, decide, run_rounds
from bench.run_store import RunStore
from featurize.errors import ConfigError


def test_rungs_are_first_rung_times_eta_powers_below_the_epoch_limit() -> None:
    assert Halving(3, 2).rungs(15) == [2, 6]
    assert Halving(2, 1).rungs(4) == [1, 2]
    assert Halving(3, 5).rungs(5) == []  # the first rung is the end: the exact grid
    with pytest.raises(ConfigError, match="eta"):
        Halving(1, 2)
    with pytest.raises(ConfigError, match="first-rung"):
        Halving(3, 0)


def _cell(head: str, seed: int, dataset: str = "t17") -> Cell:
    return Cell(dataset, head, "text", "minilm", None, "none", seed, {"epochs": 9})


def _line(cell: Cell, dev: float, status: str = "stopped") -> dict:
    return {
        "key": cell.key,
        "status": status,
        "stop_after": 3,
        "cell": cell.identity(),
        "record": {"metrics": {"dev": {"entity_f1": dev}}},
    }


def test_decide_keeps_the_best_third_per_dataset_by_mean_dev_over_seeds() -> None:
    heads = ["a", "b", "c", "d", "e", "f"]
    devs = {
        "a": (0.5, 0.7),
        "b": (0.61, 0.61),
        "c": (0.3, 0.3),
        "d": (0.2, 0.9),
        "e": (0.1, 0.1),
        "f": (0.4, 0.4),
    }
    cells = [_cell(h, s) for h in heads for s in (0, 1)] + [_cell("g", 0, "t15"), _cell("h", 0, "t15")]
    lines = {c.key: _line(c, devs[c.head][c.seed]) for c in cells if c.dataset == "t17"}
    g, h = cells[-2:]
    lines[g.key] = _line(g, 0.8)
    lines[h.key] = _line(h, 0.9, status="done")  # finished on its own: out of the contest
    going_on, decisions = decide(cells, lines, rung=3, eta=3)
    assert {c.head for c in going_on} == {"b", "a", "g"}  # 0.61 and 0.60 of six; t15's only contestant
    assert len(going_on) == 5
    t17 = [d for d in decisions if d.dataset == "t17"]
    assert [d.kept for d in t17] == [True, True, False, False, False, False]
    assert t17[0].dev_entity_f1 == 61.0 and t17[1].cutoff == 60.0
    assert not any("h" in d.config.split() for d in decisions)
    # The same store gives the same decision whatever the order of the cells.
    again, _ = decide(list(reversed(cells)), lines, rung=3, eta=3)
    assert {c.key for c in again} == {c.key for c in going_on}


def test_a_seed_without_a_line_is_left_out_of_the_mean() -> None:
    cells = [_cell("a", 0), _cell("a", 1), _cell("b", 0), _cell("b", 1)]
    lines = {
        cells[0].key: _line(cells[0], 0.9),
        cells[2].key: _line(cells[2], 0.5),
        cells[3].key: _line(cells[3], 0.5),
    }
    going_on, decisions = decide(cells, lines, rung=3, eta=2)
    assert {c.head for c in going_on} == {"a"} and decisions[0].dev_entity_f1 == 90.0


def test_crfsuite_cells_run_whole_in_the_first_rungs_batch_longest_first(tmp_path: Path) -> None:
    crf = Cell("t17", "crf", "text", "minilm", None, "none", 0, {"epochs": 9})
    torch_cells = [_cell(h, s) for h in ("a", "b", "c") for s in (0, 1)]
    planned = [crf, *torch_cells]  # the plan's order: longest first
    store = RunStore(tmp_path / "runs.jsonl")
    batches: list[list[tuple[str, int | None]]] = []
    dev = {"a": 0.9, "b": 0.5, "c": 0.4, "crf": 0.1}

    def run_cells(todo: list[Cell]) -> None:
        batches.append([(c.head, c.stop_after) for c in todo])
        for c in todo:
            status = "stopped" if c.stop_after else "done"
            store.append(_line(c, dev[c.head], status) | {"stop_after": c.stop_after})

    run_rounds(planned, store, Halving(3, 3), 9, run_cells, tmp_path, lambda _: None)
    # one batch per rung (3) and the last; crfsuite whole (no stop_after) first in the first
    assert batches[0][0] == ("crf", None)
    assert sorted(batches[0][1:]) == sorted((c.head, 3) for c in torch_cells)
    assert batches[1:] == [[("a", None), ("a", None)]]  # the best third of three configurations
    # resumed from the store: nothing runs again
    batches.clear()
    run_rounds(planned, store, Halving(3, 3), 9, run_cells, tmp_path, lambda _: None)
    assert batches == []


def test_crfsuite_other_seeds_run_only_when_the_first_clears_the_last_rungs_cutoff(tmp_path: Path) -> None:
    def crf(text: str, seed: int) -> Cell:
        return Cell("t17", "crf", "text", text, None, "none", seed, {"epochs": 9})

    crfsuite = [crf(text, seed) for text in ("e5", "minilm") for seed in (0, 1, 2)]
    torch_cells = [_cell(h, s) for h in ("a", "b", "c", "d") for s in (0, 1)]
    planned = [*crfsuite, *torch_cells]
    store = RunStore(tmp_path / "runs.jsonl")
    batches: list[list[tuple[str, str | None, int, int | None]]] = []
    # rungs at epochs 1 and 3. At the first rung a, b, c, d score 0.9, 0.8, 0.5, 0.4: a and b go
    # on, cutoff 80.0 (MiniLM's crfsuite would clear it); at the last a alone, cutoff 90.0
    dev = {("crf", "e5"): 0.95, ("crf", "minilm"): 0.85, "a": 0.9, "b": 0.8, "c": 0.5, "d": 0.4}

    def run_cells(todo: list[Cell]) -> None:
        batches.append([(c.head, c.text, c.seed, c.stop_after) for c in todo])
        for c in todo:
            status = "stopped" if c.stop_after else "done"
            score = dev[(c.head, c.text)] if c.head == "crf" else dev[c.head]
            store.append(_line(c, score, status) | {"stop_after": c.stop_after})

    outcome = run_rounds(planned, store, Halving(3, 1), 9, run_cells, tmp_path, lambda _: None)
    # the first batch: each crfsuite configuration's first seed, whole, then the rung's cells
    assert batches[0][:2] == [("crf", "e5", 0, None), ("crf", "minilm", 0, None)]
    assert sorted(batches[0][2:]) == sorted((c.head, "minilm", c.seed, 1) for c in torch_cells)
    assert sorted(batches[1]) == [
        ("a", "minilm", 0, 3),
        ("a", "minilm", 1, 3),
        ("b", "minilm", 0, 3),
        ("b", "minilm", 1, 3),
    ]
    # e5's 95.0 clears the last rung's cutoff (90.0): its seeds 1 and 2 run beside the
    # survivor in the last batch; MiniLM's 85.0 does not, so its other seeds never run
    assert batches[2:] == [
        [("crf", "e5", 1, None), ("crf", "e5", 2, None), ("a", "minilm", 0, None), ("a", "minilm", 1, None)]
    ]
    crf_decisions = [d for d in outcome.decisions if d.basis.startswith("seed 0")]
    assert [(d.config, d.rung, d.dev_entity_f1, d.cutoff, d.kept) for d in crf_decisions] == [
        ("crf e5", 3, 95.0, 90.0, True),
        ("crf minilm", 3, 85.0, 90.0, False),
    ]
    written = json.loads((tmp_path / DECISIONS).read_text())["decisions"]
    assert sum(d["basis"] == "seed 0 trained whole (crfsuite)" for d in written) == 2
    # resumed from the store: nothing runs again
    batches.clear()
    run_rounds(planned, store, Halving(3, 1), 9, run_cells, tmp_path, lambda _: None)
    assert batches == []
    # without rungs every seed runs, as in the exact grid
    batches.clear()
    exact = RunStore(tmp_path / "exact.jsonl")
    run_rounds(planned, exact, Halving(3, 9), 9, run_cells, tmp_path, lambda _: None)
    assert len(batches) == 1 and sum(h == "crf" for h, *_ in batches[0]) == 6


@pytest.mark.slow
def test_halving_grid_pauses_prunes_reports_and_survivors_equal_the_exact_grid(
    mini: Mini, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [
        "heads",
        "--dataset",
        DATASET,
        "--head",
        "bilstm-crf,msb,linear",
        "--vision",
        "none",
        "--context",
        "none",
        "--seeds",
        "2",
        "--epochs",
        "4",
        "--patience",
        "4",
        "--batch-size",
        "16",
        "--workers",
        "2",
        "--no-save-models",
        "--cache-dir",
        str(mini.cache),
    ]
    halving = [
        *common,
        "--runs",
        str(tmp_path / "halving"),
        "--halving",
        "--halving-eta",
        "2",
        "--halving-first-rung",
        "1",
    ]
    code, out, err = run_cli(bench.cli.main, halving, capsys)
    assert code == 0, out + err
    flat = err.replace("\n", " ")
    assert "halving rung 1" in flat and "halving rung 2" in flat
    decisions = json.loads((tmp_path / "halving" / DECISIONS).read_text())
    assert decisions["rungs"] == [1, 2]
    store = RunStore(tmp_path / "halving" / "runs.jsonl")
    paused_1, paused_2, done = store.stopped(1), store.stopped(2), store.done()
    assert len(paused_1) == 6  # three configurations x two seeds paused after epoch 1
    assert len(paused_2) == 4  # the two that went on, paused again after epoch 2
    for line in paused_1.values():
        assert line["record"]["epochs_run"] == 1 and line["record"]["halted_at"] == 1
    stopped_at_1 = [d for d in decisions["decisions"] if d["rung"] == 1 and not d["kept"]]
    assert len(stopped_at_1) == 1  # ceil(3 / 2) = 2 of 3 went on
    assert len(done) == 2  # ceil(2 / 2) = 1 configuration trained to the end, both seeds
    # each round went on from the previous rung's saved state; none is left behind
    assert all(line["record"]["resumed_after"] == 2 for line in done.values())
    assert all(line["record"]["resumed_after"] == 1 for line in paused_2.values())
    assert not any((tmp_path / "halving" / "paused").iterdir())
    md = (tmp_path / "halving" / "report" / "heads-grid.md").read_text()
    assert "Successive halving" in md and "stopped here" in md

    exact = [*common, "--runs", str(tmp_path / "exact")]
    code, out, err = run_cli(bench.cli.main, exact, capsys)
    assert code == 0, out + err
    full = RunStore(tmp_path / "exact" / "runs.jsonl").done()
    assert len(full) == 6
    for key, line in done.items():  # a survivor is the exact grid's cell: same key, same numbers
        assert line["record"]["metrics"] == full[key]["record"]["metrics"]
        assert [r["dev_entity_f1"] for r in line["record"]["history"]] == [
            r["dev_entity_f1"] for r in full[key]["record"]["history"]
        ]
    for key, line in paused_1.items():  # a paused run is the full run's first epoch
        assert (
            line["record"]["history"][0]["dev_entity_f1"]
            == full[key]["record"]["history"][0]["dev_entity_f1"]
        )

    # Re-running the halving command trains nothing and decides the same.
    before = (tmp_path / "halving" / DECISIONS).read_text()
    code, out, err = run_cli(bench.cli.main, halving, capsys)
    assert code == 0 and "ran " not in err
    assert (tmp_path / "halving" / DECISIONS).read_text() == before
