"""bench.grid_plots draws every plot of a small synthetic grid, and skips (rather than writes
empty) the ones without data: a crf head has no per-epoch history, a run may have no confusion."""

from __future__ import annotations

from pathlib import Path

from bench.grid_plots import write_plots
from bench.grid_summary import summarise

CONFUSION = {
    "PER": {"PER": 40, "ORG": 3, "missed": 5},
    "ORG": {"ORG": 20, "LOC": 2, "missed": 6},
    "LOC": {"LOC": 15, "missed": 4},
    "spurious": {"PER": 4, "LOC": 1},
}


def _line(
    dataset: str,
    head: str,
    seed: int,
    dev: float,
    *,
    modality: str = "text",
    text: str | None = "minilm",
    vision: str | None = None,
    context: str = "none",
    epochs: int = 4,
    confusion: dict | None = None,
) -> dict:
    """One done store line shaped like bench heads writes it (only what the plots read is real)."""
    history = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "dev_entity_f1": dev - 0.2 / e + 0.01 * seed,
            "dev_token_macro_f1": dev - 0.25 / e,
            "lr_max": 0.001,
            "seconds": 2.0 * e,
        }
        for e in range(1, epochs + 1 + seed)  # seeds stop at different epochs
    ]
    if not epochs:  # crf: one fit, no per-epoch history
        history = []
    test = {"entity_f1": dev - 0.02, "token_macro_f1": dev - 0.05}
    test["entity_confusion"] = CONFUSION if confusion is None else confusion
    cell = {
        "dataset": dataset,
        "head": head,
        "modality": modality,
        "text": text,
        "vision": vision,
        "context": context,
        "seed": seed,
        "train": {},
    }
    return {
        "key": f"{dataset}-{head}-{modality}-{text}-{vision}-{context}-{seed}",
        "status": "done",
        "cell": cell,
        "model": None,
        "wall_seconds": 10.0 + 5 * seed,
        "record": {
            "metrics": {"dev": {"entity_f1": dev, "token_macro_f1": dev - 0.05}, "test": test},
            "train_seconds": (300.0 if head == "cwi" else 3.0) + seed,
            "peak_memory_mib": 100.0,
            "epochs_run": len(history),
            "history": history,
        },
    }


def _lines() -> list[dict]:
    lines = []
    for seed in (0, 1):
        lines += [
            # d1: the dev winner is crf, which has no history: the curves show the next ones
            _line("d1", "crf", seed, 0.90, text=None, epochs=0),
            _line("d1", "cwi", seed, 0.80),
            _line("d1", "linear", seed, 0.70, modality="both", vision="cnn"),
            _line("d1", "bilstm-crf", seed, 0.75, context="captions"),
            # d2: one configuration, no confusion table: no confusion plot
            _line("d2", "bilstm", seed, 0.60, text=None, confusion={}),
        ]
    # d3: one crf configuration, identical seeds (zero std), nothing to draw curves from
    return lines + [_line("d3", "crf", seed, 0.5, text=None, epochs=0) for seed in (0, 1)]


def test_write_plots(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    results = summarise(_lines())
    paths = write_plots(results, tmp_path / "plots", top=3)
    expected = {
        "f1-d1.png",
        "learning-curves-d1.png",
        "confusion-d1.png",
        "f1-d2.png",
        "learning-curves-d2.png",
        "f1-d3.png",
        "confusion-d3.png",
        "cost-vs-f1.png",
    }
    assert {p.name for p in paths} == expected
    assert {p.name for p in (tmp_path / "plots").iterdir()} == expected
    for path in paths:
        assert path.read_bytes()[:4] == b"\x89PNG", path
    assert not plt.get_fignums()  # every figure closed


def test_write_plots_nothing(tmp_path: Path) -> None:
    assert write_plots([], tmp_path) == []
