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
from collections.abc import Callable
from dataclasses import dataclass, replace
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

from featurize.cache.schema import SCHEMA_VERSION, read_attrs, write_strings
from featurize.cache.store import Chunk, EntryPlan, FeatureStore
from featurize.datasets import Dataset
from featurize.engines import ChunkWorkers, text_jobs
from featurize.example import Split
from featurize.labels import tag_order
from featurize.text.transformer import TransformerWordEncoder

DEFAULT_CHUNK_SIZE = 256
KIND_TEXT = "text"
# The encoder's counts kept with each chunk and summed over the entry at publish (attribute
# ``json:counts``), so a resumed build reports them for the whole entry.
ENTRY_COUNTS = ("empty_words", "windowed_examples", "windows", "context_truncated")


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
    counts: dict[str, int] | None = None  # the whole entry's encoder counts (None: not recorded)


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


def entry_counts(path: Path) -> dict[str, int] | None:
    """The encoder counts a published entry records for all its chunks (None: not recorded)."""
    with h5py.File(path, "r") as handle:
        counts = read_attrs(handle).get("counts")
    return {k: int(v) for k, v in counts.items()} if isinstance(counts, dict) else None


def note_printer(console: Console) -> Callable[[str], None]:
    """The store's notes (a damaged entry removed) printed as they are, markup aside."""
    return lambda message: console.print(message, markup=False, highlight=False)


def encode_chunk(
    encoder: TransformerWordEncoder,
    sentences: list[list[str]],
    texts: list[str | None] | None,
    budget: int | None,
    progress: Callable[[int], None] | None = None,
) -> Chunk:
    """One chunk's word vectors and encoder counts: the ``compute`` of a text entry, run by this
    process or by an engine's worker (featurize.engines) alike."""
    encoder.context_budget = budget
    before = replace(encoder.stats)
    arrays = encoder.encode(sentences, progress, texts)
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    counts = {k: getattr(encoder.stats, k) - getattr(before, k) for k in ENTRY_COUNTS}
    return Chunk({"words": (np.concatenate(arrays).astype(np.float32), lengths)}, counts)


def build_text_entry(
    store: FeatureStore,
    dataset: Dataset,
    split: str,
    encoder: TransformerWordEncoder,
    console: Console,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    context: TextContext | None = None,
    workers: ChunkWorkers | None = None,
) -> BuildResult:
    """``workers``: an engine's workers that compute the chunks (featurize.engines; None: this
    process does). Either way this process writes the chunk files and publishes the entry."""
    plan = text_plan(dataset, split, encoder, chunk_size, context)
    examples = dataset.splits[split].examples
    n_words = sum(len(e.words) for e in examples)
    started = time.perf_counter()
    if store.is_published(plan, note=note_printer(console)):
        return BuildResult(store.path(plan), True, n_words, time.perf_counter() - started, 0.0, 0)

    build = store.begin(plan)
    pending = build.pending()
    resumed = plan.n_chunks - len(pending)
    if resumed:
        console.print(f"  resuming: {resumed}/{plan.n_chunks} chunks already written")
    todo_words = sum(len(examples[i].words) for c in pending for i in plan.chunk_range(c))

    label = f"{dataset.name}/{split} {encoder.name}{'+' + context.kind if context else ''}"
    if workers is not None and todo_words:  # elsewhere; the local loop below then finds none pending
        workers.run(build, text_jobs(examples, context, encoder, label))
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    elsewhere = not todo_words or workers is not None  # nothing for this bar to count
    with Progress(*columns, console=console, transient=False, disable=elsewhere) as progress:
        task = progress.add_task("words", total=todo_words)

        def compute(items: range) -> Chunk:
            sentences = [examples[i].words for i in items]
            texts = [context.texts[i] for i in items] if context else None
            budget = context.budget if context else None
            return encode_chunk(encoder, sentences, texts, budget, lambda n: progress.advance(task, n))

        build.run(compute)
    path = build.publish(lambda handle: _write_examples(dataset.splits[split], handle, context))
    seconds = time.perf_counter() - started
    rate = todo_words / seconds if seconds else 0.0
    return BuildResult(path, False, todo_words, seconds, rate, resumed, entry_counts(path))
