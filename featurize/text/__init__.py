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

# The text encoder every command uses when none is named (``featurize run``, ``heads``, ``bench``):
# the one place this default lives.
DEFAULT_TEXT_ENCODER = "minilm"

# What other modules may ask about a text encoder instead of testing its name
# (``TEXT_ENCODERS.trait(name, "pooling")``); an unregistered ``hf:...`` name gets these defaults.
#   pooling: the subword-to-word pooling that ``--pooling auto`` means for it.
#   decoder: a left-to-right (decoder-only) model, e.g. ``bench featurize`` also measures its
#            weight formats.
#   label:   the weights it stands for, for listings (``featurize encoders``).
#   cost:    relative encoding cost, the inverse words/s ratio to minilm with featurize's
#            defaults, measured by ``bench featurize`` on T17 dev on the project's 2-core
#            AVX512-BF16 CPU (README "Measured", encoder speed: minilm 7,191, e5 2,236, mpnet
#            1,096, llama (SmolLM2, bf16) 796 words/s). For ordering and estimates only. An
#            unregistered ``hf:...`` model was not measured and gets 1.0 (minilm's); ``bert``
#            has mpnet's value, the weights it resolves to on that machine.
TEXT_ENCODERS: Registry[TextEncoderFactory] = Registry(
    "text encoder", defaults={"pooling": "first", "decoder": False, "label": "", "cost": 1.0}
)


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
