"""The one training configuration, for a head on cached features and for a head trained end to
end with its encoders, and the learning-rate tables both draw from.

Learning rates. The thesis's table (encoder 8e-6, vision 8e-5, fusion 5e-4, inner BiLSTM 3e-4,
CRF 2e-4, dense 1e-5) was tuned for fine-tuning BERT end to end, where the encoder must move
slowly. On frozen cached features nothing upstream moves, and with those rates the dense
output layer (1e-5) barely learns in 40 epochs. ``CACHED_LR`` are the defaults for cached
features, chosen on T17 validation (docs: results, "Training defaults"); ``THESIS_LR`` is the
default for fine-tuning a BERT-family encoder and ``LLAMA_LR`` (the thesis's Llama 3.1 table)
for LoRA on a decoder. ``lr_preset="auto"`` picks: cached features -> ``cached``, full
fine-tuning -> ``thesis``, LoRA -> ``thesis-llama``.

Defaults. ``TrainConfig()`` is ``heads train``'s configuration; :func:`finetune_config` is
``bench finetune``'s (the same type, other defaults); the grid's are ``bench.grid.GRID_TRAIN``.
Command-line defaults are read from these objects, never written a second time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from featurize.errors import ConfigError
from featurize.text.trainable import LoraSettings
from heads.tagger import COMPONENTS

THESIS_LR = {"text": 8e-6, "vision": 8e-5, "fusion": 5e-4, "inner_lstm": 3e-4, "crf": 2e-4, "dense": 1e-5}
CACHED_LR = {"text": 1e-3, "vision": 1e-3, "fusion": 1e-3, "inner_lstm": 1e-3, "crf": 1e-2, "dense": 1e-3}
# The thesis's Llama 3.1 table (8.2): 2e-5 everywhere but the dense layer.
LLAMA_LR = {"text": 2e-5, "vision": 2e-5, "fusion": 2e-5, "inner_lstm": 2e-5, "crf": 2e-5, "dense": 1e-5}
LR_PRESETS = {"cached": CACHED_LR, "thesis": THESIS_LR, "thesis-llama": LLAMA_LR}
# plateau: halve on a flat dev score (patience 2); cosine: warm restarts T0=5, Tmult=2,
# eta_min=1e-6, stepped per batch; linear: decay to 0 over the run's optimizer steps;
# constant / none: the rate stays. A warm-up (``warmup`` > 0) comes before any but cosine.
SCHEDULERS = ("plateau", "cosine", "none", "linear", "constant")
SELECT_METRICS = ("entity_f1", "token_macro_f1")
PRECISIONS = ("fp32", "bf16", "auto")
METHODS = ("auto", "full", "lora")
INITS = ("frozen", "random")


@dataclass
class EncoderTraining:
    """What trains besides the head when the encoders are in the loop (``bench finetune``)."""

    method: str = "auto"  # full (BERT family), lora (decoders), auto: by the encoder's architecture
    init: str = "frozen"  # start from the frozen-feature head of the same seed, or a random head
    lora: LoraSettings = field(default_factory=LoraSettings)
    weights_format: str = "auto"  # a LoRA base: as cached (auto), or fp32 / bf16 / 8bit
    gradient_checkpointing: bool = False
    train_vision: bool = False  # also unfreeze the vision encoder (heads that read image vectors)
    merge: bool = False  # also save a LoRA adapter merged into an fp32 copy of its base

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method: choose one of {', '.join(METHODS)}")
        if self.init not in INITS:
            raise ConfigError(f"--init: choose one of {', '.join(INITS)}")


@dataclass
class TrainConfig:
    """Everything the trainer's loop reads; the defaults are ``heads train``'s."""

    seed: int = 0
    epochs: int = 40
    patience: int = 5  # epochs without a better validation score before stopping
    batch_size: int = 32
    accumulate: int = 1  # micro-batches per optimizer step
    lr_preset: str = "cached"  # cached, thesis, thesis-llama, or auto (see the module docstring)
    lr: dict[str, float] = field(default_factory=dict)  # per-component overrides
    weight_decay: float = 0.01
    clip: float = 5.0  # max gradient norm; 0 turns clipping off
    scheduler: str = "plateau"  # see SCHEDULERS
    warmup: float = 0.0  # share of all optimizer steps with a linearly rising learning rate
    class_weights: bool = False  # W_c = N / (m * freq_c) on the cross-entropy of softmax heads
    select: str = "entity_f1"  # validation metric for early stopping and model choice
    precision: str = (
        "fp32"  # bf16: steps under bf16 autocast (weights and evaluation stay fp32); auto: bf16 where native
    )
    threads: int = (
        1  # torch threads; 1 measured fastest for these small recurrent steps; 0: leave torch's setting
    )
    max_minutes: float | None = None  # stop after the epoch that would overrun this budget
    # pause after this epoch (a successive-halving rung of `bench heads --halving`); the run is
    # exactly the first epochs of the full one, which keeps every setting, the schedule included
    stop_after: int | None = None
    # a folder for the state of a run paused at stop_after, and from which a run goes on when a
    # state made by the same settings is there (bench heads --halving; not part of a cell's key)
    pause_state: str | None = None
    # write that state after every epoch, and keep it when the run ends (the caller drops it once
    # the model is saved): a run killed mid-epoch goes on from its last finished epoch (bench finetune)
    state_every_epoch: bool = False
    limit: int | None = None  # train on the first N training examples only (smoke runs)
    eval_batch: int = 128  # examples per evaluation batch
    device: str = "cpu"  # where a head on live encoders trains: auto (a GPU when present), cpu or cuda
    encoders: EncoderTraining | None = None  # None: the head alone, on cached features

    def __post_init__(self) -> None:
        checks = [
            (
                self.lr_preset in (*LR_PRESETS, "auto"),
                f"--lr-preset must be one of auto, {', '.join(LR_PRESETS)}",
            ),
            (self.scheduler in SCHEDULERS, f"--scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.select in SELECT_METRICS, f"--select must be one of {', '.join(SELECT_METRICS)}"),
            (
                self.epochs >= 1 and self.batch_size >= 1 and self.accumulate >= 1,
                "--epochs, --batch-size and --accumulate must be at least 1",
            ),
            (0 <= self.warmup < 1, "--warmup is a share of the optimizer steps: 0 <= warmup < 1"),
            (
                not (self.warmup and self.scheduler == "cosine"),
                "--warmup does not combine with --scheduler cosine",
            ),
            (self.limit is None or self.limit >= 1, "--limit must be at least 1"),
            (self.stop_after is None or self.stop_after >= 1, "stop_after must be at least 1"),
            (self.eval_batch >= 1, "--eval-batch must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        unknown = sorted(set(self.lr) - set(COMPONENTS))
        if unknown:
            raise ConfigError(
                f"--lr: unknown component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}"
            )

    def learning_rates(
        self, head_defaults: dict[str, float] | None = None, method: str | None = None
    ) -> dict[str, float]:
        """The preset, then the head's own needs (cached preset only), then the user's --lr.
        ``method`` is the fine-tuning method (None: cached features) for ``auto``."""
        preset = self.lr_preset
        if preset == "auto":
            preset = "cached" if method is None else "thesis-llama" if method == "lora" else "thesis"
        own = (head_defaults or {}) if preset == "cached" else {}
        return LR_PRESETS[preset] | own | self.lr

    def with_seed(self, seed: int) -> TrainConfig:
        return replace(self, seed=seed)

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        if self.encoders is not None:
            d["encoders"]["lora"] = self.encoders.lora.describe()
        return d

    def key_settings(self) -> dict[str, Any]:
        """What identifies a configuration in a run store (seeds and threads aside). Settings that
        are at their default and were added after the store format was fixed are left out, so a
        store written before keeps its keys."""
        defaults = TrainConfig()
        d = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("seed", "threads", "pause_state", "state_every_epoch")
        }
        for name in _ADDED_SETTINGS:
            if getattr(self, name) == getattr(defaults, name):
                d.pop(name, None)
        return d


# Fields a grid cell's key did not hold when the grid's run store was introduced.
_ADDED_SETTINGS = (
    "accumulate",
    "warmup",
    "max_minutes",
    "limit",
    "eval_batch",
    "device",
    "encoders",
    "stop_after",
)

# bench finetune: the head on live encoders (epochs are long, the encoder moves slowly).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "epochs": 8,
    "patience": 3,
    "batch_size": 16,
    "lr_preset": "auto",
    "clip": 1.0,
    "scheduler": "linear",
    "warmup": 0.1,
    "precision": "auto",
    "threads": 0,
    "eval_batch": 64,
    "device": "auto",
}


def finetune_config(encoders: EncoderTraining | None = None, **overrides: Any) -> TrainConfig:
    """``bench finetune``'s configuration: :data:`FINETUNE_DEFAULTS`, then ``overrides``."""
    unknown = sorted(set(overrides) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}")
    return TrainConfig(**(FINETUNE_DEFAULTS | overrides | {"encoders": encoders or EncoderTraining()}))


FINETUNE = finetune_config()  # its defaults, for the command line to read
