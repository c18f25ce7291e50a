"""Registries: components found by name, with declared traits instead of name tests."""

from __future__ import annotations

import pytest

from featurize.errors import ConfigError
from featurize.registry import Registry
from featurize.text import DEFAULT_TEXT_ENCODER, TEXT_ENCODERS
from featurize.vision import VISION_ENCODERS


def _toy() -> Registry:
    reg: Registry = Registry("toy", defaults={"pooling": "first", "decoder": False, "cost": 1.0})

    @reg.register("plain")
    def plain() -> str:
        return "plain"

    @reg.register("lefty", pooling="mean", decoder=True)
    def lefty() -> str:
        return "lefty"

    return reg


def test_traits_fill_in_the_defaults() -> None:
    reg = _toy()
    assert dict(reg.traits("plain")) == {"pooling": "first", "decoder": False, "cost": 1.0}
    assert dict(reg.traits("lefty")) == {"pooling": "mean", "decoder": True, "cost": 1.0}
    assert reg.trait("lefty", "pooling") == "mean" and reg.trait("plain", "decoder") is False
    assert reg.get("lefty")() == "lefty" and list(reg) == ["lefty", "plain"]


def test_traits_are_read_only() -> None:
    reg = _toy()
    with pytest.raises(TypeError):
        reg.traits("plain")["pooling"] = "last"  # type: ignore[index]
    with pytest.raises(TypeError):
        reg.defaults["cost"] = 2.0  # type: ignore[index]


def test_an_undeclared_trait_is_refused() -> None:
    reg = _toy()
    with pytest.raises(ValueError, match="unknown trait.*colour"):
        reg.register("odd", colour="red")
    with pytest.raises(KeyError, match="colour"):
        reg.trait("plain", "colour")
    assert "odd" not in reg


def test_an_unregistered_name_gets_the_default() -> None:
    reg = _toy()
    assert reg.trait("hf:/some/folder", "pooling") == "first"
    assert reg.trait("hf:/some/folder", "cost", default=3.0) == 3.0
    with pytest.raises(ConfigError, match="unknown toy 'hf:/some/folder'"):
        reg.traits("hf:/some/folder")


def test_registering_twice_is_refused() -> None:
    reg = _toy()
    with pytest.raises(ValueError, match="twice"):
        reg.register("plain")(lambda: None)


def test_text_encoder_traits() -> None:
    assert set(TEXT_ENCODERS.defaults) == {"pooling", "decoder", "label", "cost"}
    assert TEXT_ENCODERS.trait("llama", "pooling") == "mean" and TEXT_ENCODERS.trait("llama", "decoder")
    for name in ("minilm", "mpnet", "e5", "bert"):
        assert TEXT_ENCODERS.trait(name, "pooling") == "first" and not TEXT_ENCODERS.trait(name, "decoder")
        assert TEXT_ENCODERS.trait(name, "label")
    assert TEXT_ENCODERS.trait("hf:/any/folder", "pooling") == "first"
    assert TEXT_ENCODERS.trait("minilm", "cost") == 1.0
    costs = {name: TEXT_ENCODERS.trait(name, "cost") for name in ("minilm", "e5", "mpnet", "llama")}
    assert costs["minilm"] < costs["e5"] < costs["mpnet"] < costs["llama"]  # README encoder speed
    assert DEFAULT_TEXT_ENCODER in TEXT_ENCODERS


def test_vision_encoder_traits() -> None:
    assert set(VISION_ENCODERS.defaults) == {"label", "gives"}
    built_in = ("clip", "cnn", "labels", "vit")  # other tests register toy encoders of their own
    gives = {name: VISION_ENCODERS.trait(name, "gives") for name in built_in}
    assert gives == {"clip": "vector", "cnn": "vector", "labels": "labels", "vit": "vector"}
    assert all(VISION_ENCODERS.trait(name, "label") for name in built_in)


def test_llama_auto_pooling_is_its_trait(monkeypatch: pytest.MonkeyPatch) -> None:
    from featurize.text import build_text_encoder, llama
    from featurize.text.transformer import WordFeatureOptions
    from featurize.weights import WeightsSource

    class Nowhere(WeightsSource):
        def identity(self) -> str:
            return "nowhere"

    monkeypatch.setattr(llama, "default_weights_format", lambda: "fp32")
    encoder = build_text_encoder("llama", WordFeatureOptions(bf16=False))
    assert encoder.options.pooling == TEXT_ENCODERS.trait("llama", "pooling") == "mean"
    chosen = TEXT_ENCODERS.get("llama")(WordFeatureOptions(pooling="last"), Nowhere())
    assert chosen.options.pooling == "last"  # an explicit --pooling wins


def test_featurize_default_pooling_reads_the_trait() -> None:
    from heads.inputs import _is_featurize_default

    last4 = [-4, -3, -2, -1]
    assert _is_featurize_default({"encoder": "llama", "layers": last4, "pooling": "mean"})
    assert not _is_featurize_default({"encoder": "llama", "layers": last4, "pooling": "first"})
    assert _is_featurize_default({"encoder": "minilm", "layers": last4, "pooling": "first"})
    assert _is_featurize_default({"encoder": "hf:/x/llama-ish", "layers": last4, "pooling": "first"})
    assert _is_featurize_default({"encoder": "llama=hf:org/model", "layers": last4, "pooling": "mean"})
    assert not _is_featurize_default({"encoder": "minilm", "layers": [-1], "pooling": "first"})


def test_encoders_command_shows_the_traits(capsys: pytest.CaptureFixture[str]) -> None:
    from cli_runner import run_cli

    from featurize.cli import main

    code, out, _ = run_cli(main, ["encoders"], capsys)
    assert code == 0
    for word in ("pooling", "decoder", "cost", "gives", "llama", "mean", "labels", "vector", "hf:"):
        assert word in out
