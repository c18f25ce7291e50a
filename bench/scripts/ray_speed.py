"""featurize's local engine against Ray workers on this machine, in one run (docs/distributed.md).

    MNER_DATA_DIR=../shared/data .venv/bin/python bench/scripts/ray_speed.py --text mpnet --tweets 2048

The first TWEETS tweets of Twitter-2017 train are featurized three times into temporary caches:
local, on WORKERS Ray actors (a Ray started here), local again (the machine's noise between the
two), each with its model already loaded (Ray: timed from the first worker ready). Prints the
chunk sizes, chunks/s and words/s of each, and whether the entries are equal to the bit.
Writes nothing outside a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from rich.console import Console

from featurize.build import build_text_entry
from featurize.cache.store import FeatureStore
from featurize.datasets import LoadOptions, data_dir, load_dataset
from featurize.engines import KIND_TEXT, EncoderRecipe, EngineOptions
from featurize.ray_engine import RayEngine
from featurize.text import build_text_encoder
from featurize.text.transformer import WordFeatureOptions


def _slice(folder: Path, tweets: int) -> Path:
    """The first ``tweets`` tweets of Twitter-2017 train as a UMT folder (train split only)."""
    source = (data_dir(None) / "twitter2017" / "train.txt").read_text(encoding="utf-8")
    blocks = [b for b in source.split("IMGID:") if b.strip()][:tweets]
    folder.mkdir(parents=True)
    (folder / "train.txt").write_text("".join("IMGID:" + b for b in blocks), encoding="utf-8")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", default="mpnet")
    parser.add_argument("--tweets", type=int, default=2048)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    quiet = Console(quiet=True)
    with tempfile.TemporaryDirectory(prefix="mner-ray-speed-") as tmp:
        root = Path(tmp)
        dataset = load_dataset(str(_slice(root / "t17slice", args.tweets)), LoadOptions(format="umt"), None)
        split = next(iter(dataset.splits))
        words = sum(len(e.words) for e in dataset.splits[split].examples)
        options = WordFeatureOptions()
        encoder = build_text_encoder(args.text, options)
        started = time.perf_counter()
        encoder.load()
        load_local = time.perf_counter() - started
        rows: list[tuple[str, int, float, float]] = []
        paths: dict[str, Path] = {}

        def local(name: str) -> None:
            t0 = time.perf_counter()
            result = build_text_entry(
                FeatureStore(root / name), dataset, split, encoder, quiet, args.chunk_size
            )
            seconds = time.perf_counter() - t0
            paths[name] = result.path
            rows.append((f"local engine, 1 process x {torch_threads()} torch threads", 0, seconds, 0.0))

        local("local-1")
        engine = RayEngine(EngineOptions("ray", workers=args.workers), quiet)
        try:
            t0 = time.perf_counter()
            engine.connect()
            ray_start = time.perf_counter() - t0
            workers = engine.workers(EncoderRecipe.of(KIND_TEXT, args.text, options, encoder))
            result = build_text_entry(
                FeatureStore(root / "ray"), dataset, split, encoder, quiet, args.chunk_size, workers=workers
            )
            paths["ray"] = result.path
            run = workers.last_run
            loads = [float(i["load_seconds"]) for i in workers.info.values()]  # type: ignore[arg-type]
            label = f"Ray, {args.workers} workers x 1 torch thread"
            rows.append((label, 1, run["seconds"], max(loads)))
        finally:
            engine.close()
        local("local-2")

        with h5py.File(paths["local-1"]) as handle:
            offsets = handle["offsets/words"][()]
            features = handle["features/words"][()]
            dim = features.shape[1]
        bounds = list(range(0, len(offsets) - 1, args.chunk_size)) + [len(offsets) - 1]
        chunk_rows = [int(offsets[b] - offsets[a]) for a, b in zip(bounds, bounds[1:])]
        mib = [r * dim * 4 / 2**20 for r in chunk_rows]
        with h5py.File(paths["ray"]) as handle:
            equal = bool(np.array_equal(handle["features/words"][()], features))
        n_chunks = len(chunk_rows)
        print(f"# {args.text}: {args.tweets} T17 train tweets, {words:,} words, chunks of {args.chunk_size}")
        print(
            f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; local model load "
            f"{load_local:.1f} s; Ray start {ray_start:.1f} s"
        )
        print(
            f"chunk arrays (float32 {dim}-d word vectors): {np.mean(mib):.1f} MiB mean, {max(mib):.1f} MiB max, "
            f"{np.mean(chunk_rows):,.0f} words mean over {n_chunks} chunks"
        )
        print(f"Ray entry equal to the local one to the bit: {equal}")
        print("| run | seconds | chunks/s | words/s | model load on the workers (s) |")
        print("|---|---|---|---|---|")
        for label, is_ray, seconds, load in rows:
            shown = f"{load:.1f}" if is_ray else "-"
            print(
                f"| {label} | {seconds:.1f} | {n_chunks / seconds:.3f} | {words / seconds:,.0f} | {shown} |"
            )
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
