"""``bench``: measurements that compare configurations inside one run (these machines are noisy).

Every command parses its options and calls a library function (bench.grid_run, bench.finetune,
bench.featurize_speed, bench.probe, bench.grid_speed, bench.llm_baseline); defaults are read
from the configuration objects those functions take.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench.finetune import FinetuneRequest
from bench.grid import GRID_TRAIN as GRID
from bench.grid import GridOptions
from bench.grid_run import GridRun
from bench.halving import Halving
from bench.knowledge_coverage import BUDGETS as KNOWLEDGE_BUDGETS
from bench.llm_baseline import LLMRunConfig
from featurize import cli_options as opt
from featurize.cache.store import cache_dir
from featurize.console_app import run_app, stdout_console
from featurize.datasets import DEFAULT_DATASET
from featurize.text import DEFAULT_TEXT_ENCODER
from heads.train_config import FINETUNE as FT

FT_ENC = FT.encoders
assert FT_ENC is not None
RUN = GridRun()
GRID_OPTIONS = GridOptions()
HALVING = Halving()
LLM = LLMRunConfig()
FT_REQUEST = FinetuneRequest("", FT)

app = typer.Typer(
    help="Benchmarks, the experiment grid and fine-tuning.", no_args_is_help=True, add_completion=False
)
out = stdout_console()


def _command() -> str:
    return "bench " + shlex.join(sys.argv[1:])


def _save(report, folder: Path, name: str) -> None:  # noqa: ANN001
    out.print(report.markdown())
    md, _ = report.save(folder, name)
    out.print(f"saved {md} (and .json)")


@app.command()
def featurize(
    dataset: opt.Dataset = DEFAULT_DATASET,
    split: Annotated[str, typer.Option("--split", help="Split to take the examples from.")] = "dev",
    text: opt.Text = DEFAULT_TEXT_ENCODER,
    vision: opt.Vision = None,
    images: opt.Images = None,
    layers: Annotated[str, typer.Option("--layers", help="Layers averaged, as in `featurize`.")] = "last4",
    limit: Annotated[int, typer.Option("--limit", help="Examples to encode (0: the whole split).")] = 0,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="captions, knowledge, captions+knowledge (comma-separated): instead of the encoder rows, "
            "each second segment with batches ordered by the words only and by the whole input.",
        ),
    ] = None,
    context_budget: opt.ContextBudget = None,
    knowledge_file: opt.KnowledgeFile = None,
    data_dir: opt.DataDir = None,
    output: opt.ReportFolder = Path("runs/bench"),
) -> None:
    """Inputs/s and peak memory of each encoder: a naive baseline vs the toolkit's batched paths, in one run."""
    from bench.featurize_speed import speed_report

    reports = speed_report(
        dataset,
        split,
        opt.names(text) or [],
        opt.names(vision) or [],
        images,
        layers,
        limit,
        data_dir,
        _command(),
        opt.names(context),
        context_budget,
        knowledge_file,
    )
    for report in reports:
        name = "featurize-speed" if report.title == "Encoder speed" else "featurize-context-speed"
        _save(report, output, name)


