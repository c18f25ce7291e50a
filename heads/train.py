"""Training a head on cached tensors: AdamW with a learning rate per component, clipping,
schedulers, early stopping on a validation metric, everything seeded.

Learning rates. The thesis's table (encoder 8e-6, vision 8e-5, fusion 5e-4, inner BiLSTM 3e-4,
CRF 2e-4, dense 1e-5) was tuned for fine-tuning BERT end to end, where the encoder must move
slowly. On frozen cached features nothing upstream moves, and with those rates the dense
output layer (1e-5) barely learns in 40 epochs. ``CACHED_LR`` are the defaults for cached
features, chosen on T17 validation (see README, "Training defaults"); ``THESIS_LR`` stays
available as ``--lr-preset thesis`` for fine-tuning (issue 6) and for comparison.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from featurize.build import peak_memory_mib
from featurize.errors import ConfigError
from heads.data import Batcher
from heads.metrics import DevScorer, all_scores
from heads.tagger import COMPONENTS, Tagger

THESIS_LR = {"text": 8e-6, "vision": 8e-5, "fusion": 5e-4, "inner_lstm": 3e-4, "crf": 2e-4, "dense": 1e-5}
CACHED_LR = {"text": 1e-3, "vision": 1e-3, "fusion": 1e-3, "inner_lstm": 1e-3, "crf": 1e-2, "dense": 1e-3}
LR_PRESETS = {"cached": CACHED_LR, "thesis": THESIS_LR}
SCHEDULERS = ("plateau", "cosine", "none")
SELECT_METRICS = ("entity_f1", "token_macro_f1")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    seed: int = 0
    epochs: int = 40
    patience: int = 5  # epochs without a better validation score before stopping
    batch_size: int = 32
    lr_preset: str = "cached"
    lr: dict[str, float] = field(default_factory=dict)  # per-component overrides
    weight_decay: float = 0.01
    clip: float = 5.0  # max gradient norm; 0 turns clipping off
    scheduler: str = "plateau"  # plateau (factor 0.5, patience 2), cosine (warm restarts T0=5, Tmult=2, eta_min=1e-6), none
    class_weights: bool = False  # W_c = N / (m * freq_c) on the cross-entropy of softmax heads
    select: str = "entity_f1"  # validation metric for early stopping and model choice
    precision: str = "fp32"  # bf16: training steps under bf16 autocast (weights and evaluation stay fp32)
    threads: int = (
        1  # torch threads; 1 measured fastest for these small recurrent steps (README); 0: torch's default
    )

    def __post_init__(self) -> None:
        if self.lr_preset not in LR_PRESETS:
            raise ConfigError(f"--lr-preset must be one of {', '.join(LR_PRESETS)}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.select not in SELECT_METRICS:
            raise ConfigError(f"--select must be one of {', '.join(SELECT_METRICS)}")
        unknown = sorted(set(self.lr) - set(COMPONENTS))
        if unknown:
            raise ConfigError(
                f"--lr: unknown component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("--epochs and --batch-size must be at least 1")

    def learning_rates(self, head_defaults: dict[str, float] | None = None) -> dict[str, float]:
        """The preset, then the head's own needs (cached preset only), then the user's --lr."""
        own = (head_defaults or {}) if self.lr_preset == "cached" else {}
        return LR_PRESETS[self.lr_preset] | own | self.lr


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(batcher: Batcher, n_tags: int) -> Tensor:
    """``W_c = N / (m * freq_c)``: N words, m classes; a class absent from train gets weight 1."""
    counts = np.bincount(np.concatenate(batcher.tags), minlength=n_tags).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_tags * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def predict(model: Tagger, batcher: Batcher, batch_size: int = 128) -> list[list[str]]:
    """Tags of every example of the batcher's split, in the split's order."""
    model.eval()
    out: list[list[str]] = [[] for _ in range(len(batcher.data))]
    with torch.inference_mode():
        for batch in batcher.batches(batch_size):
            for i, path in zip(batch.index, model.predict(batch)):
                out[i] = [model.tags[c] for c in path]
    return out


def evaluate(model: Tagger, batcher: Batcher) -> dict[str, object]:
    return all_scores(batcher.data.tags, predict(model, batcher))


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    best_dev: dict[str, object]
    history: list[dict[str, float]]
    seconds: float
    peak_memory_mib: float
    stopped_early: bool


def train(
    model: Tagger,
    train_batcher: Batcher,
    dev_batcher: Batcher,
    config: TrainConfig,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place; it ends holding the weights of its best validation epoch."""
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(model, train_batcher, dev_batcher, config, on_epoch)
    finally:
        torch.set_num_threads(threads)  # a library caller keeps its own setting


def _train(
    model: Tagger,
    train_batcher: Batcher,
    dev_batcher: Batcher,
    config: TrainConfig,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> TrainResult:
    seed_everything(config.seed)
    started = time.perf_counter()
    rates = config.learning_rates(model.default_learning_rates())
    groups = [
        {"params": params, "lr": rates[name], "name": name}
        for name, params in model.parameter_groups().items()
    ]
    # The fused kernel does AdamW's update in one pass per tensor: 4x faster than the default
    # per-parameter loop on this CPU (a 20k-word embedding: 5.5 ms a step against 23 ms; it was
    # over half of the word-id BiLSTM's step). Same update rule, rounding may differ in the last bit.
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay, fused=True)
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
    if config.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=5, T_mult=2, eta_min=1e-6
        )
    elif config.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2)
    weights = None
    if config.class_weights:
        if model.crf is not None:
            raise ConfigError(
                "--class-weights weights the cross-entropy of softmax heads: add --set crf=false"
            )
        weights = class_weights(train_batcher, len(model.tags))

    generator = torch.Generator().manual_seed(config.seed)
    dev_scorer = DevScorer(dev_batcher.data.tags)
    best_score, best_epoch, best_state, best_dev = -1.0, 0, None, {}
    history: list[dict[str, float]] = []
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, steps = 0.0, 0
        n_batches = -(-len(train_batcher.data) // config.batch_size)
        for step, batch in enumerate(train_batcher.batches(config.batch_size, generator)):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                loss = model.loss(batch, weights)
            loss.backward()
            if config.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            if config.scheduler == "cosine":
                assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)
                scheduler.step(epoch - 1 + (step + 1) / n_batches)
            total += float(loss.detach())
            steps += 1
        dev = dev_scorer.scores(predict(model, dev_batcher))
        score = float(dev[config.select])  # type: ignore[arg-type]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(score)
        row = {
            "epoch": epoch,
            "train_loss": total / max(steps, 1),
            "dev_entity_f1": float(dev["entity_f1"]),  # type: ignore[arg-type]
            "dev_token_macro_f1": float(dev["token_macro_f1"]),  # type: ignore[arg-type]
            "lr_max": max(g["lr"] for g in optimizer.param_groups),
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if score > best_score:
            best_score, best_epoch, best_dev = score, epoch, dev
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(
        best_epoch=best_epoch,
        epochs_run=epoch,
        best_dev=best_dev,
        history=history,
        seconds=time.perf_counter() - started,
        peak_memory_mib=peak_memory_mib(),
        stopped_early=epoch < config.epochs,
    )


def config_json(config: TrainConfig, model: Tagger | None = None) -> dict[str, object]:
    own = model.default_learning_rates() if model is not None else None
    return asdict(config) | {"learning_rates": config.learning_rates(own)}
