"""``bench``: measurements that compare configurations inside one run (these machines are noisy)."""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

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


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip() and v.strip() != "none"]


@app.command("heads")
def heads_grid(
    all_: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every cached text encoder and every vision x context combination a head reads "
            "(default: the default text encoder, each image-derived input on its own).",
        ),
    ] = False,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Datasets, comma-separated (default: every cached one).")
    ] = None,
    head: Annotated[
        str | None, typer.Option("--head", help="Heads, comma-separated (default: all; see `heads list`).")
    ] = None,
    text: Annotated[
        str | None,
        typer.Option("--text", help="Text encoders, comma-separated (default: minilm; --all: every cached)."),
    ] = None,
    vision: Annotated[
        str | None,
        typer.Option(
            "--vision",
            help="Vision encoders, comma-separated; 'none' for text-only cells (default: every cached).",
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="Contexts (captions, labels), comma-separated; 'none' for none (default: every cached).",
        ),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per configuration: 0..N-1.", min=1)] = 3,
    epochs: Annotated[int, typer.Option("--epochs", help="Most epochs per cell.", min=1)] = 15,
    patience: Annotated[int, typer.Option("--patience", help="Early stopping patience (epochs).", min=1)] = 2,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Training batch size.", min=1)] = 64,
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, or bf16 autocast for training steps (as `heads train`).")
    ] = "bf16",
    workers: Annotated[int, typer.Option("--workers", help="Cells run in parallel (processes).", min=1)] = 2,
    threads: Annotated[int, typer.Option("--threads", help="Torch threads per worker.", min=1)] = 1,
    runs: Annotated[
        Path, typer.Option("--runs", help="Folder of the run store, models, report, plots and winner file.")
    ] = Path("runs/bench-heads"),
    save_models: Annotated[
        bool, typer.Option("--save-models/--no-save-models", help="Keep each cell's trained head.")
    ] = True,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Train nothing: report what the store holds.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the cells and skips, run nothing.")
    ] = False,
    cache: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="The feature store (default $MNER_CACHE_DIR, else ./cache)."),
    ] = None,
) -> None:
    """Train and evaluate every head x cached input combination x dataset x seed; resumable.

    Results are appended to RUNS/runs.jsonl as each cell finishes; a re-run skips finished
    cells. Writes RUNS/report/heads-grid.{md,json,csv}, PNG plots and RUNS/winners.json (the
    configuration with the best mean validation entity F1 per dataset, read by fine-tuning).
    """
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from bench import grid_report, winners
    from bench.grid import GridOptions, plan
    from bench.grid_runner import run_grid
    from bench.grid_summary import summarise
    from bench.run_store import RunStore
    from featurize.cache.store import cache_dir
    from heads.inputs import EntryIndex
    from heads.train import TrainConfig

    cache_root = cache_dir(cache)
    options = GridOptions(
        datasets=_names(dataset),
        heads=_names(head),
        texts=_names(text),
        visions=_names(vision),
        contexts=_names(context),
        seeds=seeds,
        all=all_,
        train=TrainConfig(epochs=epochs, patience=patience, batch_size=batch_size, precision=precision),
    )
    if options.heads:
        import heads.models  # noqa: F401
        from heads.tagger import HEADS

        unknown = [h for h in options.heads if h not in HEADS and h != "crf"]
        if unknown:
            raise typer.BadParameter(
                f"unknown head(s) {', '.join(unknown)}; see `heads list`", param_hint="--head"
            )
    cells, skips = plan(EntryIndex(cache_root), options)
    store = RunStore(runs / "runs.jsonl")
    done = store.done()
    todo = [c for c in cells if c.key not in done]
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True)
    for skip in skips:
        err.print(f"[dim]skip[/] {skip.what}: {skip.reason}")
    err.print(
        f"{len(cells)} cells planned ({len(cells) - len(todo)} finished earlier, {len(todo)} to run) "
        f"with {workers} worker(s) x {threads} thread(s); store {store.path}"
    )
    if dry_run:
        for c in todo:
            out.print(c.label, markup=False)
        return
    wall = 0.0
    if todo and not report_only:
        started = time.time()
        with Progress(
            TextColumn("[bold]bench heads[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as bar:
            task = bar.add_task("cells", total=len(todo))
            labels = {c.key: c.label for c in todo}

            def on_done(line: dict) -> None:
                bar.advance(task)
                name = labels.get(line["key"], line["key"])
                if line["status"] == "done":
                    m = line["record"]["metrics"]
                    bar.console.print(
                        f"{escape(name)}: dev {100 * m['dev']['entity_f1']:.2f} test {100 * m['test']['entity_f1']:.2f} "
                        f"({line['wall_seconds']:.0f} s)"
                    )
                else:
                    bar.console.print(f"[red]failed[/] {escape(name)}: {escape(line['error'])}")

            wall = run_grid(todo, store, cache_root, runs, workers, threads, save_models, on_done)
        _log_invocation(runs, started, len(todo), wall, workers, threads)
        err.print(
            f"ran {len(todo)} cells in {wall / 60:.1f} min (started {time.strftime('%H:%M', time.localtime(started))})"
        )
    for warning in store.warnings:
        err.print(f"[yellow]warning[/] {warning}")
    planned = {c.key for c in cells}
    lines = [line for key, line in store.done().items() if key in planned]
    failures = [line for key, line in store.failed().items() if key in planned]
    if not lines:
        err.print("no finished cell of this grid in the store yet: nothing to report")
        raise typer.Exit(1 if failures else 0)
    results = summarise(lines)
    command = "bench " + shlex.join(sys.argv[1:])
    preamble = [
        f"Store: `{store.path}`; {len(lines)} finished cells of {len(cells)} planned"
        + (f", {len(failures)} failed" if failures else "")
        + f"; {workers} worker(s) x {threads} torch thread(s)."
    ]
    for past in _invocations(runs):
        preamble.append(
            f"Invocation started {past['started']}: {past['cells']} cells in {past['wall_seconds'] / 60:.1f} min "
            f"of wall time ({past['workers']} worker(s) x {past['threads']} thread(s))."
        )
    paths = grid_report.write(results, skips, failures, runs / "report", command, preamble)
    from bench.grid_plots import write_plots

    pngs = write_plots(results, runs / "report")
    chosen = winners.write(results, runs / "winners.json", store.path)
    for reportable in grid_report.dataset_tables_for_console(results, command):
        out.print(reportable.markdown(), markup=False)
    for name, w in chosen["datasets"].items():  # type: ignore[union-attr]
        out.print(escape(f"winner {name}: {w['label']} dev {w['dev_entity_f1']} test {w['test_entity_f1']}"))
    out.print(f"saved {paths['md']} (.json, .csv), {len(pngs)} plots, {runs / 'winners.json'}")
    if failures:
        err.print(f"[red]{len(failures)} cell(s) failed[/]; re-run the same command to retry them")
        raise typer.Exit(1)


def _log_invocation(runs: Path, started: float, cells: int, wall: float, workers: int, threads: int) -> None:
    """How long each training invocation took, kept beside the store for the report."""
    import json
    import time

    line = {
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "cells": cells,
        "wall_seconds": round(wall, 1),
        "workers": workers,
        "threads": threads,
        "command": "bench " + shlex.join(sys.argv[1:]),
    }
    with (runs / "invocations.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def _invocations(runs: Path) -> list[dict]:
    import json

    path = runs / "invocations.jsonl"
    if not path.exists():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return out


@app.command("grid-speed")
def grid_speed(
    dataset: Annotated[str, typer.Option("--dataset", help="A cached dataset.")] = "t17",
    head: Annotated[str, typer.Option("--head", help="Heads, comma-separated.")] = "bilstm-crf,msb",
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per head.", min=1)] = 2,
    settings: Annotated[
        str,
        typer.Option(
            "--settings",
            help="WORKERSxTHREADS settings to compare, comma-separated; the first is the baseline.",
        ),
    ] = "1x1,1x2,2x1",
    epochs: Annotated[int, typer.Option("--epochs", help="Most epochs per cell.", min=1)] = 15,
    cache: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="The feature store (default $MNER_CACHE_DIR, else ./cache)."),
    ] = None,
    output: Annotated[Path, typer.Option("--out", help="Folder for the report (.md, .json, .csv).")] = Path(
        "runs/bench"
    ),
) -> None:
    """The same small grid (text-only cells) under each workers x threads setting, in one run:
    wall time as a ratio to the baseline, and whether the scores stayed the same."""
    import tempfile

    from bench.grid import GridOptions, plan
    from bench.grid_runner import run_grid
    from bench.run_store import RunStore
    from featurize.cache.store import cache_dir
    from heads.inputs import EntryIndex
    from heads.train import TrainConfig

    cache_root = cache_dir(cache)
    options = GridOptions(
        datasets=[dataset],
        heads=_names(head),
        visions=[],
        contexts=[],
        seeds=seeds,
        train=TrainConfig(epochs=epochs, patience=2, batch_size=64, precision="bf16"),
    )
    cells, _ = plan(EntryIndex(cache_root), options)
    cells = [c for c in cells if c.head != "crf"]
    if not cells:
        raise typer.BadParameter(f"no cells for {dataset} with --head {head}")
    report = Report(
        "Grid throughput: parallel cells against threads",
        ["workers x threads", "cells", "wall s", "cells per minute", "× baseline", "max dev F1 change (abs)"],
        command="bench " + shlex.join(sys.argv[1:]),
    )
    baseline_wall: float | None = None
    baseline_scores: dict[str, float] = {}
    for setting in [x.strip() for x in settings.split(",") if x.strip()]:
        try:
            workers, threads = (int(v) for v in setting.lower().split("x"))
        except ValueError:
            raise typer.BadParameter(
                f"expected WORKERSxTHREADS, got {setting!r}", param_hint="--settings"
            ) from None
        with tempfile.TemporaryDirectory() as tmp:
            store = RunStore(Path(tmp) / "runs.jsonl")
            wall = run_grid(cells, store, cache_root, Path(tmp), workers, threads, False, lambda line: None)
            scores = {k: 100 * v["record"]["metrics"]["dev"]["entity_f1"] for k, v in store.done().items()}
        if baseline_wall is None:
            baseline_wall, baseline_scores = wall, scores
        change = max((abs(scores.get(k, 0.0) - v) for k, v in baseline_scores.items()), default=0.0)
        report.rows.append(
            {
                "workers x threads": setting,
                "cells": f"{len(scores)}/{len(cells)}",
                "wall s": round(wall, 1),
                "cells per minute": round(60 * len(scores) / wall, 2),
                "× baseline": round(baseline_wall / wall, 2),
                "max dev F1 change (abs)": round(change, 2),
            }
        )
        out.print(f"{setting}: {wall:.1f} s")
    report.notes.append(
        f"{dataset}, heads {head}, {seeds} seed(s), text-only cells, batch 64, at most {epochs} epochs; "
        "each setting in fresh worker processes, one after another in this run."
    )
    out.print(report.markdown())
    md, _ = report.save(output, "grid-speed")
    out.print(f"saved {md} (.json, .csv)")


@app.command("llm")
def llm(
    dataset: Annotated[
        str, typer.Option("--dataset", help="A named dataset or a path (with --format in featurize).")
    ] = "t17",
    split: Annotated[str, typer.Option("--split", help="Split to tag and score.")] = "test",
    base_url: Annotated[
        str,
        typer.Option(
            "--base-url",
            help="OpenAI-compatible endpoint (…/v1), or 'local': start llama-cpp-python's server with SmolLM2-135M here.",
        ),
    ] = "local",
    model: Annotated[
        str, typer.Option("--model", help="Model name the server knows (default with 'local': its SmolLM2).")
    ] = "",
    api_key_env: Annotated[
        str,
        typer.Option(
            "--api-key-env", help="Environment variable holding the API key (never written anywhere)."
        ),
    ] = "OPENAI_API_KEY",
    shots: Annotated[
        int, typer.Option("--shots", help="Few-shot examples from train, fixed by --seed.", min=0)
    ] = 0,
    context: Annotated[
        str, typer.Option("--context", help="none, or captions: the image's BLIP-2 caption as text.")
    ] = "none",
    image_dir: Annotated[
        Path | None,
        typer.Option(
            "--image-dir", help="Send each example's image as an image part (servers that take images)."
        ),
    ] = None,
    image_map: Annotated[
        Path | None, typer.Option("--image-map", help="Image id -> file map, as in featurize.")
    ] = None,
    template: Annotated[
        Path | None,
        typer.Option("--template", help="Prompt template file (default bench/prompts/thesis.txt)."),
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", help="Retries of an invalid answer before it counts as all-O.", min=0)
    ] = 2,
    structured: Annotated[
        str,
        typer.Option(
            "--structured", help="auto, json_schema, json_object or off (structured-output request)."
        ),
    ] = "auto",
    concurrency: Annotated[int, typer.Option("--concurrency", help="Requests in flight at once.", min=1)] = 4,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 120.0,
    attempts: Annotated[
        int,
        typer.Option(
            "--attempts", help="HTTP attempts per request on 429/5xx/time-outs (exponential back-off).", min=1
        ),
    ] = 6,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Answer length limit (0: 24 + 12 per word).", min=0)
    ] = 0,
    seed: Annotated[
        int, typer.Option("--seed", help="Fixes the few-shot examples and the server's sampling seed.")
    ] = 0,
    limit: Annotated[int, typer.Option("--limit", help="Tag only the first N examples (0: all).", min=0)] = 0,
    threads: Annotated[
        int, typer.Option("--threads", help="CPU threads of the local server (0: all cores).", min=0)
    ] = 0,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Root of the named datasets.")] = None,
    output: Annotated[
        Path, typer.Option("--out", help="Folder for answers cache, predictions and report.")
    ] = Path("runs/bench-llm"),
) -> None:
    """Prompt a chat model to tag every word; score it like the heads (entity micro F1, token macro F1)."""
    from bench.llm_baseline import LLMRunConfig, run_llm_baseline
    from bench.llm_client import ChatClient, ServerError
    from bench.llm_server import LOCAL_MODEL, LocalServer

    config = LLMRunConfig(
        dataset=dataset,
        split=split,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
        shots=shots,
        context=context,
        image_dir=image_dir,
        image_map=image_map,
        template=template,
        seed=seed,
        retries=retries,
        concurrency=concurrency,
        timeout=timeout,
        attempts=attempts,
        structured=structured,
        max_tokens=max_tokens,
        limit=limit,
        data_dir=data_dir,
        out=output,
    )

    def client_for(url: str, name: str, identity: str | None = None) -> ChatClient:
        return ChatClient(
            url,
            name,
            output / "cache",
            server_identity=identity,
            api_key_env=api_key_env,
            timeout=timeout,
            attempts=attempts,
            structured=structured,
            seed=seed,
        )

    if base_url == "local":
        name = model or LOCAL_MODEL
        with LocalServer(alias=name, threads=threads or None) as server:
            out.print(f"llama_cpp.server with {server.model_path.name} at {server.base_url}")
            try:
                identity = f"llama_cpp.server:{server.model_path.name}"
                row = run_llm_baseline(config, out, client_for(server.base_url, name, identity))
            except ServerError as err:
                raise server.explain(err) from None
    else:
        if not model:
            raise typer.BadParameter("name the server's model with --model", param_hint="--model")
        row = run_llm_baseline(config, out, client_for(base_url, model))
    out.print(
        f"{row['dataset']}/{row['split']} {row['model']}: entity F1 {row['entity F1']:.2f}, token macro F1 "
        f"{row['token macro F1']:.2f}; {row['failed (all-O)']} of {row['examples']} without a valid answer "
        f"(all-O), {row['retries']} retries, {row['requests']} requests, {row['cached answers']} cached"
    )
    out.print(f"saved {row['report']} (.json, .csv) and {row['predictions']}")


