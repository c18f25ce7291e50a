"""Running a typer app as a console script: user errors become one line and exit code 2."""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console

from featurize.errors import MnerError


def stdout_console() -> Console:
    """Tables for a pipe or a log are not cut to 80 columns."""
    return Console(width=None if sys.stdout.isatty() else 160)


# typer 0.2x carries its own copy of click: its BadParameter is not click's, so both are caught.
_CLICK_ERRORS = (click.exceptions.ClickException,) + tuple(
    c
    for c in typer.BadParameter.__mro__
    if c.__name__ == "ClickException" and c is not click.exceptions.ClickException
)
_ABORTS = (KeyboardInterrupt, click.exceptions.Abort, typer.Abort)


def run_app(app: typer.Typer) -> None:
    console = Console(stderr=True)
    try:
        code = app(standalone_mode=False)
    except MnerError as err:
        console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except _CLICK_ERRORS as err:
        err.show()
        sys.exit(err.exit_code)
    except _ABORTS:
        console.print("interrupted: finished chunks are kept; run the same command to resume")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
