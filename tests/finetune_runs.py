"""Small fine-tuning configurations and saved fine-tuned runs, as several test files build them."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from heads.train_config import EncoderTraining, TrainConfig, finetune_config


def fine(**kwargs: object) -> TrainConfig:
    """bench finetune's configuration, small: settings of the encoders and of the loop by name."""
    settings = {"epochs": 1, "batch_size": 8, "precision": "fp32", "init": "random"} | kwargs
    mine = {f.name for f in fields(EncoderTraining)}
    encoders = EncoderTraining(**{k: v for k, v in settings.items() if k in mine})
    return finetune_config(encoders, **{k: v for k, v in settings.items() if k not in mine})


def save_tuned(folder: Path, model: Any, extras: dict[str, Any], identity: dict, merge: bool = False) -> Path:
    """A fine-tuned run saved as heads.finetune saves it, from build_model's extras and identity."""
    from heads import finetuned

    config = {
        "inputs": extras["inputs"].describe(),
        "input_identity": identity,
        "entries": {},
        "train_config": {},
        "vocab": extras["vocab"].to_json() if extras["vocab"] else None,
    }
    return finetuned.save(folder, model, config, merge=merge)
