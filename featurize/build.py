"""Turning a dataset split and a text encoder into a published cache entry.

The key is computed from the dataset fingerprint and the encoder's identity before any model
is loaded: an entry that exists is returned at once, and one that was interrupted resumes at
its first missing chunk.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from featurize.cache.schema import SCHEMA_VERSION, write_strings
from featurize.cache.store import EntryPlan, FeatureStore
from featurize.datasets import Dataset
from featurize.example import Split
from featurize.labels import tag_order
from featurize.text.transformer import TransformerWordEncoder

DEFAULT_CHUNK_SIZE = 256
KIND_TEXT = "text"


def library_versions() -> dict[str, str]:
    versions = {}
    for name in ("mner-toolkit", "torch", "transformers", "tokenizers", "h5py", "numpy"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def entry_key(fields: dict[str, object]) -> str:
    canonical = json.dumps({"schema_version": SCHEMA_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:48] or "x"


def peak_memory_mib() -> float:
    # ru_maxrss is KiB on Linux: the process's peak resident set, model and arrays included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class BuildResult:
    path: Path
    cached: bool
    words: int
    seconds: float
    words_per_second: float
    resumed_chunks: int


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} words/s" if speed else "- words/s", style="progress.data.speed")


@dataclass(frozen=True)
class TextContext:
    """Per-example text read as a second segment (``--context``: a kind of featurize.contexts,
    or several joined with ``+``), and the subwords of it read at most (``budget``; None: half a
    window). The key covers the texts' hash and the budget, so another knowledge file or
    another budget is another entry."""

    kind: str
    texts: list[str | None]
    budget: int | None = None

    def identity(self) -> dict[str, object]:
        digest = hashlib.sha256(json.dumps(self.texts, ensure_ascii=False).encode()).hexdigest()
        identity: dict[str, object] = {
            "kind": self.kind,
            "sha256": digest,
            "examples_with_context": sum(t is not None for t in self.texts),
        }
        if self.budget is not None:  # contexts made before budgets existed keep their keys
            identity["budget"] = self.budget
        return identity


def text_plan(
    dataset: Dataset,
    split: str,
    encoder: TransformerWordEncoder,
    chunk_size: int,
    context: TextContext | None = None,
) -> EntryPlan:
    identity = encoder.identity()
    fingerprint = dataset.fingerprints[split]
    fields = {"kind": KIND_TEXT, "dataset_fingerprint": fingerprint, "encoder": identity}
    if context is not None:
        fields["context"] = context.identity()
    key = entry_key(fields)
    n_items = len(dataset.splits[split].examples)
    metadata = {
        "kind": KIND_TEXT,
        "dataset": dataset.name,
        "split": split,
        "dataset_fingerprint": fingerprint,
        "reader_options": dataset.options,
        "sources": dataset.splits[split].sources,
        **identity,
        "context": context.kind if context else "none",
        "library_versions": library_versions(),
    }
    if context is not None:
        metadata["context_identity"] = context.identity()
        metadata["context_budget"] = context.budget
        metadata["examples_without_context"] = sum(t is None for t in context.texts)
    suffix = f"+{context.kind}" if context else ""
    relpath = f"{slug(dataset.name)}/{split}/text-{slug(encoder.name)}{suffix}-{key[:16]}.h5"
    return EntryPlan(key, relpath, n_items, chunk_size, metadata)


def _write_examples(split: Split, handle: h5py.File, context: TextContext | None = None) -> None:
    examples = split.examples
    write_strings(handle, "strings/example_ids", [e.id for e in examples])
    write_strings(handle, "strings/image_ids", ["\t".join(e.image_ids) for e in examples])
    write_strings(handle, "strings/captions", [e.caption or "" for e in examples])
    if context is not None:  # the second segment as read (before the budget's cut)
        write_strings(handle, "strings/contexts", [t or "" for t in context.texts])
    words = [w for e in examples for w in e.words]
    write_strings(handle, "strings/words", words)
    tags = [t for e in examples for t in e.labels]
    names = tag_order(tags)
    code = {t: i for i, t in enumerate(names)}
    labels = handle.create_dataset("labels/words", data=np.array([code[t] for t in tags], np.int16))
    labels.attrs["json:names"] = json.dumps(names)
    offsets = handle["offsets/words"][()]
    if offsets[-1] != len(words) or len(offsets) != len(examples) + 1:
        raise RuntimeError("feature rows do not line up with words")  # an encoder bug, not input
    handle.attrs["dim"] = int(handle["features/words"].shape[1])
    handle.attrs["n_words"] = len(words)


def build_text_entry(
    store: FeatureStore,
    dataset: Dataset,
    split: str,
    encoder: TransformerWordEncoder,
    console: Console,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    context: TextContext | None = None,
) -> BuildResult:
    plan = text_plan(dataset, split, encoder, chunk_size, context)
    examples = dataset.splits[split].examples
    n_words = sum(len(e.words) for e in examples)
    started = time.perf_counter()
    if store.is_published(plan):
        return BuildResult(store.path(plan), True, n_words, time.perf_counter() - started, 0.0, 0)

    build = store.begin(plan)
    pending = build.pending()
    resumed = plan.n_chunks - len(pending)
    if resumed:
        console.print(f"  resuming: {resumed}/{plan.n_chunks} chunks already written")
    todo_words = sum(len(examples[i].words) for c in pending for i in plan.chunk_range(c))

    columns = (
        TextColumn(f"{dataset.name}/{split} {encoder.name}{'+' + context.kind if context else ''}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False, disable=not todo_words) as progress:
        task = progress.add_task("words", total=todo_words)

        def compute(items: range) -> dict[str, tuple[np.ndarray, np.ndarray]]:
            sentences = [examples[i].words for i in items]
            texts = [context.texts[i] for i in items] if context else None
            encoder.context_budget = context.budget if context else None
            arrays = encoder.encode(sentences, lambda n: progress.advance(task, n), texts)
            lengths = np.array([len(a) for a in arrays], dtype=np.int64)
            return {"words": (np.concatenate(arrays).astype(np.float32), lengths)}

        build.run(compute)
    path = build.publish(lambda handle: _write_examples(dataset.splits[split], handle, context))
    seconds = time.perf_counter() - started
    return BuildResult(path, False, todo_words, seconds, todo_words / seconds if seconds else 0.0, resumed)
