"""One run: read the splits from the cache, build the head, train on train, choose on dev,
score dev and test, save the model and a JSON record of everything.

The record (``run.json``) holds the metrics of every split, the full config, the seed, the
epochs, the learning curve, wall time and peak memory: what the benchmark grid aggregates.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import heads.models  # noqa: F401  (registers the heads)
from featurize.atomic import atomic_write_text
from featurize.build import library_versions, peak_memory_mib
from featurize.errors import ConfigError
from featurize.labels import tag_order as order_tags
from heads import checkpoint
from heads.data import Batcher, SplitData, fill_missing_image_dims, load_split
from heads.inputs import EntryIndex, InputSpec, input_identity
from heads.metrics import METRIC_NOTES
from heads.tagger import HEADS, Dims, Tagger, hyper_from
from heads.train_config import TrainConfig
from heads.trainer import CachedFeatures, Progress, evaluate, fit, seed_everything
from heads.vocab import Vocabularies

SPLITS = ("train", "dev", "test")


@dataclass
class RunSpec:
    head: str
    inputs: InputSpec
    modality: str | None = None  # None: the head's first (its full) modality
    options: dict[str, str] = field(default_factory=dict)  # head hyperparameters, as --set k=v
    train: TrainConfig = field(default_factory=TrainConfig)
    stem: str | None = None  # Snowball language for heads with their own word embeddings
    min_count: int = 1


def tag_order(splits: list[SplitData]) -> list[str]:
    """Every tag of every split, O first, then by type and B before I (stable across runs)."""
    return order_tags({t for s in splits for seq in s.tags for t in seq} | {"O"})


def prepare(spec: RunSpec, cache_root: Path, splits: tuple[str, ...] = SPLITS):
    """Load the splits and build an untrained head; returns (model, batchers, splits, vocab)."""
    cls = HEADS.get(spec.head)
    hyper = hyper_from(cls.Hyper, dict(spec.options))
    modality = spec.modality or cls.modalities[0]
    if modality not in cls.modalities:
        raise ConfigError(f"head {spec.head} takes --modality {', '.join(cls.modalities)}, not {modality!r}")
    inputs = spec.inputs
    needs = cls.needs(hyper, modality, bool(inputs.text))
    if ("image" in needs or "patches" in needs or "label_ids" in needs) and not inputs.vision:
        raise ConfigError(f"head {spec.head} with --modality {modality} needs image features: add --vision")
    if "text" in needs and not inputs.text:
        raise ConfigError(
            f"head {spec.head} with --modality {modality} needs cached text features: add --text"
        )
    if not ({"image", "patches", "label_ids"} & needs):
        inputs = InputSpec(**(inputs.describe() | {"vision": None}))  # a text-only variant ignores images
    if "text" not in needs and inputs.context == "none":
        inputs = InputSpec(**(inputs.describe() | {"text": None}))  # heads with their own embeddings
    index = EntryIndex(cache_root)
    data = {s: load_split(index, inputs, s, need_patches="patches" in needs) for s in splits}
    if inputs.vision:
        fill_missing_image_dims(list(data.values()))
    vocab = None
    if needs & {"word_ids", "char_ids"}:
        vocab = Vocabularies.build(data["train"].words, stem=spec.stem, min_count=spec.min_count)
    tags = tag_order(list(data.values()))
    first = data["train"]
    dims = Dims(
        text=first.text_dim,
        image=first.image_dim if first.image is not None else 0,
        words=len(vocab.words) if vocab else 0,
        chars=len(vocab.chars) if vocab else 0,
    )
    seed_everything(spec.train.seed)  # the initial weights depend on the seed alone
    model = cls(tags, dims, hyper, modality)
    batchers = {s: Batcher(d, tags, vocab, needs) for s, d in data.items()}
    return model, batchers, data, vocab, index, inputs


def config_json(config: TrainConfig, model: Tagger | None = None) -> dict[str, object]:
    """The training settings a run record holds, with the learning rates they resolved to."""
    own = model.default_learning_rates() if model is not None else None
    return config.describe() | {"learning_rates": config.learning_rates(own)}


def run(
    spec: RunSpec, cache_root: Path, out: Path | None, on_epoch=None, quiet: bool = False, on_note=None
) -> dict[str, object]:
    """Train ``spec`` on the cache (the one trainer, :func:`heads.trainer.fit`), score dev and
    test, save the head and ``run.json`` into ``out``; returns the run record. ``on_epoch``
    gets each epoch's row, ``on_note`` the trainer's remarks (``quiet`` is for the families
    that draw their own progress)."""
    started = time.perf_counter()
    model, batchers, data, vocab, index, inputs = prepare(spec, cache_root)
    load_seconds = time.perf_counter() - started
    task = CachedFeatures(model, batchers["train"], batchers["dev"])
    progress = Progress()
    if on_epoch is not None:
        progress.on_epoch = on_epoch
    if on_note is not None:
        progress.on_note = on_note
    result = fit(task, spec.train, progress)
    scoring_started = time.perf_counter()
    scores = {s: evaluate(model, b, spec.train.eval_batch) for s, b in batchers.items() if s != "train"}
    score_seconds = time.perf_counter() - scoring_started
    record = {
        "head": spec.head,
        "modality": model.modality,
        "inputs": inputs.describe(),
        "hyper": asdict(model.hyper),
        "train_config": config_json(spec.train, model),
        "seed": spec.train.seed,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "halted_at": result.halted_at,
        "resumed_after": result.resumed_after,
        "history": result.history,
        "metrics": scores,
        "metric_notes": METRIC_NOTES,
        "train_seconds": result.seconds,
        "load_seconds": load_seconds,  # reading the cache and building the head
        "score_seconds": score_seconds,  # tagging dev and test with the chosen epoch
        "wall_seconds": time.perf_counter() - started,
        "peak_memory_mib": peak_memory_mib(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "entries": {s: d.entries for s, d in data.items()},
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "library_versions": library_versions(),
    }
    if out is not None:
        config = {
            "inputs": inputs.describe(),
            "input_identity": input_identity(index, data["train"]),
            "entries": record["entries"],
            "train_config": record["train_config"],
            "vocab": vocab.to_json() if vocab else None,
        }
        checkpoint.save(out, model, config)
        atomic_write_text(out / "run.json", json.dumps(record, indent=1, ensure_ascii=False))
    return record


def evaluate_saved(
    folder: Path,
    cache_root: Path,
    splits: tuple[str, ...],
    featurize: Callable[[SplitData], SplitData] | None = None,
    dataset: str | None = None,
) -> tuple[Tagger, dict[str, dict]]:
    """Score a saved head on cached splits of its dataset, or of ``dataset`` (another corpus read
    with the same inputs and label map: one of several it was trained on, say). ``featurize``
    recomputes a split's features first (a fine-tuned run's own encoders: ``heads.families``
    passes its predictor's)."""
    model, config = checkpoint.load(folder)
    inputs = InputSpec(**config["inputs"])  # type: ignore[arg-type]
    if dataset is not None:
        inputs = InputSpec(**(inputs.describe() | {"dataset": dataset}))
    cls = type(model)
    needs = cls.needs(model.hyper, model.modality, bool(inputs.text))
    index = EntryIndex(cache_root)
    data = {s: load_split(index, inputs, s, need_patches="patches" in needs) for s in splits}
    if inputs.vision:
        fill_missing_image_dims(list(data.values()), model.dims.image or None)
    vocab = checkpoint.vocabularies(config)
    if featurize is not None:
        data = {s: featurize(d) for s, d in data.items()}
    scores = {}
    for s, d in data.items():
        checkpoint.check_dims(config, d.text_dim, d.image_dim)
        scores[s] = evaluate(model, Batcher(d, model.tags, vocab, needs, foreign_tags=dataset is not None))
    return model, scores


def epoch_printer(console: Any) -> Callable[[dict[str, float]], None]:
    """``heads train``'s line per epoch (loss, dev scores, learning rate, time)."""

    def show(row: dict[str, float]) -> None:
        console.print(
            f"epoch {int(row['epoch']):3d}  loss {row['train_loss']:8.4f}  dev entity F1 "
            f"{100 * row['dev_entity_f1']:6.2f}  token macro F1 {100 * row['dev_token_macro_f1']:6.2f}  "
            f"lr {row['lr_max']:.1e}  {row['seconds']:6.1f} s"
        )

    return show
