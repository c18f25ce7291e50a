"""Counts per split and per entity type: the first thing to look at in a new dataset."""

from __future__ import annotations

from rich.table import Table

from featurize.datasets import Dataset
from featurize.labels import count_entities


def summary_tables(dataset: Dataset, images_checked: bool) -> list[Table]:
    overview = Table(title=f"{dataset.name}: {dataset.spec.source}", title_justify="left")
    for column in (
        "split",
        "examples",
        "tokens",
        "entities",
        "spans opening with I-",
        "images found",
        "images missing",
        "dropped (no image)",
        "captions",
    ):
        overview.add_column(column, justify="right" if column != "split" else "left")
    per_type: dict[str, dict[str, int]] = {}
    for name, split in dataset.splits.items():
        entities: dict[str, int] = {}
        for example in split.examples:
            for kind, n in count_entities(example.labels).items():
                entities[kind] = entities.get(kind, 0) + n
        per_type[name] = entities
        i_starts = f"{split.i_starts}" if not split.repaired else f"{split.repaired} (repaired to B-)"
        overview.add_row(
            name,
            f"{len(split.examples):,}",
            f"{sum(len(e.words) for e in split.examples):,}",
            f"{sum(entities.values()):,}",
            i_starts,
            f"{split.images_found:,}" if images_checked else "not checked",
            f"{split.images_missing:,}" if images_checked else "(no --images)",
            f"{split.dropped_missing_image:,}",
            f"{split.captions_found:,}",
        )
    types = sorted({t for counts in per_type.values() for t in counts})
    by_type = Table(title="entities per type", title_justify="left")
    by_type.add_column("type")
    for name in dataset.splits:
        by_type.add_column(name, justify="right")
    for kind in types:
        by_type.add_row(kind, *(f"{per_type[s].get(kind, 0):,}" for s in dataset.splits))
    return [overview, by_type]
