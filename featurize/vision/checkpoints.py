"""Single weight files given on the command line: their identity and a safe way to read them.

A checkpoint is read as tensors only (safetensors, or ``torch.load(weights_only=True)``):
a pickle from the internet never runs code here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featurize.errors import ConfigError
from featurize.weights import file_hash

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def checkpoint_path(text: str, spec: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"{spec}: weights file {text!r} does not exist")
    return path.resolve()


def file_identity(path: Path) -> str:
    """``file:<sha256[:16]>`` of the file's bytes, remembered per size and mtime (as folders are)."""
    return f"file:{file_hash(path)[:16]}"


def read_state_dict(path: Path) -> dict[str, Any]:
    """Tensors by name from a .safetensors file or a tensors-only torch file.

    Training checkpoints often wrap the weights (``{"state_dict": ...}``, ``{"model": ...}``)
    and DataParallel prefixes names with ``module.``; both are undone.
    """
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types; all mean "not loadable"
        raise ConfigError(
            f"{path}: not a loadable weights file ({type(err).__name__}: {str(err).splitlines()[0]}). "
            "Only .safetensors or tensors-only torch files are read; pickled objects are refused."
        ) from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: expected a dict of tensors (a state dict)")
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def load_into(model: Any, state: dict[str, Any], path: Path) -> None:
    """Strict load, except that auxiliary heads (Inception's ``AuxLogits``) may be left out."""
    result = model.load_state_dict(state, strict=False)
    unexpected = [key for key in result.unexpected_keys if "aux" not in key.lower()]
    if result.missing_keys or unexpected:
        raise ConfigError(
            f"{path}: weights do not fit the model: missing {result.missing_keys[:5]}"
            f"{'...' if len(result.missing_keys) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )
