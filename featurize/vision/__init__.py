"""Vision encoders, found by name: ``--vision vit``, ``--vision cnn``, ``--vision labels``,
``--vision clip=<model>:<checkpoint>`` or ``--vision vit=hf:<folder>``."""

from __future__ import annotations

from collections.abc import Callable

from featurize.errors import ConfigError
from featurize.registry import Registry
from featurize.vision.encoder import VisionEncoder, VisionOptions

# A factory gets the options and the text after "=" (None: the encoder's default weights).
VisionEncoderFactory = Callable[[VisionOptions, "str | None"], VisionEncoder]
# What other modules may ask about a vision encoder instead of testing its name:
#   label: the weights it stands for, for listings (``featurize encoders``).
#   gives: "vector" (pooled features, and with --patches a grid) or "labels" (top-5 ImageNet
#          classes as words: the input of ``--context labels``).
VISION_ENCODERS: Registry[VisionEncoderFactory] = Registry(
    "vision encoder", defaults={"label": "", "gives": "vector"}
)


def build_vision_encoder(spec: str, options: VisionOptions) -> VisionEncoder:
    name, _, source = spec.partition("=")
    if not name:
        raise ConfigError(f"--vision {spec!r}: expected NAME or NAME=SOURCE")
    return VISION_ENCODERS.get(name)(options, source or None)


# Imported for their registrations: one file per encoder (added with their modules).
from featurize.vision import clip, cnn, labels, vit  # noqa: E402,F401
