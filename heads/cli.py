"""``heads``: train, evaluate and apply small models on cached features; never loads an encoder
to train or evaluate (``predict`` runs the encoders once on the new input, through featurize).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from featurize import cli_options as opt
from featurize.cache.store import cache_dir
from featurize.cache.text_features import TextFeatures
from featurize.console_app import run_app, stdout_console
from featurize.datasets import DEFAULT_DATASET
from featurize.errors import ConfigError
from featurize.text import DEFAULT_TEXT_ENCODER
from heads.scan_pages import ScanSettings
from heads.train_config import TrainConfig

app = typer.Typer(
    help="Train, evaluate and apply heads on cached features.", no_args_is_help=True, add_completion=False
)
out = stdout_console()
TRAIN = TrainConfig()  # heads train's defaults: read here, written once in heads.train_config


def _percent(value: object) -> str:
    return f"{100 * float(value):.2f}"  # type: ignore[arg-type]


def print_scores(scores: dict[str, dict], title: str) -> None:
    """The report every head prints: entity F1 (headline) first, then the thesis's metrics."""
    table = Table(
        "split",
        "entity P",
        "entity R",
        "[bold]entity F1[/]",
        "entity F1 strict",
        "token macro F1",
        "token macro F1 relaxed",
        title=title,
        title_justify="left",
    )
    for split, m in scores.items():
        table.add_row(
            split,
            _percent(m["entity_precision"]),
            _percent(m["entity_recall"]),
            f"[bold]{_percent(m['entity_f1'])}[/]",
            _percent(m["entity_f1_strict"]),
            _percent(m["token_macro_f1"]),
            _percent(m["token_macro_f1_relaxed"]),
        )
    out.print(table)
    last = list(scores)[-1]
    per_type = Table("type", "P", "R", "F1", "support", title=f"entity types on {last}", title_justify="left")
    for name, row in sorted(scores[last]["entity_per_type"].items()):
        per_type.add_row(
            name,
            _percent(row["precision"]),
            _percent(row["recall"]),
            _percent(row["f1-score"]),
            str(int(row["support"])),
        )
    out.print(per_type)
    out.print(
        "entity F1: seqeval default mode (conlleval-compatible), micro; strict: seqeval IOB2 mode. "
        "token macro F1: macro F1 over BIO tags per word (the thesis's metric); relaxed: B-/I- stripped."
    )


def default_run_folder(
    dataset: str,
    head: str,
    text: str | None,
    vision: str | None,
    context: str,
    modality: str | None,
    seed: int,
) -> Path:
    parts = [dataset.replace(",", "+"), head, (text or "words").replace("+", "-")]
    if context != "none":
        parts.append(context)
    if vision:
        parts.append(vision)
    if modality:
        parts.append(modality)
    return Path("runs/heads") / ("-".join(parts) + f"-s{seed}")


