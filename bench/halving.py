"""Successive halving for ``bench heads --halving``: every configuration trains to the first
rung (a few epochs), the best 1/eta of each dataset go on to the next rung, and only the
survivors of the last rung train to the end, exactly as the exact grid trains them.

Synchronous halving (Jamieson & Talwalkar 2016), not asynchronous ASHA: a rung's decision waits
for all its cells, so it depends on the run store alone, and the same command gives the same
cells, decisions and numbers on any number of workers (ASHA decides on whoever has reported so
far, which changes with the scheduling). A run paused at epoch r is the first r epochs of the
full run (same seed, same data order, same schedule), and it leaves its whole training state on
disk (heads.paused_run: weights, AdamW's moments, schedule, random states); a survivor goes on
from it in the next round, so its final line is the exact grid's line for that cell, under the
same key, without training its first epochs again. On Ray the state goes to the driver and
back with the next task (bench.grid_ray). Where the state is missing, torn or foreign, the
survivor trains from epoch 1, with the same result. The states of stopped configurations are
deleted at each decision. Ray Tune's schedulers do the same bookkeeping for Tune trials; the
grid's cells are not Tune trials (they are the run store's lines, on the local pool or Ray
tasks), so the rule is these few lines instead.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from bench.grid import Cell, _is_crfsuite, paused_state
from bench.grid_summary import config_label
from bench.run_store import RunStore
from featurize.atomic import atomic_write_text
from featurize.errors import ConfigError

DECISIONS = "halving.json"


@dataclass(frozen=True)
class Halving:
    """Rungs at ``first_rung`` x eta^k epochs below the grid's epoch limit; keep the best 1/eta."""

    eta: int = 3
    first_rung: int = 2

    def __post_init__(self) -> None:
        if self.eta < 2:
            raise ConfigError("--halving-eta must be at least 2 (the share of configurations kept is 1/eta)")
        if self.first_rung < 1:
            raise ConfigError("--halving-first-rung must be at least 1 epoch")

    def rungs(self, epochs: int) -> list[int]:
        out, rung = [], self.first_rung
        while rung < epochs:
            out.append(rung)
            rung *= self.eta
        return out


@dataclass
class Decision:
    dataset: str
    rung: int
    config: str  # the configuration's label
    dev_entity_f1: float  # mean over its seeds of the best dev entity F1 up to the rung
    kept: bool
    cutoff: float  # the lowest kept configuration's score on that rung
    basis: str = "mean of its seeds up to the rung"  # what dev_entity_f1 is (crfsuite: one whole run)


@dataclass
class HalvingOutcome:
    rungs: list[int]
    decisions: list[Decision] = field(default_factory=list)

    def to_json(self, halving: Halving) -> dict[str, object]:
        return {
            "eta": halving.eta,
            "first_rung": halving.first_rung,
            "rungs": self.rungs,
            "decisions": [asdict(d) for d in self.decisions],
        }


def config_key(cell: Cell) -> str:
    """What the seeds of one configuration share (the key of its group)."""
    return json.dumps(cell.config() | {"train": cell.train}, sort_keys=True, default=str)


