"""The decoder path (`--text llama=...`) on a tiny random LlamaConfig model saved to a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featurize.text import build_text_encoder
from featurize.text.transformer import WordFeatureOptions

SENTENCES = [["the", "new", "york", "city", "marathon"], ["@user", "berlin", "#tag"], ["germany"]]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def test_defaults_are_subword_mean_and_measured_weights_format(tiny_llama: Path) -> None:
    from featurize.text.llama import default_weights_format

    encoder = build_text_encoder(f"llama=hf:{tiny_llama}", WordFeatureOptions())
    identity = encoder.identity()
    assert identity["pooling"] == "mean"
    assert identity.get("weights_format", "fp32") == default_weights_format()
    assert default_weights_format() in ("8bit", "bf16", "fp32")
    assert encoder._model is None  # the key needs no model


@pytest.mark.parametrize("weights_format", ["fp32", "bf16", "8bit"])
def test_every_weights_format_gives_word_vectors(tiny_llama: Path, weights_format: str) -> None:
    encoder = build_text_encoder(
        f"llama=hf:{tiny_llama}", WordFeatureOptions(weights_format=weights_format, bf16=False)
    )
    features = encoder.encode(SENTENCES)
    assert [f.shape for f in features] == [(5, 32), (3, 32), (1, 32)]
    assert all(np.isfinite(f).all() for f in features)
    assert encoder.encode(SENTENCES)[0].tolist() == features[0].tolist()  # deterministic


def test_8bit_is_close_to_fp32_and_loaded_through_bitsandbytes(tiny_llama: Path) -> None:
    import bitsandbytes as bnb

    full = build_text_encoder(f"llama=hf:{tiny_llama}", WordFeatureOptions(weights_format="fp32", bf16=False))
    int8 = build_text_encoder(f"llama=hf:{tiny_llama}", WordFeatureOptions(weights_format="8bit", bf16=False))
    a, b = np.concatenate(full.encode(SENTENCES)), np.concatenate(int8.encode(SENTENCES))
    assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in int8._model.modules())
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.9


def test_pooling_choices_differ_on_multi_piece_words(tiny_llama: Path) -> None:
    out = {
        p: build_text_encoder(
            f"llama=hf:{tiny_llama}", WordFeatureOptions(pooling=p, weights_format="fp32", bf16=False)
        )
        for p in ("first", "last", "mean")
    }
    vectors = {p: e.encode([["germany", "xyzzy"]])[0] for p, e in out.items()}
    assert not np.allclose(vectors["first"][1], vectors["last"][1])
    assert len({str(e.identity()) for e in out.values()}) == 3


def test_split_words_tokenize_as_in_running_text(tiny_llama: Path) -> None:
    encoder = build_text_encoder(f"llama=hf:{tiny_llama}", WordFeatureOptions(weights_format="fp32"))
    encoder.load()
    tokenizer = encoder._tokenizer
    split = tokenizer(["the", "new", "york"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert split == tokenizer(" the new york", add_special_tokens=False)["input_ids"]
