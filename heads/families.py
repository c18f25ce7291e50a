"""Head families: how a kind of head trains, scores a saved run and tags new inputs.

Two families exist: ``torch`` (every :class:`heads.tagger.Tagger` in ``heads/models/``: one
trainer, safetensors checkpoints) and ``crfsuite`` (the sklearn-crfsuite baseline, its own
fit and file format). A head's family is a trait of its registration line
(``@HEADS.register("crf", family="crfsuite")``); commands ask the family instead of testing a
head's name, and a run folder is claimed by the family whose files it holds. A new family is
one more :class:`Family` registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurize.errors import ConfigError
from featurize.registry import Registry


@dataclass(frozen=True)
class Family:
    """What the commands need of a head family (functions, imported when first called)."""

    owns: Callable[[Path], bool]  # is this run folder one of this family's?
    train: Callable[..., dict[str, Any]]  # (spec, cache_root, out, on_epoch, on_note=) -> the run record
    evaluate: Callable[..., dict[str, dict]]  # (folder, cache_root, splits, dataset=None) -> scores per split
    backend: Callable[[Path], Any]  # folder -> a heads.predictor.HeadBackend
    files: str  # what a run folder of this family holds, for messages


FAMILIES: Registry[Family] = Registry("head family")


def _torch_owns(folder: Path) -> bool:
    from heads.checkpoint import CONFIG

    return (folder / CONFIG).is_file() and not _crfsuite_owns(folder)


def _crfsuite_owns(folder: Path) -> bool:
    from heads.crf_suite_run import MARKER

    return (folder / MARKER).is_file()


def _torch_train(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from heads.experiment import run

    return run(*args, **kwargs)


def _torch_evaluate(
    folder: Path, cache_root: Path, splits: tuple[str, ...], dataset: str | None = None
) -> dict[str, dict]:
    from heads import finetuned
    from heads.checkpoint import read_config
    from heads.experiment import evaluate_saved

    featurize = None
    if finetuned.info(read_config(folder)):  # its own encoders: the cached features are the base's
        featurize = load(folder, cache_root).featurized  # the run's encoders, loaded once for all splits
    return evaluate_saved(folder, cache_root, splits, featurize, dataset)[1]


def _torch_backend(folder: Path) -> Any:
    from heads.torch_backend import TorchBackend

    return TorchBackend(folder)


def _crfsuite_train(*args: Any, on_note: Any = None, **kwargs: Any) -> dict[str, Any]:
    from heads.crf_suite_run import run_crfsuite

    return run_crfsuite(*args, **kwargs)  # its c1/c2 grid has no optimizer steps to note on


def _crfsuite_evaluate(
    folder: Path, cache_root: Path, splits: tuple[str, ...], dataset: str | None = None
) -> dict[str, dict]:
    from heads.crf_suite_run import evaluate_crfsuite

    return evaluate_crfsuite(folder, cache_root, splits, dataset)


def _crfsuite_backend(folder: Path) -> Any:
    from heads.crf_suite_run import CrfSuiteBackend

    return CrfSuiteBackend(folder)


FAMILIES.register("torch")(
    Family(
        _torch_owns, _torch_train, _torch_evaluate, _torch_backend, "model.safetensors, config.json, run.json"
    )
)
FAMILIES.register("crfsuite")(
    Family(
        _crfsuite_owns,
        _crfsuite_train,
        _crfsuite_evaluate,
        _crfsuite_backend,
        "model.crfsuite, config.json, crfsuite.json, run.json",
    )
)


def family_of_head(head: str) -> Family:
    """The family of a registered head (an unknown name is one clear error listing the heads)."""
    from heads.tagger import HEADS

    return FAMILIES.get(HEADS.traits(head)["family"])


def family_of_folder(folder: Path) -> Family:
    """The family whose files ``folder`` holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such run folder (give a folder written by `heads train`)")
    for _name, family in FAMILIES.items():
        if family.owns(folder):
            return family
    raise ConfigError(
        f"{folder}: not a run folder (no config.json): give a folder written by `heads train` or `bench finetune`"
    )


def load(
    folder: str | Path,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    note: Callable[[str], None] | None = None,
    lora_weights: str = "adapter",
) -> Any:
    """A run folder (``heads train``, a ``bench heads`` cell, ``bench finetune``) ready to tag, as a
    :class:`heads.predictor.Predictor` (``heads.load`` is this function):

    >>> tagger = heads.load("runs/heads/t17-cwi-mpnet-text-s0")  # doctest: +SKIP
    >>> tagger.predict(["Obama visits Paris"])[0].entities  # doctest: +SKIP
    [{'text': 'Obama', 'type': 'PER', 'start': 0, 'end': 1}, {'text': 'Paris', 'type': 'LOC', ...}]

    ``cache_dir`` is read only for runs that did not record their encoder settings (default
    ``$MNER_CACHE_DIR``, else ``./cache``); ``device`` places the encoders (auto, cpu, cuda);
    ``lora_weights`` picks a LoRA run's adapter or its merged copy; ``note`` receives one-line
    remarks for the user (inputs without an image, settings taken from defaults).
    """
    from featurize.cache.store import cache_dir as resolve_cache
    from heads.predictor import Predictor

    path = Path(folder)
    backend = family_of_folder(path).backend(path)
    root = resolve_cache(Path(cache_dir) if cache_dir is not None else None)
    return Predictor(path, backend, root, device, note, lora_weights)
