"""The ``featurize knowledge`` command: a chat model's PGIM-style knowledge per example, written
as a knowledge file (:mod:`featurize.knowledge_generate` does the work).

It lives in its own module so the command's options sit beside nothing else; ``featurize.cli``
registers it with ``app.command("knowledge")(knowledge)``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from featurize.cli_options import (
    ApiKeyEnv,
    Attempts,
    BaseUrl,
    CacheDir,
    ChatModel,
    Concurrency,
    DataDir,
    RequestTimeout,
    Seed,
    ServerThreads,
)
from featurize.console_app import stdout_console
from featurize.knowledge_generate import KnowledgeRunConfig, KnowledgeSummary, run_knowledge, summary_path

DEFAULTS = KnowledgeRunConfig()
SHOW_FAILED = 10  # failed ids printed; the summary file lists them all


def knowledge(
    dataset: Annotated[
        str, typer.Argument(help="A named dataset (see `featurize datasets`) or a path with --format.")
    ],
    base_url: BaseUrl,
    model: ChatModel = DEFAULTS.model,
    split: Annotated[
        list[str] | None,
        typer.Option("--split", help="Only this split (repeatable or comma-separated). Default: all."),
    ] = None,
    shots: Annotated[
        int, typer.Option("--shots", help="In-context examples from train, answered from their gold labels.")
    ] = DEFAULTS.shots,
    seed: Seed = DEFAULTS.seed,
    concurrency: Concurrency = DEFAULTS.concurrency,
    limit: Annotated[
        int, typer.Option("--limit", help="Only the first N examples of each split (0: all).")
    ] = DEFAULTS.limit,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="The knowledge file to write (default <cache>/knowledge/<dataset>-<model>.tsv)."
        ),
    ] = None,
    api_key_env: ApiKeyEnv = DEFAULTS.api_key_env,
    timeout: RequestTimeout = DEFAULTS.timeout,
    attempts: Attempts = DEFAULTS.attempts,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Longest answer, in the model's tokens.")
    ] = DEFAULTS.max_tokens,
    threads: ServerThreads = DEFAULTS.threads,
    data_dir: DataDir = None,
    cache: CacheDir = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Format of a dataset given as a path: conll, umt, jsonl or hipe."),
    ] = None,
    captions: Annotated[
        Path | None,
        typer.Option(
            "--captions",
            help="Captions file '<image> :<caption>' per line (default: the dataset's BLIP-2 file, when it has one).",
        ),
    ] = None,
    no_captions: Annotated[
        bool, typer.Option("--no-captions", help="Leave the image captions out of the prompt.")
    ] = False,
) -> None:
    """Ask a chat model for PGIM-style knowledge per example (entities with their kinds, then a
    short reasoning) and write it as a knowledge file for --context knowledge."""
    config = KnowledgeRunConfig(
        dataset=dataset,
        splits=[s.strip() for value in split or [] for s in value.split(",") if s.strip()] or None,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
        shots=shots,
        seed=seed,
        concurrency=concurrency,
        timeout=timeout,
        attempts=attempts,
        max_tokens=max_tokens,
        limit=limit,
        out=out,
        data_dir=data_dir,
        cache_dir=cache,
        captions=not no_captions,
        captions_file=captions,
        format=fmt,
        threads=threads,
    )
    summary = run_knowledge(config, Console(stderr=True))
    report(summary, stdout_console(), [dataset] + (["--format", fmt] if fmt else []))


def report(summary: KnowledgeSummary, out: Console, dataset_args: list[str]) -> None:
    """The counts per split, the failed ids, where the file is and how to read it (``dataset_args``:
    the dataset as the command named it, for the ``featurize`` line to copy)."""
    table = Table("split", "examples", "written", "failed", "cached", "seconds", "ex/s")
    for name, counts in summary.splits.items():
        rate = counts.examples / counts.seconds if counts.seconds else 0.0
        table.add_row(
            name,
            *(str(v) for v in (counts.examples, counts.written, counts.failed, counts.cached)),
            f"{counts.seconds:.1f}",
            f"{rate:.2f}",
        )
    out.print(table)
    totals = summary.totals
    out.print(
        f"examples {totals.examples}, written {totals.written}, failed {totals.failed}, "
        f"cached {totals.cached}, requests sent {summary.requests}, wall time {summary.seconds:.1f} s "
        f"({summary.model}, {summary.shots} shots, seed {summary.seed})",
        highlight=False,
    )
    if summary.duplicates:
        out.print(
            f"{summary.duplicates} examples share an id with an earlier one: asked once", highlight=False
        )
    if summary.failed:
        shown = ", ".join(f["id"] for f in summary.failed[:SHOW_FAILED])
        more = f" and {len(summary.failed) - SHOW_FAILED} more" if len(summary.failed) > SHOW_FAILED else ""
        out.print(
            f"no knowledge for {len(summary.failed)} (absent from the file; a re-run asks again): {shown}{more}; "
            f"first error: {escape(summary.failed[0]['error'])}",
            highlight=False,
        )
    out.print(f"knowledge: {summary.out}", highlight=False, soft_wrap=True)
    out.print(f"how it was made: {summary_path(summary.out)}", highlight=False, soft_wrap=True)
    use = shlex.join(
        [
            "featurize",
            *dataset_args,
            "--text",
            "mpnet",
            "--context",
            "knowledge",
            "--knowledge",
            str(summary.out),
        ]
    )
    out.print(f"use it: {use}", highlight=False, soft_wrap=True)
