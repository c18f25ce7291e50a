"""PNG plots of a finished ``bench heads`` grid, drawn from ``grid_summary.summarise``'s results.

Per dataset: test entity F1 of every configuration (ranked by dev F1, so the plot shows what
model selection would pick, not the test-set best), dev F1 learning curves of the top few, and
the entity-type confusion of the dev-chosen winner; plus one cost-vs-F1 scatter over all datasets.
Matplotlib runs on the Agg backend (no display on the benchmark machines) and every figure is
closed after saving, so a long grid can draw plots repeatedly without leaking memory.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from bench.grid_summary import ConfigResult

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.figure import Figure

DPI = 120
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "8", "H", "d"]
WINNER = "dev-chosen"


def write_plots(results: list[ConfigResult], folder: Path, top: int = 5) -> list[Path]:
    """Write the grid's PNG plots into ``folder`` and return their paths (skipped plots are absent)."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    by_dataset: dict[str, list[ConfigResult]] = defaultdict(list)
    for r in results:
        by_dataset[r.dataset].append(r)
    head_colours = _head_colours(results)
    paths: list[Path] = []
    for dataset in sorted(by_dataset):
        ranked = sorted(by_dataset[dataset], key=lambda r: (r.rank, r.label))
        stem = _safe(dataset)
        for name, draw in (
            (f"f1-{stem}.png", partial(_f1_figure, plt, dataset, ranked, head_colours)),
            (f"learning-curves-{stem}.png", partial(_curves_figure, plt, dataset, ranked, top)),
            (f"confusion-{stem}.png", partial(_confusion_figure, plt, dataset, ranked[0])),
        ):
            fig = draw()  # one figure open at a time
            if fig is not None:
                paths.append(_save(plt, fig, folder / name))
    if results:
        paths.append(_save(plt, _cost_figure(plt, results, sorted(by_dataset)), folder / "cost-vs-f1.png"))
    return paths


