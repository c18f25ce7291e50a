"""``bench grid-speed``: the same small grid (text-only cells) under each workers x threads setting,
in one run: wall time as a ratio to the first setting, and whether the scores stayed the same."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from bench.grid import GRID_TRAIN, GridOptions, plan
from bench.grid_runner import run_grid
from bench.run_store import RunStore
from featurize.errors import ConfigError
from heads.inputs import EntryIndex
from heads.report_table import Report
from heads.tagger import HEADS

COLUMNS = [
    "workers x threads",
    "cells",
    "wall s",
    "cells per minute",
    "× baseline",
    "max dev F1 change (abs)",
]


def parse_settings(text: str) -> list[tuple[int, int]]:
    out = []
    for setting in [x.strip() for x in text.split(",") if x.strip()]:
        try:
            workers, threads = (int(v) for v in setting.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--settings: expected WORKERSxTHREADS, got {setting!r}") from None
        out.append((workers, threads))
    return out


def grid_speed_report(
    dataset: str,
    heads: list[str],
    seeds: int,
    settings: list[tuple[int, int]],
    epochs: int,
    cache_root: Path,
    out: Console,
    command: str,
) -> Report:
    options = GridOptions(
        datasets=[dataset],
        heads=heads,
        visions=[],
        contexts=[],
        seeds=seeds,
        train=replace(GRID_TRAIN, epochs=epochs),
    )
    cells, _ = plan(EntryIndex(cache_root), options)
    cells = [c for c in cells if HEADS.trait(c.head, "family") == "torch"]
    if not cells:
        raise ConfigError(f"--head: no torch-head cells for {dataset} with {', '.join(heads)}")
    report = Report("Grid throughput: parallel cells against threads", COLUMNS, command=command)
    baseline_wall: float | None = None
    baseline_scores: dict[str, float] = {}
    for workers, threads in settings:
        with tempfile.TemporaryDirectory() as tmp:
            store = RunStore(Path(tmp) / "runs.jsonl")
            wall = run_grid(cells, store, cache_root, Path(tmp), workers, threads, False, lambda line: None)
            scores = {k: 100 * v["record"]["metrics"]["dev"]["entity_f1"] for k, v in store.done().items()}
        if baseline_wall is None:
            baseline_wall, baseline_scores = wall, scores
        change = max((abs(scores.get(k, 0.0) - v) for k, v in baseline_scores.items()), default=0.0)
        report.rows.append(
            {
                "workers x threads": f"{workers}x{threads}",
                "cells": f"{len(scores)}/{len(cells)}",
                "wall s": round(wall, 1),
                "cells per minute": round(60 * len(scores) / wall, 2),
                "× baseline": round(baseline_wall / wall, 2),
                "max dev F1 change (abs)": round(change, 2),
            }
        )
        out.print(f"{workers}x{threads}: {wall:.1f} s")
    report.notes.append(
        f"{dataset}, heads {', '.join(heads)}, {seeds} seed(s), text-only cells, batch {GRID_TRAIN.batch_size}, "
        f"at most {epochs} epochs; each setting in fresh worker processes, one after another in this run."
    )
    return report
