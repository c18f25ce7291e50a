"""The progress bar of a run that sends one chat request (or a few) per example: examples done
of all, the rate in examples per second, the elapsed time, the ETA, and a status text the
caller fills (failed, cached, retries).

``bench llm`` and ``featurize knowledge`` both draw it, so the two runs look and read alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def examples_bar(console: Console, description: str, total: int) -> Iterator[Callable[[str], None]]:
    """Yield ``done(status)``: call it once per finished example (from the thread that collects
    the results); the bar advances by one and shows ``status`` beside the rate and ETA."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    started = time.perf_counter()
    finished = 0
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(escape(description), total=total, rate="", status="")

        def done(status: str) -> None:
            nonlocal finished
            finished += 1
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, rate=f"{finished / elapsed:.2f} ex/s", status=status)

        yield done
