"""``bench finetune``: the grid's winning combination trained end to end, against its frozen head.

One seed is two runs on the same splits:

1. **frozen**: the head trained on cached features of the chosen encoder, with the grid's
   training settings (exactly a ``bench heads`` cell, found again in the store if it ran): the
   comparison row, and the start;
2. **fine-tuned**: that head on top of the live encoder(s), trained end to end by
   :func:`heads.finetune.run` (the one trainer, :func:`heads.trainer.fit`).

This module only orchestrates: it picks the combination, runs the seeds, keeps the lines in
the run store, shows progress and writes the report. The model and its training live in
:mod:`heads.finetune`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from bench import finetune_bench
from bench.grid import models_folder, paused_state
from bench.grid_runner import run_cell
from bench.progress import training_bar
from bench.run_store import RunStore
from featurize.errors import ConfigError
from heads.experiment import RunSpec
from heads.paused_run import remove as remove_paused
from heads.train_config import TrainConfig


@dataclass
class FinetuneRequest:
    """What ``bench finetune`` was asked: the combination (or ``best``) and the settings."""

    dataset: str
    config: TrainConfig  # the fine-tuning settings (heads.train_config.finetune_config)
    best: bool = False
    winners: Path = Path("runs/bench-heads/winners.json")
    head: str | None = None
    modality: str | None = None
    text: str | None = None
    vision: str | None = None
    context: str | None = None
    seeds: int = 1
    runs: Path = Path("runs/bench-finetune")
    label_map: str | None = None  # several corpora (dataset "a,b") mapped onto one scheme
    knowledge_hints: bool | None = None  # None: the winner's with --best, else off
    first_seed: int = 0  # seeds first_seed .. first_seed + seeds - 1


def legacy_settings(config: TrainConfig) -> dict[str, Any]:
    """The fine-tuning settings as run stores have named them since ``bench finetune`` began
    (their hash is each fine-tuned line's key: stores written before keep finding their lines)."""
    encoders = config.encoders
    assert encoders is not None
    return {
        "seed": config.seed,
        "epochs": config.epochs,
        "patience": config.patience,
        "batch_size": config.batch_size,
        "accumulate": config.accumulate,
        "method": encoders.method,
        "lr_preset": config.lr_preset,
        "lr": dict(config.lr),
        "warmup": config.warmup,
        "schedule": config.scheduler,
        "weight_decay": config.weight_decay,
        "clip": config.clip,
        "precision": config.precision,
        "gradient_checkpointing": encoders.gradient_checkpointing,
        "train_vision": encoders.train_vision,
        "init": encoders.init,
        "lora": encoders.lora.describe(),
        "weights_format": encoders.weights_format,
        "max_minutes": config.max_minutes,
        "limit": config.limit,
        "device": config.device,
        "merge": encoders.merge,
        "eval_batch": config.eval_batch,
    }


def run(request: FinetuneRequest, cache_root: Path, out: Console, command: str) -> dict[str, Path]:
    """Per seed: the frozen cell (trained unless the store has it), then the fine-tuned run;
    writes RUNS/runs.jsonl, RUNS/models/<key> and RUNS/report/finetune.*; returns the report paths."""
    from heads import finetune

    runs = request.runs
    choice = finetune_bench.choose(
        request.dataset,
        request.best,
        request.winners,
        request.head,
        request.modality,
        request.text,
        request.vision,
        request.context,
        request.knowledge_hints,
    )
    if request.label_map is not None:
        choice = replace(choice, label_map=request.label_map)
    out.print(
        f"[bold]{request.dataset}[/]: {choice.head} --modality {choice.modality}, text {choice.text}, context "
        f"{choice.context}{' + hints' if choice.knowledge_hints else ''}, vision {choice.vision or '-'} ({escape(choice.source)})"
    )
    store = RunStore(runs / "runs.jsonl")
    done = store.done()

    def note(message: str) -> None:
        out.print(f"  {message}", highlight=False)

    for seed in range(request.first_seed, request.first_seed + request.seeds):
        cell = finetune_bench.frozen_cell(choice, seed)
        frozen_dir = models_folder(runs, cell)
        if cell.key not in done or not (frozen_dir / "config.json").is_file():
            out.print(f"seed {seed}: frozen-feature head ({choice.head} on cached {choice.text} features)")
            line = run_cell(cell.identity(), str(cache_root), str(runs), True)
            if line["status"] != "done":
                raise ConfigError(f"the frozen-feature head failed: {line['error']}")
            store.append(line)
            done[cell.key] = line
        test_f1 = 100 * done[cell.key]["record"]["metrics"]["test"]["entity_f1"]
        out.print(f"seed {seed}: frozen head test entity F1 {test_f1:.2f}")
        config = request.config.with_seed(seed)
        settings = legacy_settings(config)
        key = finetune_bench.tuned_key(cell, settings)
        if key in done:
            out.print(f"seed {seed}: fine-tuned run {key} already in {store.path}: not trained again")
            continue
        spec = RunSpec(
            head=choice.head,
            inputs=cell.inputs(),
            modality=choice.modality,
            train=TrainConfig(**(choice.train | {"seed": seed})),
        )
        folder = runs / "models" / key
        # the training state after every epoch: a run killed (a session's end, a pre-empted
        # node) goes on from its last finished epoch when the same command runs again
        state = paused_state(runs, key)
        resumable = replace(config, pause_state=str(state), state_every_epoch=True)
        started = time.perf_counter()
        with training_bar(out, f"fine-tuning s{seed}", config.epochs) as progress_for:
            record = finetune.run(
                spec, resumable, cache_root, folder, frozen_dir, progress_for, note, settings
            )
        tuned_cell = cell.identity() | {
            "train": finetune_bench.tuned_train(settings, record["fine_tune"].get("method"))
        }
        line = {
            "key": key,
            "status": "done",
            "cell": tuned_cell,
            "model": str(folder),
            "wall_seconds": time.perf_counter() - started,
            "record": record,
        }
        store.append(line)
        remove_paused(state)  # the model and its line are saved: nothing will go on from the state
        done[key] = line
        m = record["metrics"]
        out.print(
            f"seed {seed}: fine-tuned dev entity F1 {100 * m['dev']['entity_f1']:.2f}, test {100 * m['test']['entity_f1']:.2f} "
            f"(best epoch {record['best_epoch']} of {record['epochs_run']}; {record['train_seconds'] / 60:.1f} min); saved {folder}"
        )
    mine = [line for line in store.done().values() if line["cell"]["dataset"] == request.dataset]
    paths = finetune_bench.write(mine, runs / "report", command, [f"Combination: {choice.source}."])
    for table in finetune_bench.report(mine, command, []):
        out.print(table.markdown(), highlight=False)
    out.print(f"report: {paths['md']}")
    return paths