def decide(
    cells: list[Cell], lines: dict[str, dict], rung: int, eta: int
) -> tuple[list[Cell], list[Decision]]:
    """The cells that go on past ``rung``: per dataset, the configurations whose mean dev entity
    F1 at the rung is among the best ceil(n/eta) of those still training (ties: the label's
    order). Configurations every seed of which already finished are out of the contest; a seed
    without a line (failed) is left out of its configuration's mean."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(config_key(cell), []).append(cell)
    contest: dict[str, list[tuple[float, str, str]]] = {}
    for key, members in groups.items():
        scored = [lines[c.key] for c in members if c.key in lines]
        if not scored or all(line["status"] == "done" for line in scored):
            continue  # finished (its own early stopping, or crfsuite) or nothing to go on
        mean = statistics.fmean(100 * float(line["record"]["metrics"]["dev"]["entity_f1"]) for line in scored)
        label = config_label(members[0].config())
        contest.setdefault(members[0].dataset, []).append((mean, label, key))
    kept_keys: set[str] = set()
    decisions: list[Decision] = []
    for dataset, entries in sorted(contest.items()):
        entries.sort(key=lambda e: (-e[0], e[1]))
        keep = max(1, math.ceil(len(entries) / eta))
        cutoff = entries[keep - 1][0]
        for rank, (mean, label, key) in enumerate(entries):
            kept = rank < keep
            if kept:
                kept_keys.add(key)
            decisions.append(Decision(dataset, rung, label, round(mean, 2), kept, round(cutoff, 2)))
    going_on = [c for c in cells if config_key(c) in kept_keys]
    return going_on, decisions


def run_rounds(
    cells: list[Cell],
    store: RunStore,
    halving: Halving,
    epochs: int,
    run_cells: Callable[[list[Cell]], None],
    runs: Path,
    note: Callable[[str], None],
) -> HalvingOutcome:
    """Train ``cells`` round by round (``run_cells`` trains a list and appends its lines to
    ``store``); resumable: a round's finished or paused cells are read back from the store."""
    outcome = HalvingOutcome(halving.rungs(epochs))
    alive = [c for c in cells if not _is_crfsuite(c.head)]
    # crfsuite cells have no epochs to pause at. Each configuration's first seed runs whole in
    # the first batch, so the long ones start first (the plan's longest-first order) and fill
    # the cores beside the rung's short cells; its other seeds wait for the last rung's
    # decision (crfsuite_seeds_going_on) and run in the last batch beside the survivors, whose
    # long cells they balance. Judged at the first rung instead, every crfsuite configuration
    # of the four-encoder grid went on (after 2 epochs the torch cutoff is still far below
    # where the survivors end; docs/results.md). Without rungs every seed runs, as in the
    # exact grid.
    crfsuite = [c for c in cells if _is_crfsuite(c.head)]
    firsts = _first_seeds(crfsuite) if outcome.rungs else crfsuite
    whole = [c for c in firsts if c.key not in store.done()]
    if crfsuite:
        note(
            f"halving: {len(firsts)} of {len(crfsuite)} crfsuite cell(s) run whole first "
            "(no epochs to pause at; the other seeds wait for the last rung)"
        )
    for rung in outcome.rungs:
        done, paused = store.done(), store.stopped(rung)
        todo = [replace(c, stop_after=rung) for c in alive if c.key not in done and c.key not in paused]
        note(
            f"halving rung {rung}: {len(alive)} cell(s) train to epoch {rung} "
            f"({len(alive) - len(todo)} already there)"
        )
        todo, whole = _in_plan_order(whole + todo, cells), []
        if todo:
            run_cells(todo)
        # the score at the rung: a survivor's paused line, not the done line it has since
        lines = store.done() | store.stopped(rung)
        going_on, decisions = decide(alive, lines, rung, halving.eta)
        outcome.decisions += decisions
        if rung == outcome.rungs[-1] and crfsuite:
            later, crf_decisions = crfsuite_seeds_going_on(crfsuite, firsts, lines, decisions, rung)
            outcome.decisions += crf_decisions
            whole = [c for c in later if c.key not in store.done()]  # they join the next batch
        kept = {c.key for c in going_on}
        for cell in alive:  # a stopped configuration's states will not be read again
            if cell.key not in kept:
                shutil.rmtree(paused_state(runs, cell.key), ignore_errors=True)
        alive = going_on
    todo = [c for c in alive if c.key not in store.done()]
    note(f"halving: {len(alive)} cell(s) train to the end ({len(alive) - len(todo)} already there)")
    todo = _in_plan_order(whole + todo, cells)  # crfsuite cells still here when there is no rung
    if todo:
        run_cells(todo)
    atomic_write_text(runs / DECISIONS, json.dumps(outcome.to_json(halving), indent=1))
    return outcome


def crfsuite_seeds_going_on(
    crfsuite: list[Cell],
    firsts: list[Cell],
    lines: dict[str, dict],
    rung_decisions: list[Decision],
    rung: int,
) -> tuple[list[Cell], list[Decision]]:
    """The other seeds of the crfsuite configurations whose first seed, trained whole, scores
    at least the last rung's cutoff of its dataset (the lowest mean dev F1 a configuration
    needed there to go on). A torch configuration's best dev F1 only rises with more epochs, so
    the cutoff is a lower bound of what the survivors finish with: a crfsuite configuration
    below it is behind all of them. With no torch contest on its dataset it goes on."""
    cutoffs = {d.dataset: d.cutoff for d in rung_decisions}
    first_of = {config_key(c): c for c in firsts}
    kept_keys: set[str] = set()
    decisions: list[Decision] = []
    for key, first in sorted(first_of.items(), key=lambda kv: config_label(kv[1].config())):
        others = [c for c in crfsuite if config_key(c) == key and c.key != first.key]
        line = lines.get(first.key)
        if not others or line is None:  # one run only (classic features), or its first seed failed
            continue
        dev = round(100 * float(line["record"]["metrics"]["dev"]["entity_f1"]), 2)
        cutoff = cutoffs.get(first.dataset)
        kept = cutoff is None or dev >= cutoff
        if kept:
            kept_keys.add(key)
        basis = f"seed {first.seed} trained whole (crfsuite)"
        label = config_label(first.config())
        decisions.append(
            Decision(first.dataset, rung, label, dev, kept, cutoff if cutoff is not None else dev, basis)
        )
    first_keys = {f.key for f in firsts}
    later = [c for c in crfsuite if config_key(c) in kept_keys and c.key not in first_keys]
    return later, decisions


def _first_seeds(cells: list[Cell]) -> list[Cell]:
    """The lowest-seed cell of each configuration, in ``cells``' order."""
    first: dict[str, Cell] = {}
    for cell in cells:
        key = config_key(cell)
        if key not in first or cell.seed < first[key].seed:
            first[key] = cell
    chosen = {c.key for c in first.values()}
    return [c for c in cells if c.key in chosen]


def _in_plan_order(todo: list[Cell], planned: list[Cell]) -> list[Cell]:
    """``todo`` in the order the grid planned its cells (longest first)."""
    rank = {c.key: i for i, c in enumerate(planned)}
    return sorted(todo, key=lambda c: rank[c.key])


def read_decisions(runs: Path) -> list[dict]:
    """The decisions a halving grid wrote under ``runs`` ([] when none or unreadable)."""
    path = runs / DECISIONS
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text(encoding="utf-8")).get("decisions", []))
    except (json.JSONDecodeError, AttributeError):
        return []
