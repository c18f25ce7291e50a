"""Aggregate run records (``run.json``) into mean ± std over seeds, one row per configuration.

Rows are keyed by everything but the seed, sorted by mean validation entity F1 (the choice is
made on dev; test is only reported). Uses the benchmark's report format (heads/report_table.py) so
heads and bench tables read alike.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from featurize.errors import ConfigError


def load_records(paths: list[Path]) -> list[dict]:
    records = []
    for path in paths:
        files = sorted(path.rglob("run.json")) if path.is_dir() else [path]
        for file in files:
            try:
                records.append(json.loads(file.read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError) as err:
                raise ConfigError(f"{file}: not a readable run record ({err})") from None
    if not records:
        raise ConfigError(f"no run.json under {', '.join(str(p) for p in paths)}")
    return records


def options_label(record: dict) -> str:
    """Hyperparameters that differ from the head's defaults (the CRF's chosen c1/c2)."""
    import heads.models  # noqa: F401  (registers the heads)
    from heads.tagger import HEADS

    hyper = record.get("hyper", {})
    if HEADS.trait(record["head"], "family") == "crfsuite":
        return f"c1={hyper.get('c1')} c2={hyper.get('c2')}"

    defaults = vars(HEADS.get(record["head"]).Hyper())
    return " ".join(f"{k}={v}" for k, v in sorted(hyper.items()) if defaults.get(k) != v) or "defaults"


def config_label(record: dict) -> tuple[str, str, str, str, str, str, str]:
    import heads.models  # noqa: F401  (registers the heads)
    from heads.tagger import HEADS

    inputs = record["inputs"]
    text = inputs.get("text") or HEADS.trait(record["head"], "own_words")[0]
    if inputs.get("pooling"):
        text += f" ({inputs['pooling']})"
    context = str(inputs.get("context", "none"))
    if inputs.get("context_budget") is not None:
        context += f" (budget {inputs['context_budget']})"
    if inputs.get("knowledge_hints"):
        context += " + hints"
    return (
        str(inputs["dataset"]),
        str(record["head"]),
        str(record.get("modality", "text")),
        text,
        context,
        str(inputs.get("vision") or "-"),
        options_label(record),
    )


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(records: list[dict]) -> list[dict[str, object]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[config_label(r)].append(r)
    rows = []
    for label, runs in groups.items():
        runs.sort(key=lambda r: r["seed"])

        def metric(split: str, name: str, runs: list[dict] = runs) -> tuple[float, float]:
            return _mean_std([100 * float(r["metrics"][split][name]) for r in runs])

        dev_f1, dev_std = metric("dev", "entity_f1")
        test_f1, test_std = metric("test", "entity_f1")
        tok, tok_std = metric("test", "token_macro_f1")
        rows.append(
            {
                "dataset": label[0],
                "head": label[1],
                "modality": label[2],
                "text": label[3],
                "context": label[4],
                "vision": label[5],
                "options": label[6],
                "seeds": ",".join(str(r["seed"]) for r in runs),
                "dev entity F1": f"{dev_f1:.2f} ± {dev_std:.2f}",
                "test entity F1": f"{test_f1:.2f} ± {test_std:.2f}",
                "test token macro F1": f"{tok:.2f} ± {tok_std:.2f}",
                "train s": f"{statistics.fmean(r['train_seconds'] for r in runs):.0f}",
                "_dev": dev_f1,
            }
        )
        per_type: dict[str, list[float]] = defaultdict(list)
        for r in runs:
            for kind, scores in (r["metrics"]["test"].get("entity_per_type") or {}).items():
                per_type[kind].append(100 * float(scores["f1-score"]))
        for kind in sorted(per_type):  # where a context helps shows per type (MISC, ORG)
            mean, std = _mean_std(per_type[kind])
            rows[-1][f"test {kind} F1"] = f"{mean:.2f} ± {std:.2f}"
    rows.sort(key=lambda row: (row["dataset"], -float(row["_dev"])))  # type: ignore[arg-type]
    for row in rows:
        del row["_dev"]
    return rows
