"""The grid's report: a table per dataset ranked by validation F1, the published numbers in a
separate block, skipped and failed cells, in the report format every benchmark shares
(heads/report_table.py: Markdown, JSON and CSV)."""

from __future__ import annotations

import statistics
from pathlib import Path

import heads.models  # noqa: F401  (registers the heads)
from bench.grid import Skip
from bench.grid_summary import ConfigResult, thaw_train
from bench.references import REFERENCES
from heads.report_table import Report, save_reports
from heads.tagger import HEADS

COLUMNS = [
    "rank",
    "head",
    "modality",
    "text",
    "context",
    "vision",
    "seeds",
    "dev entity F1",
    "test entity F1",
    "test token macro F1",
    "train s",
    "cell s",
    "epochs",
    "peak MiB",
]


def dataset_table(results: list[ConfigResult], dataset: str, command: str) -> Report:
    rows = []
    for r in results:
        if r.dataset != dataset:
            continue
        c = r.config
        rows.append(
            {
                "rank": f"{r.rank} (winner)" if r.rank == 1 else str(r.rank),
                "head": c["head"],
                "modality": c["modality"],
                "text": "-"
                if c["modality"] == "image"
                else c["text"] or HEADS.trait(str(c["head"]), "own_words")[0],
                "context": str(c["context"]) + (" + hints" if c.get("knowledge_hints") else ""),
                "vision": c["vision"] or "-",
                "seeds": len(r.seeds),
                "dev entity F1": str(r.dev_f1),
                "test entity F1": str(r.test_f1),
                "test token macro F1": str(r.test_token_macro),
                "train s": round(r.train_seconds.mean),
                "cell s": round(r.cell_seconds.mean),
                "epochs": f"{r.epochs.mean:.1f}" if r.epochs.mean else "-",
                "peak MiB": round(r.peak_memory_mib),
            }
        )
    report = Report(
        f"{dataset}: every configuration, ranked by validation entity F1", COLUMNS, rows, command=command
    )
    cells = [s for r in results if r.dataset == dataset for s in [r.cell_seconds.mean] * len(r.seeds)]
    if cells:
        report.notes.append(
            f"cells: {sum(len(r.seeds) for r in results if r.dataset == dataset)}; median cell "
            f"{statistics.median(cells):.0f} s, total {sum(cells) / 60:.1f} cell-minutes."
        )
    return report


def dataset_tables_for_console(results: list[ConfigResult], command: str) -> list[Report]:
    return [dataset_table(results, d, command) for d in sorted({r.dataset for r in results})]


def references_table() -> Report:
    rows = [
        {"model": r.model, "metric": r.metric, "T15": r.t15, "T17": r.t17, "source": r.source}
        for r in REFERENCES
    ]
    report = Report(
        "Published reference numbers: other papers' runs, NOT produced by this grid",
        ["model", "metric", "T15", "T17", "source"],
        rows,
    )
    report.notes += [
        "Entity F1: test entity-level micro F1 as each paper reports it (fine-tuned encoders, "
        "GPU training, the full image set).",
        "Token macro F1 (thesis): macro F1 over BIO tags of subword tokens on the thesis's own "
        "splits; our token macro F1 is over words, so compare only loosely.",
    ]
    return report


def skips_table(skips: list[Skip]) -> Report:
    return Report(
        "Skipped combinations",
        ["what", "reason"],
        [{"what": s.what, "reason": s.reason} for s in skips],
    )


