"""Word features from transformer encoders, proven on a tiny random BERT saved to a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from featurize.errors import ConfigError
from featurize.text import build_text_encoder
from featurize.text.transformer import WordFeatureOptions, parse_layers

SENTENCES = [
    ["the", "new", "york", "city", "berlin", "!"],
    ["@", "abc", "#", "xyz12"],
    ["a"],
]


def encode(folder: Path, sentences=SENTENCES, **options) -> list[np.ndarray]:
    encoder = build_text_encoder(f"hf:{folder}", WordFeatureOptions(**{"bf16": False, **options}))
    return encoder.encode(sentences)


def test_shapes_and_determinism(tiny_bert: Path) -> None:
    first = encode(tiny_bert)
    assert [a.shape for a in first] == [(6, 16), (4, 16), (1, 16)]
    again = encode(tiny_bert, batch_size=1, sort_by_length=False)
    for a, b in zip(first, again):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_pooling_and_layers_change_features(tiny_bert: Path) -> None:
    base = encode(tiny_bert, layers="last", pooling="first")[0]
    mean = encode(tiny_bert, layers="last", pooling="mean")[0]
    last = encode(tiny_bert, layers="last", pooling="last")[0]
    mixed = encode(tiny_bert, layers="last2", pooling="first")[0]
    # "berlin" is ber + ##lin: pooling matters there, not for one-piece words.
    assert not np.allclose(base[4], mean[4]) and not np.allclose(base[4], last[4])
    np.testing.assert_allclose(base[1], mean[1], atol=1e-6)
    assert not np.allclose(base, mixed)


def test_long_input_uses_windows_not_truncation(tiny_bert: Path) -> None:
    long = [["abc"] * 5 + ["new", "york"] * 40]  # 85 words, far beyond 40 positions
    encoder = build_text_encoder(f"hf:{tiny_bert}", WordFeatureOptions(bf16=False, layers="last"))
    (features,) = encoder.encode(long)
    assert features.shape == (85, 16)
    assert encoder.stats.windowed_examples == 1 and encoder.stats.windows > 2
    windows = encoder.stats.windows
    encoder.encode([["new", "york"], ["city"]])  # inputs that fit one window add no window to the count
    assert encoder.stats.windowed_examples == 1 and encoder.stats.windows == windows
    # Inputs that fit one window are identical whatever the window size.
    short = [["new", "york", "city"]]
    a = encode(tiny_bert, short, layers="last")[0]
    b = encode(tiny_bert, short, layers="last", max_length=12, stride=2)[0]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_word_without_subwords_gets_a_vector(tiny_bert: Path) -> None:
    encoder = build_text_encoder(f"hf:{tiny_bert}", WordFeatureOptions(bf16=False))
    (features,) = encoder.encode([["new", "\ufe0f", "york"]])
    assert features.shape == (3, 16) and np.isfinite(features).all()
    assert encoder.stats.empty_words == 1


def test_identity_needs_no_model_and_follows_options(tiny_bert: Path) -> None:
    a = build_text_encoder(f"hf:{tiny_bert}", WordFeatureOptions(bf16=False, layers="last4"))
    b = build_text_encoder(f"hf:{tiny_bert}", WordFeatureOptions(bf16=False, layers="last"))
    c = build_text_encoder(f"hf:{tiny_bert}", WordFeatureOptions(bf16=False, pooling="mean"))
    d = build_text_encoder(f"hf:{tiny_bert}", WordFeatureOptions(bf16=False, batch_size=3))
    assert len({str(x.identity()) for x in (a, b, c)}) == 3
    assert a.identity() == d.identity()  # batch size changes speed, not features
    assert a._model is None
    assert a.identity()["weights"].startswith("folder:")


def test_folder_identity_follows_weights(tiny_bert: Path, tmp_path: Path) -> None:
    from tiny_models import save_tiny_bert

    other = save_tiny_bert(tmp_path / "other", seed=1)
    same = tmp_path / "copy"
    shutil.copytree(tiny_bert, same)
    ident = lambda p: build_text_encoder(f"hf:{p}", WordFeatureOptions(bf16=False)).identity()["weights"]  # noqa: E731
    assert ident(same) == ident(tiny_bert) != ident(other)


def test_hub_id_resolves_through_local_hf_cache(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-bert"
    shutil.copytree(tiny_bert, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    encoder = build_text_encoder("hf:tiny-org/tiny-bert", WordFeatureOptions(bf16=False))
    assert encoder.identity()["weights"] == f"hub:tiny-org/tiny-bert@{commit}"
    hub_features = encoder.encode(SENTENCES)
    for a, b in zip(hub_features, encode(tiny_bert)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="neither a local folder nor in the Hugging Face cache"):
        build_text_encoder("hf:tiny-org/absent", WordFeatureOptions(bf16=False)).identity()


def test_bad_options() -> None:
    with pytest.raises(ConfigError):
        WordFeatureOptions(bf16=False, pooling="max")
    with pytest.raises(ConfigError):
        parse_layers("top")
    assert parse_layers("last4") == [-4, -3, -2, -1] and parse_layers("-2,-1") == [-2, -1]


def test_layer_out_of_range(tiny_bert: Path) -> None:
    with pytest.raises(ConfigError, match="hidden states"):
        encode(tiny_bert, layers="last9")


def test_context_is_a_second_segment_and_only_sentence_words_are_kept(tiny_bert: Path) -> None:
    encoder = build_text_encoder(f"hf:{tiny_bert}", WordFeatureOptions(bf16=False, layers="last"))
    plain = encoder.encode(SENTENCES)
    with_context = encoder.encode(SENTENCES, contexts=["a city at night", None, "the new york"])
    assert [a.shape for a in with_context] == [a.shape for a in plain]
    assert not np.allclose(plain[0], with_context[0])  # the caption changes the words' vectors
    np.testing.assert_allclose(plain[1], with_context[1], atol=1e-6)  # no context: unchanged
    assert encoder._second_type == 1  # BERT: segment B gets token type 1


def test_long_context_is_cut_never_the_sentence(tiny_bert: Path) -> None:
    encoder = build_text_encoder(f"hf:{tiny_bert}", WordFeatureOptions(bf16=False, layers="last"))
    long_sentence = [["new", "york"] * 30]
    (features,) = encoder.encode(long_sentence, contexts=["the city " * 40])
    assert features.shape == (60, 16) and encoder.stats.context_truncated == 1


def test_default_precision_follows_the_hardware() -> None:
    from featurize.text.transformer import native_bf16

    assert WordFeatureOptions().describe()["precision"] == ("bf16" if native_bf16() else "fp32")
    assert WordFeatureOptions(bf16=False).describe()["precision"] == "fp32"
    assert WordFeatureOptions(bf16=True).describe()["precision"] == "bf16"
