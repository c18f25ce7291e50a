"""The experiment grid of ``bench heads``: which cells (dataset x head x inputs x seed) to run,
planned from what the feature cache holds, and why the others are skipped.

A cell is everything one ``heads train`` run needs. Its key hashes the whole configuration,
training settings included, so a finished cell is found again in the run store and a change
of any setting makes a new cell instead of silently reusing an old result.

Two grid shapes:
- the default: featurize's default text encoder (MiniLM), every head, and each kind of
  image-derived input on its own next to the head's text-only variant: image vectors (ViT
  if cached), label words (through the head's own LSTM, ``--vision labels``) and each cached
  context (captions or label words as a second text segment);
- ``--all``: every cached text encoder and every vision x context combination a head can read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import heads.models  # noqa: F401  (registers the heads)
from bench.grid_summary import config_label
from featurize.cache.image_features import ImageFeatures
from featurize.text import DEFAULT_TEXT_ENCODER as DEFAULT_TEXT
from heads.inputs import CONTEXTS, EntryIndex, InputSpec
from heads.tagger import HEADS
from heads.train_config import TrainConfig

# The grid's training settings (``bench heads`` defaults; ``bench finetune``'s frozen cells):
# fewer epochs and a shorter patience than ``heads train``, batch 64 and bf16 steps, measured
# to keep each cell's dev F1 within its seed spread at a third of the time (docs: bench).
GRID_TRAIN = TrainConfig(epochs=15, patience=2, batch_size=64, precision="bf16")
# One vision encoder per kind of image input in the default grid (the thesis's best image
# vectors, ViT, and the preprint's label words); --all or --vision takes every cached one.
DEFAULT_VISION = {"vector": "vit", "labels": "labels"}
SPLITS = ("train", "dev", "test")
IMAGE_NEEDS = frozenset({"image", "patches", "label_ids"})


@dataclass(frozen=True)
class Cell:
    dataset: str
    head: str
    modality: str
    text: str | None  # None: the head learns its own word embeddings (or crf's classic features)
    vision: str | None
    context: str
    seed: int
    train: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    label_map: str | None = None  # several corpora (dataset "a,b") mapped onto one scheme
    knowledge_hints: bool = False  # heads.knowledge_hints' columns after the word features
    # a successive-halving round: pause after this epoch. Not part of the key: a paused run is
    # the first epochs of the full one, stored as a "stopped" line under the same key
    stop_after: int | None = field(default=None, compare=False, hash=False)

    def identity(self) -> dict[str, object]:
        """The fields a key is made of; ``label_map`` and ``knowledge_hints`` only when set, so
        the keys of stores written before they existed stay the same."""
        d = asdict(self)
        del d["stop_after"]
        if d["label_map"] is None:
            del d["label_map"]
        if not d["knowledge_hints"]:
            del d["knowledge_hints"]
        return d

    def config(self) -> dict[str, object]:
        """Everything but the seed: the configuration seeds are averaged over."""
        d = self.identity()
        del d["seed"], d["train"]
        return d

    def inputs(self) -> InputSpec:
        """What the cell's head reads (``heads train``'s input options)."""
        return InputSpec(
            self.dataset,
            text=self.text,
            vision=self.vision,
            context=self.context,
            label_map=self.label_map,
            knowledge_hints=self.knowledge_hints,
        )

    @property
    def key(self) -> str:
        payload = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.dataset} {config_label(self.config())} s{self.seed}"


@dataclass
class Skip:
    what: str
    reason: str


@dataclass
class GridOptions:
    datasets: list[str] | None = None
    heads: list[str] | None = None
    texts: list[str] | None = None  # None: the default encoder (or every cached one with all)
    visions: list[str] | None = None  # None: every cached one; [] or ["none"]: none
    contexts: list[str] | None = None
    seeds: int = 3
    all: bool = False
    # each knowledge context also with --knowledge-hints (heads.knowledge_hints), beside it
    knowledge_hints: bool = True
    train: TrainConfig = field(default_factory=lambda: replace(GRID_TRAIN))


@dataclass
class CacheContents:
    """What the cache holds per dataset: text encoders with their contexts, vision encoders with
    the kind of input they give (``vector`` or ``labels``)."""

    texts: dict[str, dict[str, set[str]]]  # dataset -> encoder -> contexts
    visions: dict[str, dict[str, str]]  # dataset -> encoder -> kind
    complete: dict[str, set[str]]  # dataset -> splits with text

    @classmethod
    def read(cls, index: EntryIndex) -> CacheContents:
        texts: dict[str, dict[str, set[str]]] = {}
        visions: dict[str, dict[str, str]] = {}
        complete: dict[str, set[str]] = {}
        for e in index.entries:
            meta = e.meta
            dataset, encoder = str(meta.get("dataset")), str(meta.get("encoder"))
            if meta.get("kind") == "text":
                complete.setdefault(dataset, set()).add(str(meta.get("split")))
                texts.setdefault(dataset, {}).setdefault(encoder, set()).add(str(meta.get("context", "none")))
            elif meta.get("kind") == "image" and encoder not in visions.get(dataset, {}):
                arrays = ImageFeatures.load(e.path).arrays
                kind = "vector" if "pooled" in arrays else "labels" if "top5_ids" in arrays else "other"
                visions.setdefault(dataset, {})[encoder] = kind
        return cls(texts, visions, complete)


def _wanted(values: list[str] | None, available: list[str]) -> list[str]:
    return available if values is None else [v for v in values if v in available]


def plan(index: EntryIndex, options: GridOptions) -> tuple[list[Cell], list[Skip]]:
    """Cells to run and skipped combinations with their reasons, in a stable order."""
    contents = CacheContents.read(index)
    cells: list[Cell] = []
    skips: list[Skip] = []
    train = options.train.key_settings()
    datasets = options.datasets or sorted(contents.texts)
    torch_first = sorted(HEADS, key=lambda name: HEADS.trait(name, "family") != "torch")
    head_names = options.heads or torch_first
    for dataset in datasets:
        if dataset not in contents.texts:
            skips.append(Skip(dataset, f"nothing cached for {dataset}: run `featurize {dataset}` first"))
            continue
        missing = [s for s in SPLITS if s not in contents.complete[dataset]]
        if missing:
            skips.append(Skip(dataset, f"no cached {'/'.join(missing)} split of {dataset}"))
            continue
        cached_texts = sorted(t for t in contents.texts[dataset] if "none" in contents.texts[dataset][t])
        if options.texts is not None:
            texts = [t for t in options.texts if t in cached_texts]
            for t in options.texts:
                if t not in cached_texts:
                    skips.append(Skip(f"{dataset} --text {t}", f"no cached {t} features of {dataset}"))
        elif options.all:
            texts = cached_texts
        else:
            texts = [DEFAULT_TEXT] if DEFAULT_TEXT in cached_texts else cached_texts[:1]
        vision_kinds = contents.visions.get(dataset, {})
        if options.visions is None and not options.all:
            visions = _one_per_kind(vision_kinds)
        else:
            visions = _wanted(options.visions, sorted(vision_kinds))
            for v in options.visions or []:
                if v not in vision_kinds:
                    skips.append(
                        Skip(f"{dataset} --vision {v}", f"no cached {v} image features of {dataset}")
                    )
        configs: list[Config] = []
        for head in head_names:
            configs += _head_configs(head, dataset, texts, visions, vision_kinds, contents, options, skips)
        seen: set[tuple] = set()
        for config in configs:
            if config in seen:
                continue
            seen.add(config)
            head, modality, text, vision, context, hints = config
            seeds = range(options.seeds)
            if _is_crfsuite(head) and text is None:
                seeds = range(1)  # crfsuite's L-BFGS on classic features does not depend on the seed
            for seed in seeds:
                cells.append(
                    Cell(dataset, head, modality, text, vision, context, seed, train, knowledge_hints=hints)
                )
        if options.seeds > 1 and any(_is_crfsuite(c[0]) and c[2] is None for c in configs):
            skips.append(
                Skip(
                    f"{dataset} crf classic seeds 1..",
                    "crfsuite without cached vectors is deterministic: one run",
                )
            )
    return sorted(cells, key=_expected_cost), skips


def _is_crfsuite(head: str) -> bool:
    return HEADS.trait(head, "family") == "crfsuite"


def _expected_cost(cell: Cell) -> int:
    """Longest cells first (measured: crfsuite's c1/c2 grid and the character CNN heads), so
    the last cells left for two workers are short ones and neither idles long at the end. A
    head's place is its ``grid_order`` trait; heads without one go by modality."""
    order = HEADS.trait(cell.head, "grid_order")
    if order is not None:
        return int(order)
    if cell.modality == "image":
        return 4
    return 2 if cell.modality == "both" else 3


def _one_per_kind(vision_kinds: dict[str, str]) -> list[str]:
    chosen = []
    for kind in sorted(set(vision_kinds.values())):
        names = sorted(v for v, k in vision_kinds.items() if k == kind)
        preferred = DEFAULT_VISION.get(kind)
        chosen.append(preferred if preferred in names else names[0])
    return chosen


# head, modality, text, vision, context, knowledge hints
Config = tuple[str, str, str | None, str | None, str, bool]


def _head_configs(
    head: str,
    dataset: str,
    texts: list[str],
    visions: list[str],
    vision_kinds: dict[str, str],
    contents: CacheContents,
    options: GridOptions,
    skips: list[Skip],
) -> list[Config]:
    out: list[Config] = []
    if _is_crfsuite(head):
        out.append((head, "text", None, None, "none", False))
        if options.all or options.texts is not None:
            # classic features + KMeans ids of the vectors: costly (two KMeans and nine CRF fits,
            # about 5 min a cell here) and not image-derived, so only with --all or --text
            out += [(head, "text", t, None, "none", False) for t in texts]
        return out
    cls = HEADS.get(head)
    hyper = cls.Hyper()
    for modality in cls.modalities:
        needs_text = "text" in cls.needs(hyper, modality, True)
        needs = cls.needs(hyper, modality, needs_text)
        image_need = needs & IMAGE_NEEDS
        kind = "labels" if "label_ids" in image_need else "vector"
        fitting = [v for v in visions if vision_kinds.get(v) == kind] if image_need else [None]
        if image_need and not fitting:
            what = (
                "label words (--vision labels)"
                if kind == "labels"
                else "image vectors (--vision vit/cnn/clip)"
            )
            skips.append(
                Skip(f"{dataset} {head} --modality {modality}", f"reads {what}; none cached for {dataset}")
            )
            continue
        for text in texts if needs_text else [None]:
            contexts = ["none"]
            if needs_text and text is not None:
                cached = contents.texts[dataset].get(text, set())
                wanted = [c for c in CONTEXTS if c in cached and c != "none"]
                wanted += sorted(c for c in cached if "+" in c)  # combined kinds: captions+knowledge
                if "label_ids" in cls.needs(hyper, "both", True) and not options.all:
                    # label words enter a head that reads them natively (CWI's LSTM) once, that way
                    wanted = [c for c in wanted if c != "labels"]
                contexts += _wanted(options.contexts, wanted)
            for vision in fitting:
                for context in contexts:
                    one_kind = vision is None or context == "none"
                    if options.all or one_kind:
                        out.append((head, modality, text, vision, context, False))
                        if options.knowledge_hints and "knowledge" in context.split("+"):
                            out.append((head, modality, text, vision, context, True))
    return out


def describe_cells(cells: list[Cell]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.dataset] = counts.get(c.dataset, 0) + 1
    return counts


def models_folder(root: Path, cell: Cell) -> Path:
    return root / "cells" / cell.key


def paused_state(root: Path, key: str) -> Path:
    """Where a cell paused at a halving rung keeps its training state (heads.paused_run)."""
    return root / "paused" / key
