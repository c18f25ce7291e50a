"""Progress display for the long benchmark jobs: a bar on a terminal, plain lines in a log.

The library reports through :class:`heads.trainer.Progress` callbacks and the grid runner's
``on_done``; these turn them into rich bars (with an ETA) when stdout is a terminal and into
a line every few percent when it is a file, so a log of a two-hour run stays readable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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

from heads.trainer import Progress as TrainProgress


@contextmanager
def training_bar(out: Console, description: str, epochs: int) -> Iterator[Callable[[int], TrainProgress]]:
    """Yield ``progress_for(total_steps)``: the callbacks of one training run, drawn on ``out``."""
    bars: list[Progress] = []

    def progress_for(total: int) -> TrainProgress:
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
        task = bar.add_task(description, total=total, status="")
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
            loss = "the head it starts from" if row["epoch"] == 0 else f"train loss {row['train_loss']:.3f}"
            bar.console.print(
                f"  epoch {int(row['epoch'])}: dev entity F1 {100 * row['dev_entity_f1']:.2f}, "
                f"token macro F1 {100 * row['dev_token_macro_f1']:.2f}, {loss}, "
                f"{row['seconds'] / 60:.1f} min",
                highlight=False,
            )

        def on_note(message: str) -> None:
            bar.console.print(f"  {message}", highlight=False)

        return TrainProgress(total, on_step, on_epoch, on_note)

    try:
        yield progress_for
    finally:
        for bar in bars:
            bar.stop()


@contextmanager
def cells_bar(err: Console, total: int, labels: dict[str, str]) -> Iterator[Callable[[dict], None]]:
    """Yield ``on_done(line)`` for the grid runner: advances a bar and prints each cell's scores."""
    with Progress(
        TextColumn("[bold]bench heads[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("cells", total=total)

        def on_done(line: dict) -> None:
            bar.advance(task)
            name = labels.get(line["key"], line["key"])
            if line["status"] in ("done", "stopped"):  # stopped: paused at a halving rung
                m = line["record"]["metrics"]
                paused = f", paused after epoch {line['stop_after']}" if line["status"] == "stopped" else ""
                bar.console.print(
                    f"{escape(name)}: dev {100 * m['dev']['entity_f1']:.2f} test {100 * m['test']['entity_f1']:.2f} "
                    f"({line['wall_seconds']:.0f} s{paused})"
                )
            else:
                bar.console.print(f"[red]failed[/] {escape(name)}: {escape(line['error'])}")

        yield on_done
