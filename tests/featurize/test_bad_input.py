"""Every kind of bad input: one clear message naming file and line, exit 2, nothing cached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_runner import run_cli

from featurize.cli import main

CASES = [
    ("conll", "a.txt", b"Paris\tB-LOC\nis\n", ":2: token 'is' has no label"),
    ("conll", "a.txt", b"Paris\tB_LOC\n", ":1: unknown tag 'B_LOC'"),
    ("conll", "a.txt", b"Paris\tB-LOC\n\nRome\tO\n\xff\tO\n", ":4: not valid UTF-8: byte 0xff"),
    ("conll", "a.txt", b"", "a.txt: file is empty"),
    ("conll", "a.txt", b"\n\n  \n", "a.txt: file is empty"),
    ("conll", "a.txt", b"-DOCSTART- -X- O\n\n", "split 'a' has no examples"),
    ("umt", "a.txt", b"IMGID:1\nParis\tB-LOC\n\nRome\tB-LOC\n", ":4: tweet has no IMGID"),
    ("jsonl", "a.jsonl", b'{"text": ["a", "b"], "label": ["O"]}\n', ":1: 2 words but 1 labels"),
    ("jsonl", "a.jsonl", b'{"text": ["a"], "label": ["O"]}\n{"text": ["a"]\n', ":2: not valid JSON"),
    ("jsonl", "a.jsonl", b'{"text": ["a"], "label": ["X-1"]}\n', ":1: unknown tag 'X-1'"),
    ("hipe", "a.tsv", b"# comment\nFrankreich\tB-loc\n", ":2: expected a header row"),
]


@pytest.mark.parametrize(("fmt", "name", "content", "message"), CASES)
def test_bad_input_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code, _, err = run_cli(main, [str(path), "--format", fmt, "--text", "minilm"], capsys)
    assert code == 2
    assert message in " ".join(err.split()), err
    assert str(path) in " ".join(err.split()).replace("\n", "")
    cache = Path(os.environ["MNER_CACHE_DIR"])
    assert not cache.exists() or not list(cache.rglob("*.h5"))


def test_hipe_wrong_column_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.tsv"
    path.write_text("TOKEN\tNE-COARSE-LIT\tMISC\nBern\tB-loc\t_\nund\tO\n")
    code, _, err = run_cli(main, [str(path), "--format", "hipe"], capsys)
    assert code == 2 and ":3: 2 columns, the header has 3" in err


def test_drop_policy_that_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.txt"
    path.write_text("IMGID:999\nParis\tB-LOC\n")
    (tmp_path / "images").mkdir()
    code, _, err = run_cli(
        main,
        [str(path), "--format", "umt", "--images", str(tmp_path / "images"), "--missing-images", "drop"],
        capsys,
    )
    assert code == 2 and "no examples after dropping examples with missing images" in " ".join(err.split())


def test_unknown_dataset_and_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(main, ["t99"], capsys)
    assert code == 2 and "neither a known dataset" in err
    code, _, err = run_cli(main, ["t17", "--data-dir", str(tmp_path)], capsys)
    assert (
        code == 2 and "twitter2017/train.txt" in err and "github.com/jefferyYu/UMT" in " ".join(err.split())
    )


def test_named_dataset_rejects_foreign_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "twitter2017"
    folder.mkdir()
    for name in ("train", "valid", "test"):
        (folder / f"{name}.txt").write_text("IMGID:1\nParis\tB-GPE\n")
    code, _, err = run_cli(main, ["t17", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "train.txt:2: unknown tag 'B-GPE': entity type not in" in " ".join(err.split())
