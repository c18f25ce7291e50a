"""Text encoders, found by name: ``--text minilm`` or ``--text hf:<hub id or folder>``."""

from __future__ import annotations

from collections.abc import Callable

from featurize.errors import ConfigError
from featurize.registry import Registry
from featurize.text.transformer import TransformerWordEncoder, WordFeatureOptions
from featurize.weights import WeightsSource, weights_from_spec

# A factory gets the options and the weights source: None for the encoder's default weights,
# or the WeightsSource named after "=" (``llama=hf:meta-llama/Llama-3.1-8B``).
TextEncoderFactory = Callable[[WordFeatureOptions, "WeightsSource | None"], TransformerWordEncoder]
TEXT_ENCODERS: Registry[TextEncoderFactory] = Registry("text encoder")


def build_text_encoder(spec: str, options: WordFeatureOptions) -> TransformerWordEncoder:
    """``minilm``, ``hf:<id or folder>`` or ``<name>=hf:<id or folder>``."""
    if spec.startswith("hf:"):
        return TransformerWordEncoder(spec, weights_from_spec(spec[3:]), options)
    name, _, source = spec.partition("=")
    if source and not source.startswith("hf:"):
        raise ConfigError(f"--text {spec}: weights after '=' must be hf:<hub id or folder>")
    weights = weights_from_spec(source[3:]) if source else None
    return TEXT_ENCODERS.get(name)(options, weights)


# Imported for their registrations: one file per encoder.
from featurize.text import bert, e5, llama, minilm, mpnet  # noqa: E402,F401