@app.command()
def probe(
    dataset: opt.Dataset = DEFAULT_DATASET,
    text: opt.Text = DEFAULT_TEXT_ENCODER,
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
    data_dir: opt.DataDir = None,
    cache: opt.CacheDir = None,
    output: opt.ReportFolder = Path("runs/bench"),
) -> None:
    """Linear probe (logistic regression per word, train -> dev) of word features, to choose
    pooling and layers by measurement. Features come from (and go to) the cache."""
    from bench.probe import probe_report

    report = probe_report(
        dataset,
        opt.names(text) or [],
        opt.names(pooling) or [],
        [x.strip() for x in layers.split(";") if x.strip()],
        weights_format,
        data_dir,
        cache_dir(cache),
        _command(),
    )
    _save(report, output, "probe")


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
    dataset: opt.Datasets = None,
    head: opt.Heads = None,
    text: opt.Text = None,
    vision: opt.Vision = None,
    context: opt.Context = None,
    knowledge_hints: opt.KnowledgeHints = None,
    seeds: opt.Seeds = GRID_OPTIONS.seeds,
    epochs: opt.Epochs = GRID.epochs,
    patience: opt.Patience = GRID.patience,
    batch_size: opt.BatchSize = GRID.batch_size,
    precision: opt.Precision = GRID.precision,
    workers: Annotated[
        int, typer.Option("--workers", help="Cells run in parallel (processes).", min=1)
    ] = RUN.workers,
    threads: Annotated[int, typer.Option("--threads", help="Torch threads per worker.", min=1)] = RUN.threads,
    runs: Annotated[
        Path, typer.Option("--runs", help="Folder of the run store, models, report, plots and winner file.")
    ] = RUN.runs,
    save_models: Annotated[
        bool, typer.Option("--save-models/--no-save-models", help="Keep each cell's trained head.")
    ] = RUN.save_models,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Train nothing: report what the store holds.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the cells and skips, run nothing.")
    ] = False,
    cache: opt.CacheDir = None,
    engine: opt.Engine = RUN.engine,
    ray_address: opt.RayAddress = None,
    gpus_per_cell: Annotated[
        float,
        typer.Option(
            "--gpus-per-cell", help="With --engine ray: the GPU share of each cell (0: CPU only).", min=0
        ),
    ] = RUN.gpus_per_cell,
    halving: Annotated[
        bool,
        typer.Option(
            "--halving/--exact",
            help="Successive halving: every configuration trains to the first rung, the best 1/eta per "
            "dataset (mean dev entity F1 over seeds) go on, only the last rung's survivors train to "
            "the end. Off by default: the exact grid trains every cell to its end.",
        ),
    ] = False,
    halving_eta: Annotated[
        int, typer.Option("--halving-eta", help="With --halving: keep the best 1/eta at each rung.", min=2)
    ] = HALVING.eta,
    halving_first_rung: Annotated[
        int,
        typer.Option(
            "--halving-first-rung",
            help="With --halving: the first rung's epoch; the next ones are eta times the previous.",
            min=1,
        ),
    ] = HALVING.first_rung,
) -> None:
    """Train and evaluate every head x cached input combination x dataset x seed; resumable.

    Results are appended to RUNS/runs.jsonl as each cell finishes; a re-run skips finished
    cells. Writes RUNS/report/heads-grid.{md,json,csv}, PNG plots and RUNS/winners.json (the
    configuration with the best mean validation entity F1 per dataset, read by fine-tuning).
    """
    from dataclasses import replace

    from rich.console import Console

    from bench.grid import GridOptions
    from bench.grid_run import GridRun, run

    options = GridOptions(
        datasets=opt.names(dataset),
        heads=opt.names(head),
        texts=opt.names(text),
        visions=opt.names(vision),
        contexts=opt.names(context),
        seeds=seeds,
        all=all_,
        knowledge_hints=GRID_OPTIONS.knowledge_hints if knowledge_hints is None else knowledge_hints,
        train=replace(GRID, epochs=epochs, patience=patience, batch_size=batch_size, precision=precision),
    )

    how = GridRun(
        runs,
        workers,
        threads,
        save_models,
        report_only,
        dry_run,
        engine,
        ray_address,
        gpus_per_cell,
        Halving(halving_eta, halving_first_rung) if halving else None,
    )
    outcome = run(options, how, cache_dir(cache), out, Console(stderr=True), _command())
    if outcome.failed:
        raise typer.Exit(1)


@app.command("grid-speed")
def grid_speed(
    dataset: opt.Dataset = DEFAULT_DATASET,
    head: Annotated[str, typer.Option("--head", help="Heads, comma-separated.")] = "bilstm-crf,msb",
    seeds: opt.Seeds = 2,
    settings: Annotated[
        str,
        typer.Option(
            "--settings",
            help="WORKERSxTHREADS settings to compare, comma-separated; the first is the baseline.",
        ),
    ] = "1x1,1x2,2x1",
    epochs: opt.Epochs = GRID.epochs,
    cache: opt.CacheDir = None,
    output: opt.ReportFolder = Path("runs/bench"),
) -> None:
    """The same small grid (text-only cells) under each workers x threads setting, in one run:
    wall time as a ratio to the baseline, and whether the scores stayed the same."""
    from bench.grid_speed import grid_speed_report, parse_settings

    report = grid_speed_report(
        dataset,
        opt.names(head) or [],
        seeds,
        parse_settings(settings),
        epochs,
        cache_dir(cache),
        out,
        _command(),
    )
    _save(report, output, "grid-speed")


