"""Encoder speed: the toolkit's batched path against a naive baseline, measured in one run.

Each configuration runs in a fresh process (so its peak memory is its own), loads the model
outside the timed part, and encodes the same inputs. The naive baseline is one input at a
time, fp32, in file order. bf16 and 8-bit rows carry the cosine of their vectors to the
batched fp32 row's, so a faster row is only worth taking where that stays close to 1.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurize.errors import ConfigError
from heads.report_table import Report


@dataclass(frozen=True)
class SpeedConfig:
    name: str
    batch_size: int
    sort_by_length: bool = True
    bf16: bool = False
    weights_format: str = "fp32"


TEXT_CONFIGS = [
    SpeedConfig("naive: 1 example at a time, fp32, file order", 1, sort_by_length=False),
    SpeedConfig("toolkit: batch 32, length-sorted, fp32", 32),
    SpeedConfig("toolkit: batch 32, length-sorted, bf16 autocast", 32, bf16=True),
]
LLM_CONFIGS = [
    SpeedConfig("toolkit: batch 32, length-sorted, 8-bit weights", 32, weights_format="8bit"),
    SpeedConfig(
        "toolkit: batch 32, length-sorted, 8-bit weights, bf16 autocast", 32, bf16=True, weights_format="8bit"
    ),
    SpeedConfig("toolkit: batch 32, length-sorted, bf16 weights", 32, weights_format="bf16", bf16=True),
]
VISION_CONFIGS = [
    SpeedConfig("naive: 1 image at a time, fp32", 1, sort_by_length=False),
    SpeedConfig("toolkit: the encoder's default batch, fp32", 0),
]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure_text(encoder_name: str, layers: str, config: SpeedConfig, sentences: list[list[str]]) -> dict:
    from featurize.text import build_text_encoder
    from featurize.text.transformer import WordFeatureOptions

    options = WordFeatureOptions(
        layers=layers,
        batch_size=config.batch_size,
        sort_by_length=config.sort_by_length,
        bf16=config.bf16,
        weights_format=config.weights_format,
    )
    encoder = build_text_encoder(encoder_name, options)
    encoder.load()
    encoder.encode(sentences[:4])  # warm-up: first-call allocations are not the steady state
    started = time.perf_counter()
    features = encoder.encode(sentences)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "units": sum(map(len, sentences)),
        "peak_mib": _peak_mib(),
        "features": np.concatenate(features),
    }


def _measure_vision(encoder_name: str, config: SpeedConfig, files: list[str]) -> dict:
    from featurize.vision import build_vision_encoder
    from featurize.vision.encoder import VisionOptions
    from featurize.vision.images import load_image

    encoder = build_vision_encoder(encoder_name, VisionOptions(batch_size=config.batch_size or None))
    images = [load_image(Path(f)) for f in files]
    encoder.load()
    encoder.encode(images[:1])
    started = time.perf_counter()
    arrays = encoder.encode(images)
    seconds = time.perf_counter() - started
    vectors = arrays.get("pooled", arrays.get("top5_probs"))
    return {
        "seconds": seconds,
        "units": len(images),
        "peak_mib": _peak_mib(),
        "features": vectors.astype(np.float32),
    }


@dataclass(frozen=True)
class ContextSpeedConfig:
    """A second segment read the way featurize reads it, batches ordered one way or the other."""

    name: str
    context: str
    sort_by: str  # "words" (the order before budgets) or "input" (second segment included)
    budget: int | None = None


def _measure_context(
    encoder_name: str,
    layers: str,
    config: ContextSpeedConfig,
    sentences: list[list[str]],
    contexts: dict[str, list[str | None]],
) -> dict:
    from featurize.text import build_text_encoder
    from featurize.text.transformer import WordFeatureOptions

    options = WordFeatureOptions(layers=layers, batch_size=32, sort_by=config.sort_by, bf16=False)
    encoder = build_text_encoder(encoder_name, options)
    encoder.context_budget = config.budget
    texts = contexts[config.context]
    encoder.load()
    encoder.encode(sentences[:4], contexts=texts[:4])
    encoder.stats.input_subwords = 0
    started = time.perf_counter()
    features = encoder.encode(sentences, contexts=texts)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "units": sum(map(len, sentences)),
        "subwords": encoder.stats.input_subwords,
        "peak_mib": _peak_mib(),
        "features": np.concatenate(features),
    }


class _ContextBound:
    def __init__(self, encoder_name: str, layers: str, sentences: list[list[str]], contexts: dict) -> None:
        self.args = (encoder_name, layers)
        self.sentences, self.contexts = sentences, contexts

    def __call__(self, config: ContextSpeedConfig) -> dict:
        return _measure_context(*self.args, config, self.sentences, self.contexts)


def measure_contexts(
    encoder_name: str,
    layers: str,
    sentences: list[list[str]],
    contexts: dict[str, list[str | None]],
    budgets: dict[str, int | None],
) -> list[dict]:
    """Per context, batches ordered by the words only (before) and by the whole input (now), in
    fresh processes: words/s and subwords/s (second segment included), × the first row, and the
    cosine of each row's vectors to the same context's other order (the order must not change
    them)."""
    configs = []
    for name in contexts:
        for sort_by, what in (
            ("words", "ordered by the words only"),
            ("input", "ordered by the whole input"),
        ):
            label = f"--context {name} (budget {budgets[name] or 'half a window'}): batch 32, {what}"
            configs.append(ContextSpeedConfig(label, name, sort_by, budgets[name]))
    context = multiprocessing.get_context("spawn")
    measured = []
    for config in configs:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            measured.append(
                (
                    config,
                    pool.submit(_ContextBound(encoder_name, layers, sentences, contexts), config).result(),
                )
            )
    base = measured[0][1]["subwords"] / measured[0][1]["seconds"]
    rows = []
    for config, result in measured:
        partner = next(r for c, r in measured if c.context == config.context)
        cosine = cosine_rows(result["features"], partner["features"])
        per_subword = result["subwords"] / result["seconds"]
        rows.append(
            {
                "encoder": encoder_name,
                "configuration": config.name,
                "inputs": f"{result['units']:,} words, {result['subwords']:,} subwords read",
                "seconds": round(result["seconds"], 2),
                "per second": round(result["units"] / result["seconds"], 1),
                "subwords/s": round(per_subword),
                "× first row (subwords/s)": round(per_subword / base, 2),
                "peak MiB": round(result["peak_mib"]),
                "cosine to the same context's first order (mean / min)": f"{cosine.mean():.5f} / {cosine.min():.5f}",
            }
        )
    return rows


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(norms, 1e-12)


def _rows(encoder_name: str, unit: str, configs: list[SpeedConfig], measure) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    results = []
    for config in configs:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            result = pool.submit(measure, config).result()
        results.append({"config": config, **result})
    baseline_rate = results[0]["units"] / results[0]["seconds"]
    reference = results[1]["features"]
    rows = []
    for result in results:
        cosine = cosine_rows(result["features"], reference)
        rate = result["units"] / result["seconds"]
        rows.append(
            {
                "encoder": encoder_name,
                "configuration": result["config"].name,
                "inputs": f"{result['units']:,} {unit}",
                "seconds": round(result["seconds"], 2),
                "per second": round(rate, 1),
                "× naive": round(rate / baseline_rate, 2),
                "peak MiB": round(result["peak_mib"]),
                "cosine to batched fp32 (mean / min)": f"{cosine.mean():.5f} / {cosine.min():.5f}",
            }
        )
    return rows


def measure_text_encoder(encoder_name: str, layers: str, sentences: list[list[str]]) -> list[dict]:
    from featurize.text import TEXT_ENCODERS

    decoder = TEXT_ENCODERS.trait(encoder_name.split("=")[0], "decoder")
    configs = TEXT_CONFIGS + (LLM_CONFIGS if decoder else [])
    return _rows(
        encoder_name, "words", configs, _Bound(_measure_text, encoder_name, layers, sentences=sentences)
    )


def measure_vision_encoder(encoder_name: str, files: list[str]) -> list[dict]:
    return _rows(encoder_name, "images", VISION_CONFIGS, _Bound(_measure_vision, encoder_name, files=files))


class _Bound:
    """A picklable partial: the spawned worker gets the function and its fixed arguments."""

    def __init__(self, function, encoder_name: str, *args, **kwargs) -> None:
        self.function, self.encoder_name, self.args, self.kwargs = function, encoder_name, args, kwargs

    def __call__(self, config: SpeedConfig) -> dict:
        inputs = self.kwargs.get("sentences", self.kwargs.get("files"))
        return self.function(self.encoder_name, *self.args, config, inputs)


def speed_report(
    dataset: str,
    split: str,
    texts: list[str],
    visions: list[str],
    images: Path | None,
    layers: str,
    limit: int,
    data_dir: Path | None,
    command: str,
    contexts: list[str] | None = None,
    context_budget: int | None = None,
    knowledge: Path | None = None,
) -> list[Report]:
    """``bench featurize``: every encoder's configurations against its naive baseline, one report;
    with ``contexts``, a second report: each second segment read with the batches ordered by the
    words only and by the whole input, subwords/s side by side."""
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.images import IMAGE_SUFFIXES

    report = Report("Encoder speed", COLUMNS, command=command)
    reports = [report]
    if contexts:
        reports.append(
            _context_report(
                dataset, split, texts, layers, limit, data_dir, command, contexts, context_budget, knowledge
            )
        )
        texts = []
    if texts:
        loaded = load_dataset(dataset, LoadOptions(data_dir=data_dir), [split])
        examples = loaded.splits[split].examples
        sentences = [e.words for e in (examples[:limit] if limit else examples)]
        report.notes.append(
            f"Text: {dataset}/{split}, {len(sentences)} examples, {sum(map(len, sentences)):,} words."
        )
        for name in texts:
            report.rows += measure_text_encoder(name, layers, sentences)
    if visions:
        if images is None:
            raise ConfigError("--images: vision encoders need a folder of images (--images DIR)")
        files = sorted(str(p) for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        report.notes.append(f"Vision: {len(files)} images under {images}.")
        for name in visions:
            report.rows += measure_vision_encoder(name, files)
    report.notes.append(
        "Each configuration in a fresh process; model loading and a warm-up call are not timed."
    )
    report.notes.append(
        "peak MiB is the process's peak resident memory (Python, torch, model, inputs and outputs)."
    )
    return [r for r in reports if r.rows]


def _context_report(
    dataset: str,
    split: str,
    texts: list[str],
    layers: str,
    limit: int,
    data_dir: Path | None,
    command: str,
    contexts: list[str],
    context_budget: int | None,
    knowledge: Path | None,
) -> Report:
    from featurize.contexts import canonical, context_parts, default_budget, join_parts
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.datasets import data_dir as root_of
    from featurize.knowledge import join_knowledge, knowledge_file, read_knowledge

    loaded = load_dataset(dataset, LoadOptions(data_dir=data_dir), [split])
    examples = loaded.splits[split].examples
    examples = examples[:limit] if limit else examples
    read = None
    texts_by_context: dict[str, list[str | None]] = {}
    budgets: dict[str, int | None] = {}
    for name in (canonical(c) for c in contexts):
        parts = []
        for kind in context_parts(name):
            if kind == "captions":
                parts.append([e.caption for e in examples])
            elif kind == "knowledge":
                if read is None:
                    source = knowledge_file(dataset, loaded.spec.knowledge, root_of(data_dir), knowledge)
                    read = read_knowledge(source)
                parts.append(join_knowledge(examples, read).texts)
            else:
                raise ConfigError(f"bench featurize --context: captions and knowledge only, not {kind}")
        texts_by_context[name] = join_parts(parts)
        budgets[name] = context_budget if context_budget is not None else default_budget(name)
    sentences = [e.words for e in examples]
    report = Report("Second segments: speed per subword", CONTEXT_COLUMNS, command=command)
    for name in texts:
        report.rows += measure_contexts(name, layers, sentences, texts_by_context, budgets)
    report.notes += [
        f"Text: {dataset}/{split}, {len(sentences)} examples, {sum(map(len, sentences)):,} words; fp32.",
        "subwords read: the words' and the second segment's subwords (after the budget's cut), no special "
        "tokens. × first row compares subwords/s, so contexts of different lengths compare per unit of work.",
        "Each configuration in a fresh process; model loading and a warm-up call are not timed.",
    ]
    return report


CONTEXT_COLUMNS = [
    "encoder",
    "configuration",
    "inputs",
    "seconds",
    "per second",
    "subwords/s",
    "× first row (subwords/s)",
    "peak MiB",
    "cosine to the same context's first order (mean / min)",
]


COLUMNS = [
    "encoder",
    "configuration",
    "inputs",
    "seconds",
    "per second",
    "× naive",
    "peak MiB",
    "cosine to batched fp32 (mean / min)",
]
