"""The ``crf`` head: the sklearn-crfsuite baseline run like every other head (same inputs, same
metrics, same run.json), with c1/c2 chosen on validation.

With ``--text`` the cached word vectors add KMeans cluster ids as features (``--set
clusters=100,500``); without it the tagger sees classic word features only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from featurize.atomic import atomic_write_text
from featurize.build import library_versions, peak_memory_mib
from featurize.errors import ConfigError
from heads.crf_suite import CrfSuiteConfig, CrfSuiteTagger
from heads.data import SplitData, load_split
from heads.experiment import RunSpec
from heads.inputs import EntryIndex, InputSpec
from heads.metrics import METRIC_NOTES, all_scores

NAME = "crf"
MARKER = "crfsuite.json"


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.replace(";", ",").split("/") if x)
    except ValueError:
        raise ConfigError(f"--set {option}={text!r}: expected numbers separated by /") from None


def config_from(options: dict[str, str], seed: int) -> CrfSuiteConfig:
    known = {"c1", "c2", "clusters", "max_iterations"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for crf; it takes: {', '.join(sorted(known))}"
        )
    config = CrfSuiteConfig(seed=seed)
    if "c1" in options:
        config.c1_grid = _floats(options["c1"], "c1")
    if "c2" in options:
        config.c2_grid = _floats(options["c2"], "c2")
    if "clusters" in options:
        try:
            config.clusters = tuple(int(x) for x in options["clusters"].split("/") if x)
        except ValueError:
            raise ConfigError(
                f"--set clusters={options['clusters']!r}: expected integers separated by /"
            ) from None
    if "max_iterations" in options:
        config.max_iterations = int(options["max_iterations"])
    return config


def _vectors(data: SplitData) -> list | None:
    if data.features is None or data.offsets is None:
        return None
    return [data.features[data.offsets[i] : data.offsets[i + 1]] for i in range(len(data))]


def run_crfsuite(
    spec: RunSpec,
    cache_root: Path,
    out: Path | None,
    on_epoch: object = None,
    quiet: bool = False,
) -> dict[str, object]:
    """Fit the c1/c2 grid on train, choose on dev, score dev and test, save into ``out``: the
    crfsuite family's ``train`` (the same run record as a torch head's)."""
    from heads.models.crfsuite import CrfSuiteOptions

    started = time.perf_counter()
    inputs, seed = spec.inputs, spec.train.seed
    console = Console(stderr=True, quiet=quiet)
    config = config_from(dict(spec.options), seed)
    if inputs.text and not config.clusters:
        config.clusters = tuple(int(k) for k in CrfSuiteOptions.clusters.split("/"))
    if not inputs.text:
        config.clusters = ()
    if inputs.vision:
        raise ConfigError("the crf head reads text only: drop --vision")
    index = EntryIndex(cache_root)
    data = {s: load_split(index, inputs, s) for s in ("train", "dev", "test")}
    tagger = CrfSuiteTagger(config)
    grid = len(config.c1_grid) * len(config.c2_grid)
    with Progress(
        TextColumn("crfsuite c1/c2 grid"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("grid", total=grid)
        chosen = tagger.fit(
            data["train"].words,
            data["train"].tags,
            data["dev"].words,
            data["dev"].tags,
            _vectors(data["train"]),
            _vectors(data["dev"]),
            progress=lambda *_: bar.advance(task),
        )
    train_seconds = time.perf_counter() - started
    scores = {
        s: all_scores(data[s].tags, tagger.predict(data[s].words, _vectors(data[s]))) for s in ("dev", "test")
    }
    record = {
        "head": NAME,
        "modality": "text",
        "inputs": inputs.describe(),
        "hyper": {
            "c1": chosen["c1"],
            "c2": chosen["c2"],
            "clusters": list(config.clusters),
            "max_iterations": config.max_iterations,
        },
        "grid": chosen["grid"],
        "seed": seed,
        "best_epoch": None,
        "epochs_run": None,
        "history": [],
        "metrics": scores,
        "metric_notes": METRIC_NOTES,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - started,
        "peak_memory_mib": peak_memory_mib(),
        "entries": {s: d.entries for s, d in data.items()},
        "library_versions": library_versions(),
    }
    if out is not None:
        tagger.save(out)
        atomic_write_text(out / MARKER, json.dumps({"inputs": inputs.describe()}, indent=1))
        atomic_write_text(out / "run.json", json.dumps(record, indent=1, ensure_ascii=False))
    return record


def evaluate_crfsuite(
    folder: Path, cache_root: Path, splits: tuple[str, ...], dataset: str | None = None
) -> dict[str, dict]:
    saved = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    inputs = InputSpec(**saved["inputs"])
    if dataset is not None:
        inputs = InputSpec(**(inputs.describe() | {"dataset": dataset}))
    tagger = CrfSuiteTagger.load(folder)
    index = EntryIndex(cache_root)
    scores = {}
    for s in splits:
        data = load_split(index, inputs, s)
        scores[s] = all_scores(data.tags, tagger.predict(data.words, _vectors(data)))
    return scores


class CrfSuiteBackend:
    """The sklearn-crfsuite baseline: words (plus cluster ids of its text encoder's vectors)."""

    def __init__(self, folder: Path) -> None:
        from heads.predictor import read_json

        saved = read_json(folder / MARKER)
        try:
            self.inputs = InputSpec(**saved["inputs"])
        except (KeyError, TypeError) as err:
            raise ConfigError(f"{folder / MARKER}: no valid inputs ({err})") from None
        self.crfsuite = CrfSuiteTagger.load(folder)
        self.config: dict[str, Any] = {}
        self.tags = list(self.crfsuite.tags)
        self.needs = frozenset({"text"} if self.crfsuite.config.clusters else set())
        self.head = "crf"

    def tag(self, words: list[list[str]], features: list | None, images: dict) -> list[list[str]]:
        return self.crfsuite.predict(words, features)

    def tag_scored(
        self, words: list[list[str]], features: list | None, images: dict
    ) -> tuple[list[list[str]], list[list[float]]]:
        """Tags and CRFsuite's marginal probability of each (``predict_marginals``)."""
        tags = self.crfsuite.predict(words, features)
        marginals = self.crfsuite.marginals(words, features)
        return tags, [[m[t] for m, t in zip(ms, ts)] for ms, ts in zip(marginals, tags)]
