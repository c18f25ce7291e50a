"""One ``featurize`` run: every vision encoder, then every text encoder, with and without each
image-derived context, over every split; each result is a cache entry found or built."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from featurize.build import (
    DEFAULT_CHUNK_SIZE,
    BuildResult,
    TextContext,
    build_text_entry,
    note_printer,
    peak_memory_mib,
)
from featurize.cache.image_features import ImageFeatures
from featurize.cache.store import FeatureStore
from featurize.contexts import canonical, context_parts, default_budget, join_parts
from featurize.datasets import Dataset
from featurize.document_context import neighbour_texts
from featurize.engines import KIND_TEXT, KIND_VISION, EncoderRecipe, Engine, EngineOptions
from featurize.errors import ConfigError
from featurize.image_entries import DEFAULT_IMAGE_CHUNK, SplitImages, build_image_entry
from featurize.knowledge import join_knowledge
from featurize.ray_engine import open_engine
from featurize.text import build_text_encoder
from featurize.text.transformer import WordFeatureOptions
from featurize.vision import VISION_ENCODERS, build_vision_encoder
from featurize.vision.encoder import VisionOptions


@dataclass
class RunPlan:
    """``contexts``: kinds of featurize.contexts, or several joined with ``+``;
    ``context_budget``: subwords of each read at most (None: each kind's default);
    ``knowledge``: id -> text, read from the knowledge file (``--context knowledge``)."""

    text: list[str]
    vision: list[str] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)
    word_options: WordFeatureOptions = field(default_factory=WordFeatureOptions)
    vision_options: VisionOptions = field(default_factory=VisionOptions)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    image_chunk_size: int = DEFAULT_IMAGE_CHUNK
    context_budget: int | None = None
    knowledge: dict[str, str] | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)  # where chunks are computed

    def __post_init__(self) -> None:
        self.contexts = [canonical(c) for c in self.contexts]
        if self.context_budget is not None and self.context_budget < 1:
            raise ConfigError("--context-budget must be at least 1 subword")
        if any("knowledge" in context_parts(c) for c in self.contexts) and self.knowledge is None:
            raise ConfigError("--context knowledge: no knowledge file was read (--knowledge FILE)")

    def budget(self, context: str) -> int | None:
        return self.context_budget if self.context_budget is not None else default_budget(context)


def _say(console: Console, result: BuildResult, unit: str) -> None:
    if result.cached:
        console.print(f"  cached: {result.path} ({result.words:,} {unit}, no model loaded)")
    else:
        console.print(
            f"  wrote {result.path}: {result.words:,} {unit} in {result.seconds:.1f} s "
            f"({result.words_per_second:,.1f} {unit}/s)"
        )


def _label_words(names: list[str]) -> str:
    # ImageNet names list synonyms ("tabby, tabby cat"): the first is the label word.
    return ", ".join(name.split(",")[0].strip() for name in names)


def _gives_labels(spec: str) -> bool:
    return VISION_ENCODERS.trait(spec.split("=")[0], "gives") == "labels"


def run(dataset: Dataset, plan: RunPlan, store: FeatureStore, console: Console) -> dict[str, list[Path]]:
    with open_engine(plan.engine, console) as engine:  # --engine: here, or workers on Ray
        return _run(dataset, plan, store, console, engine)


def _run(
    dataset: Dataset, plan: RunPlan, store: FeatureStore, console: Console, engine: Engine
) -> dict[str, list[Path]]:
    started = time.perf_counter()
    store.clean(note_printer(console))  # what killed runs left: temporaries, lock files, staging
    written: dict[str, list[Path]] = {}
    label_entries: dict[str, Path] = {}  # per split, the image entry holding label words

    vision = list(plan.vision)
    wants_labels = any("labels" in context_parts(c) for c in plan.contexts)
    if wants_labels and not any(_gives_labels(v) for v in vision):
        vision.append("labels")  # the label words of the images are this context's input
    for spec in vision:
        encoder = build_vision_encoder(spec, plan.vision_options)
        workers = engine.workers(EncoderRecipe.of(KIND_VISION, spec, plan.vision_options, encoder))
        for split in dataset.splits:
            found = SplitImages.of(dataset, split)
            if not found.files:
                console.print(
                    f"  [yellow]{encoder.name}: no image of {dataset.name}/{split} was found[/] "
                    f"({found.missing:,} missing): skipped. Pass --images DIR where they are."
                )
                continue
            result = build_image_entry(
                store, dataset, split, encoder, console, plan.image_chunk_size, workers=workers
            )
            _say(console, result, "images")
            if _gives_labels(spec):
                label_entries[split] = result.path
            written.setdefault(f"vision:{spec}", []).append(result.path)

    def kind_texts(kind: str, split: str) -> list[str | None] | None:
        examples = dataset.splits[split].examples
        if kind == "captions":
            return [e.caption for e in examples]
        if kind == "neighbours":
            return neighbour_texts([e.id for e in examples], [e.words for e in examples])
        if kind == "knowledge":
            assert plan.knowledge is not None
            return join_knowledge(examples, plan.knowledge).texts
        if split in label_entries:
            labels = ImageFeatures.load(label_entries[split])
            return [_label_words(labels.label_words(i)) or None for i in range(len(examples))]
        return None  # label words of a split without images: no such context

    split_contexts: dict[str, list[TextContext | None]] = {}
    for split in dataset.splits:
        split_contexts[split] = [None]
        for name in plan.contexts:
            parts = [kind_texts(kind, split) for kind in context_parts(name)]
            if any(p is None for p in parts):
                continue
            texts = join_parts([p for p in parts if p is not None])
            split_contexts[split].append(TextContext(name, texts, plan.budget(name)))
            if "knowledge" in context_parts(name):
                with_text = sum(t is not None for t in texts)
                console.print(
                    f"  {dataset.name}/{split}: {name} for {with_text:,} of {len(texts):,} examples"
                    + (
                        f"; {len(texts) - with_text:,} without (an empty context)"
                        if with_text < len(texts)
                        else ""
                    )
                )

    total_words = 0
    total_subwords = 0
    for spec in plan.text:
        encoder = build_text_encoder(spec, plan.word_options)
        workers = engine.workers(EncoderRecipe.of(KIND_TEXT, spec, plan.word_options, encoder))
        for split in dataset.splits:
            for context in split_contexts[split]:
                if context is not None and not any(context.texts):
                    console.print(
                        f"  [yellow]{dataset.name}/{split}: no example has {context.kind}[/]: skipped"
                    )
                    continue
                before = replace(encoder.stats)
                result = build_text_entry(
                    store, dataset, split, encoder, console, plan.chunk_size, context, workers=workers
                )
                for name, value in (result.counts or {}).items():
                    if hasattr(before, name):  # the whole entry's: chunks of an interrupted run too
                        setattr(encoder.stats, name, getattr(before, name) + value)
                if context is not None:  # the same words again: count them once, with the plain entry
                    encoder.stats = replace(
                        before,
                        context_truncated=encoder.stats.context_truncated,
                        input_subwords=encoder.stats.input_subwords,
                    )
                _say(console, result, "words")
                total_words += 0 if result.cached else result.words
                written.setdefault(f"text:{spec}", []).append(result.path)
        stats = encoder.stats
        total_subwords += stats.input_subwords
        if stats.empty_words:
            console.print(
                f"  {encoder.name}: {stats.empty_words} words had no subwords: read as the unknown token"
            )
        if stats.windowed_examples:
            console.print(
                f"  {encoder.name}: {stats.windowed_examples} examples longer than the model were read in "
                f"{stats.windows} overlapping windows"
            )
        if stats.context_truncated:
            console.print(
                f"  {encoder.name}: {stats.context_truncated:,} second segments were cut to their budget "
                "(--context-budget; half a window at most), their first subwords kept"
            )
    wall = time.perf_counter() - started
    rate = f", {total_words / wall:,.0f} words/s" if total_words else ""
    if total_subwords:
        rate += f", {total_subwords / wall:,.0f} subwords/s (second segments included)"
    console.print(f"[bold]done[/] in {wall:.1f} s wall{rate}, peak memory {peak_memory_mib():,.0f} MiB")
    return written
