"""The one trainer: every head is trained by :func:`fit`, on cached features (``heads train``, a
``bench heads`` cell) or on top of its live encoders (``bench finetune``).

One epoch loop, one early-stopping rule, one evaluation and prediction function. What differs
between the two is a :class:`TrainingTask` (which parameters train and in which groups, how a
batch's loss is computed, how the dev split is tagged, what a snapshot of the best epoch holds)
and the :class:`heads.train_config.TrainConfig` (warm-up, schedule, accumulation, precision):

- :class:`CachedFeatures`: a head on the cache's tensors;
- ``heads.finetune.LiveEncoders``: the head on top of the encoders, which compute each batch's
  features with gradients; its dev score before the first step is epoch 0, so early stopping
  never returns a model worse on validation than the frozen head it started from.

AdamW with a learning rate per component (``Tagger.parameter_groups``), gradient clipping, an
optional warm-up, the scheduler, early stopping on the validation metric; everything seeded.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from featurize.build import peak_memory_mib
from featurize.errors import ConfigError
from heads.data import Batch, Batcher
from heads.metrics import DevScorer, all_scores
from heads.paused_run import PausedRun
from heads.paused_run import remove as remove_paused
from heads.tagger import Tagger
from heads.train_config import TrainConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(tags: list[np.ndarray], n_tags: int) -> Tensor:
    """``W_c = N / (m * freq_c)`` over the training tag ids: N words, m classes; a class absent
    from train gets weight 1."""
    counts = np.bincount(np.concatenate(tags), minlength=n_tags).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_tags * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def to_device(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    for name, value in vars(batch).items():
        if isinstance(value, torch.Tensor):
            setattr(batch, name, value.to(device))
    return batch


def predict_tags(head: Tagger, batcher: Batcher, batch_size: int = 128) -> list[list[str]]:
    """Tags of every example of the batcher's split, in the split's order, each batch on the
    head's device: the one prediction function of training, evaluation and ``heads predict``."""
    head.eval()
    device = next(head.parameters()).device
    out: list[list[str]] = [[] for _ in range(len(batcher.data))]
    with torch.inference_mode():
        for batch in batcher.batches(batch_size):
            for i, path in zip(batch.index, head.predict(to_device(batch, device))):
                out[i] = [head.tags[c] for c in path]
    return out


def tag_confidences(
    head: Tagger, batcher: Batcher, tags: list[list[str]], batch_size: int = 128
) -> list[list[float]]:
    """Per word, the probability the head gives the tag it chose (CRF marginals or softmax):
    what an entity's score in ``heads predict --scans`` is made of."""
    head.eval()
    device = next(head.parameters()).device
    index = {tag: k for k, tag in enumerate(head.tags)}
    out: list[list[float]] = [[] for _ in range(len(batcher.data))]
    with torch.inference_mode():
        for batch in batcher.batches(batch_size):
            probs = head.tag_probabilities(to_device(batch, device)).cpu().numpy()
            for row, i in enumerate(batch.index):
                chosen = [index[t] for t in tags[i]]
                out[i] = [float(probs[row, t, k]) for t, k in enumerate(chosen)]
    return out


def evaluate(head: Tagger, batcher: Batcher, batch_size: int = 128) -> dict[str, object]:
    """Every metric of one split (entity P/R/F1 in both modes, per type, token macro F1)."""
    return all_scores(batcher.data.tags, predict_tags(head, batcher, batch_size))


@dataclass
class Progress:
    """What the loop reports as it goes (the command lines draw bars and lines from it)."""

    total_steps: int = 0
    on_step: Callable[[int, float], None] = lambda _done, _loss: None
    on_epoch: Callable[[dict[str, float]], None] = lambda _row: None
    on_note: Callable[[str], None] = lambda _message: None


