"""Every registered text encoder with its real weights, on a handful of real sentences."""

from __future__ import annotations

import numpy as np
import pytest

from featurize.datasets import load_dataset
from featurize.text import build_text_encoder
from featurize.text.transformer import WordFeatureOptions

pytestmark = pytest.mark.slow

# encoder -> (dataset whose language it is for, vector width)
ENCODERS = {"minilm": ("t17", 384), "mpnet": ("t17", 768), "e5": ("hipe-de", 384), "llama": ("t17", 576)}


@pytest.mark.parametrize("name", list(ENCODERS))
def test_real_encoder_on_real_sentences(name: str) -> None:
    dataset, width = ENCODERS[name]
    examples = load_dataset(dataset, splits=["dev"]).splits["dev"].examples[:6]
    sentences = [e.words for e in examples]
    encoder = build_text_encoder(name, WordFeatureOptions(bf16=False))
    first = encoder.encode(sentences)
    assert [f.shape for f in first] == [(len(s), width) for s in sentences]
    assert all(np.isfinite(f).all() for f in first)
    again = build_text_encoder(name, WordFeatureOptions(bf16=False)).encode(sentences)
    for a, b in zip(first, again):
        np.testing.assert_allclose(a, b, atol=1e-5)  # deterministic across loads
    keys = {
        str(build_text_encoder(name, WordFeatureOptions(**o)).identity())
        for o in ({}, {"layers": "last"}, {"pooling": "last"})
    }
    assert len(keys) == 3


def test_bert_alias_resolves_and_says_so(capsys) -> None:
    encoder = build_text_encoder("bert", WordFeatureOptions())
    assert encoder.name == "mpnet"  # no cased BERT in the Hugging Face cache here
    assert "bert -> mpnet" in capsys.readouterr().err
