"""``bench``: measurements that compare configurations inside one run (these machines are noisy)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench.featurize_speed import measure_text_encoder, measure_vision_encoder
from bench.report import Report
from featurize.console_app import run_app, stdout_console
from featurize.datasets import LoadOptions, load_dataset

app = typer.Typer(
    help="Benchmarks and (later) the experiment grid.", no_args_is_help=True, add_completion=False
)
out = stdout_console()


COLUMNS = [
    "encoder",
    "configuration",
    "inputs",
    "seconds",
    "per second",
    "× naive",
    "peak MiB",
    "cosine to batched fp32 (mean / min)",
]


@app.command()
def featurize(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset whose examples are encoded.")] = "t17",
    split: Annotated[str, typer.Option("--split", help="Split to take the examples from.")] = "dev",
    text: Annotated[
        str, typer.Option("--text", help="Text encoders, comma-separated ('' for none).")
    ] = "minilm",
    vision: Annotated[str, typer.Option("--vision", help="Vision encoders, comma-separated.")] = "",
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Folder whose images (recursively) the vision encoders read."),
    ] = None,
    layers: Annotated[str, typer.Option("--layers", help="Layers averaged, as in `featurize`.")] = "last4",
    limit: Annotated[int, typer.Option("--limit", help="Examples to encode (0: the whole split).")] = 0,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Root of the named datasets.")] = None,
    output: Annotated[Path, typer.Option("--out", help="Folder for the report (.md and .json).")] = Path(
        "runs/bench"
    ),
) -> None:
    """Inputs/s and peak memory of each encoder: a naive baseline vs the toolkit's batched paths, in one run."""
    from featurize.images import IMAGE_SUFFIXES

    report = Report("Encoder speed", COLUMNS, command="bench " + shlex.join(sys.argv[1:]))
    text_names = [t.strip() for t in text.split(",") if t.strip()]
    if text_names:
        loaded = load_dataset(dataset, LoadOptions(data_dir=data_dir), [split])
        examples = loaded.splits[split].examples
        sentences = [e.words for e in (examples[:limit] if limit else examples)]
        report.notes.append(
            f"Text: {dataset}/{split}, {len(sentences)} examples, {sum(map(len, sentences)):,} words."
        )
        for name in text_names:
            report.rows += measure_text_encoder(name, layers, sentences)
    vision_names = [v.strip() for v in vision.split(",") if v.strip()]
    if vision_names:
        if images is None:
            raise typer.BadParameter("vision encoders need --images DIR", param_hint="--images")
        files = sorted(str(p) for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        report.notes.append(f"Vision: {len(files)} images under {images}.")
        for name in vision_names:
            report.rows += measure_vision_encoder(name, files)
    report.notes.append(
        "Each configuration in a fresh process; model loading and a warm-up call are not timed."
    )
    report.notes.append(
        "peak MiB is the process's peak resident memory (Python, torch, model, inputs and outputs)."
    )
    out.print(report.markdown())
    md, _ = report.save(output, "featurize-speed")
    out.print(f"saved {md} (and .json)")


@app.command()
def probe(
    dataset: Annotated[
        str, typer.Option("--dataset", help="Dataset (train fits the probe, dev scores it).")
    ] = "t17",
    text: Annotated[str, typer.Option("--text", help="Text encoders, comma-separated.")] = "minilm",
    pooling: Annotated[
        str, typer.Option("--pooling", help="Poolings to compare, comma-separated.")
    ] = "first,last,mean",
    layers: Annotated[
        str, typer.Option("--layers", help="Layer choices to compare, ';'-separated.")
    ] = "last4",
    weights_format: Annotated[
        str,
        typer.Option("--weights-format", help="Encoder weights: auto, fp32, bf16 or 8bit (as in featurize)."),
    ] = "auto",
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Root of the named datasets.")] = None,
    output: Annotated[Path, typer.Option("--out", help="Folder for the report (.md and .json).")] = Path(
        "runs/bench"
    ),
) -> None:
    """Linear probe (logistic regression per word, train -> dev) of word features, to choose
    pooling and layers by measurement. Features come from (and go to) the cache."""
    from rich.console import Console

    from bench.probe import probe as run_probe
    from featurize.cache.store import FeatureStore, cache_dir
    from featurize.cache.text_features import TextFeatures
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as run_pipeline
    from featurize.text.transformer import WordFeatureOptions

    loaded = load_dataset(dataset, LoadOptions(data_dir=data_dir), ["train", "dev"])
    store = FeatureStore(cache_dir(None))
    report = Report(
        f"Linear probe of word features on {dataset} (train -> dev)",
        ["encoder", "weights", "layers", "pooling", "dev entity F1", "dev token macro F1"],
        command="bench " + shlex.join(sys.argv[1:]),
    )
    for name in [t.strip() for t in text.split(",") if t.strip()]:
        for layer_choice in [x.strip() for x in layers.split(";") if x.strip()]:
            for pool in [p.strip() for p in pooling.split(",") if p.strip()]:
                options = WordFeatureOptions(layers=layer_choice, pooling=pool, weights_format=weights_format)
                paths = run_pipeline(
                    loaded, RunPlan(text=[name], word_options=options), store, Console(stderr=True)
                )
                train, dev = (TextFeatures.load(p) for p in paths[f"text:{name}"])
                scores = run_probe(train, dev)
                report.rows.append(
                    {
                        "encoder": name,
                        "weights": weights_format,
                        "layers": layer_choice,
                        "pooling": pool,
                        "dev entity F1": round(100 * scores["entity_f1"], 2),
                        "dev token macro F1": round(100 * scores["token_macro_f1"], 2),
                    }
                )
    report.notes.append(
        "Logistic regression on standardised word vectors; seqeval entity F1 (conlleval mode)."
    )
    out.print(report.markdown())
    md, _ = report.save(output, "probe")
    out.print(f"saved {md} (and .json)")


@app.callback()
def _root() -> None:
    """Benchmarks share one report format (Markdown + JSON under runs/)."""


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