class TrainingTask(Protocol):
    """What differs between training a head on cached features and with its encoders."""

    module: nn.Module  # everything that trains (train/eval mode, the snapshot's source)
    head: Tagger
    method: str | None  # the fine-tuning method (full, lora), None on cached features
    starts_trained: bool  # score dev before the first step (epoch 0)
    n_train: int

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]: ...
    def head_learning_rates(self) -> dict[str, float]: ...
    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterable[Batch]: ...
    def loss(self, batch: Batch, weights: Tensor | None) -> Tensor: ...
    def dev_tags(self, batch_size: int) -> list[list[str]]: ...
    def dev_gold(self) -> list[list[str]]: ...
    def train_tags(self) -> list[np.ndarray]: ...
    def clip_parameters(self) -> Iterable[nn.Parameter]: ...
    def snapshot(self) -> dict[str, Tensor]: ...
    def restore(self, state: dict[str, Tensor]) -> None: ...


class CachedFeatures:
    """A head on the cache's tensors: every parameter trains; the snapshot is the state dict."""

    method = None
    starts_trained = False

    def __init__(self, model: Tagger, train: Batcher, dev: Batcher) -> None:
        self.module = self.head = model
        self.train, self.dev = train, dev
        self.n_train = len(train.data)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.head.parameter_groups()

    def head_learning_rates(self) -> dict[str, float]:
        return self.head.default_learning_rates()

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        return self.train.batches(batch_size, generator)

    def loss(self, batch: Batch, weights: Tensor | None) -> Tensor:
        return self.head.loss(batch, weights)

    def dev_tags(self, batch_size: int) -> list[list[str]]:
        return predict_tags(self.head, self.dev, batch_size)

    def dev_gold(self) -> list[list[str]]:
        return self.dev.data.tags

    def train_tags(self) -> list[np.ndarray]:
        return self.train.tags

    def clip_parameters(self) -> Iterable[nn.Parameter]:
        return self.head.parameters()

    def snapshot(self) -> dict[str, Tensor]:
        return copy.deepcopy(self.head.state_dict())

    def restore(self, state: dict[str, Tensor]) -> None:
        self.head.load_state_dict(state)


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    best_dev: dict[str, object]
    history: list[dict[str, float]]
    seconds: float
    peak_memory_mib: float
    stopped_early: bool
    stop_reason: str = ""
    optimizer_steps: int = 0
    learning_rates: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"
    train_examples: int = 0
    halted_at: int | None = None  # the epoch a stop_after rung paused it at (None: it ran to its end)
    resumed_after: int | None = None  # the epoch of the paused state it went on from (None: from the start)


# the keys of a history row that are clock readings, not results (left out where runs are compared)
TIMING_KEYS = frozenset({"seconds", "step_seconds", "dev_seconds"})

FEW_STEPS = 200  # fewer optimizer steps in a whole run than this get a note (measured: 15 captions x 60 epochs stayed all-O)


def optimizer_steps(n_examples: int, config: TrainConfig) -> int:
    """Optimizer steps of the whole run: micro-batches per epoch / accumulation, x epochs."""
    return math.ceil(math.ceil(n_examples / config.batch_size) / config.accumulate) * config.epochs


def uses_bf16(config: TrainConfig, device: torch.device) -> bool:
    from featurize.text.transformer import native_bf16

    return config.precision == "bf16" or config.precision == "auto" and native_bf16(device.type)


