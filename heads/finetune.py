"""A head trained end to end with its encoders, through the one trainer (:func:`heads.trainer.fit`).

BERT-family encoders are fully fine-tuned; decoders (the Llama family) get LoRA adapters
through peft on a base held as the cache held it (8-bit through bitsandbytes, bf16 or fp32).

Starting from the frozen-feature head (``EncoderTraining.init="frozen"``, the default) is linear
probing then fine-tuning: the new encoder layers see gradients from a head that already tags,
instead of from a random one that would first pull the encoder off its pretrained features.
With it the thesis's per-component learning rates (encoder 8e-6, vision 8e-5, fusion 5e-4,
inner BiLSTM 3e-4, CRF 2e-4, dense 1e-5) fit: the head moves little, the encoder adapts. The
dev score before the first step is epoch 0, so early stopping never returns a model worse on
validation than the frozen one.

What differs from training on cached features is the :class:`LiveEncoders` task: the batch's
features are computed from its words with gradients, only trainable parameters are
snapshotted, and dev is tagged through the encoders' own ``encode`` (the path of ``featurize``
and ``heads predict``), so a fine-tuned model scores the same here and from its saved folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from featurize.atomic import atomic_write_text
from featurize.build import library_versions, peak_memory_mib
from featurize.errors import ConfigError
from featurize.rebuild import text_encoder_like, vision_encoder_like
from featurize.text.trainable import TrainableWordFeatures, is_decoder
from heads import checkpoint, finetuned
from heads.data import Batch, Batcher, SplitData
from heads.end_to_end import EndToEnd, TrainableVision
from heads.experiment import RunSpec, prepare
from heads.inputs import input_identity
from heads.metrics import METRIC_NOTES, all_scores
from heads.train_config import EncoderTraining, TrainConfig
from heads.trainer import Progress, fit, optimizer_steps, predict_tags, seed_everything

IMAGE_VECTOR_NEEDS = frozenset({"image", "patches"})


def limit_split(data: SplitData, n: int | None) -> SplitData:
    """The first ``n`` examples of a split (all of it for None)."""
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
    config: TrainConfig,
    cache_root: Path,
    head_init: Path | None,
    note: Callable[[str], None],
) -> tuple[EndToEnd, dict[str, Any], dict[str, Any]]:
    """The end-to-end model, the head's data (splits, vocabulary...) and the cached identities."""
    encoders = config.encoders or EncoderTraining()
    head, _batchers, data, vocab, index, inputs = prepare(spec, cache_root)
    if head_init is not None:
        frozen, _ = checkpoint.load(head_init)
        head.load_state_dict(frozen.state_dict())
    needs = type(head).needs(head.hyper, head.modality, bool(inputs.text))
    identity = input_identity(index, data["train"])
    device = config.device
    text: dict[str, TrainableWordFeatures] = {}
    for name in inputs.text_encoders if "text" in needs else []:
        role = dict(identity.get(f"text:{name}", {}))
        if encoders.weights_format != "auto":  # a LoRA base held otherwise than the cached one
            role.pop("weights_format", None)
            if encoders.weights_format != "fp32":  # fp32 is what an identity without the key means
                role["weights_format"] = encoders.weights_format
        encoder = text_encoder_like(name, role, device)  # checked against the cached identity
        encoder.load()
        method = encoders.method
        chosen = method if method != "auto" else ("lora" if is_decoder(encoder._model) else "full")
        text[name] = TrainableWordFeatures(encoder, chosen, encoders.lora, encoders.gradient_checkpointing)
        note(
            f"{name}: {'LoRA adapters' if chosen == 'lora' else 'full fine-tuning'} ({encoder.options.weights_format} weights)"
        )
    if not text and not encoders.train_vision:
        raise ConfigError(
            f"head {spec.head} --modality {head.modality} reads no text encoder: nothing to fine-tune"
        )
    vision = None
    if encoders.train_vision:
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
        encoder = vision_encoder_like(
            inputs.vision, dict(identity.get(f"vision:{inputs.vision}", {})), "patches" in needs, device
        )
        vision = TrainableVision(encoder, "patches" in needs)
    model = EndToEnd(text, head, vision, inputs.knowledge_hints)
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


