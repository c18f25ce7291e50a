"""Where the chunks of a cache entry are computed: in this process (``--engine local``, the
default) or by long-lived workers on a Ray cluster (``--engine ray``, featurize.ray_engine).

Whatever the engine, the process that runs ``featurize`` (the *driver*) reads the data,
computes every key, writes every chunk file and publishes every entry
(featurize.cache.store): an engine only decides where a chunk's ``compute(items)`` runs. Its
workers get what they need through the engine (an :class:`EncoderRecipe` once, then one
payload per chunk: the chunk's words, or its image files' bytes) and send the arrays back the
same way, so they need no access to the cache or to the dataset's files.

A chunk's computation is the same function on both engines (featurize.build.encode_chunk,
featurize.image_entries.encode_images), so an entry has the same key and the same numbers
wherever its chunks were computed (on the same hardware and precision). This module holds what
the driver's side needs (no Ray in it); featurize.ray_engine the workers and ``open_engine``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from featurize.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from featurize.cache.store import Chunk, ChunkArrays, EntryBuild
    from featurize.example import Example
    from featurize.text.transformer import TransformerWordEncoder

ENGINES = ("local", "ray")
KIND_TEXT, KIND_VISION = "text", "vision"


@dataclass(frozen=True)
class EngineOptions:
    """``--engine``, ``--ray-address``, ``--workers``, ``--gpus-per-worker``.

    ``address``: a running Ray cluster (``auto``: the one this machine belongs to, or
    ``HOST:PORT``); None starts a Ray instance on this machine (on 127.0.0.1, no dashboard) and
    stops it afterwards. ``workers``: actors per encoder (None: as many as the cluster's CPUs,
    or its GPUs with ``gpus_per_worker``, allow). ``cpus_per_worker`` is also each worker's
    torch thread count."""

    name: str = "local"
    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ConfigError(f"--engine {self.name!r}: choose one of {', '.join(ENGINES)}")
        if self.name == "local" and (self.address or self.workers or self.gpus_per_worker):
            raise ConfigError("--ray-address, --workers and --gpus-per-worker go with --engine ray")
        if self.workers is not None and self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.gpus_per_worker < 0:
            raise ConfigError("--gpus-per-worker must not be negative")
        if self.cpus_per_worker <= 0:
            raise ConfigError("cpus per worker must be positive")


@dataclass(frozen=True)
class EncoderRecipe:
    """What a worker builds its encoder from (picklable, no model in it): the ``--text`` or
    ``--vision`` spec, its options, and the identity the driver computed the entry's key with.
    A worker whose encoder has another identity (other weights installed there, another
    precision) refuses to compute anything, so an entry never holds numbers its key does not
    describe."""

    kind: str  # "text" or "vision"
    spec: str
    options: Any  # WordFeatureOptions or VisionOptions
    identity: dict[str, object]

    @classmethod
    def of(cls, kind: str, spec: str, options: Any, encoder: Any) -> EncoderRecipe:
        if kind == KIND_TEXT:
            # bf16 "where native" is decided here, where the key is computed: a worker with
            # other hardware computes in the precision the key says.
            options = replace(options, bf16=encoder.options.use_bf16)
        return cls(kind, spec, options, encoder.identity())

    def build(self) -> Any:
        """The encoder, unloaded; a ConfigError if its identity is not the driver's."""
        if self.kind == KIND_TEXT:
            from featurize.text import build_text_encoder

            encoder = build_text_encoder(self.spec, self.options)
        else:
            from featurize.vision import build_vision_encoder

            encoder = build_vision_encoder(self.spec, self.options)
        found = encoder.identity()
        if found != self.identity:
            differ = sorted(
                k for k in set(found) | set(self.identity) if found.get(k) != self.identity.get(k)
            )
            raise ConfigError(
                f"{self.spec}: this worker's encoder differs from the driver's in "
                + ", ".join(f"{k} ({found.get(k)!r}, driver {self.identity.get(k)!r})" for k in differ)
                + ": install the same weights and versions on every node"
            )
        return encoder


@dataclass
class ChunkJobs:
    """What an engine needs to compute an entry's chunks elsewhere: ``payload(items)`` is sent
    to a worker (featurize.ray_engine.compute_chunk gets it), ``receive(answer)`` turns the worker's answer
    into what the chunk file holds (and does the driver's part: counts, messages); ``size``
    counts the items' units (words, images) for the progress bar."""

    label: str
    unit: str
    payload: Callable[[range], Any]
    size: Callable[[range], int]
    receive: Callable[[Any], Chunk | ChunkArrays]


class ChunkWorkers(Protocol):
    """An engine's workers for one encoder."""

    def run(self, build: EntryBuild, jobs: ChunkJobs) -> None:
        """Compute the entry's pending chunks and write each through ``build``."""


class Engine:
    """The local engine: no workers, every chunk is computed by the driver itself."""

    def workers(self, recipe: EncoderRecipe) -> ChunkWorkers | None:
        return None

    def close(self) -> None:
        pass


# -- the two kinds of chunks: what the driver sends, what a worker computes -------------------


def text_jobs(
    examples: list[Example], context: Any, encoder: TransformerWordEncoder, label: str
) -> ChunkJobs:
    """A text entry's chunks: each worker gets the chunk's words, its second segments and their
    budget, and answers with the chunk (vectors and counts) and the subwords it read."""

    def payload(items: range) -> tuple:
        texts = [context.texts[i] for i in items] if context is not None else None
        budget = context.budget if context is not None else None
        return ([examples[i].words for i in items], texts, budget)

    def receive(answer: tuple) -> Chunk:
        chunk, subwords = answer
        encoder.stats.input_subwords += subwords  # the run's subwords/s counts all workers
        return chunk

    return ChunkJobs(
        label, "words", payload, lambda items: sum(len(examples[i].words) for i in items), receive
    )


def image_jobs(files: list[str], console: Console, label: str) -> ChunkJobs:
    """An image entry's chunks: each worker gets the chunk's files' bytes (read here, so workers
    need no access to them) and answers with the arrays and its notes (unreadable images)."""

    def payload(items: range) -> tuple:
        chosen = [files[i] for i in items]
        return (chosen, [Path(f).read_bytes() for f in chosen])

    def receive(answer: tuple) -> ChunkArrays:
        arrays, notes = answer
        for line in notes:
            console.print(line, markup=False, highlight=False)
        return arrays

    return ChunkJobs(label, "images", payload, len, receive)
