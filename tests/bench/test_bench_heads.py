"""``bench heads``: the grid is planned from the cache with reasons for what it skips, runs end
to end on a small real subset, resumes after an interruption without redoing finished cells,
and reports dev-ranked tables with the published numbers kept apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_cli
from heads_data import DATASET, Mini

import bench.cli
from bench import grid_report, winners
from bench.grid import GridOptions, plan
from bench.grid_runner import run_cell
from bench.grid_summary import summarise
from bench.run_store import RunStore
from heads.inputs import EntryIndex
from heads.train_config import TrainConfig


def _line(key: str, head: str, seed: int, dev: float, test: float, text: str | None = "minilm") -> dict:
    metrics = {
        "dev": {"entity_f1": dev, "token_macro_f1": dev - 0.05},
        "test": {
            "entity_f1": test,
            "token_macro_f1": test - 0.05,
            "entity_confusion": {"PER": {"PER": 8, "LOC": 1, "missed": 2}, "spurious": {"ORG": 3}},
        },
    }
    cell = {
        "dataset": "t17",
        "head": head,
        "modality": "text",
        "text": text,
        "vision": None,
        "context": "none",
        "seed": seed,
        "train": {"epochs": 3},
    }
    history = [{"epoch": e, "dev_entity_f1": dev * e / 3, "seconds": 2.0 * e} for e in (1, 2, 3)]
    record = {
        "metrics": metrics,
        "train_seconds": 6.0,
        "peak_memory_mib": 500.0,
        "epochs_run": 3,
        "history": history,
    }
    return {"key": key, "status": "done", "cell": cell, "model": None, "wall_seconds": 7.0, "record": record}


def test_store_ignores_a_torn_line_and_appends_after_it(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.jsonl")
    store.append(_line("a", "msb", 0, 0.8, 0.7))
    with store.path.open("a") as handle:
        handle.write('{"format": "mner-bench-heads-runs", "version": 1, "key": "b", "sta')  # killed mid-write
    assert list(store.done()) == ["a"]
    assert any(":2: torn" in w for w in store.warnings)
    store.append(_line("c", "msb", 1, 0.8, 0.7))
    assert sorted(RunStore(store.path).done()) == ["a", "c"]


def test_report_ranks_on_dev_and_keeps_published_numbers_apart(tmp_path: Path) -> None:
    # msb is better on test, bilstm-crf on dev: dev decides the rank and the winner.
    lines = [_line(f"m{s}", "msb", s, 0.80, 0.86) for s in (0, 1)] + [
        _line(f"b{s}", "bilstm-crf", s, 0.82 + s / 100, 0.81) for s in (0, 1)
    ]
    results = summarise(lines)
    assert [r.config["head"] for r in results] == ["bilstm-crf", "msb"]
    best = results[0]
    assert best.rank == 1 and best.seeds == [0, 1]
    assert best.dev_f1.mean == pytest.approx(82.5) and best.dev_f1.std == pytest.approx(0.7071, abs=1e-3)
    assert best.test_confusion["PER"]["missed"] == 4  # summed over seeds
    paths = grid_report.write(results, [], [], tmp_path, "bench heads", ["preamble"])
    md = paths["md"].read_text()
    ours, published = md.split("Published reference numbers")
    assert "1 (winner)" in ours and "82.50 ± 0.71" in ours and "UMT" not in ours
    assert "UMT" in published and "85.31" in published and "NOT produced by this grid" in published
    rows = paths["csv"].read_text().splitlines()
    assert rows[0].startswith("table,rank,head") and len(rows) == 1 + 2 + len(grid_report.REFERENCES)
    assert json.loads(paths["json"].read_text())["tables"][0]["rows"][0]["head"] == "bilstm-crf"
    payload = winners.write(results, tmp_path / "winners.json", tmp_path / "runs.jsonl")
    assert payload["datasets"]["t17"]["head"] == "bilstm-crf"
    assert winners.read(tmp_path / "winners.json")["t17"]["test_entity_f1"] == 81.0


def test_a_failing_cell_is_a_result_not_a_crash(tmp_path: Path) -> None:
    cell = {
        "dataset": "nope",
        "head": "msb",
        "modality": "text",
        "text": "minilm",
        "vision": None,
        "context": "none",
        "seed": 0,
        "train": {"epochs": 1},
    }
    line = run_cell(cell, str(tmp_path / "cache"), str(tmp_path / "runs"), save_models=False)
    assert line["status"] == "failed" and "no cached minilm features" in line["error"]


@pytest.mark.slow
def test_plan_reads_the_cache_and_gives_reasons_for_skips(mini: Mini) -> None:
    index = EntryIndex(mini.cache)
    cells, skips = plan(index, GridOptions(seeds=2, train=TrainConfig(epochs=2)))
    configs = {(c.head, c.modality, c.text, c.vision, c.context) for c in cells}
    assert ("linear", "both", "minilm", "cnn", "none") in configs
    assert ("linear", "text", "minilm", None, "labels") in configs  # label words as a second segment
    assert ("cwi", "both", "minilm", "labels", "none") in configs  # label words through an LSTM
    assert ("linear", "both", "minilm", "cnn", "labels") not in configs  # one kind at a time by default
    assert ("crf", "text", None, None, "none") in configs
    assert len([c for c in cells if c.head == "crf" and c.text is None]) == 1  # deterministic: one seed
    assert all(c.dataset == DATASET for c in cells)
    assert len({c.key for c in cells}) == len(cells)
    reasons = {s.what: s.reason for s in skips}
    assert "deterministic" in reasons[f"{DATASET} crf classic seeds 1.."]

    everything, _ = plan(index, GridOptions(seeds=1, all=True))
    assert ("linear", "both", "minilm", "cnn", "labels") in {
        (c.head, c.modality, c.text, c.vision, c.context) for c in everything
    }
    text_only, skips = plan(index, GridOptions(seeds=1, visions=[], datasets=[DATASET, "hipe-de"]))
    assert not any(c.vision for c in text_only)
    reasons = {s.what: s.reason for s in skips}
    assert "reads image vectors" in reasons[f"{DATASET} linear --modality image"]
    assert "reads label words" in reasons[f"{DATASET} cwi --modality both"]
    assert "featurize hipe-de" in reasons["hipe-de"]
    _, skips = plan(index, GridOptions(seeds=1, visions=["vit"], texts=["minilm", "mpnet"]))
    reasons = {s.what: s.reason for s in skips}
    assert "no cached vit image features" in reasons[f"{DATASET} --vision vit"]
    assert "no cached mpnet features" in reasons[f"{DATASET} --text mpnet"]


@pytest.mark.slow
def test_tiny_grid_runs_resumes_and_reports(
    mini: Mini, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "grid"
    argv = [
        "heads",
        "--dataset",
        DATASET,
        "--head",
        "bilstm-crf,msb",
        "--vision",
        "none",
        "--context",
        "none",
        "--seeds",
        "1",
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--workers",
        "1",
        "--runs",
        str(runs),
        "--cache-dir",
        str(mini.cache),
    ]
    code, out, err = run_cli(bench.cli.main, argv, capsys)
    assert code == 0, out + err
    store = RunStore(runs / "runs.jsonl")
    done = store.done()
    assert len(done) == 2
    for line in done.values():
        record = line["record"]
        assert record["epochs_run"] <= 4 and record["peak_memory_mib"] > 0 and record["train_seconds"] > 0
        assert line["cell"]["train"]["batch_size"] == 16 and line["cell"]["train"]["precision"] == "bf16"
        assert (Path(line["model"]) / "model.safetensors").is_file()
    assert max(line["record"]["metrics"]["test"]["entity_f1"] for line in done.values()) > 0.2
    md = (runs / "report" / "heads-grid.md").read_text()
    assert "bilstm-crf" in md and "msb" in md and "Published reference numbers" in md
    for png in ("f1-" + DATASET, "learning-curves-" + DATASET, "confusion-" + DATASET, "cost-vs-f1"):
        assert (runs / "report" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    chosen = winners.read(runs / "winners.json")[DATASET]
    assert chosen["head"] in ("bilstm-crf", "msb") and chosen["text"] == "minilm"

    # Nothing to redo: the same command trains no cell.
    code, out, err = run_cli(bench.cli.main, argv, capsys)
    assert code == 0 and "2 finished earlier, 0 to run" in err.replace("\n", " ")
    assert len(store.path.read_text().splitlines()) == 2

    # Interrupted while writing the second cell's line: only that cell runs again.
    lines = store.path.read_text().splitlines()
    store.path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    code, out, err = run_cli(bench.cli.main, argv, capsys)
    flat = err.replace("\n", " ")
    assert code == 0 and "1 finished earlier, 1 to run" in flat and "torn" in flat
    assert len(RunStore(store.path).done()) == 2


def test_time_table_says_where_each_heads_time_goes() -> None:
    lines = [_line(f"m{s}", "msb", s, 0.8, 0.8) for s in (0, 1)] + [_line("b0", "bilstm-crf", 0, 0.8, 0.8)]
    for line in lines:
        line["record"] |= {"load_seconds": 0.5, "score_seconds": 1.0}
        for row in line["record"]["history"]:
            row |= {"step_seconds": 1.5, "dev_seconds": 0.25}
    lines[2]["wall_seconds"] = 28.0  # bilstm-crf: 28 of the 42 summed seconds
    crf = _line("c0", "crf", 0, 0.7, 0.7, text=None)
    crf["record"] = {"metrics": crf["record"]["metrics"], "train_seconds": 6.0}  # crfsuite: no epochs
    table = grid_report.time_table([*lines, crf])
    rows = {(r["head"], r["text"]): r for r in table.rows}
    assert list(rows)[0] == ("bilstm-crf", "minilm")  # the largest share first
    assert rows[("bilstm-crf", "minilm")]["share"] == "57%"
    msb = rows[("msb", "minilm")]
    assert msb["cells"] == 2 and msb["steps s/epoch"] == "1.5" and msb["dev s/epoch"] == "0.2"
    assert msb["load s"] == "0.5" and msb["epochs run"] == "3.0" and msb["sum min"] == "0.2"
    assert rows[("crf", "own")]["steps s/epoch"] == "-"
