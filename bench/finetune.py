"""``bench finetune``: the grid's winning combination trained end to end.

One seed is two runs on the same splits:

1. **frozen**: the head trained on cached features of the chosen encoder, with the grid's
   training settings (exactly a ``bench heads`` cell): the comparison row, and the start;
2. **fine-tuned**: that head on top of the live encoder(s), trained end to end. BERT-family
   encoders are fully fine-tuned; decoders (the Llama family) get LoRA adapters through peft
   on a base held as the cache held it (8-bit through bitsandbytes, bf16 or fp32).

Starting from the frozen head (``init="frozen"``, the default) is linear probing then fine-
tuning: the new encoder layers see gradients from a head that already tags, instead of from
a random one that would first pull the encoder off its pretrained features. With it the
thesis's per-component learning rates (encoder 8e-6, vision 8e-5, fusion 5e-4, inner BiLSTM
3e-4, CRF 2e-4, dense 1e-5) fit: the head moves little, the encoder adapts. The dev score
before the first step is epoch 0, so early stopping never returns a model worse on validation
than the frozen one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from featurize.build import library_versions, peak_memory_mib
from featurize.errors import ConfigError
from featurize.text.trainable import LoraSettings, TrainableWordFeatures, is_decoder
from featurize.text.transformer import native_bf16
from heads import checkpoint, finetuned
from heads.data import Batcher, SplitData
from heads.end_to_end import EndToEnd, TrainableVision
from heads.experiment import RunSpec, input_identity, prepare
from heads.metrics import METRIC_NOTES, DevScorer, all_scores
from heads.tagger import COMPONENTS
from heads.train import THESIS_LR, predict, seed_everything

# The thesis's Llama 3.1 table (8.2): 2e-5 everywhere but the dense layer.
LLAMA_LR = {"text": 2e-5, "vision": 2e-5, "fusion": 2e-5, "inner_lstm": 2e-5, "crf": 2e-5, "dense": 1e-5}
LR_PRESETS = {"thesis": THESIS_LR, "thesis-llama": LLAMA_LR}
METHODS = ("auto", "full", "lora")
SCHEDULES = ("linear", "constant", "plateau")
INITS = ("frozen", "random")
IMAGE_VECTOR_NEEDS = frozenset({"image", "patches"})


@dataclass
class FinetuneConfig:
    seed: int = 0
    epochs: int = 8
    patience: int = 3  # epochs without a better dev entity F1 before stopping
    batch_size: int = 16
    accumulate: int = 1  # micro-batches per optimizer step
    method: str = "auto"  # full (BERT family), lora (decoders), auto: by architecture
    lr_preset: str = "auto"  # thesis (full), thesis-llama (lora)
    lr: dict[str, float] = field(default_factory=dict)
    warmup: float = 0.1  # share of all optimizer steps with a linearly rising learning rate
    schedule: str = (
        "linear"  # after warm-up: linear decay to 0, constant, or plateau (halve on a flat dev F1)
    )
    weight_decay: float = 0.01
    clip: float = 1.0
    precision: str = "auto"  # bf16 autocast where native, else fp32
    gradient_checkpointing: bool = False
    train_vision: bool = False
    init: str = "frozen"
    lora: LoraSettings = field(default_factory=LoraSettings)
    weights_format: str = "auto"  # a LoRA base: as cached (auto), or fp32 / bf16 / 8bit
    max_minutes: float | None = None  # stop after the epoch that would overrun this budget
    limit: int | None = None  # train on the first N training examples only (smoke runs)
    device: str = "auto"
    merge: bool = False  # also save a LoRA adapter merged into an fp32 copy of its base
    eval_batch: int = 64

    def __post_init__(self) -> None:
        checks = [
            (self.method in METHODS, f"--method: choose one of {', '.join(METHODS)}"),
            (
                self.lr_preset in (*LR_PRESETS, "auto"),
                f"--lr-preset: choose one of auto, {', '.join(LR_PRESETS)}",
            ),
            (self.schedule in SCHEDULES, f"--schedule: choose one of {', '.join(SCHEDULES)}"),
            (self.init in INITS, f"--init: choose one of {', '.join(INITS)}"),
            (self.precision in ("auto", "bf16", "fp32"), "--precision: choose auto, bf16 or fp32"),
            (
                self.epochs >= 1 and self.batch_size >= 1 and self.accumulate >= 1,
                "--epochs, --batch-size and --accumulate must be at least 1",
            ),
            (0 <= self.warmup < 1, "--warmup is a share of the optimizer steps: 0 <= warmup < 1"),
            (self.limit is None or self.limit >= 1, "--limit must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        unknown = sorted(set(self.lr) - set(COMPONENTS))
        if unknown:
            raise ConfigError(
                f"--lr: unknown component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}"
            )

    def learning_rates(self, method: str) -> dict[str, float]:
        preset = (
            self.lr_preset if self.lr_preset != "auto" else ("thesis-llama" if method == "lora" else "thesis")
        )
        return LR_PRESETS[preset] | self.lr

    def uses_bf16(self, device: torch.device) -> bool:
        return self.precision == "bf16" or self.precision == "auto" and native_bf16(device.type)

    def describe(self) -> dict[str, object]:
        d = asdict(self)
        d["lora"] = self.lora.describe()
        return d


@dataclass
class Progress:
    """What the training loop reports as it goes (the CLI draws a bar with an ETA from it)."""

    total_steps: int
    on_step: Callable[[int, float], None] = lambda _done, _loss: None
    on_epoch: Callable[[dict[str, float]], None] = lambda _row: None
    on_note: Callable[[str], None] = lambda _message: None


def _limit(data: SplitData, n: int | None) -> SplitData:
    if n is None or n >= len(data):
        return data
    keep = slice(0, n)
    out = replace(
        data,
        words=data.words[keep],
        tags=data.tags[keep],
        example_ids=data.example_ids[keep],
        contexts=data.contexts[keep] if data.contexts is not None else None,
        image_files=data.image_files[keep] if data.image_files is not None else None,
        image=data.image[keep] if data.image is not None else None,
        has_image=data.has_image[keep] if data.has_image is not None else None,
        patches=data.patches[keep] if data.patches is not None else None,
        label_ids=data.label_ids[keep] if data.label_ids is not None else None,
    )
    if data.features is not None and data.offsets is not None:
        out.features = data.features[: data.offsets[n]]
        out.offsets = data.offsets[: n + 1].copy()
    return out


def build_model(
    spec: RunSpec,
    config: FinetuneConfig,
    cache_root: Path,
    head_init: Path | None,
    note: Callable[[str], None],
) -> tuple[EndToEnd, dict[str, Any], dict[str, Any]]:
    """The end-to-end model, the head's data (splits, vocabulary...) and the cached identities."""
    from heads.predict import build_text_encoder_like, build_vision_encoder_like

    head, _batchers, data, vocab, index, inputs = prepare(spec, cache_root)
    if head_init is not None:
        frozen, _ = checkpoint.load(head_init)
        head.load_state_dict(frozen.state_dict())
    needs = type(head).needs(head.hyper, head.modality, bool(inputs.text))
    identity = input_identity(index, data["train"])
    device = config.device
    text: dict[str, TrainableWordFeatures] = {}
    method = config.method
    for name in inputs.text_encoders if "text" in needs else []:
        role = dict(identity.get(f"text:{name}", {}))
        if config.weights_format != "auto":  # a LoRA base held otherwise than the cached one
            role.pop("weights_format", None)
            if config.weights_format != "fp32":  # fp32 is what an identity without the key means
                role["weights_format"] = config.weights_format
        encoder = build_text_encoder_like(name, role, device)  # checked against the cached identity
        encoder.load()
        chosen = method if method != "auto" else ("lora" if is_decoder(encoder._model) else "full")
        text[name] = TrainableWordFeatures(encoder, chosen, config.lora, config.gradient_checkpointing)
        note(
            f"{name}: {'LoRA adapters' if chosen == 'lora' else 'full fine-tuning'} ({encoder.options.weights_format} weights)"
        )
    if not text and not config.train_vision:
        raise ConfigError(
            f"head {spec.head} --modality {head.modality} reads no text encoder: nothing to fine-tune"
        )
    vision = None
    if config.train_vision:
        if not needs & IMAGE_VECTOR_NEEDS:
            raise ConfigError(
                "--train-vision trains a vision encoder whose vectors the head reads; this head reads "
                + (
                    "image label words, discrete class ids with no gradient"
                    if "label_ids" in needs
                    else "no image"
                )
            )
        assert inputs.vision
        encoder = build_vision_encoder_like(
            inputs.vision, dict(identity.get(f"vision:{inputs.vision}", {})), "patches" in needs, device
        )
        vision = TrainableVision(encoder, "patches" in needs)
    model = EndToEnd(text, head, vision)
    target = (
        next(iter(text.values())).device
        if text
        else torch.device("cuda" if torch.cuda.is_available() and device != "cpu" else "cpu")
    )
    model.head.to(target)
    if vision is not None:
        vision.to(target)
    extras = {"data": data, "vocab": vocab, "inputs": inputs, "needs": needs}
    return model, extras, identity


