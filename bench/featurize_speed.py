"""Encoder speed: the toolkit's batched path against a naive baseline, measured in one run.

Each configuration runs in a fresh process (so its peak memory is its own), loads the model
outside the timed part, and encodes the same examples. The naive baseline is one example at a
time, fp32, in file order. bf16 is reported with the cosine of its word vectors to fp32's,
so it is only used where that stays within tolerance.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from featurize.text import build_text_encoder
from featurize.text.transformer import WordFeatureOptions


@dataclass(frozen=True)
class SpeedConfig:
    name: str
    batch_size: int
    sort_by_length: bool
    bf16: bool


CONFIGS = [
    SpeedConfig("naive: 1 example at a time, fp32, file order", 1, False, False),
    SpeedConfig("toolkit: batch 32, length-sorted, fp32", 32, True, False),
    SpeedConfig("toolkit: batch 32, length-sorted, bf16", 32, True, True),
]


def _measure(encoder_name: str, layers: str, config: SpeedConfig, sentences: list[list[str]]) -> dict:
    options = WordFeatureOptions(
        layers=layers, batch_size=config.batch_size, sort_by_length=config.sort_by_length, bf16=config.bf16
    )
    encoder = build_text_encoder(encoder_name, options)
    encoder.load()
    encoder.encode(sentences[:4])  # warm-up: first-call allocations are not the steady state
    started = time.perf_counter()
    features = encoder.encode(sentences)
    seconds = time.perf_counter() - started
    words = sum(len(s) for s in sentences)
    return {
        "seconds": seconds,
        "words_per_second": words / seconds,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "features": np.concatenate(features),
    }


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(norms, 1e-12)


def measure_text_encoder(encoder_name: str, layers: str, sentences: list[list[str]]) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    results = []
    for config in CONFIGS:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            result = pool.submit(_measure, encoder_name, layers, config, sentences).result()
        results.append({"config": config, **result})
    baseline = results[0]
    reference = results[1]["features"]
    rows = []
    for result in results:
        cosine = cosine_rows(result["features"], reference)
        rows.append(
            {
                "encoder": encoder_name,
                "configuration": result["config"].name,
                "words": int(len(result["features"])),
                "seconds": round(result["seconds"], 2),
                "words/s": round(result["words_per_second"]),
                "× naive": round(result["words_per_second"] / baseline["words_per_second"], 2),
                "peak MiB": round(result["peak_mib"]),
                "cosine to fp32 (mean / min)": f"{cosine.mean():.5f} / {cosine.min():.5f}",
            }
        )
    return rows
