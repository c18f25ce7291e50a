"""featurize as a library: the work behind ``featurize run``, callable from Python.

>>> from featurize import featurize_dataset
>>> paths = featurize_dataset("t17", text="minilm,mpnet", vision="vit", images=Path("photos"))
>>> paths["text:minilm"]  # the published entries, one per split (and per context)

``featurize run DATASET --text ... --vision ...`` parses its options and calls
:func:`featurize_dataset` with them, so the two give the same entries (same cache keys, same
numbers) for the same options. An entry already in the cache is reused without loading any
model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from featurize.build import DEFAULT_CHUNK_SIZE
from featurize.cache.store import FeatureStore
from featurize.cache.store import cache_dir as resolve_cache_dir
from featurize.contexts import context_parts
from featurize.datasets import Dataset, LoadOptions, load_dataset, parse_fractions
from featurize.datasets import data_dir as resolve_data_dir
from featurize.engines import EngineOptions
from featurize.errors import ConfigError
from featurize.images import MissingImages
from featurize.knowledge import knowledge_file, read_knowledge
from featurize.labels import parse_label_map, parse_types
from featurize.pipeline import RunPlan
from featurize.pipeline import run as run_pipeline
from featurize.text import DEFAULT_TEXT_ENCODER
from featurize.text.transformer import WordFeatureOptions
from featurize.vision.encoder import VisionOptions

__all__ = ["featurize_dataset", "load_options", "names", "report_loading"]

Names = str | Sequence[str]


def names(option: Names | None) -> list[str]:
    """Encoder or context names: a comma-separated string (as on the command line) or a sequence
    of names; blanks dropped, and ``none`` (the shared ``--text/--vision/--context`` help's word
    for "no such input") stands for nothing."""
    if option is None:
        return []
    parts = option.split(",") if isinstance(option, str) else option
    return [part.strip() for part in parts if part.strip() and part.strip() != "none"]


def load_options(
    *,
    data_dir: Path | None = None,
    format: str | None = None,
    label_map: Mapping[str, str] | Sequence[str] | None = None,
    repair_iob: bool = False,
    images: Path | None = None,
    image_map: Path | None = None,
    missing_images: MissingImages | str = MissingImages.keep,
    captions: Path | None = None,
    use_captions: bool = True,
    split_fractions: str | Sequence[float] | None = None,
    types: str | Sequence[str] | None = None,
) -> LoadOptions:
    """The :class:`LoadOptions` for these reader options (the ones of ``featurize run`` and
    ``featurize summary``), checked: a bad label map, an ``images`` path that is not a folder
    or empty ``types`` is a :class:`ConfigError`. ``types`` ("PER,LOC" or a sequence) declares
    a user file's entity types."""
    if label_map is None or isinstance(label_map, Mapping):
        mapping = None if label_map is None else dict(label_map)
    else:
        try:
            mapping = parse_label_map(label_map) if label_map else None
        except ValueError as err:
            raise ConfigError(f"--label-map: {err}") from None
    if images is not None and not Path(images).is_dir():
        raise ConfigError(f"--images {images} is not a folder")
    options = LoadOptions(
        data_dir=_path(data_dir),
        format=format,
        label_map=mapping,
        repair_iob=repair_iob,
        images=_path(images),
        image_map=_path(image_map),
        missing_images=MissingImages(missing_images),
        captions=_path(captions),
        use_captions=use_captions,
        types=None if types is None else parse_types(types),
    )
    if split_fractions:
        if isinstance(split_fractions, str):
            fractions = parse_fractions(split_fractions)
        else:
            fractions = parse_fractions(",".join(str(float(f)) for f in split_fractions))
        options = replace(options, split_fractions=fractions)
    return options


def _path(value: Path | str | None) -> Path | None:
    return None if value is None else Path(value)