@app.command()
def train(
    dataset: opt.Corpora = DEFAULT_DATASET,
    head: opt.Head = "bilstm-crf",
    text: opt.Text = DEFAULT_TEXT_ENCODER,
    vision: opt.Vision = None,
    context: opt.Context = "none",
    context_budget: opt.ContextBudget = None,
    knowledge_hints: opt.KnowledgeHints = None,
    modality: opt.Modality = None,
    pooling: opt.Pooling = None,
    layers: opt.Layers = None,
    label_map: opt.CorporaLabelMap = None,
    option: opt.HeadOptions = None,
    lr: opt.LearningRates = None,
    lr_preset: Annotated[
        str,
        typer.Option("--lr-preset", help="cached (defaults for frozen features), thesis or thesis-llama."),
    ] = TRAIN.lr_preset,
    epochs: opt.Epochs = TRAIN.epochs,
    patience: opt.Patience = TRAIN.patience,
    batch_size: opt.BatchSize = TRAIN.batch_size,
    scheduler: Annotated[
        str,
        typer.Option("--scheduler", help="plateau, cosine (warm restarts T0=5, Tmult=2), linear or none."),
    ] = TRAIN.scheduler,
    clip: opt.Clip = TRAIN.clip,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = TRAIN.weight_decay,
    class_weights: Annotated[
        bool,
        typer.Option("--class-weights", help="Weight the cross-entropy by N/(m*freq_c) (softmax heads)."),
    ] = TRAIN.class_weights,
    select: Annotated[
        str, typer.Option("--select", help="Validation metric: entity_f1 or token_macro_f1.")
    ] = TRAIN.select,
    seed: opt.Seed = TRAIN.seed,
    precision: opt.Precision = TRAIN.precision,
    stem: Annotated[
        str | None, typer.Option("--stem", help="Stem words for trainable embeddings: english, german.")
    ] = None,
    threads: opt.Threads = TRAIN.threads,
    run_dir: Annotated[Path | None, typer.Option("--out", help="Where the model and run.json go.")] = None,
    cache: opt.CacheDir = None,
) -> None:
    """Train a head on cached features, choose its epoch on dev, score dev and test, save it."""
    from heads.experiment import RunSpec, epoch_printer
    from heads.families import family_of_head
    from heads.inputs import InputSpec
    from heads.train_config import TrainConfig

    text = None if text in (None, "", "none") else text
    family = family_of_head(head)
    knowledge_hints = bool(knowledge_hints)
    inputs = InputSpec(
        dataset, text, vision, context, pooling, layers, label_map, context_budget, knowledge_hints
    )
    run_context = context if context_budget is None else f"{context}-budget{context_budget}"
    run_context += "-hints" if knowledge_hints else ""
    folder = run_dir or default_run_folder(dataset, head, text, vision, run_context, modality, seed)
    config = TrainConfig(
        seed=seed,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        lr_preset=lr_preset,
        lr=opt.parse_rates(lr),
        weight_decay=weight_decay,
        clip=clip,
        scheduler=scheduler,
        class_weights=class_weights,
        select=select,
        precision=precision,
        threads=threads,
    )
    spec = RunSpec(head, inputs, modality, opt.parse_pairs(option, "--set"), config, stem)
    record = family.train(
        spec,
        cache_dir(cache),
        folder,
        epoch_printer(out),
        on_note=lambda message: out.print(f"note: {message}", style="yellow", markup=False, highlight=False),
    )
    if record.get("best_epoch") is not None:
        out.print(
            f"best epoch {record['best_epoch']} of {record['epochs_run']}; trained in {record['train_seconds']:.1f} s, "
            f"peak memory {record['peak_memory_mib']:,.0f} MiB"
        )
    print_scores(
        record["metrics"],
        f"{head} on {dataset} ({text or 'word ids'}"
        + (f" + {vision}" if vision else "")
        + (f", context {context}" if context != "none" else "")
        + ")",
    )
    out.print(f"saved {folder} ({family.files})")


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="A run folder written by `heads train`.")],
    split: Annotated[str, typer.Option("--split", help="Splits to score, comma-separated.")] = "dev,test",
    output: Annotated[
        Path | None, typer.Option("--json", help="Also write the scores to this JSON file.")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="Score on this corpus instead of the one(s) it was trained on (same inputs and label map).",
        ),
    ] = None,
    cache: opt.CacheDir = None,
) -> None:
    """Score a saved head on cached splits: entity P/R/F1 (both modes), token macro F1."""
    from heads.families import family_of_folder

    splits = tuple(s.strip() for s in split.split(",") if s.strip())
    scores = family_of_folder(model).evaluate(model, cache_dir(cache), splits, dataset)
    print_scores(scores, f"{model}")
    if output:
        output.write_text(json.dumps(scores, indent=1), encoding="utf-8")
        out.print(f"saved {output}")