def optimizer_steps(n_examples: int, config: FinetuneConfig) -> int:
    """Optimizer steps of the whole run: micro-batches per epoch / accumulation, x epochs."""
    return math.ceil(math.ceil(n_examples / config.batch_size) / config.accumulate) * config.epochs


def _scheduler(optimizer: torch.optim.Optimizer, config: FinetuneConfig, total: int) -> Any:
    warm = max(1, round(config.warmup * total)) if config.warmup else 0

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if config.schedule == "linear":
            return max(0.0, (total - step) / max(1, total - warm))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _trainable_state(model: EndToEnd) -> dict[str, torch.Tensor]:
    """The tensors training changes: trainable parameters and the head's buffers."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    names |= {f"head.{n}" for n, _ in model.head.named_buffers()}
    return {n: t.detach().clone() for n, t in model.state_dict().items() if n in names}


def predict_tags(head: Any, batcher: Batcher, batch_size: int) -> list[list[str]]:
    """``heads.train.predict`` with each batch on the head's device (a GPU when present)."""
    device = next(head.parameters()).device
    if device.type == "cpu":
        return predict(head, batcher, batch_size)
    head.eval()
    out: list[list[str]] = [[] for _ in range(len(batcher.data))]
    with torch.inference_mode():
        for batch in batcher.batches(batch_size):
            for i, path in zip(batch.index, head.predict(_to(batch, device))):
                out[i] = [head.tags[c] for c in path]
    return out