@app.command("finetune")
def finetune(
    dataset: Annotated[str, typer.Option("--dataset", help="The cached dataset (t17, t15, ...).")],
    best: Annotated[
        bool,
        typer.Option("--best", help="Take the combination the grid chose on validation (RUNS winners.json)."),
    ] = False,
    winners_path: Annotated[
        Path, typer.Option("--winners", help="The grid's winner file read by --best.")
    ] = Path("runs/bench-heads/winners.json"),
    head: Annotated[str | None, typer.Option("--head", help="The head (overrides the winner's).")] = None,
    modality: Annotated[str | None, typer.Option("--modality", help="both, text or image.")] = None,
    text: Annotated[
        str | None,
        typer.Option("--text", help="Text encoder(s), as in heads train (overrides the winner's)."),
    ] = None,
    vision: Annotated[str | None, typer.Option("--vision", help="Vision encoder, or none.")] = None,
    context: Annotated[str | None, typer.Option("--context", help="none, captions or labels.")] = None,
    seeds: Annotated[
        int, typer.Option("--seeds", help="Seeds 0..N-1, each frozen and fine-tuned.", min=1)
    ] = 1,
    epochs: Annotated[int, typer.Option("--epochs", help="Most fine-tuning epochs.", min=1)] = 8,
    patience: Annotated[
        int, typer.Option("--patience", help="Epochs without a better dev entity F1 before stopping.", min=1)
    ] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per micro-batch.", min=1)] = 16,
    accumulate: Annotated[
        int, typer.Option("--accumulate", help="Micro-batches per optimizer step.", min=1)
    ] = 1,
    method: Annotated[
        str,
        typer.Option(
            "--method", help="full, lora, or auto: LoRA for decoders (Llama family), full otherwise."
        ),
    ] = "auto",
    lr_preset: Annotated[
        str,
        typer.Option(
            "--lr-preset", help="auto (thesis for full, thesis-llama for LoRA), thesis or thesis-llama."
        ),
    ] = "auto",
    lr: Annotated[
        list[str] | None,
        typer.Option(
            "--lr", help="component=rate, repeatable (text, vision, fusion, inner_lstm, crf, dense)."
        ),
    ] = None,
    warmup: Annotated[
        float, typer.Option("--warmup", help="Share of optimizer steps warming up linearly.")
    ] = 0.1,
    schedule: Annotated[
        str, typer.Option("--schedule", help="After warm-up: linear, constant or plateau.")
    ] = "linear",
    clip: Annotated[float, typer.Option("--clip", help="Max gradient norm (0: off).")] = 1.0,
    precision: Annotated[
        str, typer.Option("--precision", help="auto (bf16 autocast where native), bf16 or fp32.")
    ] = "auto",
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(
            "--gradient-checkpointing", help="Recompute encoder activations in backward (less memory)."
        ),
    ] = False,
    train_vision: Annotated[
        bool,
        typer.Option("--train-vision", help="Unfreeze the vision encoder (heads that read image vectors)."),
    ] = False,
    init: Annotated[
        str,
        typer.Option("--init", help="frozen: start from the frozen-feature head of the same seed; random."),
    ] = "frozen",
    lora_r: Annotated[int, typer.Option("--lora-r", help="LoRA rank.", min=1)] = 2,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", help="LoRA alpha.", min=1)] = 16,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout", help="LoRA dropout.")] = 0.1,
    lora_targets: Annotated[
        str | None,
        typer.Option(
            "--lora-targets", help="Module names, comma-separated (default: peft's for the architecture)."
        ),
    ] = None,
    weights_format: Annotated[
        str,
        typer.Option("--weights-format", help="A LoRA base's weights: auto (as cached), fp32, bf16 or 8bit."),
    ] = "auto",
    merge: Annotated[
        bool, typer.Option("--merge", help="Also save LoRA adapters merged into an fp32 base.")
    ] = False,
    max_minutes: Annotated[
        float | None, typer.Option("--max-minutes", help="Stop after the epoch that would pass this budget.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Train on the first N training examples (smoke runs).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto (a GPU when present), cpu or cuda.")] = "auto",
    runs: Annotated[Path, typer.Option("--runs", help="Folder of the run store, models and report.")] = Path(
        "runs/bench-finetune"
    ),
    cache: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="The feature store (default $MNER_CACHE_DIR, else ./cache)."),
    ] = None,
) -> None:
    """Fine-tune the grid's winner end to end and compare it with its frozen-feature head.

    Per seed: the head on cached features (a `bench heads` cell, found again if the store has
    it), then that head on the live encoder(s), trained end to end and chosen on dev entity F1.
    Writes RUNS/runs.jsonl, RUNS/models/<key> (a run folder `heads predict --model` takes) and
    RUNS/report/finetune.{md,json,csv}. Re-running the same command trains nothing twice.
    """
    import time

    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from bench import finetune_bench
    from bench.finetune import FinetuneConfig
    from bench.finetune import Progress as TrainProgress
    from bench.finetune import run as run_finetune
    from bench.grid import models_folder
    from bench.grid_runner import run_cell
    from bench.run_store import RunStore
    from featurize.cache.store import cache_dir
    from featurize.errors import ConfigError
    from featurize.text.trainable import LoraSettings
    from heads.cli import parse_rates
    from heads.experiment import RunSpec
    from heads.train import TrainConfig

    rates = parse_rates(lr)
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets else None
    settings = dict(
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        accumulate=accumulate,
        method=method,
        lr_preset=lr_preset,
        lr=rates,
        warmup=warmup,
        schedule=schedule,
        clip=clip,
        precision=precision,
        gradient_checkpointing=gradient_checkpointing,
        train_vision=train_vision,
        init=init,
        lora=LoraSettings(lora_r, lora_alpha, lora_dropout, targets),
        weights_format=weights_format,
        max_minutes=max_minutes,
        limit=limit,
        device=device,
        merge=merge,
    )
    FinetuneConfig(**settings)  # every option checked before anything runs
    cache_root = cache_dir(cache)
    choice = finetune_bench.choose(dataset, best, winners_path, head, modality, text, vision, context)
    command = "bench " + shlex.join(sys.argv[1:])
    out.print(
        f"[bold]{dataset}[/]: {choice.head} --modality {choice.modality}, text {choice.text}, context "
        f"{choice.context}, vision {choice.vision or '-'} ({escape(choice.source)})"
    )
    store = RunStore(runs / "runs.jsonl")
    done = store.done()

    def note(message: str) -> None:
        out.print(f"  {message}", highlight=False)

    for seed in range(seeds):
        cell = finetune_bench.frozen_cell(choice, seed)
        frozen_dir = models_folder(runs, cell)
        if cell.key not in done or not (frozen_dir / "config.json").is_file():
            out.print(f"seed {seed}: frozen-feature head ({choice.head} on cached {choice.text} features)")
            line = run_cell(asdict(cell), str(cache_root), str(runs), True)
            if line["status"] != "done":
                raise ConfigError(f"the frozen-feature head failed: {line['error']}")
            store.append(line)
            done[cell.key] = line
        frozen_line = done[cell.key]
        test_f1 = 100 * frozen_line["record"]["metrics"]["test"]["entity_f1"]
        out.print(f"seed {seed}: frozen head test entity F1 {test_f1:.2f}")
        config = FinetuneConfig(seed=seed, **settings)
        key = finetune_bench.tuned_key(cell, config)
        if key in done:
            out.print(f"seed {seed}: fine-tuned run {key} already in {store.path}: not trained again")
            continue
        spec = RunSpec(
            head=choice.head,
            inputs=finetune_bench.inputs_of(choice),
            modality=choice.modality,
            train=TrainConfig(**(choice.train | {"seed": seed})),
        )
        folder = runs / "models" / key

        bars: list[Progress] = []

        def progress_for(total: int, seed: int = seed, bars: list[Progress] = bars) -> TrainProgress:
            bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=out,
                transient=False,
            )
            task = bar.add_task(f"fine-tuning s{seed}", total=total, status="")
            bars.append(bar)
            state: dict[str, Any] = {"started": False, "dev": "", "t0": time.perf_counter()}

            every = max(1, total // 40)  # a log (no terminal) gets a line every 2.5 %

            def on_step(step: int, loss: float) -> None:
                if not out.is_terminal:
                    if step % every == 0 or step == total:
                        spent = time.perf_counter() - state["t0"]
                        eta = spent / step * (total - step)
                        out.print(
                            f"  step {step}/{total}, loss {loss:.3f}, {spent / 60:.1f} min, "
                            f"ETA {eta / 60:.1f} min (all {total // max(1, epochs)} steps x {epochs} epochs)",
                            highlight=False,
                        )
                    return
                if not state["started"]:
                    bar.start()
                    state["started"] = True
                bar.update(task, completed=step, status=f"loss {loss:.3f}{state['dev']}")

            def on_epoch(row: dict[str, float]) -> None:
                state["dev"] = f" · dev F1 {100 * row['dev_entity_f1']:.2f} (epoch {int(row['epoch'])})"
                if row["epoch"] == 0:
                    state["t0"] = time.perf_counter()  # the ETA counts training steps only
                bar.update(task, status=state["dev"].lstrip(" ·"))
                loss = (
                    "the head it starts from" if row["epoch"] == 0 else f"train loss {row['train_loss']:.3f}"
                )
                bar.console.print(
                    f"  epoch {int(row['epoch'])}: dev entity F1 {100 * row['dev_entity_f1']:.2f}, "
                    f"token macro F1 {100 * row['dev_token_macro_f1']:.2f}, {loss}, "
                    f"{row['seconds'] / 60:.1f} min",
                    highlight=False,
                )

            def on_note(message: str) -> None:
                bar.console.print(f"  {message}", highlight=False)

            return TrainProgress(total, on_step, on_epoch, on_note)

        started = time.perf_counter()
        try:
            record = run_finetune(spec, config, cache_root, folder, frozen_dir, progress_for, note)
        finally:
            for bar in bars:
                bar.stop()
        tuned_cell = asdict(cell) | {
            "train": finetune_bench.tuned_train(config, record["fine_tune"].get("method"))
        }
        line = {
            "key": key,
            "status": "done",
            "cell": tuned_cell,
            "model": str(folder),
            "wall_seconds": time.perf_counter() - started,
            "record": record,
        }
        store.append(line)
        done[key] = line
        m = record["metrics"]
        out.print(
            f"seed {seed}: fine-tuned dev entity F1 {100 * m['dev']['entity_f1']:.2f}, test {100 * m['test']['entity_f1']:.2f} "
            f"(best epoch {record['best_epoch']} of {record['epochs_run']}; {record['train_seconds'] / 60:.1f} min); saved {folder}"
        )
    mine = [line for line in store.done().values() if line["cell"]["dataset"] == dataset]
    paths = finetune_bench.write(mine, runs / "report", command, [f"Combination: {choice.source}."])
    for table in finetune_bench.report(mine, command, []):
        out.print(table.markdown(), highlight=False)
    out.print(f"report: {paths['md']}")


@app.callback()
def _root() -> None:
    """Benchmarks share one report format (Markdown + JSON under runs/)."""


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
