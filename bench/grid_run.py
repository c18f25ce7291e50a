"""``bench heads`` as a library call: plan the grid from the cache, run the unfinished cells in
worker processes with a progress bar, then report, plot and pick the winners.

The command line only parses options into :class:`GridRun` and calls :func:`run`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from bench import grid_report, winners
from bench.grid import GridOptions, plan
from bench.grid_runner import run_grid
from bench.grid_summary import summarise
from bench.halving import Halving, config_key, read_decisions, run_rounds
from bench.progress import cells_bar
from bench.run_store import RunStore
from featurize.errors import ConfigError
from heads.inputs import EntryIndex


@dataclass
class GridRun:
    """How to run a planned grid: where its store lives, how many workers, what to keep."""

    runs: Path = Path("runs/bench-heads")
    workers: int = 2
    threads: int = 1
    save_models: bool = True
    report_only: bool = False
    dry_run: bool = False
    engine: str = "local"  # or "ray": cells as Ray tasks (bench.grid_ray)
    ray_address: str | None = None  # None: a Ray started here with workers x threads CPUs
    gpus_per_cell: float = 0.0
    halving: Halving | None = None  # None: the exact grid; else successive halving (bench.halving)

    def __post_init__(self) -> None:
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"--engine {self.engine!r}: choose local or ray")
        if self.engine == "local" and (self.ray_address or self.gpus_per_cell):
            raise ConfigError("--ray-address and --gpus-per-cell go with --engine ray")
        if self.gpus_per_cell < 0:
            raise ConfigError("--gpus-per-cell must not be negative")

    def where(self) -> str:
        if self.engine == "ray":
            return f"as Ray tasks of {self.threads} thread(s) on {self.ray_address or 'a Ray started here'}"
        return f"with {self.workers} worker(s) x {self.threads} thread(s)"


@dataclass
class GridOutcome:
    planned: int
    ran: int
    failed: int
    report: dict[str, Path] | None  # md/json/csv paths; None when nothing is finished yet


def check_heads(names: list[str] | None) -> None:
    """Unknown ``--head`` names are one clear error before anything is planned."""
    if not names:
        return
    import heads.models  # noqa: F401
    from heads.tagger import HEADS

    unknown = [h for h in names if h not in HEADS]
    if unknown:
        raise ConfigError(f"--head: unknown head(s) {', '.join(unknown)}; see `heads list`")


def run(
    options: GridOptions, how: GridRun, cache_root: Path, out: Console, err: Console, command: str
) -> GridOutcome:
    """Plan, run what the store lacks, report. Results go to RUNS/runs.jsonl as each cell ends,
    so an interrupted grid resumes; RUNS/report/heads-grid.{md,json,csv}, plots, RUNS/winners.json."""
    check_heads(options.heads)
    if how.engine == "ray" and not how.dry_run and not how.report_only:
        from featurize.ray_engine import require_ray

        require_ray()
    runs = how.runs
    cells, skips = plan(EntryIndex(cache_root), options)
    store = RunStore(runs / "runs.jsonl")
    done = store.done()
    todo = [c for c in cells if c.key not in done]
    for skip in skips:
        err.print(f"[dim]skip[/] {skip.what}: {skip.reason}")
    err.print(
        f"{len(cells)} cells planned ({len(cells) - len(todo)} finished earlier, {len(todo)} to run) "
        f"{how.where()}; store {store.path}"
    )
    if how.dry_run:
        for c in todo:
            out.print(c.label, markup=False)
        return GridOutcome(len(cells), 0, 0, None)
    ran = 0
    if todo and not how.report_only:
        started = time.time()
        clock = time.perf_counter()
        trained: list[int] = []

        def run_cells(batch: list) -> None:
            trained.append(len(batch))
            with cells_bar(err, len(batch), {c.key: c.label for c in batch}) as on_done:
                _run_engine(batch, store, cache_root, how, on_done)

        if how.halving is not None:
            note = lambda message: err.print(message)  # noqa: E731
            run_rounds(cells, store, how.halving, options.train.epochs, run_cells, runs, note)
        else:
            run_cells(todo)
        wall = time.perf_counter() - clock
        ran = sum(trained)
        if ran:
            log_invocation(runs, started, ran, wall, how.workers, how.threads, command)
            err.print(
                f"ran {ran} cell runs in {wall / 60:.1f} min "
                f"(started {time.strftime('%H:%M', time.localtime(started))})"
            )
    for warning in store.warnings:
        err.print(f"[yellow]warning[/] {warning}")
    planned = {c.key for c in cells}
    lines = [line for key, line in store.done().items() if key in planned]
    timed = [
        line for line in store.lines() if line["status"] in ("done", "stopped") and line["key"] in planned
    ]
    extra = []
    if how.halving is not None:
        decisions = read_decisions(runs)
        lines = complete_configs(lines, cells)
        if decisions:
            extra.append(grid_report.halving_table(decisions))
    failures = [line for key, line in store.failed().items() if key in planned]
    if not lines:
        err.print("no finished cell of this grid in the store yet: nothing to report")
        return GridOutcome(len(cells), ran, len(failures), None)
    results = summarise(lines)
    preamble = [
        f"Store: `{store.path}`; {len(lines)} finished cells of {len(cells)} planned"
        + (f", {len(failures)} failed" if failures else "")
        + f"; {how.workers} worker(s) x {how.threads} torch thread(s)."
    ]
    for past in invocations(runs):
        preamble.append(
            f"Invocation started {past['started']}: {past['cells']} cells in {past['wall_seconds'] / 60:.1f} min "
            f"of wall time ({past['workers']} worker(s) x {past['threads']} thread(s))."
        )
    if how.halving is not None:
        preamble.append(
            f"Successive halving (eta {how.halving.eta}, first rung {how.halving.first_rung} epochs): "
            "configurations behind on dev at a rung stopped there and are listed apart; the table "
            "holds the configurations every seed of which trained to the end."
        )
    paths = grid_report.write(results, skips, failures, runs / "report", command, preamble, extra, timed)
    from bench.grid_plots import write_plots

    pngs = write_plots(results, runs / "report")
    chosen = winners.write(results, runs / "winners.json", store.path)
    for reportable in grid_report.dataset_tables_for_console(results, command):
        out.print(reportable.markdown(), markup=False)
    for name, w in chosen["datasets"].items():  # type: ignore[union-attr]
        out.print(escape(f"winner {name}: {w['label']} dev {w['dev_entity_f1']} test {w['test_entity_f1']}"))
    out.print(f"saved {paths['md']} (.json, .csv), {len(pngs)} plots, {runs / 'winners.json'}")
    if failures:
        err.print(f"[red]{len(failures)} cell(s) failed[/]; re-run the same command to retry them")
    return GridOutcome(len(cells), ran, len(failures), paths)


def _run_engine(cells: list, store: RunStore, cache_root: Path, how: GridRun, on_done) -> float:
    if how.engine == "ray":
        from bench.grid_ray import local_cpus, run_grid_ray

        cpus = local_cpus(how.workers, how.threads)
        args = (how.threads, how.save_models, on_done, how.ray_address, how.gpus_per_cell, cpus)
        return run_grid_ray(cells, store, cache_root, how.runs, *args)
    return run_grid(cells, store, cache_root, how.runs, how.workers, how.threads, how.save_models, on_done)


def complete_configs(lines: list[dict], cells: list) -> list[dict]:
    """Done lines of the configurations all of whose planned seeds are done (a halving grid
    reports those; a configuration stopped at a rung is in the halving table instead)."""
    wanted: dict[str, set[str]] = {}
    for c in cells:
        wanted.setdefault(config_key(c), set()).add(c.key)
    have = {line["key"] for line in lines}
    full = {k for keys in wanted.values() if keys <= have for k in keys}
    return [line for line in lines if line["key"] in full]


def log_invocation(
    runs: Path, started: float, cells: int, wall: float, workers: int, threads: int, command: str
) -> None:
    """How long each training invocation took, kept beside the store for the report."""
    line = {
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "cells": cells,
        "wall_seconds": round(wall, 1),
        "workers": workers,
        "threads": threads,
        "command": command,
    }
    with (runs / "invocations.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def invocations(runs: Path) -> list[dict]:
    path = runs / "invocations.jsonl"
    if not path.exists():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return out
