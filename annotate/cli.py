"""``annotate``: label scanned pictures and their printed captions in the browser."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from featurize.console_app import run_app, stdout_console

app = typer.Typer(
    help="Build a multimodal NER dataset from scans, in the browser.",
    no_args_is_help=True,
    add_completion=False,
)
out = stdout_console()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@app.command()
def serve(
    images: Annotated[Path, typer.Option("--images", help="Folder of scans (searched recursively).")],
    out_file: Annotated[Path, typer.Option("--out", help="The dataset: a .jsonl file, created or resumed.")],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", help="A run folder (heads train / bench finetune) that pre-labels the tokens."
        ),
    ] = None,
    types: Annotated[
        str | None,
        typer.Option(
            "--types", help="Entity types, comma-separated (default PER,LOC,BUI,MIS; kept with the dataset)."
        ),
    ] = None,
    lang: Annotated[
        str, typer.Option("--lang", help="Tesseract language(s): deu, frk (Fraktur), deu+frk ...")
    ] = "deu",
    label_map: Annotated[
        str,
        typer.Option(
            "--label-map",
            help="The model's types onto --types: auto (its own names, else the fitting shipped map), "
            "hicbam, conll, OLD=NEW pairs (NEW O drops one), or none.",
        ),
    ] = "auto",
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (local only by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: a free one).")] = 0,
) -> None:
    """Start the web app and print its address; Ctrl-C stops it (every saved item is on disk)."""
    import uvicorn

    from annotate.app import create_app

    parsed = [t.strip() for t in types.split(",") if t.strip()] if types else None
    port = port or free_port(host)  # known before the app: it accepts only its own Host and Origin
    application = create_app(
        images,
        out_file,
        parsed,
        model,
        lang,
        label_map,
        lambda message: out.print(message, highlight=False),
        port=port,
        host=host,
    )
    out.print(
        f"annotate: [bold]http://{host}:{port}/[/]  (scans {images}, dataset {out_file}; Ctrl-C to stop)"
    )
    uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command("ocr-eval")
def ocr_eval(
    images: Annotated[Path, typer.Option("--images", help="Folder the references' images are in.")],
    reference: Annotated[Path, typer.Option("--reference", help="JSONL: {image, box, text} per line.")],
    engine: Annotated[str, typer.Option("--engine", help="Engines, comma-separated.")] = "tesseract",
    lang: Annotated[
        str, typer.Option("--lang", help="Language settings, comma-separated (deu, frk, deu+frk).")
    ] = "deu,frk,deu+frk",
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the report (md, json, csv) here.")
    ] = None,
) -> None:
    """Character error rate of each OCR engine x language setting against your transcriptions."""
    import shlex
    import sys

    from annotate.ocr_eval import ocr_report
    from heads.report_table import save_reports

    table = ocr_report(
        images,
        reference,
        [e.strip() for e in engine.split(",") if e.strip()],
        [x.strip() for x in lang.split(",") if x.strip()],
        "annotate " + shlex.join(sys.argv[1:]),
        lambda message: out.print(f"[yellow]{message}[/]"),
    )
    out.print(table.markdown(), highlight=False)
    if report is not None:
        paths = save_reports([table], report, "ocr-eval", "annotate ocr-eval")
        out.print(f"report: {paths['md']}")


@app.command("prelabel-eval")
def prelabel_eval(
    model: Annotated[Path, typer.Option("--model", help="A run folder (heads train / bench finetune).")],
    reference: Annotated[
        Path,
        typer.Option(
            "--reference", help="JSONL of gold captions: {image, picture_box, text, tokens, label}."
        ),
    ],
    label_map: Annotated[
        str,
        typer.Option(
            "--label-map",
            help="The model's types onto --types, as in annotate serve: auto, hicbam, conll, "
            "OLD=NEW pairs, none.",
        ),
    ] = "auto",
    types: Annotated[
        str, typer.Option("--types", help="The session's entity types, comma-separated.")
    ] = "PER,LOC,BUI,MIS",
    images: Annotated[
        Path | None,
        typer.Option(
            "--images", help="Folder of the references' scans (needed when the model reads images)."
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="Feature cache, read only for runs that did not record their encoders."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the report (md, json, csv) here.")
    ] = None,
) -> None:
    """Labels a user changes with the model's pre-labels against labelling every token from O."""
    import shlex
    import sys

    from annotate.prelabel_eval import prelabel_report
    from annotate.store import check_types
    from heads.report_table import save_reports

    tables = prelabel_report(
        model,
        reference,
        check_types([t.strip() for t in types.split(",") if t.strip()]),
        label_map,
        images,
        cache_dir,
        "annotate " + shlex.join(sys.argv[1:]),
        lambda message: out.print(f"[yellow]{message}[/]", highlight=False),
    )
    for table in tables:
        out.print(table.markdown(), highlight=False, soft_wrap=True)  # a Markdown table: never wrapped
    if report is not None:
        paths = save_reports(tables, report, "prelabel-eval", "annotate prelabel-eval")
        out.print(f"report: {paths['md']}")


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
