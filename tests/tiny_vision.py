"""Tiny randomly initialised vision models saved the way real ones come, to prove the loading
paths for weights that cannot be had here (ImageNet ViTs, CLIP, timm / torchvision CNNs)."""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP = "mner-tiny-clip"


def save_tiny_vit(folder: Path, seed: int = 0) -> Path:
    """A ViT folder with its own image processor (32x32, mean/std 0.5)."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(seed)
    ViTModel(config).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def save_tiny_dinov2_registers(folder: Path, seed: int = 0) -> Path:
    """A DINOv2-with-registers folder without a processor config (the encoder's DINOv2
    default applies): class token + 4 registers before the patch grid."""
    import torch
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    config = Dinov2WithRegistersConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=56,
        patch_size=14,
        num_register_tokens=4,
    )
    torch.manual_seed(seed)
    Dinov2WithRegistersModel(config).eval().save_pretrained(folder)
    return folder


def register_tiny_clip(folder: Path) -> str:
    """An open_clip model config small enough to build in milliseconds, added to open_clip's
    registry under ``TINY_CLIP``; the tokenizer is open_clip's bundled BPE."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    path = folder / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return TINY_CLIP


def save_state(model: object, path: Path) -> Path:
    """``model``'s weights as safetensors or as a tensors-only torch file, by suffix."""
    import torch

    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}  # type: ignore[attr-defined]
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
