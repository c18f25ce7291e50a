"""Rebuilding an encoder from the identity a cache entry or a run folder stored.

A cache entry records, per text or vision input, the encoder's identity as it was computed
(weights, layers, pooling, window, precision, vision preprocessing). Prediction, ``heads eval``
of a fine-tuned run and fine-tuning itself need that same encoder again: the builders here
make it from the registry and check it against the stored identity, so a head never reads
features computed another way (other weights, other layers) without being told so.
"""

from __future__ import annotations

import json
from typing import Any

from featurize.errors import ConfigError


def _normalised(value: object) -> object:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _differences(stored: dict[str, Any], actual: dict[str, Any], ignore: set[str]) -> list[str]:
    stored_n, actual_n = _normalised(stored), _normalised(actual)
    assert isinstance(stored_n, dict) and isinstance(actual_n, dict)
    return [
        f"{key}: trained {json.dumps(stored_n[key])}, here {json.dumps(actual_n.get(key))}"
        for key in sorted(stored_n)
        if key not in ignore and stored_n[key] != actual_n.get(key)
    ]


def _hub_spec(weights: object) -> str | None:
    """``hub:<repo>@<commit>`` -> ``hf:<repo>@<commit>``: weights that can be found again."""
    if isinstance(weights, str) and weights.startswith("hub:"):
        return "hf:" + weights[len("hub:") :]
    return None


def word_options(identity: dict[str, Any], device: str = "auto") -> Any:
    """The :class:`WordFeatureOptions` that reproduce a cached text entry's identity."""
    from featurize.text.transformer import WordFeatureOptions

    layers = identity.get("layers")
    if isinstance(layers, list) and layers:
        layers_text = ",".join(str(int(n)) for n in layers)
    elif isinstance(layers, str):
        layers_text = layers
    else:
        layers_text = "last4"
    precision = identity.get("precision")
    return WordFeatureOptions(
        layers=layers_text,
        pooling=str(identity.get("pooling") or "auto"),
        max_length=identity.get("max_length"),
        stride=identity.get("stride"),
        bf16=None if precision is None else precision == "bf16",
        device=device,
        weights_format=str(identity.get("weights_format") or "auto"),
    )


def text_encoder_like(name: str, identity: dict[str, Any], device: str = "auto") -> Any:
    """The text encoder ``name`` with the settings of ``identity``, checked against it."""
    from featurize.text import build_text_encoder

    options = word_options(identity, device)
    encoder = build_text_encoder(name, options)
    budget = identity.get("context_budget")
    encoder.context_budget = int(budget) if budget is not None else None  # as the features were made
    if not identity:
        return encoder
    ignore = {"context", "context_budget"}
    problems = _differences(identity, encoder.identity(), ignore)
    hub = _hub_spec(identity.get("weights"))
    if problems and hub and not name.startswith("hf:") and "=" not in name:
        encoder = build_text_encoder(f"{name}={hub}", options)  # trained as NAME=hf:<hub id>
        encoder.context_budget = int(budget) if budget is not None else None
        problems = _differences(identity, encoder.identity(), ignore)
    if problems:
        raise ConfigError(
            f"text encoder {name} here is not the one the head was trained on ({'; '.join(problems)}): "
            "install the same weights, or retrain the head on features of these"
        )
    return encoder


def vision_encoder_like(
    name: str, identity: dict[str, Any], patches: bool = False, device: str = "auto"
) -> Any:
    """The vision encoder ``name`` (its default weights, or the hub snapshot it was trained
    with), checked against the stored identity (``patches`` aside: it does not change pooled)."""
    from featurize.vision import build_vision_encoder
    from featurize.vision.encoder import VisionOptions

    stored = identity.get("vision_encoder") if isinstance(identity.get("vision_encoder"), dict) else {}
    options = VisionOptions(patches=patches or bool(stored.get("patches")), device=device)
    encoder = build_vision_encoder(name, options)
    if not stored:
        return encoder
    problems = _differences(stored, encoder.identity(), {"patches"})
    hub = _hub_spec(stored.get("weights"))
    if problems and hub and "=" not in name:
        encoder = build_vision_encoder(f"{name}={hub}", options)
        problems = _differences(stored, encoder.identity(), {"patches"})
    if problems:
        raise ConfigError(
            f"vision encoder {name} here is not the one the head was trained on ({'; '.join(problems)}); "
            "a model or weights file given as NAME=SOURCE at featurize time cannot be found again from "
            "its identity: retrain the head, or featurize with the default weights"
        )
    return encoder
