"""A trained head on disk: ``model.safetensors`` plus ``config.json``; nothing is unpickled.

The config holds everything needed to rebuild the head and to check that new inputs fit it:
head name and hyperparameters, the tag set, the input widths, the cache keys and encoder
settings of its inputs (so ``heads predict`` can featurize new text the same way), the
vocabularies of heads with their own embeddings, and the cache schema version; and the sha256
of the weights file (and of every other file a fine-tuned run folder holds) and of the config
itself (``featurize.integrity``). Loading verifies them and refuses a damaged, truncated or
foreign file with one line naming it. A folder saved before checksums has none and loads as
before, unverified (``featurize verify`` lists it so).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import save_file

from featurize.atomic import atomic_write, atomic_write_text
from featurize.cache.schema import SCHEMA_VERSION
from featurize.errors import ConfigError, MnerError
from featurize.integrity import load_safetensors, one_line, verify_config, verify_files, with_checksums
from heads.config_file import read_versioned_json
from heads.tagger import HEADS, Dims, Tagger, hyper_from
from heads.vocab import Vocabularies

FORMAT = "mner-head"
FORMAT_VERSION = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save(folder: Path, model: Tagger, config: dict[str, object], files: Iterable[str] = ()) -> Path:
    """Write both files into ``folder`` through temporary names, so a crash leaves no half model.
    The config records the sha256 of the weights and of ``files`` (other files of the folder its
    loaders read, relative to it: a fine-tuned run's encoders), and of itself; it is written last."""
    folder.mkdir(parents=True, exist_ok=True)
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "head": registered_name(model),
        "modality": model.modality,
        "hyper": asdict(model.hyper),
        "tags": model.tags,
        "dims": asdict(model.dims),
        **config,
    }
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS, lambda p: save_file(state, str(p), metadata={"format": FORMAT}))
    full = with_checksums(folder, full, [WEIGHTS, *files])
    atomic_write_text(folder / CONFIG, json.dumps(full, indent=1, ensure_ascii=False))
    return folder


def registered_name(model: Tagger) -> str:
    for name, cls in HEADS.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered head")


def read_config(folder: Path) -> dict[str, object]:
    path = folder / CONFIG
    config = read_versioned_json(path, FORMAT, FORMAT_VERSION, "a trained head")
    if config.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: trained on cache schema {config.get('schema_version')}, this toolkit reads {SCHEMA_VERSION}"
        )
    return config


def load(folder: Path) -> tuple[Tagger, dict[str, object]]:
    """Rebuild the head from its config and load its weights, refusing any mismatch by name."""
    import heads.models  # noqa: F401  (registers the heads)

    config = read_config(folder)
    try:
        cls = HEADS.get(str(config["head"]))
        hyper = hyper_from(cls.Hyper, dict(config["hyper"]))  # type: ignore[arg-type]
        dims = Dims(**config["dims"])  # type: ignore[arg-type]
        model = cls(list(config["tags"]), dims, hyper, str(config["modality"]))  # type: ignore[arg-type]
    except MnerError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, OverflowError) as err:
        raise ConfigError(
            f"{folder / CONFIG}: incomplete or wrong config ({type(err).__name__}: {one_line(err)})"
        ) from None
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"{folder}: {WEIGHTS} is missing")
    verify_files(folder, config, [WEIGHTS])  # a checkpoint saved before checksums: nothing to verify
    state = load_safetensors(weights)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ConfigError(
            f"{weights} does not fit a {config['head']} head with this config: "
            f"missing {', '.join(missing) or 'none'}; unexpected {', '.join(extra) or 'none'}"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ConfigError(
                f"{weights}: {name} has shape {tuple(tensor.shape)}, the config implies {tuple(expected[name].shape)}"
            )
    # The config's own checksum last: an edit that no longer fits the weights was named above.
    verify_config(config, folder / CONFIG)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"{weights} does not fit a {config['head']} head: {one_line(err)}") from None
    model.eval()
    return model, config


def vocabularies(config: dict[str, object]) -> Vocabularies | None:
    data = config.get("vocab")
    return Vocabularies.from_json(data) if isinstance(data, dict) else None


def check_dims(config: dict[str, object], text: int, image: int) -> None:
    """New inputs must have the widths the head was trained on; say which one differs."""
    dims = dict(config["dims"])  # type: ignore[arg-type]
    if dims.get("text") and text and dims["text"] != text:
        raise ConfigError(
            f"text features are {text}-d, the head was trained on {dims['text']}-d ({config.get('inputs')})"
        )
    if dims.get("image") and image and dims["image"] != image:
        raise ConfigError(f"image features are {image}-d, the head was trained on {dims['image']}-d")
