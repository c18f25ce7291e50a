"""A fine-tuned run folder: the head as ``heads train`` saves it, plus the encoders it was
trained with, all in safetensors with JSON configs; nothing is unpickled.

```
<run>/config.json            the head's config (heads/checkpoint.py) + "fine_tuned": how each encoder is stored
<run>/model.safetensors      the head
<run>/encoders/text-<name>/  a fully fine-tuned encoder: a Hugging Face folder (safetensors, config, tokenizer)
<run>/adapters/text-<name>/  a LoRA adapter (peft: adapter_model.safetensors + adapter_config.json);
                             its base is named by the identity stored beside it (weights, format, layers...)
<run>/encoders/text-<name>/  with --merge, also the adapter merged into an fp32 copy of its base
<run>/encoders/vision-<name>.safetensors   a trained vision encoder's weights
```

``config.json`` records the sha256 of every file under ``encoders/`` and ``adapters/`` beside
the head's (heads/checkpoint.py); loading an encoder checks its files first, and refuses a
damaged one with one line naming it.

The thesis reports that its merged LoRA weights had lost all learning after a reload (torch
2.5.1, peft 0.14, a state dict saved by hand). Here peft writes the adapter and
``merge_and_unload`` folds it into a base loaded in fp32 (never into 8-bit weights, where
merging rounds the update away); tests load both back and compare predictions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from featurize.atomic import atomic_folder
from featurize.errors import ConfigError
from featurize.integrity import check_safetensors, files_under, load_safetensors, verify_config, verify_files
from featurize.rebuild import text_encoder_like, word_options
from heads import checkpoint

KEY = "fine_tuned"
LORA_WEIGHTS = ("adapter", "merged")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "encoder"


def save(folder: Path, model: Any, config: dict[str, object], merge: bool = False) -> Path:
    """Write the run folder through a temporary sibling renamed into place: a crash leaves the
    previous folder (or none), never half of one."""
    with atomic_folder(Path(folder)) as tmp:
        _write(tmp, model, config, merge)
    return Path(folder)


def _write(tmp: Path, model: Any, config: dict[str, object], merge: bool) -> None:
    import torch

    info: dict[str, Any] = {"text": {}, "vision": None}
    for name, live in zip(model.names, model.text):
        sub = f"text-{_slug(name)}"
        tokenizer = live.encoder._tokenizer
        if live.method == "full":
            live.model.save_pretrained(tmp / "encoders" / sub, safe_serialization=True)
            tokenizer.save_pretrained(tmp / "encoders" / sub)
            info["text"][name] = {"kind": "full", "folder": f"encoders/{sub}"}
            continue
        live.model.save_pretrained(tmp / "adapters" / sub)
        entry: dict[str, Any] = {
            "kind": "lora",
            "adapter": f"adapters/{sub}",
            "base_identity": live.encoder.identity(),
            "lora": live.lora.describe() if live.lora else None,
        }
        if merge:
            merged = merged_model(live)
            merged.save_pretrained(tmp / "encoders" / sub, safe_serialization=True)
            tokenizer.save_pretrained(tmp / "encoders" / sub)
            entry["merged"] = f"encoders/{sub}"
        info["text"][name] = entry
    if model.vision is not None:
        name = model.vision.encoder.name
        path = f"encoders/vision-{_slug(name)}.safetensors"
        (tmp / "encoders").mkdir(exist_ok=True)
        state = {
            k: v.detach().to(torch.float32).contiguous() for k, v in model.vision.model.state_dict().items()
        }
        save_file(state, str(tmp / path), metadata={"format": "mner-vision-encoder"})
        info["vision"] = {"name": name, "weights": path}
    checkpoint.save(tmp, model.head, config | {KEY: info}, files=files_under(tmp, "encoders", "adapters"))


def verify_part(folder: Path, part: str) -> None:
    """Check a run folder's encoder folder or file ``part`` (relative) against the sha256 its
    config records; a run saved before checksums gets its safetensors headers checked at least
    (nothing there is ever unpickled)."""
    path = folder / part
    if not path.exists():
        raise ConfigError(f"{path}: missing from the run folder")
    config = checkpoint.read_config(folder)
    verify_config(config, folder / checkpoint.CONFIG)
    if path.is_dir():
        if not verify_files(folder, config, prefix=part):
            for weights in sorted(path.rglob("*.safetensors")):
                check_safetensors(weights)
    elif not verify_files(folder, config, names=[part]):
        check_safetensors(path)


def merged_model(live: Any) -> Any:
    """The adapter of ``live`` folded into a fresh fp32 copy of its base model."""
    import torch
    from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoModel

    base = AutoModel.from_pretrained(live.encoder.weights.folder(), dtype=torch.float32)
    peft_model = PeftModel(base, live.model.peft_config["default"])
    set_peft_model_state_dict(peft_model, get_peft_model_state_dict(live.model))
    return peft_model.merge_and_unload().eval()


def info(config: dict[str, object]) -> dict[str, Any] | None:
    data = config.get(KEY)
    return data if isinstance(data, dict) else None


def text_encoder(
    folder: Path,
    name: str,
    identity: dict[str, Any],
    entry: dict[str, Any],
    device: str,
    lora: str = "adapter",
) -> Any:
    """The fine-tuned encoder ``name`` of a run folder, with the settings its head was trained on."""
    from featurize.text.transformer import TransformerWordEncoder
    from featurize.weights import LocalFolder

    if lora not in LORA_WEIGHTS:
        raise ConfigError(f"--lora-weights {lora!r}: choose one of {', '.join(LORA_WEIGHTS)}")
    kind = entry.get("kind")
    if kind == "full" or (kind == "lora" and lora == "merged"):
        sub = entry.get("folder") if kind == "full" else entry.get("merged")
        if not sub:
            raise ConfigError(
                f"{folder}: the LoRA adapter of {name} was saved without a merged copy (--merge)"
            )
        verify_part(folder, str(sub))
        options = word_options(identity | {"weights_format": "fp32"}, device)
        return TransformerWordEncoder(name, LocalFolder(folder / str(sub)), options)
    if kind != "lora":
        raise ConfigError(f"{folder / checkpoint.CONFIG}: unknown fine-tuned encoder kind {kind!r}")
    from peft import PeftModel

    base_identity = entry.get("base_identity") or identity
    encoder = text_encoder_like(name, dict(base_identity), device)  # the base, checked
    encoder.load()
    adapter = folder / str(entry["adapter"])
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter}: no LoRA adapter here (adapter_config.json missing)")
    verify_part(folder, str(entry["adapter"]))
    encoder._model = PeftModel.from_pretrained(encoder._model, adapter).eval()
    return encoder


def load_vision_weights(folder: Path, encoder: Any, entry: dict[str, Any]) -> Any:
    """Put a run's trained vision weights into ``encoder`` (built like the cached one)."""
    from heads.end_to_end import vision_module

    path = folder / str(entry["weights"])
    if not path.is_file():
        raise ConfigError(f"{path}: the trained vision encoder's weights are missing")
    verify_part(folder, str(entry["weights"]))
    module = vision_module(encoder)
    state = load_safetensors(path)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"{path} does not fit vision encoder {encoder.name}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    module.eval()
    return encoder


def describe(config: dict[str, object]) -> str:
    data = info(config)
    if not data:
        return ""
    kinds = sorted({str(e.get("kind")) for e in data["text"].values()})
    vision = " + vision" if data.get("vision") else ""
    return f"fine-tuned ({', '.join(kinds)}{vision})"