def _pyplot() -> ModuleType:
    """Import pyplot lazily, on Agg: importing bench must not pay for matplotlib or need a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: ModuleType, fig: Figure, path: Path) -> Path:
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1)  # never cut off a label
    finally:
        plt.close(fig)
    return path


def _safe(name: str) -> str:
    """A dataset name as a file-name part (dataset names come from the user's folders)."""
    return re.sub(r"[^\w.-]+", "_", name) or "dataset"


def _head_colours(results: list[ConfigResult]) -> dict[str, tuple]:
    """One colour per head, the same in every dataset's plot."""
    import matplotlib

    heads = sorted({str(r.config["head"]) for r in results})
    cmap = matplotlib.colormaps["tab10" if len(heads) <= 10 else "tab20"]
    return {head: cmap(i % cmap.N) for i, head in enumerate(heads)}


def _f1_figure(
    plt: ModuleType, dataset: str, ranked: list[ConfigResult], colours: dict[str, tuple]
) -> Figure:
    """Horizontal bars, rank 1 on top: with 40 configurations the labels stay one per line.

    Colour is the head (each label names it too, so no legend). Bars start at 0 (a bar's length
    is its score); the numbers sit in a column right of the axes, so configurations a point
    apart can still be told apart without text over the bars.
    """
    n = len(ranked)
    fig, ax = plt.subplots(figsize=(11, 0.3 * n + 1.6))
    y = list(range(n))
    means = [r.test_f1.mean for r in ranked]
    stds = [r.test_f1.std for r in ranked]
    ax.barh(
        y,
        means,
        xerr=stds,
        color=[colours[str(r.config["head"])] for r in ranked],
        edgecolor=["black" if r.rank == 1 else "none" for r in ranked],
        linewidth=1.5,
        error_kw={"ecolor": "0.2", "capsize": 2, "elinewidth": 1},
        height=0.7,
    )
    ax.set_yticks(y, [f"{r.rank}. {r.label}" + (f"  ({WINNER})" if r.rank == 1 else "") for r in ranked])
    for tick, r in zip(ax.get_yticklabels(), ranked):
        if r.rank == 1:
            tick.set_fontweight("bold")
    ax.tick_params(axis="y", labelsize=9)
    ax.set_ylim(n - 0.5, -0.5)  # rank 1 on top; fixed padding, also for a single bar
    ax.set_xlim(0, min(100.0, max(max(m + s for m, s in zip(means, stds)) + 2, 10.0)))
    column = ax.get_yaxis_transform()  # x in axes fractions, y in bar positions
    header = f"{'test F1':^12} {'dev F1':>6}"
    ax.annotate(
        header, (1.02, 1), xycoords="axes fraction", xytext=(0, 3), textcoords="offset points", va="bottom"
    ).set(fontsize=8, family="monospace")
    for yi, r in zip(y, ranked):
        row = f"{r.test_f1.mean:5.1f} ± {r.test_f1.std:<4.1f} {r.dev_f1.mean:6.1f}"
        weight = "bold" if r.rank == 1 else "normal"
        ax.text(1.02, yi, row, transform=column, va="center", fontsize=8, family="monospace", weight=weight)
    ax.set_xlabel("test entity micro F1 (x100)")
    fig.suptitle(f"{dataset}: test entity F1 (mean ± std over seeds); ranked by dev F1")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def _curves_figure(plt: ModuleType, dataset: str, ranked: list[ConfigResult], top: int) -> Figure | None:
    """Dev F1 per epoch of the best few; seeds stop early at different epochs, hence the band."""
    chosen = [r for r in ranked if any(r.histories)][: max(top, 0)]
    if not chosen:
        return None
    fig, ax = plt.subplots(figsize=(9, 5))
    longest = 1
    for i, r in enumerate(chosen):
        per_epoch: dict[int, list[float]] = defaultdict(list)
        for history in r.histories:
            for row in history:
                if row.get("dev_entity_f1") is not None:
                    per_epoch[int(row["epoch"])].append(100 * float(row["dev_entity_f1"]))
        if not per_epoch:
            continue
        epochs = sorted(per_epoch)
        longest = max(longest, epochs[-1])
        mean = [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs]
        colour = f"C{i % 10}"
        ax.plot(epochs, mean, marker="o", markersize=3, color=colour, label=f"{r.rank}. {r.label}")
        lo = [min(per_epoch[e]) for e in epochs]
        hi = [max(per_epoch[e]) for e in epochs]
        ax.fill_between(epochs, lo, hi, color=colour, alpha=0.15, linewidth=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev entity F1 (x100)")
    ax.set_xlim(0.5, longest + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    skipped = [r.label for r in ranked if r.rank < chosen[-1].rank and not any(r.histories)]
    note = f"; no history, left out: {', '.join(skipped)}" if 0 < len(skipped) <= 2 else ""
    note = f"; {len(skipped)} without history left out" if len(skipped) > 2 else note
    ax.set_title(
        f"{dataset}: dev entity F1 per epoch, top {len(chosen)} by dev F1{note}\n"
        "(mean over the seeds that reached each epoch; band: min–max)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def _confusion_figure(plt: ModuleType, dataset: str, winner: ConfigResult) -> Figure | None:
    """Which entity types the winner mixes up, and how many it misses or invents."""
    table = winner.test_confusion
    if not any(any(cols.values()) for cols in table.values()):
        return None
    types = sorted((set(table) | {c for cols in table.values() for c in cols}) - {"spurious", "missed"})
    rows, cols = [*types, "spurious"], [*types, "missed"]
    counts: list[list[int | None]] = [[int(table.get(g, {}).get(p, 0)) for p in cols] for g in rows]
    counts[-1][-1] = None  # a spurious prediction of no gold entity: no such cell
    peak = max((c for row in counts for c in row if c), default=1)
    side = max(4.0, 0.6 * len(cols) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 0.8, side))
    grid = [[float("nan") if c is None else float(c) for c in row] for row in counts]
    image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=peak)
    for i, row in enumerate(counts):
        for j, c in enumerate(row):
            if c is not None:
                colour = "white" if c > 0.6 * peak else "black"
                ax.text(j, i, str(c), ha="center", va="center", fontsize=9, color=colour)
    ax.set_xticks(
        range(len(cols)), cols, rotation=45 if len(cols) > 6 else 0, ha="right" if len(cols) > 6 else "center"
    )
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted type")
    ax.set_ylabel("gold type")
    ax.axhline(len(types) - 0.5, color="0.5", linewidth=1)
    ax.axvline(len(types) - 0.5, color="0.5", linewidth=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="entities")
    ax.set_title(
        f"{dataset}: {winner.label}\nentity-type confusion, test, summed over {len(winner.seeds)} seeds",
        fontsize=10,
    )
    return fig


def _cost_figure(plt: ModuleType, results: list[ConfigResult], datasets: list[str]) -> Figure:
    """Whether the expensive heads buy F1: the shape of the trade-off across all datasets."""
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=(10, 6))
    heads = sorted({str(r.config["head"]) for r in results})
    marker = {h: MARKERS[i % len(MARKERS)] for i, h in enumerate(heads)}
    colour = {d: f"C{i % 10}" for i, d in enumerate(datasets)}
    for dataset in datasets:
        for head in heads:
            both = [r for r in results if r.dataset == dataset and str(r.config["head"]) == head]
            for winners, group in (
                (False, [r for r in both if r.rank != 1]),
                (True, [r for r in both if r.rank == 1]),
            ):
                if group:
                    ax.scatter(
                        [r.train_seconds.mean for r in group],
                        [r.test_f1.mean for r in group],
                        color=colour[dataset],
                        marker=marker[head],
                        s=90 if winners else 40,
                        edgecolors="black" if winners else "none",
                        linewidths=1.2,
                        alpha=0.85,
                        zorder=3 if winners else 2,
                    )
    seconds = [r.train_seconds.mean for r in results]
    log = min(seconds) > 0 and max(seconds) / min(seconds) > 20
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.LogFormatter(labelOnlyBase=False))
        ax.xaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))
    span = (min(seconds), max(seconds))
    winners = [r for r in results if r.rank == 1]
    for i, r in enumerate(winners):  # each dataset's dev-chosen winner, by name, away from the edges
        right_half = _fraction(r.train_seconds.mean, span, log) > 0.5
        ax.annotate(
            f"{r.dataset}: {r.label}",
            (r.train_seconds.mean, r.test_f1.mean),
            xytext=(-8 if right_half else 8, 10 - 22 * (i % 2)),
            textcoords="offset points",
            ha="right" if right_half else "left",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.7", "alpha": 0.85},
        )
    ax.set_xlabel("mean train seconds per cell" + (" (log scale)" if log else ""))
    ax.set_ylabel("test entity micro F1 (x100), mean over seeds")
    ax.set_title("cost vs F1 (outlined: dev-chosen winner per dataset)")
    ax.grid(alpha=0.3, which="both")
    data_handles = [plt.Line2D([], [], linestyle="", marker="o", color=colour[d]) for d in datasets]
    head_handles = [plt.Line2D([], [], linestyle="", marker=marker[h], color="0.3") for h in heads]
    first = ax.legend(
        data_handles, datasets, title="dataset", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    ax.add_artist(first)
    ax.legend(head_handles, heads, title="head", fontsize=8, loc="lower left", bbox_to_anchor=(1.01, 0))
    return fig


def _fraction(value: float, span: tuple[float, float], log: bool) -> float:
    """Where ``value`` lies between the span's ends, 0..1, on the axis's own scale."""
    lo, hi = (math.log(v) for v in span) if log else span
    v = math.log(value) if log else value
    return 0.5 if hi <= lo else (v - lo) / (hi - lo)