@app.command()
def predict(
    model: Annotated[
        Path, typer.Option("--model", help="A run folder written by `heads train` or `bench finetune`.")
    ],
    text: Annotated[
        list[str] | None,
        typer.Option(
            "--text", help="A text to tag (repeatable); split into words as the training tweets were."
        ),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="A file of inputs: one text per line; JSONL, one object per line with text (a string or a "
            "list of words) and optional image (a path) and caption; or a CoNLL/UMT file.",
        ),
    ] = None,
    image: Annotated[Path | None, typer.Option("--image", help="The image of the --text inputs.")] = None,
    caption: Annotated[
        str | None,
        typer.Option(
            "--caption", help="The caption of the --text inputs (heads trained with --context captions)."
        ),
    ] = None,
    knowledge: Annotated[
        str | None,
        typer.Option(
            "--knowledge",
            help="The LLM knowledge of the --text inputs (heads trained with --context knowledge); "
            '"knowledge" per line of a JSONL --input. `featurize knowledge` writes it for a dataset.',
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="json (one object per line) or conll.")] = "json",
    input_format: Annotated[
        str, typer.Option("--input-format", help="auto, text, jsonl, conll or umt.")
    ] = "auto",
    tokenizer: Annotated[
        str,
        typer.Option(
            "--tokenizer",
            help="How raw text becomes words: tweet (#tag, @user kept), split ('#', 'tag'), or auto (the head's dataset: split for t17).",
        ),
    ] = "auto",
    images: opt.Images = None,
    image_map: opt.ImageMap = None,
    device: opt.Device = "auto",
    lora_weights: Annotated[
        str,
        typer.Option(
            "--lora-weights",
            help="A LoRA fine-tuned model: its adapter on the base it names (adapter), or the copy "
            "merged into fp32 weights (merged; saved with `bench finetune --merge`).",
        ),
    ] = "adapter",
    cache: opt.CacheDir = None,
    scans: Annotated[
        Path | None,
        typer.Option(
            "--scans",
            help="A folder of scanned pages (searched recursively): OCR, then the entities on each page "
            "with their boxes, one JSON line per scan (--out); --html draws them.",
        ),
    ] = None,
    ocr_lang: Annotated[
        str, typer.Option("--ocr", help="--scans: Tesseract language(s): deu, frk (Fraktur), deu+frk ...")
    ] = ScanSettings.lang,
    ocr_engine: Annotated[
        str,
        typer.Option(
            "--ocr-engine", help="--scans: tesseract, or easyocr where it and its weights are installed."
        ),
    ] = ScanSettings.engine,
    min_confidence: Annotated[
        float,
        typer.Option("--min-confidence", help="--scans: drop OCR words the engine is less sure of (0-100)."),
    ] = ScanSettings.min_confidence,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the predictions here instead of printing them.")
    ] = None,
    html_report: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="--scans: also an HTML report (every scan with its entities drawn, an index, a table).",
        ),
    ] = None,
) -> None:
    """Tag new text (and images) or a folder of scans: run the encoders the head was trained on
    (a fine-tuned model's own encoders), print or write the entities."""
    import sys

    from rich.console import Console

    from featurize.atomic import atomic_write_text
    from heads.families import load
    from heads.input_files import collect_inputs
    from heads.predictor import OUTPUT_FORMATS, format_predictions

    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(OUTPUT_FORMATS)}")
    if scans is not None and (text or input_file):
        raise ConfigError("--scans reads its own inputs: give --scans, or --text / --input, not both")
    if html_report is not None and scans is None:
        raise ConfigError("--html draws the entities on scans: give --scans")
    err = Console(stderr=True)

    def note(message: str) -> None:
        err.print(f"note: {message}", style="yellow", markup=False, highlight=False, soft_wrap=True)

    if scans is not None:
        from heads.scan_pages import check_settings, list_scans

        settings = ScanSettings(ocr_engine, ocr_lang, min_confidence, cache=cache_dir(cache) / "ocr")
        check_settings(settings)  # an engine or a folder that cannot work fails before a model loads
        total = len(list_scans(scans))
        predictor = load(model, cache_dir(cache), device, note, lora_weights)
        _predict_scans(predictor, model, scans, total, settings, out_file, html_report, err)
        return
    predictor = load(model, cache_dir(cache), device, note, lora_weights)
    inputs = collect_inputs(
        text,
        input_file,
        image,
        caption,
        predictor.tokenizer_style(tokenizer),
        input_format,
        images,
        image_map,
        note,
        knowledge,
    )
    written = format_predictions(predictor.predict(inputs), fmt)
    if out_file is None:
        sys.stdout.write(written)
    else:
        atomic_write_text(out_file, written)
        err.print(f"wrote {out_file}", highlight=False)


