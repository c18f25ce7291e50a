"""Finished grid cells grouped into configurations (everything but the seed), mean ± std over
seeds, ranked by validation entity F1 per dataset: what the report, the plots and the winner
file are made from. Test scores are carried along for reporting only; nothing is chosen on them.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class MeanStd:
    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> MeanStd:
        return cls(
            statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)
        )

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f}"


@dataclass
class ConfigResult:
    dataset: str
    config: dict[str, object]  # head, modality, text, vision, context (and the train settings)
    seeds: list[int]
    dev_f1: MeanStd  # entity micro F1 x 100, seqeval default mode
    test_f1: MeanStd
    dev_token_macro: MeanStd  # token macro F1 x 100 (the thesis's metric)
    test_token_macro: MeanStd
    train_seconds: MeanStd
    cell_seconds: MeanStd  # wall time of the cell: loading, training, scoring, saving
    peak_memory_mib: float
    epochs: MeanStd
    histories: list[list[dict]] = field(default_factory=list)  # per seed, per epoch
    test_confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # summed over seeds
    keys: list[str] = field(default_factory=list)
    models: list[str | None] = field(default_factory=list)
    rank: int = 0  # 1 = best validation F1 on its dataset

    @property
    def label(self) -> str:
        return config_label(self.config)


def config_label(c: dict[str, object]) -> str:
    """Short name of a configuration for plots and progress lines: head, [modality], text
    encoder, +context ctx, +vision."""
    import heads.models  # noqa: F401  (registers the heads)
    from heads.tagger import HEADS

    parts = [str(c["head"])]
    if c["modality"] != "text" or HEADS.trait(str(c["head"]), "fusion"):
        parts.append(f"[{c['modality']}]")
    if c["modality"] != "image":
        parts.append(str(c["text"] or HEADS.trait(str(c["head"]), "own_words")[1]))
    if c["context"] != "none":
        parts.append(f"+{c['context']} ctx")
    if c.get("knowledge_hints"):
        parts.append("+hints")
    if c["vision"]:
        parts.append(f"+{c['vision']}")
    return " ".join(parts)


def _confusion_sum(tables: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    total: dict[str, dict[str, int]] = {}
    for table in tables:
        for row, cols in table.items():
            for col, n in cols.items():
                total.setdefault(row, {})[col] = total.get(row, {}).get(col, 0) + int(n)
    return total


def summarise(lines: list[dict]) -> list[ConfigResult]:
    """Group done store lines by configuration; sorted by dataset, then dev F1 (best first)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for line in lines:
        cell = line["cell"]
        config = {k: cell[k] for k in ("dataset", "head", "modality", "text", "vision", "context")}
        if cell.get("knowledge_hints"):  # only when set: configurations as before it existed
            config["knowledge_hints"] = True
        config["train"] = cell.get("train", {})
        groups[_freeze(config)].append(line)
    results = []
    for frozen, runs in groups.items():
        runs.sort(key=lambda line: line["cell"]["seed"])
        records = [r["record"] for r in runs]

        def metric(split: str, name: str, records: list[dict] = records) -> MeanStd:
            return MeanStd.of([100 * float(r["metrics"][split][name]) for r in records])

        config = dict(frozen)
        results.append(
            ConfigResult(
                dataset=str(config["dataset"]),
                config=config,
                seeds=[int(r["cell"]["seed"]) for r in runs],
                dev_f1=metric("dev", "entity_f1"),
                test_f1=metric("test", "entity_f1"),
                dev_token_macro=metric("dev", "token_macro_f1"),
                test_token_macro=metric("test", "token_macro_f1"),
                train_seconds=MeanStd.of([float(r["train_seconds"]) for r in records]),
                cell_seconds=MeanStd.of([float(r["wall_seconds"]) for r in runs]),
                peak_memory_mib=max(float(r.get("peak_memory_mib") or 0) for r in records),
                epochs=MeanStd.of([float(r.get("epochs_run") or 0) for r in records]),
                histories=[list(r.get("history") or []) for r in records],
                test_confusion=_confusion_sum(
                    [r["metrics"]["test"].get("entity_confusion", {}) for r in records]
                ),
                keys=[r["key"] for r in runs],
                models=[r.get("model") for r in runs],
            )
        )
    results.sort(key=lambda r: (r.dataset, -r.dev_f1.mean, -r.dev_token_macro.mean, r.label))
    for dataset in {r.dataset for r in results}:
        for i, r in enumerate([r for r in results if r.dataset == dataset], start=1):
            r.rank = i
    return results


def _freeze(config: dict[str, object]) -> tuple:
    return tuple((k, json.dumps(v, sort_keys=True) if isinstance(v, dict) else v) for k, v in config.items())


def thaw_train(config: dict[str, object]) -> dict[str, object]:
    train = config.get("train")
    return json.loads(train) if isinstance(train, str) else dict(train or {})  # type: ignore[arg-type]
