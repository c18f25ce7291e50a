"""Text encoders, found by name: ``--text minilm`` or ``--text hf:<hub id or folder>``."""

from __future__ import annotations

from collections.abc import Callable

from featurize.registry import Registry
from featurize.text.transformer import TransformerWordEncoder, WordFeatureOptions
from featurize.weights import weights_from_spec

TextEncoderFactory = Callable[[WordFeatureOptions], TransformerWordEncoder]
TEXT_ENCODERS: Registry[TextEncoderFactory] = Registry("text encoder")


def build_text_encoder(spec: str, options: WordFeatureOptions) -> TransformerWordEncoder:
    if spec.startswith("hf:"):
        return TransformerWordEncoder(spec, weights_from_spec(spec[3:]), options)
    return TEXT_ENCODERS.get(spec)(options)


# Imported for their registrations: one file per encoder.
from featurize.text import minilm  # noqa: E402,F401
