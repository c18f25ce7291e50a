"""Vision encoders, found by name: ``--vision vit``, ``--vision cnn``, ``--vision labels``,
``--vision clip=<model>:<checkpoint>`` or ``--vision vit=hf:<folder>``."""

from __future__ import annotations

from collections.abc import Callable

from featurize.errors import ConfigError
from featurize.registry import Registry
from featurize.vision.encoder import VisionEncoder, VisionOptions

# A factory gets the options and the text after "=" (None: the encoder's default weights).
VisionEncoderFactory = Callable[[VisionOptions, "str | None"], VisionEncoder]
VISION_ENCODERS: Registry[VisionEncoderFactory] = Registry("vision encoder")


def build_vision_encoder(spec: str, options: VisionOptions) -> VisionEncoder:
    name, _, source = spec.partition("=")
    if not name:
        raise ConfigError(f"--vision {spec!r}: expected NAME or NAME=SOURCE")
    return VISION_ENCODERS.get(name)(options, source or None)


# Imported for their registrations: one file per encoder (added with their modules).
from featurize.vision import clip, cnn, labels, vit  # noqa: E402,F401