@app.command("knowledge")
def knowledge(
    dataset: Annotated[
        str, typer.Option("--dataset", help="Named datasets with a knowledge file, comma-separated.")
    ] = "t15,t17",
    text: opt.Text = "mpnet",
    budgets: Annotated[
        str, typer.Option("--budgets", help="Subword budgets to report, comma-separated.")
    ] = ",".join(str(b) for b in KNOWLEDGE_BUDGETS),
    knowledge_file: opt.KnowledgeFile = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="A head trained with --context knowledge: score it on the examples --knowledge FILE covers, "
            "with that file's knowledge and with the dataset's own (instead of the coverage table).",
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="With --model: a head without knowledge, on the same examples."),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="With --model: the split to score.")] = "test",
    data_dir: opt.DataDir = None,
    cache: opt.CacheDir = None,
    output: opt.ReportFolder = Path("runs/bench"),
) -> None:
    """How much of each split's knowledge an encoder reads at each --context-budget, and how
    many gold mentions the knowledge names (anywhere, in its entity list, in the part a budget
    keeps). Loads the encoder's tokenizer only. With --model: a knowledge file's effect on a
    head trained with another (e.g. a local model's knowledge against PGIM's)."""
    from bench.knowledge_coverage import CoverageRequest, SwapRequest, coverage, swap

    if model is not None:
        if knowledge_file is None:
            raise typer.BadParameter("--model needs --knowledge FILE", param_hint="--knowledge")
        report = swap(SwapRequest(model, knowledge_file, split, baseline, data_dir, cache_dir(cache)))
        report.command = _command()
        _save(report, output, "knowledge-swap")
        return

    try:
        chosen = [int(b) for b in opt.names(budgets) or []]
    except ValueError:
        raise typer.BadParameter("comma-separated whole numbers", param_hint="--budgets") from None
    request = CoverageRequest(opt.names(dataset) or [], text, chosen, knowledge_file, data_dir)
    (report,) = coverage(request)
    report.command = _command()
    _save(report, output, "knowledge-coverage")


@app.command("llm")
def llm(
    dataset: Annotated[
        str, typer.Option("--dataset", help="A named dataset or a path (with --format in featurize).")
    ] = LLM.dataset,
    split: Annotated[str, typer.Option("--split", help="Split to tag and score.")] = LLM.split,
    base_url: opt.BaseUrl = LLM.base_url,
    model: opt.ChatModel = LLM.model,
    api_key_env: opt.ApiKeyEnv = LLM.api_key_env,
    shots: Annotated[
        int, typer.Option("--shots", help="Few-shot examples from train, fixed by --seed.", min=0)
    ] = LLM.shots,
    context: Annotated[
        str, typer.Option("--context", help="none, or captions: the image's BLIP-2 caption as text.")
    ] = LLM.context,
    image_dir: Annotated[
        Path | None,
        typer.Option(
            "--image-dir", help="Send each example's image as an image part (servers that take images)."
        ),
    ] = None,
    image_map: opt.ImageMap = None,
    template: Annotated[
        Path | None,
        typer.Option("--template", help="Prompt template file (default bench/prompts/thesis.txt)."),
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", help="Retries of an invalid answer before it counts as all-O.", min=0)
    ] = LLM.retries,
    structured: Annotated[
        str,
        typer.Option(
            "--structured", help="auto, json_schema, json_object or off (structured-output request)."
        ),
    ] = LLM.structured,
    concurrency: opt.Concurrency = LLM.concurrency,
    timeout: opt.RequestTimeout = LLM.timeout,
    attempts: opt.Attempts = LLM.attempts,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Answer length limit (0: 24 + 12 per word).", min=0)
    ] = LLM.max_tokens,
    seed: Annotated[
        int, typer.Option("--seed", help="Fixes the few-shot examples and the server's sampling seed.")
    ] = LLM.seed,
    limit: Annotated[
        int, typer.Option("--limit", help="Tag only the first N examples (0: all).", min=0)
    ] = LLM.limit,
    threads: opt.ServerThreads = LLM.threads,
    data_dir: opt.DataDir = None,
    output: Annotated[
        Path, typer.Option("--out", help="Folder for answers cache, predictions and report.")
    ] = LLM.out,
) -> None:
    """Prompt a chat model to tag every word; score it like the heads (entity micro F1, token macro F1)."""
    from bench.llm_baseline import LLMRunConfig, run

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
        threads=threads,
    )
    row = run(config, out)
    out.print(
        f"{row['dataset']}/{row['split']} {row['model']}: entity F1 {row['entity F1']:.2f}, token macro F1 "
        f"{row['token macro F1']:.2f}; {row['failed (all-O)']} of {row['examples']} without a valid answer "
        f"(all-O), {row['retries']} retries, {row['requests']} requests, {row['cached answers']} cached"
    )
    out.print(f"saved {row['report']} (.json, .csv) and {row['predictions']}")


