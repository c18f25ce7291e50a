"""``heads``: train and evaluate small models on cached features (the heads arrive in issue 4).

What exists now is the reading side of the cache contract: ``heads inspect`` opens an entry
exactly as a head will, without torch or any encoder.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from featurize.cache.text_features import TextFeatures
from featurize.console_app import run_app, stdout_console

app = typer.Typer(
    help="Train, evaluate and apply heads on cached features.", no_args_is_help=True, add_completion=False
)
out = stdout_console()


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