class _Schedule:
    """The learning-rate schedule: a warm-up and a per-step decay through one ``LambdaLR``
    (linear: to 0 over the run), cosine warm restarts stepped per batch, or halving on a
    plateau of the dev score after each epoch."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, config: TrainConfig, total: int, per_epoch: int
    ) -> None:
        self.config, self.per_epoch = config, per_epoch
        self.warm = max(1, round(config.warmup * total)) if config.warmup else 0
        self.total = total
        self.step_lr: Any = None
        self.cosine: Any = None
        self.plateau: Any = None
        if config.scheduler == "cosine":
            self.cosine = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                optimizer, T_0=5, T_mult=2, eta_min=1e-6
            )
        elif config.scheduler == "linear" or self.warm:
            self.step_lr = torch.optim.lr_scheduler.LambdaLR(optimizer, self._factor)
        if config.scheduler == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=0.5, patience=2
            )
        self.steps = 0

    def _factor(self, step: int) -> float:
        if self.warm and step < self.warm:
            return (step + 1) / self.warm
        if self.config.scheduler == "linear":
            return max(0.0, (self.total - step) / max(1, self.total - self.warm))
        return 1.0

    def share_at(self, step: int) -> float:
        """The learning rate at optimizer step ``step``, as a share of its peak."""
        return self._factor(step)

    def after_step(self, epoch: int, step_in_epoch: int) -> None:
        self.steps += 1
        if self.cosine is not None:
            self.cosine.step(epoch - 1 + step_in_epoch / self.per_epoch)
        elif self.step_lr is not None and (self.config.scheduler == "linear" or self.steps < self.warm):
            # after a warm-up the constant and plateau schedules leave the rate to the plateau rule
            self.step_lr.step()

    def after_epoch(self, score: float) -> None:
        if self.plateau is not None:
            self.plateau.step(score)

    _SCHEDULERS = ("step_lr", "cosine", "plateau")

    def state(self) -> dict[str, Any]:
        """Where the schedule stands (for a paused run); JSON, torch's scheduler state dicts."""
        out: dict[str, Any] = {"steps": self.steps}
        for name in self._SCHEDULERS:
            scheduler = getattr(self, name)
            if scheduler is not None:
                out[name] = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]
        for name in self._SCHEDULERS:
            scheduler = getattr(self, name)
            if scheduler is not None:
                saved = dict(state[name])
                if name == "step_lr":  # a bound method has no state of its own
                    saved["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)
                scheduler.load_state_dict(saved)


def _pause_identity(config: TrainConfig, task: TrainingTask) -> dict[str, Any]:
    """What a paused state must have been made by to be resumed: the same settings (the rung
    and the state's own folder aside), seed, training examples and parameter shapes."""
    settings = {
        k: v
        for k, v in config.key_settings().items()
        if k not in ("stop_after", "pause_state", "max_minutes")
    }
    shapes = {name: list(p.shape) for name, p in task.module.named_parameters()}
    return {"settings": settings, "seed": config.seed, "n_train": task.n_train, "shapes": shapes}


def fit(task: TrainingTask, config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train ``task`` in place; it ends holding its best validation epoch (epoch 0: as it started)."""
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _fit(task, config, progress or Progress())
    finally:
        torch.set_num_threads(threads)  # a library caller keeps its own setting


def _warn_if_budget_cuts_decay(
    config: TrainConfig, schedule: _Schedule, epoch: int, elapsed: float, pace: float, progress: Progress
) -> None:
    """After the first epoch: say when --max-minutes will stop a linear decay before its end, and
    which --epochs would end it inside the budget (a run cut at half its rate is a different run
    from the one its --epochs describes; machines' speed varies from day to day)."""
    assert config.max_minutes is not None
    if config.scheduler != "linear" or pace <= 0:
        return
    # the rule of the budget stop in _fit: another epoch starts only if it ends inside the budget
    fit = min(config.epochs, epoch + max(0, int((60 * config.max_minutes - elapsed) // pace)))
    if fit >= config.epochs:
        return
    left = schedule.share_at(fit * schedule.per_epoch)
    progress.on_note(
        f"at {pace / 60:.1f} min an epoch, about {fit} of {config.epochs} epochs fit in the "
        f"{config.max_minutes:g}-minute budget: the linear decay would stop at {100 * left:.0f} % of "
        f"its peak rate (--epochs {fit} ends it inside the budget)"
    )


def _fit(task: TrainingTask, config: TrainConfig, progress: Progress) -> TrainResult:
    seed_everything(config.seed)
    started = time.perf_counter()
    rates = config.learning_rates(task.head_learning_rates(), task.method)
    groups = [{"params": ps, "lr": rates[name], "name": name} for name, ps in task.parameter_groups().items()]
    params = [p for g in groups for p in g["params"]]
    on_cpu = all(p.device.type == "cpu" for p in params)
    # The fused kernel does AdamW's update in one pass per tensor: 4x faster than the default
    # per-parameter loop on this CPU (a 20k-word embedding: 5.5 ms a step against 23 ms; it was
    # over half of the word-id BiLSTM's step). Same update rule, rounding may differ in the last bit.
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay, fused=on_cpu or None)
    per_epoch = math.ceil(math.ceil(task.n_train / config.batch_size) / config.accumulate)
    schedule = _Schedule(optimizer, config, per_epoch * config.epochs, per_epoch)
    if per_epoch * config.epochs < FEW_STEPS:  # a handful of labelled captions, batch 32: it learns nothing
        progress.on_note(
            f"only {per_epoch * config.epochs} optimizer steps in all ({task.n_train} training examples, "
            f"batch {config.batch_size}, {config.epochs} epochs): a head this short of steps often tags "
            f"everything O; a smaller --batch-size (e.g. {max(1, task.n_train // 8)}) gives it more"
        )
    weights = None
    if config.class_weights:
        if task.head.crf is not None:
            raise ConfigError(
                "--class-weights weights the cross-entropy of softmax heads: add --set crf=false"
            )
        weights = class_weights(task.train_tags(), len(task.head.tags))
    device = params[0].device if params else torch.device("cpu")
    bf16 = uses_bf16(config, device)
    scorer = DevScorer(task.dev_gold())
    clip = list(task.clip_parameters()) if config.clip else []

    def row(
        epoch: int, loss: float, dev: dict[str, object], steps_s: float, dev_s: float
    ) -> dict[str, float]:
        return {
            "epoch": epoch,
            "train_loss": loss,
            "dev_entity_f1": float(dev["entity_f1"]),  # type: ignore[arg-type]
            "dev_token_macro_f1": float(dev["token_macro_f1"]),  # type: ignore[arg-type]
            "lr_max": max(g["lr"] for g in optimizer.param_groups) if epoch else 0.0,
            "seconds": time.perf_counter() - started,
            # where an epoch's time goes (the grid's time breakdown, docs: bench)
            "step_seconds": steps_s,
            "dev_seconds": dev_s,
        }

    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state, best_dev = -1.0, 0, None, {}
    generator = torch.Generator().manual_seed(config.seed)
    done_steps, epoch, stop_reason, halted_at = 0, 0, "", None
    paused_at = Path(config.pause_state) if config.pause_state else None
    identity = _pause_identity(config, task)
    resumed = PausedRun.load(paused_at, identity) if paused_at is not None else None
    if resumed is not None:
        task.restore(resumed.module)
        optimizer.load_state_dict(resumed.optimizer)
        schedule.load_state(resumed.schedule)
        resumed.restore_random_states(generator)
        history = resumed.history
        best_score, best_epoch, best_dev = resumed.best_score, resumed.best_epoch, resumed.best_dev
        best_state = resumed.best_state
        done_steps, epoch, stop_reason = resumed.done_steps, resumed.epoch, resumed.stop_reason
        started -= resumed.seconds  # the learning curve's clock (and the budget's) goes on from the pause
        ended = f" (it had ended: {stop_reason})" if stop_reason else ""
        progress.on_note(f"resumed after epoch {resumed.epoch} from {paused_at}{ended}")
    elif task.starts_trained:
        dev_start = time.perf_counter()
        best_dev = dict(scorer.scores(task.dev_tags(config.eval_batch)))
        best_score, best_state = float(best_dev[config.select]), task.snapshot()  # type: ignore[arg-type]
        history.append(row(0, float("nan"), best_dev, 0.0, time.perf_counter() - dev_start))
        progress.on_epoch(history[-1])
    first_epoch = epoch + 1  # 1, or the epoch after the paused state's
    for epoch in range(first_epoch, config.epochs + 1 if not stop_reason else first_epoch):
        epoch_start = time.perf_counter()
        task.module.train()
        total_loss, micro, in_epoch = 0.0, 0, 0
        optimizer.zero_grad(set_to_none=True)
        n_batches = math.ceil(task.n_train / config.batch_size)  # what Batcher.batches yields
        for k, batch in enumerate(task.train_batches(config.batch_size, generator)):
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = task.loss(batch, weights)
            (loss / config.accumulate if config.accumulate > 1 else loss).backward()
            total_loss += float(loss.detach())
            micro += 1
            if (k + 1) % config.accumulate == 0 or k + 1 == n_batches:
                if config.clip:
                    torch.nn.utils.clip_grad_norm_(clip, config.clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                done_steps += 1
                in_epoch += 1
                schedule.after_step(epoch, in_epoch)
                progress.on_step(done_steps, total_loss / micro)
        dev_start = time.perf_counter()
        dev = dict(scorer.scores(task.dev_tags(config.eval_batch)))
        dev_s = time.perf_counter() - dev_start
        score = float(dev[config.select])  # type: ignore[arg-type]
        schedule.after_epoch(score)
        history.append(row(epoch, total_loss / max(micro, 1), dev, dev_start - epoch_start, dev_s))
        progress.on_epoch(history[-1])
        if score > best_score:
            best_score, best_epoch, best_dev = score, epoch, dev
            best_state = task.snapshot()
        elif epoch - best_epoch >= config.patience:
            stop_reason = f"no better dev {config.select.replace('_', ' ')} for {config.patience} epochs"
        if not stop_reason and config.stop_after is not None and config.stop_after <= epoch < config.epochs:
            stop_reason, halted_at = f"paused at the rung after epoch {epoch}", epoch
        if not stop_reason and config.max_minutes is not None and epoch < config.epochs:
            now = time.perf_counter()
            elapsed, pace = now - started, now - epoch_start  # pace: this epoch, its dev pass included
            if epoch == first_epoch:
                _warn_if_budget_cuts_decay(config, schedule, epoch, elapsed, pace, progress)
            if elapsed + pace > 60 * config.max_minutes:
                stop_reason = f"another epoch would pass the {config.max_minutes:g}-minute budget"
                progress.on_note(f"stopped after epoch {epoch}: {stop_reason}")
        if paused_at is not None and (halted_at is not None or config.state_every_epoch):
            PausedRun(
                epoch=epoch,
                done_steps=done_steps,
                seconds=time.perf_counter() - started,
                module=task.snapshot(),
                best_state=best_state,
                best_score=best_score,
                best_epoch=best_epoch,
                best_dev=best_dev,
                history=history,
                optimizer=optimizer.state_dict(),
                schedule=schedule.state(),
                generator=generator.get_state(),
                **PausedRun.random_states(),
                stop_reason=stop_reason if halted_at is None else "",  # a rung pause goes on when resumed
            ).save(paused_at, identity)
        if stop_reason:
            break
    if paused_at is not None and halted_at is None and not config.state_every_epoch:
        remove_paused(paused_at)  # the run finished: nothing will go on from it
    if best_state is not None:
        task.restore(best_state)
    task.module.eval()
    return TrainResult(
        best_epoch=best_epoch,
        epochs_run=epoch,
        best_dev=best_dev,
        history=history,
        seconds=time.perf_counter() - started,
        peak_memory_mib=peak_memory_mib(),
        stopped_early=bool(stop_reason),
        stop_reason=stop_reason,
        optimizer_steps=done_steps,
        learning_rates=rates,
        precision="bf16" if bf16 else "fp32",
        train_examples=task.n_train,
        halted_at=halted_at,
        resumed_after=resumed.epoch if resumed is not None else None,
    )
