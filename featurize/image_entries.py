"""Turning the images of a dataset split and a vision encoder into a published cache entry.

Items are the distinct image files the split's examples point at, in order of first use.
The key covers the bytes of every image, so replacing a file gives a new entry. An image that
cannot be decoded is reported by name and owns no rows: its examples are text-only, as the
``keep`` missing-image policy says (``drop`` removed them already when the data was loaded).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from featurize.build import BuildResult, entry_key, library_versions, note_printer, slug
from featurize.cache.schema import write_strings
from featurize.cache.store import EntryPlan, FeatureStore
from featurize.datasets import Dataset
from featurize.engines import ChunkWorkers, image_jobs
from featurize.errors import MnerError
from featurize.vision.encoder import VisionEncoder
from featurize.vision.images import load_image

KIND_IMAGE = "image"
DEFAULT_IMAGE_CHUNK = 64
OK, UNREADABLE = 1, 2


@dataclass
class SplitImages:
    """The distinct image files of a split and, per example, which of them it uses."""

    files: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    example_images: list[list[int]] = field(default_factory=list)
    missing: int = 0

    @classmethod
    def of(cls, dataset: Dataset, split: str) -> SplitImages:
        images = cls()
        index: dict[str, int] = {}
        for example in dataset.splits[split].examples:
            used = []
            for image_id, path in zip(
                example.image_ids, example.image_paths or [None] * len(example.image_ids)
            ):
                if path is None:
                    images.missing += 1
                    continue
                if path not in index:
                    index[path] = len(images.files)
                    images.files.append(path)
                    images.ids.append(image_id)
                used.append(index[path])
            images.example_images.append(used)
        return images

    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
        return digest.hexdigest()


def image_plan(
    dataset: Dataset, split: str, images: SplitImages, encoder: VisionEncoder, chunk_size: int
) -> EntryPlan:
    identity = encoder.identity()
    fingerprint = dataset.fingerprints[split]
    key = entry_key(
        {
            "kind": KIND_IMAGE,
            "dataset_fingerprint": fingerprint,
            "images_sha256": images.content_hash(),
            "encoder": identity,
        }
    )
    metadata = {
        "kind": KIND_IMAGE,
        "dataset": dataset.name,
        "split": split,
        "dataset_fingerprint": fingerprint,
        "reader_options": dataset.options,
        "vision_encoder": identity,
        "encoder": encoder.name,
        "library_versions": library_versions(),
    }
    relpath = f"{slug(dataset.name)}/{split}/image-{slug(encoder.name)}-{key[:16]}.h5"
    return EntryPlan(key, relpath, len(images.files), chunk_size, metadata)


def encode_images(
    encoder: VisionEncoder,
    files: list[str],
    items: range,
    console: Console,
    unreadable: list[str],
    read: Callable[[str], Image.Image] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One chunk's arrays: the ``compute`` of an image entry, run by this process or by an
    engine's worker (featurize.engines) alike; ``read`` decodes a file (default: from disk)."""
    pictures, status = [], np.full(len(items), OK, dtype=np.int8)
    for row, item in enumerate(items):
        try:
            pictures.append(load_image(Path(files[item])) if read is None else read(files[item]))
        except MnerError as err:
            console.print(f"  [yellow]unreadable image[/] {err}: its examples stay text-only")
            unreadable.append(files[item])
            status[row] = UNREADABLE
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {"status": (status, np.ones(len(items), np.int64))}
    if pictures:
        ok = (status == OK).astype(np.int64)
        for name, values in encoder.encode(pictures).items():
            per_image = values.shape[1] if name == "patches" else 1
            rows = values.reshape(-1, *values.shape[2:]) if name == "patches" else values
            arrays[name] = (rows, ok * per_image)
    return arrays


def _write_index(
    dataset: Dataset, split: str, images: SplitImages, encoder: VisionEncoder, handle: h5py.File
) -> None:
    write_strings(handle, "strings/image_files", images.files)
    write_strings(handle, "strings/image_ids", images.ids)
    write_strings(handle, "strings/example_ids", [e.id for e in dataset.splits[split].examples])
    flat = [i for used in images.example_images for i in used]
    offsets = np.zeros(len(images.example_images) + 1, np.int64)
    np.cumsum([len(u) for u in images.example_images], out=offsets[1:])
    handle.create_dataset("example_images/items", data=np.array(flat, np.int64))
    handle.create_dataset("example_images/offsets", data=offsets)
    names = encoder.class_names()
    if names is not None:
        handle.attrs["json:class_names"] = json.dumps(names)
    status = handle["features/status"][()]
    handle.attrs["n_images"] = len(images.files)
    handle.attrs["n_unreadable"] = int((status == UNREADABLE).sum())
    handle.attrs["n_missing_references"] = images.missing


def build_image_entry(
    store: FeatureStore,
    dataset: Dataset,
    split: str,
    encoder: VisionEncoder,
    console: Console,
    chunk_size: int = DEFAULT_IMAGE_CHUNK,
    workers: ChunkWorkers | None = None,
) -> BuildResult:
    """``workers``: an engine's workers that compute the chunks (featurize.engines; None: this
    process does). Either way this process writes the chunk files and publishes the entry."""
    images = SplitImages.of(dataset, split)
    started = time.perf_counter()
    plan = image_plan(dataset, split, images, encoder, chunk_size)
    if store.is_published(plan, note=note_printer(console)):
        return BuildResult(store.path(plan), True, len(images.files), time.perf_counter() - started, 0.0, 0)
    build = store.begin(plan)
    pending = build.pending()
    resumed = plan.n_chunks - len(pending)
    if resumed:
        console.print(f"  resuming: {resumed}/{plan.n_chunks} chunks already written")
    todo = sum(len(plan.chunk_range(c)) for c in pending)
    unreadable: list[str] = []
    if workers is not None and todo:  # elsewhere; the local loop below then finds none pending
        workers.run(build, image_jobs(images.files, console, f"{dataset.name}/{split} {encoder.name}"))
    columns = (
        TextColumn(f"{dataset.name}/{split} {encoder.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not todo or workers is not None) as progress:
        task = progress.add_task("images", total=todo)

        def compute(items: range) -> dict[str, tuple[np.ndarray, np.ndarray]]:
            arrays = encode_images(encoder, images.files, items, console, unreadable)
            progress.advance(task, len(items))
            return arrays

        build.run(compute)
    path = build.publish(lambda handle: _write_index(dataset, split, images, encoder, handle))
    seconds = time.perf_counter() - started
    return BuildResult(path, False, todo, seconds, todo / seconds if seconds else 0.0, resumed)
