"""The winner file: per dataset, the grid configuration with the best mean validation entity F1.

``bench heads`` writes it next to its run store; ``bench finetune --best`` reads it to know
which text encoder, image input and head to fine-tune end to end. Versioned JSON, like every
file one stage hands to another.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.grid_summary import ConfigResult, thaw_train
from featurize.atomic import atomic_write_text
from heads.config_file import read_versioned_json

FORMAT = "mner-bench-winners"
VERSION = 1
DEFAULT_PATH = Path("runs/bench-heads/winners.json")


def winners(results: list[ConfigResult]) -> dict[str, ConfigResult]:
    """Rank 1 of each dataset; ties on dev F1 are broken by dev token macro F1, then by name."""
    return {r.dataset: r for r in results if r.rank == 1}


def write(results: list[ConfigResult], path: Path, store: Path) -> dict[str, object]:
    payload: dict[str, object] = {
        "format": FORMAT,
        "format_version": VERSION,
        "chosen_on": "validation (dev) entity micro F1, mean over seeds; test is reported, never used",
        "store": str(store),
        "datasets": {},
    }
    for dataset, r in sorted(winners(results).items()):
        c = r.config
        payload["datasets"][dataset] = {  # type: ignore[index]
            "head": c["head"],
            "modality": c["modality"],
            "text": c["text"],
            "vision": c["vision"],
            "context": c["context"],
            "knowledge_hints": bool(c.get("knowledge_hints")),
            "train": thaw_train(c),
            "label": r.label,
            "seeds": r.seeds,
            "dev_entity_f1": round(r.dev_f1.mean, 2),
            "dev_entity_f1_std": round(r.dev_f1.std, 2),
            "test_entity_f1": round(r.test_f1.mean, 2),
            "test_entity_f1_std": round(r.test_f1.std, 2),
            "test_token_macro_f1": round(r.test_token_macro.mean, 2),
            "models": r.models,
            "cells": r.keys,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=1, ensure_ascii=False))  # never half a file
    return payload


def read(path: Path = DEFAULT_PATH) -> dict[str, dict[str, object]]:
    """Per dataset, the winning configuration (raises ConfigError naming the file if unusable)."""
    data = read_versioned_json(path, FORMAT, VERSION, "bench heads winner file")
    return dict(data["datasets"])