def report_loading(dataset: Dataset, images_checked: bool, console: Console) -> None:
    """One line per split: examples, I- span starts, images found and missing, captions; and,
    for a file that does not declare its entity types, one line with the types it uses."""
    for name, split in dataset.splits.items():
        parts = [f"{len(split.examples):,} examples"]
        if split.i_starts:
            parts.append(f"{split.i_starts} spans open with I- (kept; --repair-iob to fix)")
        if split.repaired:
            parts.append(f"{split.repaired} I- span starts repaired to B-")
        if images_checked:
            parts.append(f"images {split.images_found:,} found / {split.images_missing:,} missing")
            if split.dropped_missing_image:
                parts.append(f"{split.dropped_missing_image:,} dropped for a missing image")
        if split.captions_found:
            parts.append(f"{split.captions_found:,} captions")
        console.print(f"[bold]{dataset.name}/{name}[/]: " + ", ".join(parts))
    if dataset.types_declared is None:
        found = dataset.types_found
        console.print(
            f"types found: {', '.join(found) or 'none'} ({len(found)}); "
            "declare them with --types to refuse others",
            highlight=False,
            markup=False,
        )


def featurize_dataset(
    dataset: str | Path,
    *,
    text: Names | None = (DEFAULT_TEXT_ENCODER,),
    vision: Names | None = (),
    context: Names | None = (),
    images: Path | None = None,
    image_map: Path | None = None,
    cache_dir: Path | None = None,
    data_dir: Path | None = None,
    splits: Sequence[str] | None = None,
    format: str | None = None,
    layers: str = "last4",
    pooling: str = "auto",
    weights_format: str = "auto",
    max_length: int | None = None,
    stride: int | None = None,
    batch_size: int = 32,
    bf16: bool | None = None,
    device: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    patches: bool = False,
    vision_batch_size: int | None = None,
    split_fractions: str | Sequence[float] | None = None,
    label_map: Mapping[str, str] | Sequence[str] | None = None,
    repair_iob: bool = False,
    missing_images: MissingImages | str = MissingImages.keep,
    captions: Path | None = None,
    use_captions: bool = True,
    types: str | Sequence[str] | None = None,
    knowledge: Path | None = None,
    context_budget: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
    console: Console | None = None,
) -> dict[str, list[Path]]:
    """Run the encoders once over ``dataset`` and publish their features in the cache.

    Every vision encoder runs first, then every text encoder, alone and with each ``context``,
    over every split; an entry already in the cache is reused without loading any model.
    Returns the published entry paths per role, in the dataset's split order (a named dataset's;
    a folder's by file name): ``{"text:minilm": [train, dev, test], "vision:vit": [...]}``. A
    text role lists, per split, its plain entry and then one per context.

    Each argument is the ``featurize run`` option of the same name, with the same default:

    - ``dataset``: a named dataset (``featurize datasets``) or a file or folder with ``format``
      (conll, umt, jsonl or hipe).
    - ``text``, ``vision``, ``context``: names as a comma-separated string or a sequence;
      ``text`` defaults to :data:`featurize.text.DEFAULT_TEXT_ENCODER`, an empty one runs none.
    - ``images``, ``image_map``: where image ids are found (a folder searched recursively; a TSV
      ``<id><TAB><path under images>``). ``missing_images``: "keep" (text-only) or "drop".
    - ``cache_dir``: the feature store (default ``$MNER_CACHE_DIR``, else ``./cache``);
      ``data_dir``: the named datasets' root (default ``$MNER_DATA_DIR``, else ``./data``).
    - ``splits``: only these splits (default: all); ``split_fractions``: cut one user file into
      train/dev/test in file order ("0.8,0.1,0.1" or ``(0.8, 0.1, 0.1)``).
    - ``layers`` (last, lastK, or indices), ``pooling`` (first, mean, last, or auto: the
      encoder's ``pooling`` trait), ``weights_format`` (fp32, bf16, 8bit, auto), ``max_length``,
      ``stride``, ``batch_size``, ``bf16`` (None: where native), ``device`` (auto, cpu, cuda),
      ``chunk_size`` (examples per resumable chunk): the text encoders' settings.
    - ``patches`` (also store the ViT patch grid), ``vision_batch_size``: the vision settings.
    - ``label_map`` ({"OLD": "NEW"} or ["OLD=NEW", ...]; None: the dataset's default),
      ``repair_iob``, ``captions`` (a captions file; None: the dataset's own), ``use_captions``
      (False is ``--no-captions``).
    - ``types``: the entity types a user file declares ("PER,LOC" or a sequence, as written in
      the file, before ``label_map``): a tag of any other type is a ``DataFormatError`` naming
      the file and line. Part of the cache key only when given. Without it, the types found
      are printed; a named dataset declares its own (giving ``types`` for one is a
      ``ConfigError``).
    - ``knowledge``: the knowledge file a ``knowledge`` context reads (TSV ``<id><TAB><text>``
      or JSONL ``{"id", "knowledge"}``; None: the dataset's own, PGIM's for t15/t17);
      ``context_budget``: subwords of a second segment read at most (None: each kind's default,
      featurize.contexts).
    - ``engine``: where chunks are computed, ``local`` (this process) or ``ray`` (long-lived Ray
      actors, ``workers`` of them with ``gpus_per_worker`` GPUs each, on the cluster at
      ``ray_address``, or on a Ray started here when None; featurize.ray_engine). The entries
      are the same either way.
    - ``console``: where progress goes (default: stderr, as the command prints it;
      ``Console(quiet=True)`` for none).

    Raises :class:`featurize.errors.MnerError` (a ``ConfigError``, ``DataFormatError``, ...) for
    a problem with the options or the data, before any model is loaded where it can.
    """
    if chunk_size < 1:
        raise ConfigError("--chunk-size must be at least 1")
    engine_options = EngineOptions(engine, ray_address, workers, gpus_per_worker)
    if engine == "ray":
        from featurize.ray_engine import require_ray

        require_ray()
    console = console if console is not None else Console(stderr=True)
    options = load_options(
        data_dir=data_dir,
        format=format,
        label_map=label_map,
        repair_iob=repair_iob,
        images=images,
        image_map=image_map,
        missing_images=missing_images,
        captions=captions,
        use_captions=use_captions,
        split_fractions=split_fractions,
        types=types,
    )
    contexts = names(context)
    loaded = load_dataset(str(dataset), options, list(splits) if splits is not None else None)
    knowledge_texts = None
    if any("knowledge" in context_parts(c) for c in contexts):
        source = knowledge_file(
            loaded.name, loaded.spec.knowledge, resolve_data_dir(options.data_dir), _path(knowledge)
        )
        knowledge_texts = read_knowledge(source)  # a malformed file stops here: nothing is written
    elif knowledge is not None:
        raise ConfigError("--knowledge FILE is read by --context knowledge (or captions+knowledge)")
    report_loading(loaded, loaded.image_root is not None, console)
    if knowledge_texts is not None:
        console.print(f"knowledge: {source} ({len(knowledge_texts):,} lines)")
    word_options = WordFeatureOptions(
        layers=layers,
        pooling=pooling,
        max_length=max_length,
        stride=stride,
        batch_size=batch_size,
        bf16=bf16,
        device=device,
        weights_format=weights_format,
    )
    plan = RunPlan(
        text=names(text),
        vision=names(vision),
        contexts=contexts,
        word_options=word_options,
        vision_options=VisionOptions(patches=patches, batch_size=vision_batch_size, device=device),
        chunk_size=chunk_size,
        context_budget=context_budget,
        knowledge=knowledge_texts,
        engine=engine_options,
    )
    return run_pipeline(loaded, plan, FeatureStore(resolve_cache_dir(_path(cache_dir))), console)