@app.command("finetune")
def finetune(
    dataset: opt.Corpora,
    best: Annotated[
        bool,
        typer.Option("--best", help="Take the combination the grid chose on validation (RUNS winners.json)."),
    ] = False,
    winners_path: Annotated[
        Path, typer.Option("--winners", help="The grid's winner file read by --best.")
    ] = FT_REQUEST.winners,
    head: opt.Head = None,
    modality: opt.Modality = None,
    text: opt.Text = None,
    vision: opt.Vision = None,
    context: opt.Context = None,
    knowledge_hints: opt.KnowledgeHints = FT_REQUEST.knowledge_hints,
    label_map: opt.CorporaLabelMap = FT_REQUEST.label_map,
    seeds: opt.Seeds = FT_REQUEST.seeds,
    first_seed: opt.FirstSeed = FT_REQUEST.first_seed,
    epochs: opt.Epochs = FT.epochs,
    patience: opt.Patience = FT.patience,
    batch_size: opt.BatchSize = FT.batch_size,
    accumulate: Annotated[
        int, typer.Option("--accumulate", help="Micro-batches per optimizer step.", min=1)
    ] = FT.accumulate,
    method: Annotated[
        str,
        typer.Option(
            "--method", help="full, lora, or auto: LoRA for decoders (Llama family), full otherwise."
        ),
    ] = FT_ENC.method,
    lr_preset: Annotated[
        str,
        typer.Option(
            "--lr-preset", help="auto (thesis for full, thesis-llama for LoRA), thesis or thesis-llama."
        ),
    ] = FT.lr_preset,
    lr: opt.LearningRates = None,
    warmup: Annotated[
        float, typer.Option("--warmup", help="Share of optimizer steps warming up linearly.")
    ] = FT.warmup,
    scheduler: Annotated[
        str,
        typer.Option("--scheduler", "--schedule", help="After warm-up: linear, constant or plateau."),
    ] = FT.scheduler,
    clip: opt.Clip = FT.clip,
    precision: opt.Precision = FT.precision,
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(
            "--gradient-checkpointing", help="Recompute encoder activations in backward (less memory)."
        ),
    ] = FT_ENC.gradient_checkpointing,
    train_vision: Annotated[
        bool,
        typer.Option("--train-vision", help="Unfreeze the vision encoder (heads that read image vectors)."),
    ] = FT_ENC.train_vision,
    init: Annotated[
        str,
        typer.Option("--init", help="frozen: start from the frozen-feature head of the same seed; random."),
    ] = FT_ENC.init,
    lora_r: Annotated[int, typer.Option("--lora-r", help="LoRA rank.", min=1)] = FT_ENC.lora.r,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", help="LoRA alpha.", min=1)] = FT_ENC.lora.alpha,
    lora_dropout: Annotated[
        float, typer.Option("--lora-dropout", help="LoRA dropout.")
    ] = FT_ENC.lora.dropout,
    lora_targets: Annotated[
        str | None,
        typer.Option(
            "--lora-targets", help="Module names, comma-separated (default: peft's for the architecture)."
        ),
    ] = None,
    weights_format: Annotated[
        str,
        typer.Option("--weights-format", help="A LoRA base's weights: auto (as cached), fp32, bf16 or 8bit."),
    ] = FT_ENC.weights_format,
    merge: Annotated[
        bool, typer.Option("--merge", help="Also save LoRA adapters merged into an fp32 base.")
    ] = FT_ENC.merge,
    max_minutes: Annotated[
        float | None, typer.Option("--max-minutes", help="Stop after the epoch that would pass this budget.")
    ] = None,
    limit: opt.Limit = None,
    device: opt.Device = FT.device,
    runs: Annotated[
        Path, typer.Option("--runs", help="Folder of the run store, models and report.")
    ] = FT_REQUEST.runs,
    cache: opt.CacheDir = None,
) -> None:
    """Fine-tune the grid's winner end to end and compare it with its frozen-feature head.

    Per seed: the head on cached features (a `bench heads` cell, found again if the store has
    it), then that head on the live encoder(s), trained end to end and chosen on dev entity F1.
    Writes RUNS/runs.jsonl, RUNS/models/<key> (a run folder `heads predict --model` takes) and
    RUNS/report/finetune.{md,json,csv}. Re-running the same command trains nothing twice.
    """
    from bench.finetune import FinetuneRequest, run
    from featurize.text.trainable import LoraSettings
    from heads.train_config import EncoderTraining, finetune_config

    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets else None
    encoders = EncoderTraining(
        method=method,
        init=init,
        lora=LoraSettings(lora_r, lora_alpha, lora_dropout, targets),
        weights_format=weights_format,
        gradient_checkpointing=gradient_checkpointing,
        train_vision=train_vision,
        merge=merge,
    )
    config = finetune_config(  # every option checked before anything runs
        encoders,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        accumulate=accumulate,
        lr_preset=lr_preset,
        lr=opt.parse_rates(lr),
        warmup=warmup,
        scheduler=scheduler,
        clip=clip,
        precision=precision,
        max_minutes=max_minutes,
        limit=limit,
        device=device,
    )
    request = FinetuneRequest(
        dataset,
        config,
        best,
        winners_path,
        head,
        modality,
        text,
        vision,
        context,
        seeds,
        runs,
        label_map,
        knowledge_hints,
        first_seed,
    )
    run(request, cache_dir(cache), out, _command())


@app.callback()
def _root() -> None:
    """Benchmarks share one report format (Markdown + JSON + CSV under runs/)."""


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