def _predict_scans(
    predictor: Any,
    model: Path,
    scans: Path,
    total: int,
    settings: ScanSettings,
    out_file: Path | None,
    html_report: Path | None,
    err: Any,
) -> None:
    """``heads predict --scans``: OCR and tag every scan with a progress bar, then write the
    JSON lines and the report (both only when every scan was handled: nothing half-written)."""
    import shlex
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from featurize.atomic import atomic_write_text
    from heads.scan_pages import jsonl, tag_scans
    from heads.scan_report import summary, write_report

    columns = (
        TextColumn("scans"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("", total=total)

        def done(result: Any) -> None:
            what = result.error or f"{len(result.entities)} entities"
            bar.update(task, advance=1, description=f"{result.scan}: {what}")

        results = tag_scans(predictor, scans, settings, done)
    if out_file is None:
        sys.stdout.write(jsonl(results))
    else:
        atomic_write_text(out_file, jsonl(results))
        err.print(f"wrote {out_file}", highlight=False)
    if html_report is not None:
        command = "heads " + shlex.join(sys.argv[1:])
        write_report(results, html_report, str(model), command)
        err.print(f"wrote {html_report} (and {html_report.stem}_files/)", highlight=False)
    counts = summary(results)
    kinds = ", ".join(f"{k} {v}" for k, v in counts["types"].items()) or "none"
    err.print(
        f"{counts['scans']} scans: {counts['entities']} entities ({kinds}); {counts['bad']} bad scans; "
        f"OCR reused for {counts['cached']}",
        highlight=False,
    )
    for r in results:
        if r.error is not None:
            err.print(f"bad scan {r.scan}: {r.error}", style="yellow", markup=False, highlight=False)


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (or folders of them) holding run.json.")],
    output: Annotated[Path, typer.Option("--out", help="Folder for the report (.md and .json).")] = Path(
        "runs/reports"
    ),
) -> None:
    """Mean ± std over seeds per configuration, sorted by dev entity F1 (test is only reported)."""
    import shlex
    import sys

    from heads.report import load_records, summarise
    from heads.report_table import Report

    rows = summarise(load_records(runs))
    columns = list(dict.fromkeys(k for row in rows for k in row))  # per-type columns differ by dataset
    table = Report(
        "Heads on cached features (mean ± std over seeds)",
        columns,
        rows,
        command="heads " + shlex.join(sys.argv[1:]),
    )
    table.notes.append(
        "entity F1: seqeval default (conlleval-compatible) micro F1, the headline; token macro F1: the thesis's "
        "metric (macro F1 over BIO tags per word). Rows sorted by dev entity F1; choose on dev, report test."
    )
    out.print(table.markdown())
    md, _ = table.save(output, "heads")
    out.print(f"saved {md} (and .json)")


@app.command("list")
def list_heads() -> None:
    """The registered heads, their modalities and options (with defaults)."""
    from dataclasses import fields

    import heads.models  # noqa: F401
    from heads.tagger import HEADS

    table = Table("head", "family", "modalities", "options (--set NAME=VALUE)", "what it is")
    for name, cls in HEADS.items():
        options = ", ".join(f"{f.name}={f.default}" for f in fields(cls.Hyper))
        table.add_row(name, HEADS.trait(name, "family"), ", ".join(cls.modalities), options, cls.description)
    out.print(table)


@app.command()
def inspect(
    entry: Annotated[Path, typer.Argument(help="A cache entry (.h5), e.g. from `featurize ls`.")],
) -> None:
    """Load a text entry as a head sees it: shapes, label set and one example."""
    data = TextFeatures.load(entry)
    meta = data.metadata
    table = Table("field", "value", title=str(entry), title_justify="left")
    for name in (
        "dataset",
        "split",
        "encoder",
        "weights",
        "layers",
        "pooling",
        "precision",
        "schema_version",
        "created",
    ):
        table.add_row(name, str(meta.get(name)))
    table.add_row("examples", f"{len(data):,}")
    table.add_row(
        "features", f"{data.features.shape[0]:,} words × {data.features.shape[1]} ({data.features.dtype})"
    )
    counts = Counter(data.label_names[c] for c in data.labels)
    table.add_row("tags", ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items())))
    words, tags, _ = data.example(0)
    table.add_row("example 0", " ".join(f"{w}/{t}" for w, t in zip(words, tags)))
    out.print(table)


@app.callback()
def _root() -> None:
    """Heads read only the HDF5 cache written by `featurize` (schema: CACHE_SCHEMA.md)."""


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()


__all__ = ["ConfigError", "app", "main"]
