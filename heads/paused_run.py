"""A training run paused after an epoch, on disk, so that it can go on exactly where it stopped.

`bench heads --halving` pauses every configuration at a rung and lets the best go on. Going on
from the saved state instead of training again from epoch 1 saves the survivors' earlier
epochs. The state is everything the next epoch reads: the weights, the best epoch's weights,
AdamW's moments and step counts, the learning-rate schedule, the data-order generator and the
global random states (dropout draws from torch's), the learning curve and the early-stopping
counters. A resumed run therefore equals the uninterrupted one to the bit (a test checks it).

Format: ``state.safetensors`` (tensors only) and ``state.json`` (the rest, with the sha256 of
the tensor file and the identity of the run it belongs to), written into a temporary folder
and renamed. Nothing is pickled. A state whose checksum or identity does not match is not
read: the run trains from epoch 1 instead, which gives the same result, only later.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from featurize.atomic import atomic_folder
from featurize.integrity import sha256_file

FORMAT = "mner-paused-run"
VERSION = 1
TENSORS, STATE = "state.safetensors", "state.json"


@dataclass
class PausedRun:
    """What `heads.trainer.fit` needs to run epoch ``epoch + 1`` as if it had never stopped."""

    epoch: int
    done_steps: int
    seconds: float  # training seconds before the pause (the learning curve's clock goes on)
    module: dict[str, Tensor]
    best_state: dict[str, Tensor] | None
    best_score: float
    best_epoch: int
    best_dev: dict[str, Any]
    history: list[dict[str, float]]
    optimizer: dict[str, Any]  # torch's optimizer state dict
    schedule: dict[str, Any]  # heads.trainer._Schedule.state()
    generator: Tensor  # the data-order generator's state
    torch_rng: Tensor
    numpy_rng: dict[str, Any]
    python_rng: list[Any]
    # why a finished run stopped before its last epoch (patience, budget): a resumed state with one
    # ends at once instead of training on
    stop_reason: str = ""

    def save(self, folder: Path, identity: dict[str, Any]) -> None:
        """Write the state into ``folder`` (replacing one there) through a temporary folder."""
        tensors = {f"module.{k}": v for k, v in self.module.items()}
        if self.best_state is not None:
            tensors |= {f"best.{k}": v for k, v in self.best_state.items()}
        optimizer_state: dict[str, list[str]] = {}
        for index, entry in self.optimizer["state"].items():
            optimizer_state[str(index)] = sorted(entry)
            tensors |= {f"optimizer.{index}.{name}": value for name, value in entry.items()}
        tensors["rng.generator"] = self.generator
        tensors["rng.torch"] = self.torch_rng
        tensors["rng.numpy"] = torch.from_numpy(np.asarray(self.numpy_rng["key"], dtype=np.int64))
        tensors = _unshared(tensors)
        with atomic_folder(folder) as tmp:
            save_file(tensors, str(tmp / TENSORS), metadata={"format": FORMAT})
            meta = {
                "format": FORMAT,
                "version": VERSION,
                "identity": identity,
                "sha256": sha256_file(tmp / TENSORS),
                "epoch": self.epoch,
                "done_steps": self.done_steps,
                "seconds": self.seconds,
                "has_best": self.best_state is not None,
                "best_score": self.best_score,
                "best_epoch": self.best_epoch,
                "best_dev": self.best_dev,
                "history": self.history,
                "optimizer_groups": self.optimizer["param_groups"],
                "optimizer_state": optimizer_state,
                "schedule": self.schedule,
                "numpy_rng": {k: v for k, v in self.numpy_rng.items() if k != "key"},
                "python_rng": self.python_rng,
                "stop_reason": self.stop_reason,
            }
            (tmp / STATE).write_text(json.dumps(meta, default=_plain), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, identity: dict[str, Any]) -> PausedRun | None:
        """The state in ``folder``; None when there is none, or it is torn, foreign or altered."""
        try:
            meta = json.loads((folder / STATE).read_text(encoding="utf-8"))
            if (
                meta.get("format") != FORMAT
                or meta.get("version") != VERSION
                or meta.get("identity") != json.loads(json.dumps(identity, default=_plain))
                or meta.get("sha256") != sha256_file(folder / TENSORS)
            ):
                return None
            tensors = load_file(str(folder / TENSORS))
        except (OSError, ValueError, KeyError):
            return None

        def part(prefix: str) -> dict[str, Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        groups = meta["optimizer_groups"]
        for group in groups:
            if "betas" in group:
                group["betas"] = tuple(group["betas"])
        state = {
            int(index): {name: tensors[f"optimizer.{index}.{name}"] for name in names}
            for index, names in meta["optimizer_state"].items()
        }
        numpy_rng = meta["numpy_rng"] | {"key": tensors["rng.numpy"].numpy().astype(np.uint32)}
        return cls(
            epoch=meta["epoch"],
            done_steps=meta["done_steps"],
            seconds=meta["seconds"],
            module=part("module."),
            best_state=part("best.") if meta["has_best"] else None,
            best_score=meta["best_score"],
            best_epoch=meta["best_epoch"],
            best_dev=meta["best_dev"],
            history=meta["history"],
            optimizer={"state": state, "param_groups": groups},
            schedule=meta["schedule"],
            generator=tensors["rng.generator"],
            torch_rng=tensors["rng.torch"],
            numpy_rng=numpy_rng,
            python_rng=meta["python_rng"],
            stop_reason=meta.get("stop_reason", ""),
        )

    @staticmethod
    def random_states() -> dict[str, Any]:
        """The global random states (torch, numpy, Python) as the fields of a PausedRun."""
        name, key, pos, has_gauss, cached = np.random.get_state()
        return {
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": {"name": name, "key": key, "pos": pos, "has_gauss": has_gauss, "cached": cached},
            "python_rng": _lists(random.getstate()),
        }

    def restore_random_states(self, generator: torch.Generator) -> None:
        generator.set_state(self.generator)
        torch.set_rng_state(self.torch_rng)
        n = self.numpy_rng
        np.random.set_state((n["name"], n["key"], n["pos"], n["has_gauss"], n["cached"]))
        random.setstate(_tuples(self.python_rng))


def remove(folder: Path) -> None:
    """Drop a paused state (its run finished, or its configuration was stopped)."""
    shutil.rmtree(folder, ignore_errors=True)


def _unshared(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous tensors, no two on one storage (safetensors refuses shared memory). Only a
    tensor that shares is copied: a fine-tuned encoder's state is gigabytes, and a copy of all of
    it would raise the run's peak memory by as much at every epoch."""
    seen: set[int] = set()
    out = {}
    for name, value in tensors.items():
        value = value.detach().contiguous()
        if value.numel():
            if value.untyped_storage().data_ptr() in seen:
                value = value.clone()
            seen.add(value.untyped_storage().data_ptr())
        out[name] = value
    return out


def _plain(value: object) -> object:
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _lists(value: Any) -> Any:
    return [_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
