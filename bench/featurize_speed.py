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
) -> Report:
    """``bench featurize``: every encoder's configurations against its naive baseline, one report."""
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.images import IMAGE_SUFFIXES

    report = Report("Encoder speed", COLUMNS, command=command)
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
    return report


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