def time_table(lines: list[dict]) -> Report:
    """Where a grid's time goes, per head and text encoder: reading the cache, optimizer steps
    and dev tagging per epoch, epochs run, the final dev/test scoring, and each group's share of
    the grid's summed cell time (CPU time of one worker; the wall time is about this over the
    workers)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for line in lines:
        cell = line["cell"]
        groups.setdefault((cell["head"], str(cell.get("text") or "own")), []).append(line)
    total = sum(float(line["wall_seconds"]) for line in lines) or 1.0

    def mean(values: list[float]) -> str:
        return f"{statistics.fmean(values):.1f}" if values else "-"

    rows = []
    for (head, text), group in sorted(
        groups.items(), key=lambda kv: -sum(float(x["wall_seconds"]) for x in kv[1])
    ):
        records = [line["record"] for line in group]
        # a run resumed from a halving rung repeats its earlier epochs' rows: those timed its
        # paused line
        epochs = [
            row
            for r in records
            for row in (r.get("history") or [])
            if row.get("epoch", 0) > (r.get("resumed_after") or 0)
        ]
        seconds = sum(float(line["wall_seconds"]) for line in group)
        rows.append(
            {
                "head": head,
                "text": text,
                "cells": len(group),
                "epochs run": mean([float(r["epochs_run"]) for r in records if r.get("epochs_run")]),
                "load s": mean([float(r["load_seconds"]) for r in records if "load_seconds" in r]),
                "steps s/epoch": mean([float(e["step_seconds"]) for e in epochs if "step_seconds" in e]),
                "dev s/epoch": mean([float(e["dev_seconds"]) for e in epochs if "dev_seconds" in e]),
                "scoring s": mean([float(r["score_seconds"]) for r in records if "score_seconds" in r]),
                "cell s": mean([float(line["wall_seconds"]) for line in group]),
                "sum min": f"{seconds / 60:.1f}",
                "share": f"{100 * seconds / total:.0f}%",
            }
        )
    columns = ["head", "text", "cells", "epochs run", "load s", "steps s/epoch", "dev s/epoch", "scoring s"]
    columns += ["cell s", "sum min", "share"]
    return Report("Where the time goes (per head and text encoder, means over cells)", columns, rows)


def halving_table(decisions: list[dict]) -> Report:
    """Every configuration's score at each successive-halving rung and whether it went on."""
    rows = [
        {
            "dataset": d["dataset"],
            "rung (epoch)": d["rung"],
            "configuration": d["config"],
            "dev entity F1 at the rung": f"{d['dev_entity_f1']:.2f}",
            "scored on": d.get("basis", "mean of its seeds up to the rung"),
            "cutoff": f"{d['cutoff']:.2f}",
            "went on": "yes" if d["kept"] else "stopped here",
        }
        for d in decisions
    ]
    columns = [
        "dataset",
        "rung (epoch)",
        "configuration",
        "dev entity F1 at the rung",
        "scored on",
        "cutoff",
        "went on",
    ]
    return Report("Successive halving: each rung's decisions", columns, rows)


def failures_table(failures: list[dict]) -> Report:
    rows = [
        {"cell": _cell_label(f["cell"]), "key": f["key"], "error": f.get("error", "")[:300]} for f in failures
    ]
    return Report("Failed cells (re-run `bench heads` to retry them)", ["cell", "key", "error"], rows)


def _cell_label(cell: dict) -> str:
    return (
        " ".join(
            str(x)
            for x in (
                cell["dataset"],
                cell["head"],
                cell["modality"],
                cell["text"],
                cell["context"] + (" + hints" if cell.get("knowledge_hints") else ""),
                cell["vision"],
            )
        )
        + f" s{cell['seed']}"
    )


def write(
    results: list[ConfigResult],
    skips: list[Skip],
    failures: list[dict],
    folder: Path,
    command: str,
    preamble: list[str],
    extra: list[Report] | None = None,
    timed: list[dict] | None = None,
) -> dict[str, Path]:
    datasets = sorted({r.dataset for r in results})
    reports = [dataset_table(results, d, command) for d in datasets]
    if results:
        train = thaw_train(results[0].config)
        reports[0].notes.append(
            "Training: "
            + ", ".join(
                f"{k}={train[k]}"
                for k in ("epochs", "patience", "batch_size", "precision", "lr_preset", "select")
                if k in train
            )
            + "; entity F1 = seqeval default mode (conlleval), micro; token macro F1 over BIO tags per word."
        )
    reports += extra or []
    if timed:
        reports.append(time_table(timed))
    reports.append(references_table())
    if skips:
        reports.append(skips_table(skips))
    if failures:
        reports.append(failures_table(failures))
    return save_reports(reports, folder, "heads-grid", "bench heads: the grid", preamble)
