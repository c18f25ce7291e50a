"""Small models trained on cached features; they never load an encoder to train.

The Python API for the common jobs (docs: api)::

    import heads
    tagger = heads.load("runs/heads/t17-cwi-mpnet-text-s0")
    [result] = tagger.predict(["Obama visits Paris"], images=[None])
    result.words, result.tags, result.entities

``heads.load`` returns a :class:`heads.predictor.Predictor`; names are imported when first used,
so ``import heads`` stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "load": ("heads.families", "load"),
    "Predictor": ("heads.predictor", "Predictor"),
    "Prediction": ("heads.predictor", "Prediction"),
    "PredictInput": ("heads.input_files", "PredictInput"),
    "TrainConfig": ("heads.train_config", "TrainConfig"),
    "RunSpec": ("heads.experiment", "RunSpec"),
    "train": ("heads.experiment", "run"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'heads' has no attribute {name!r}")
    import importlib

    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)
