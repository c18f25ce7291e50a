"""A text encoder with gradients: the same word vectors the cache holds, as a torch module that
fine-tuning can train (``bench finetune``).

The subwords, windows, second segment, layer mix and subword pooling come from
:class:`TransformerWordEncoder` itself (``plan``, ``batch_inputs``, ``mix_layers``), so in eval
mode this module reproduces the cached features, and a head trained on the cache starts from
inputs it knows. LoRA adapters come from peft; 8-bit bases from bitsandbytes (through
``TransformerWordEncoder.load``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from featurize.errors import ConfigError
from featurize.text.transformer import TransformerWordEncoder

METHODS = ("full", "lora")
# Architectures read as decoders (the Llama family and its kin): LoRA by default, as the thesis.
DECODER_TYPES = {
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
    "olmo",
}


@dataclass(frozen=True)
class LoraSettings:
    """The thesis's Llama 3.1 adapter (table 8.3): rank 2, alpha 16, dropout 0.1. ``targets``
    None: peft's default modules for the architecture (``q_proj``, ``v_proj`` for Llama)."""

    r: int = 2
    alpha: int = 16
    dropout: float = 0.1
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("LoRA needs r >= 1, alpha >= 1 and 0 <= dropout < 1")

    def describe(self) -> dict[str, object]:
        d = asdict(self)
        d["targets"] = list(self.targets) if self.targets else None
        return d


def is_decoder(model: Any) -> bool:
    config = getattr(model, "config", None)
    architectures = getattr(config, "architectures", None) or []
    return getattr(config, "model_type", "") in DECODER_TYPES or any("CausalLM" in a for a in architectures)


def add_lora(model: Any, settings: LoraSettings) -> Any:
    """Wrap ``model`` in peft LoRA adapters; only the adapters are trainable."""
    import logging
    import warnings

    # Noise for this use: bitsandbytes says at import that an optional 4-bit CPU kernel package
    # is absent, and peft calls a transformers property that warns it is renamed.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    from peft import LoraConfig, get_peft_model

    try:
        config = LoraConfig(
            r=settings.r,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=list(settings.targets) if settings.targets else None,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, config)
    except ValueError as err:  # peft: no default targets for this architecture, or none matched
        raise ConfigError(f"LoRA: {err} (name the layers with --lora-targets)") from None


class TrainableWordFeatures(nn.Module):
    """``forward(sentences, contexts)`` -> ``(B, T, D)`` word vectors, zeros past each sentence."""

    def __init__(
        self,
        encoder: TransformerWordEncoder,
        method: str = "full",
        lora: LoraSettings | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"fine-tuning method {method!r}: choose one of {', '.join(METHODS)}")
        encoder.load()
        self.__dict__["encoder"] = encoder  # not a submodule: its model is, below
        self.method = method
        self.lora = (lora or LoraSettings()) if method == "lora" else None
        model = encoder._model
        quantized = encoder.options.weights_format == "8bit"
        if method == "full" and (quantized or encoder.options.weights_format == "bf16"):
            raise ConfigError(
                f"full fine-tuning of {encoder.name} needs fp32 weights (bf16 autocast still speeds it up); "
                f"its features were made from {encoder.options.weights_format} weights: use --method lora"
            )
        if gradient_checkpointing:
            # Recompute each layer's activations in backward: less memory for long inputs, more time.
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if method == "lora":
            for p in model.parameters():
                p.requires_grad_(False)
            model = add_lora(model, self.lora)
            encoder._model = model  # encode() (evaluation, prediction) reads through the adapters
        self.model = model
        self.dim = encoder.dim

    @property
    def device(self) -> torch.device:
        return self.encoder._device

    def forward(self, sentences: list[list[str]], contexts: list[str | None] | None = None) -> Tensor:
        enc = self.encoder
        plan = enc.plan(sentences, contexts)
        inputs = enc.batch_inputs(plan, list(range(len(plan.jobs))))
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        hidden = self.model(**inputs, output_hidden_states=True).hidden_states
        mixed = enc.mix_layers(hidden)  # (windows, length, D), float32
        rows: list[int] = []
        cols: list[int] = []
        pick: list[int] = []  # first or last subword of each word
        word_of: list[int] = []  # word (over the batch) of each subword
        starts = [0]
        for s, word_pieces in enumerate(plan.pieces):
            for position in range(len(plan.flat[s])):
                j = plan.owners[s][position]
                rows.append(j)
                cols.append(enc.skip(plan, j) + position - plan.jobs[j][1])
            position = len(word_of)
            for w, p in enumerate(word_pieces):
                pick.append(position if enc.options.pooling != "last" else position + len(p) - 1)
                word_of.extend([starts[-1] + w] * len(p))
                position += len(p)
            starts.append(starts[-1] + len(word_pieces))
        device = mixed.device
        subwords = mixed[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
        if enc.options.pooling == "mean":
            index = torch.tensor(word_of, device=device)
            words = subwords.new_zeros((starts[-1], subwords.shape[1])).index_add(0, index, subwords)
            counts = torch.bincount(index, minlength=starts[-1]).clamp(min=1).to(words.dtype)
            words = words / counts.unsqueeze(1)
        else:
            words = subwords[torch.tensor(pick, device=device)]
        longest = max(len(p) for p in plan.pieces)
        out = words.new_zeros((len(sentences), longest, words.shape[1]))
        for s in range(len(sentences)):
            out[s, : starts[s + 1] - starts[s]] = words[starts[s] : starts[s + 1]]
        return out
