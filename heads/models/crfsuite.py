"""``crf``: the sklearn-crfsuite baseline, registered like every head (its own family: it trains
by L-BFGS with c1/c2 chosen on dev instead of through the torch trainer; heads.crf_suite_run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from heads.crf_suite import CrfSuiteConfig
from heads.tagger import HEADS

_DEFAULTS = CrfSuiteConfig()


def _grid(values: tuple[float, ...]) -> str:
    return "/".join(f"{v:g}" for v in values)


@dataclass
class CrfSuiteOptions:
    """``--set`` options of the crf head (grids as values separated by /)."""

    c1: str = _grid(_DEFAULTS.c1_grid)  # L1 weights tried, chosen on dev entity F1
    c2: str = _grid(_DEFAULTS.c2_grid)  # L2 weights tried
    clusters: str = "100/500"  # KMeans sizes over the cached vectors (with --text only)
    max_iterations: int = _DEFAULTS.max_iterations


@HEADS.register("crf", family="crfsuite", grid_order=0, own_words=("classic features", "classic"))
class CrfSuiteHead:
    Hyper: ClassVar[type] = CrfSuiteOptions
    modalities: ClassVar[tuple[str, ...]] = ("text",)
    description: ClassVar[str] = (
        "sklearn-crfsuite with classic word features (+ KMeans ids of cached vectors with --text)"
    )

    @classmethod
    def needs(cls, hyper: object, modality: str, has_text: bool) -> frozenset[str]:
        return frozenset({"text"} if has_text else set())