class LiveEncoders:
    """The trainer's task for a head on live encoders: features computed per batch with
    gradients, frozen parameters (a LoRA base) left out of the optimizer and the snapshot."""

    def __init__(self, model: EndToEnd, extras: dict[str, Any], config: TrainConfig) -> None:
        self.module = model
        self.head = model.head
        self.data: dict[str, SplitData] = extras["data"]
        self.train_data = limit_split(self.data["train"], config.limit)
        self.needs: frozenset[str] = extras["needs"]
        self.vocab = extras["vocab"]
        self.method = model.text[0].method if len(model.text) else "full"
        self.starts_trained = (config.encoders or EncoderTraining()).init == "frozen"
        self.n_train = len(self.train_data)
        self._train = Batcher(self.train_data, self.head.tags, self.vocab, frozenset(self.needs - {"text"}))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.module.parameter_groups()

    def head_learning_rates(self) -> dict[str, float]:
        return {}  # the fine-tuning presets hold every component's rate

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        return self._train.batches(batch_size, generator)

    def loss(self, batch: Batch, weights: Tensor | None) -> Tensor:
        return self.module.loss(batch, self.train_data)

    def dev_tags(self, batch_size: int) -> list[list[str]]:
        return tags_of(self.module, self.data["dev"], self.vocab, self.needs, batch_size)

    def dev_gold(self) -> list[list[str]]:
        return self.data["dev"].tags

    def train_tags(self) -> list[Any]:
        return self._train.tags

    def clip_parameters(self) -> list[nn.Parameter]:
        return [p for ps in self.parameter_groups().values() for p in ps]

    def snapshot(self) -> dict[str, Tensor]:
        """The tensors training changes: trainable parameters and the head's buffers."""
        names = {n for n, p in self.module.named_parameters() if p.requires_grad}
        names |= {f"head.{n}" for n, _ in self.module.head.named_buffers()}
        return {n: t.detach().clone() for n, t in self.module.state_dict().items() if n in names}

    def restore(self, state: dict[str, Tensor]) -> None:
        self.module.load_state_dict(state, strict=False)


def tags_of(
    model: EndToEnd, data: SplitData, vocab: Any, needs: frozenset[str], batch_size: int
) -> list[list[str]]:
    """Tags of a split through the encoders as they are now (their ``encode``) and the head."""
    featurized = model.featurized(data)
    return predict_tags(model.head, Batcher(featurized, model.head.tags, vocab, needs), batch_size)


def evaluate_split(
    model: EndToEnd, data: SplitData, vocab: Any, needs: frozenset[str], batch_size: int
) -> tuple[dict[str, object], list[list[str]]]:
    predictions = tags_of(model, data, vocab, needs, batch_size)
    return all_scores(data.tags, predictions), predictions


def run(
    spec: RunSpec,
    config: TrainConfig,
    cache_root: Path,
    out: Path | None,
    head_init: Path | None,
    progress_for: Callable[[int], Progress] | None = None,
    note: Callable[[str], None] = lambda _m: None,
    describe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build, train (:func:`heads.trainer.fit`), score dev and test, save; returns the run record
    (``run.json``). ``describe`` is the fine-tuning settings as the record names them."""
    started = time.perf_counter()
    seed_everything(config.seed)
    encoders = config.encoders or EncoderTraining()
    model, extras, identity = build_model(
        spec, config, cache_root, head_init if encoders.init == "frozen" else None, note
    )
    task = LiveEncoders(model, extras, config)
    progress = progress_for(optimizer_steps(task.n_train, config)) if progress_for else None
    result = fit(task, config, progress)
    data = extras["data"]
    scores = {
        split: evaluate_split(model, data[split], extras["vocab"], extras["needs"], config.eval_batch)[0]
        for split in ("dev", "test")
    }
    inputs = extras["inputs"]
    fine_tune = (describe or config.describe()) | {"method": task.method if len(model.text) else None}
    record = {
        "head": spec.head,
        "modality": model.head.modality,
        "inputs": inputs.describe(),
        "hyper": asdict(model.head.hyper),
        "fine_tune": fine_tune,
        "seed": config.seed,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "stop_reason": result.stop_reason,
        "history": result.history,
        "train_seconds": result.seconds,  # a resumed run's earlier epochs included
        "resumed_after": result.resumed_after,
        "optimizer_steps": result.optimizer_steps,
        "learning_rates": result.learning_rates,
        "precision": result.precision,
        "train_examples": result.train_examples,
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
            "train_config": {"fine_tune": record["fine_tune"], "learning_rates": result.learning_rates},
            "vocab": extras["vocab"].to_json() if extras["vocab"] else None,
        }
        finetuned.save(out, model, saved, merge=encoders.merge)
        atomic_write_text(out / "run.json", json.dumps(record, indent=1, ensure_ascii=False, default=str))
    return record