def evaluate_split(
    model: EndToEnd, data: SplitData, tags: list[str], vocab: Any, needs: frozenset[str], batch: int
) -> tuple[dict[str, object], list[list[str]]]:
    featurized = model.featurized(data)
    batcher = Batcher(featurized, tags, vocab, needs)
    predictions = predict_tags(model.head, batcher, batch)
    return all_scores(data.tags, predictions), predictions


def train_end_to_end(
    model: EndToEnd,
    extras: dict[str, Any],
    config: FinetuneConfig,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place; it ends holding its best dev epoch (epoch 0: as it started)."""
    seed_everything(config.seed)
    started = time.perf_counter()
    data: dict[str, SplitData] = extras["data"]
    train_data = _limit(data["train"], config.limit)
    head = model.head
    needs = extras["needs"]
    vocab = extras["vocab"]
    live_needs = frozenset(needs - {"text"})
    train_batcher = Batcher(train_data, head.tags, vocab, live_needs)
    method = model.text[0].method if len(model.text) else "full"
    rates = config.learning_rates(method)
    groups = [
        {"params": ps, "lr": rates[name], "name": name} for name, ps in model.parameter_groups().items()
    ]
    on_cpu = all(p.device.type == "cpu" for g in groups for p in g["params"])
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay, fused=on_cpu or None)
    total = optimizer_steps(len(train_data), config)
    scheduler = _scheduler(optimizer, config, total)
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2)
        if config.schedule == "plateau"
        else None
    )
    device = next(model.parameters()).device
    bf16 = config.uses_bf16(device)
    progress = progress or Progress(total)
    scorer = DevScorer(data["dev"].tags)

    def dev_score() -> dict[str, object]:
        featurized = model.featurized(data["dev"])
        return scorer.scores(
            predict_tags(head, Batcher(featurized, head.tags, vocab, needs), config.eval_batch)
        )

    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state, best_dev = -1.0, 0, None, {}
    if config.init == "frozen":
        best_dev = dev_score()
        best_score, best_state = float(best_dev["entity_f1"]), _trainable_state(model)  # type: ignore[arg-type]
        history.append(
            {
                "epoch": 0,
                "train_loss": float("nan"),
                "dev_entity_f1": best_score,
                "dev_token_macro_f1": float(best_dev["token_macro_f1"]),
                "lr_max": 0.0,  # type: ignore[arg-type]
                "seconds": time.perf_counter() - started,
            }
        )
        progress.on_epoch(history[-1])
    generator = torch.Generator().manual_seed(config.seed)
    done_steps, epoch, stop_reason = 0, 0, ""
    trainable = [p for g in groups for p in g["params"]]
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        total_loss, micro = 0.0, 0
        optimizer.zero_grad(set_to_none=True)
        batches = list(train_batcher.batches(config.batch_size, generator))
        for k, batch in enumerate(batches):
            batch = _to(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model.loss(batch, train_data)
            (loss / config.accumulate).backward()
            total_loss += float(loss.detach())
            micro += 1
            if (k + 1) % config.accumulate == 0 or k + 1 == len(batches):
                if config.clip:
                    torch.nn.utils.clip_grad_norm_(trainable, config.clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                done_steps += 1
                progress.on_step(done_steps, total_loss / micro)
        dev = dev_score()
        score = float(dev["entity_f1"])  # type: ignore[arg-type]
        if plateau is not None:
            plateau.step(score)
        row = {
            "epoch": epoch,
            "train_loss": total_loss / max(micro, 1),
            "dev_entity_f1": score,
            "dev_token_macro_f1": float(dev["token_macro_f1"]),  # type: ignore[arg-type]
            "lr_max": max(g["lr"] for g in optimizer.param_groups),
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        progress.on_epoch(row)
        if score > best_score:
            best_score, best_epoch, best_dev = score, epoch, dev
            best_state = _trainable_state(model)
        elif epoch - best_epoch >= config.patience:
            stop_reason = f"no better dev entity F1 for {config.patience} epochs"
            break
        if config.max_minutes is not None:
            elapsed = time.perf_counter() - started
            if (
                elapsed + (time.perf_counter() - epoch_start) > 60 * config.max_minutes
                and epoch < config.epochs
            ):
                stop_reason = f"another epoch would pass the {config.max_minutes:g}-minute budget"
                progress.on_note(f"stopped after epoch {epoch}: {stop_reason}")
                break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    return {
        "best_epoch": best_epoch,
        "epochs_run": epoch,
        "stopped_early": bool(stop_reason),
        "stop_reason": stop_reason,
        "best_dev": best_dev,
        "history": history,
        "train_seconds": time.perf_counter() - started,
        "optimizer_steps": done_steps,
        "learning_rates": rates,
        "precision": "bf16" if bf16 else "fp32",
        "train_examples": len(train_data),
    }


def _to(batch: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return batch
    for name, value in vars(batch).items():
        if isinstance(value, torch.Tensor):
            setattr(batch, name, value.to(device))
    return batch


def run(
    spec: RunSpec,
    config: FinetuneConfig,
    cache_root: Path,
    out: Path | None,
    head_init: Path | None,
    progress_for: Callable[[int], Progress] | None = None,
    note: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Build, train, score dev and test, save; returns the run record (``run.json``)."""
    started = time.perf_counter()
    seed_everything(config.seed)
    model, extras, identity = build_model(
        spec, config, cache_root, head_init if config.init == "frozen" else None, note
    )
    data = extras["data"]
    train_data = _limit(data["train"], config.limit)
    progress = progress_for(optimizer_steps(len(train_data), config)) if progress_for else None
    result = train_end_to_end(model, extras, config, progress)
    scores = {}
    for split in ("dev", "test"):
        scores[split], _ = evaluate_split(
            model, data[split], model.head.tags, extras["vocab"], extras["needs"], config.eval_batch
        )
    inputs = extras["inputs"]
    record = {
        "head": spec.head,
        "modality": model.head.modality,
        "inputs": inputs.describe(),
        "hyper": asdict(model.head.hyper),
        "fine_tune": config.describe() | {"method": model.text[0].method if len(model.text) else None},
        "seed": config.seed,
        **{k: v for k, v in result.items() if k != "best_dev"},
        "metrics": scores,
        "metric_notes": METRIC_NOTES,
        "wall_seconds": time.perf_counter() - started,
        "peak_memory_mib": peak_memory_mib(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "entries": {s: d.entries for s, d in data.items()},
        "library_versions": library_versions(),
    }
    if out is not None:
        saved = {
            "inputs": inputs.describe(),
            "input_identity": identity,
            "entries": record["entries"],
            "train_config": {"fine_tune": record["fine_tune"], "learning_rates": result["learning_rates"]},
            "vocab": extras["vocab"].to_json() if extras["vocab"] else None,
        }
        finetuned.save(out, model, saved, merge=config.merge)
        (out / "run.json").write_text(
            json.dumps(record, indent=1, ensure_ascii=False, default=str), encoding="utf-8"
        )
    return record
