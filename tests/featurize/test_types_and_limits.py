"""Declared entity types (--types) and the size limits of featurize.limits, in every reader:
one line naming file and line, exit 2, nothing cached; and the reader crashes the fuzzer
(tests/test_fuzz_readers.py) found, each pinned here."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from cli_runner import run_cli
from rich.console import Console

from featurize import featurize_dataset
from featurize.api import load_options, report_loading
from featurize.cli import main
from featurize.datasets import LoadOptions, load_dataset
from featurize.errors import ConfigError, DataFormatError
from featurize.limits import MAX_EXAMPLE_WORDS, MAX_LINE_BYTES, MAX_TOKEN_CHARS
from featurize.readers import READERS

CONLL = "Paris\tB-LOC\nis\tO\n\nBob\tB-PER\n"
HIPE_HEADER = "TOKEN\tNE-COARSE-LIT\tMISC\n"


def _cache_is_empty() -> None:
    cache = Path(os.environ["MNER_CACHE_DIR"])
    assert not cache.exists() or not any(cache.rglob("*"))


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> str:
    code, _, err = run_cli(main, argv, capsys)
    flat = " ".join(err.split())
    assert code == 2 and message in flat, err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err  # one line
    _cache_is_empty()
    return flat


# -- --types ---------------------------------------------------------------------------------


def test_types_refuse_an_undeclared_tag_in_run_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("Paris\tB-LOC\n\nAcme\tB-FOO\n")
    for command in (["run", "--text", "minilm"], ["summary"]):
        flat = _refused(
            capsys,
            [command[0], str(path), "--format", "conll", "--types", "PER,LOC", *command[1:]],
            ":3: unknown tag 'B-FOO': entity type not in ['LOC', 'PER']",
        )
        assert str(path) in flat


def test_types_that_cover_the_file_load_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.txt"
    path.write_text(CONLL)
    code, out, err = run_cli(main, ["summary", str(path), "--format", "conll", "--types", "PER, LOC"], capsys)
    assert code == 0 and "│ LOC  │    1 │" in out and "│ PER  │    1 │" in out, err


def test_types_in_the_api(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("Paris\tB-LOC\nAcme\tB-FOO\n")
    for types in ("PER,LOC", ["PER", "LOC"]):
        with pytest.raises(DataFormatError, match=r"mine\.txt:2: unknown tag 'B-FOO'") as caught:
            featurize_dataset(path, format="conll", types=types, text="none", console=Console(quiet=True))
        assert caught.value.path == str(path) and caught.value.line == 2
    assert load_options(types="PER, LOC,").types == frozenset({"PER", "LOC"})
    assert load_options().types is None
    for bad, why in [
        ("", "at least one"),
        (" , ", "at least one"),
        ("B-PER", "not tags"),
        (["a b"], "one word"),
    ]:
        with pytest.raises(ConfigError, match=why):
            load_options(types=bad)
    _cache_is_empty()


def test_types_are_part_of_the_key_only_when_given(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text(CONLL)
    plain = load_dataset(str(path), LoadOptions(format="conll"))
    # the fingerprint this file had before --types existed (commit of issue 18's start): unchanged
    assert plain.fingerprints == {"mine": "81b937d5eee001f55e52a67f4aa710f5ad782b499b8c3e8cc6202c275eb1b895"}
    assert "types" not in plain.options and plain.types_declared is None
    assert plain.types_found == ["LOC", "PER"]
    declared = load_dataset(str(path), LoadOptions(format="conll", types=frozenset({"PER", "LOC", "ORG"})))
    assert declared.options["types"] == ["LOC", "ORG", "PER"]
    assert declared.fingerprints["mine"] != plain.fingerprints["mine"]
    again = load_dataset(str(path), load_options(format="conll", types="ORG,PER,LOC"))
    assert again.fingerprints == declared.fingerprints  # the order they are given in does not matter


def test_types_found_are_printed_once_per_load(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.txt").write_text(CONLL)
    (folder / "dev.txt").write_text("Rome\tB-LOC\n")
    console = Console(record=True, width=200)
    loaded = load_dataset(str(folder), LoadOptions(format="conll"))
    report_loading(loaded, False, console)
    lines = console.export_text().splitlines()
    assert lines.count("types found: LOC, PER (2); declare them with --types to refuse others") == 1
    console = Console(record=True, width=200)
    report_loading(
        load_dataset(str(folder), LoadOptions(format="conll", types=frozenset({"LOC", "PER"}))),
        False,
        console,
    )
    assert "types found" not in console.export_text()


def test_types_found_line_in_featurize_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.txt"
    path.write_text(CONLL)
    code, _, err = run_cli(main, [str(path), "--format", "conll", "--text", "none"], capsys)
    assert code == 0 and "types found: LOC, PER (2); declare them with --types" in err


def test_named_datasets_keep_their_own_types(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(capsys, ["t17", "--types", "PER", "--data-dir", str(tmp_path)], "dataset t17 declares its own")
    folder = tmp_path / "twitter2017"
    folder.mkdir()
    for name in ("train", "valid", "test"):
        (folder / f"{name}.txt").write_text("IMGID:1\nParis\tB-GPE\n")
    _refused(
        capsys, ["t17", "--data-dir", str(tmp_path)], "train.txt:2: unknown tag 'B-GPE': entity type not in"
    )


# -- the limits, in every reader -----------------------------------------------------------

LONG = "w" * (MAX_TOKEN_CHARS + 1)
TOKEN_LIMIT = f"token of {MAX_TOKEN_CHARS + 1:,} characters, over the limit of {MAX_TOKEN_CHARS:,}"
WORDS_LIMIT = f"example of more than {MAX_EXAMPLE_WORDS:,} words"
MANY = MAX_EXAMPLE_WORDS + 1

LIMIT_CASES = [
    ("conll", "a.txt", f"Paris\tB-LOC\n{LONG}\tO\n", f":2: {TOKEN_LIMIT}"),
    ("umt", "a.txt", f"IMGID:1\nParis\tB-LOC\n\nIMGID:2\n{LONG}\tO\n", f":5: {TOKEN_LIMIT}"),
    ("jsonl", "a.jsonl", json.dumps({"text": ["a", LONG], "label": ["O", "O"]}) + "\n", f":1: {TOKEN_LIMIT}"),
    ("hipe", "a.tsv", f"{HIPE_HEADER}Bern\tB-loc\t_\n{LONG}\tO\t_\n", f":3: {TOKEN_LIMIT}"),
    ("conll", "a.txt", f"Paris\t{'B-' + 'X' * MAX_TOKEN_CHARS}\n", ":1: tag of 1,002 characters"),
    (
        "conll",
        "a.txt",
        "Paris\tO\n" + "x" * (MAX_LINE_BYTES + 1) + "\n",
        f":2: line of 1,000,001 bytes, over the limit of {MAX_LINE_BYTES:,}",
    ),
    (
        "jsonl",
        "a.jsonl",
        json.dumps({"text": ["w"] * MANY, "label": ["O"] * MANY}) + "\n",
        f":1: {WORDS_LIMIT}",
    ),
    (
        "conll",
        "a.txt",
        "Paris\tO\n\n" + "w\tO\n" * MANY,
        f":{MANY + 2}: {WORDS_LIMIT} (the limit), it began at line 3",
    ),
    ("umt", "a.txt", "IMGID:1\n" + "w\tO\n" * MANY, f":{MANY + 1}: {WORDS_LIMIT}"),
    (
        "hipe",
        "a.tsv",
        HIPE_HEADER + "w\tO\t_\n" * MANY,
        f":{MANY + 1}: {WORDS_LIMIT} (the limit), it began at line 2",
    ),
]


@pytest.mark.parametrize(("fmt", "name", "content", "message"), LIMIT_CASES)
def test_over_a_limit_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    flat = _refused(capsys, [str(path), "--format", fmt, "--text", "minilm"], message)
    assert str(path) in flat and len(flat) < 400  # the token itself is shown cut short


def test_at_the_limits_is_read(tmp_path: Path) -> None:
    at = "w" * MAX_TOKEN_CHARS
    files = {
        "conll": f"{at}\tO\n\n" + "w\tO\n" * MAX_EXAMPLE_WORDS,
        "umt": f"IMGID:1\n{at}\tO\n",
        "jsonl": json.dumps(
            {"text": ["w"] * (MAX_EXAMPLE_WORDS - 1) + [at], "label": ["O"] * MAX_EXAMPLE_WORDS}
        ),
        "hipe": f"{HIPE_HEADER}{at}\tO\t_\n",
    }
    assert set(files) == set(READERS)
    for fmt, content in files.items():
        path = tmp_path / f"{fmt}.txt"
        path.write_text(content + "\n")
        examples = READERS.get(fmt)(path, None)
        assert max(len(w) for e in examples for w in e.words) == MAX_TOKEN_CHARS or fmt == "conll"
    assert [len(e.words) for e in READERS.get("conll")(tmp_path / "conll.txt", None)] == [
        1,
        MAX_EXAMPLE_WORDS,
    ]


def test_a_five_megabyte_token_line_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The defect of issue 18: a 5 MB one-token line was featurized (75 s, 1.2 GB) without a word."""
    path = tmp_path / "a.txt"
    path.write_bytes(b"x" * 5_000_000 + b"\tO\n")
    start = time.perf_counter()
    _refused(capsys, [str(path), "--format", "conll", "--text", "minilm"], ":1: line of 5,000,002 bytes")
    assert time.perf_counter() - start < 10


# -- reader crashes found by the fuzzer ----------------------------------------------------

CRASH_CASES = [  # (format, file content, message); each raised something other than DataFormatError
    (
        "hipe",
        "TOKEN\tNE-COARSE-LIT\tMISC\tMISC\nBern\tB-loc\t_\n",
        ":1: header names 'MISC' twice",
    ),  # IndexError
    (
        "jsonl",
        '{"text": ["a"], "label": ["O"], "id": ' + "9" * 5000 + "}\n",
        ":1: JSON not readable",
    ),  # ValueError
    (
        "jsonl",
        '{"text": ["a"], "label": ["O"], "x": ' + "[" * 5000 + "]" * 5000 + "}\n",
        ":1: JSON nested too deeply",
    ),
    (
        "jsonl",
        '{"text": ["a"], "label": ["O"], "id": "\\ud800"}\n',
        ":1: a \\uD800-\\uDFFF escape without its pair",
    ),
    (
        "jsonl",
        '{"text": ["Paris"], "label": ["B-LOC"], "images": ["\\udc00"]}\n',
        ":1: a \\uD800-\\uDFFF escape",
    ),
]
SILENT_CASES = [  # read without a word before
    ("hipe", f"{HIPE_HEADER}Bern\tB-loc\t_\n\tO\t_\n", ":3: empty token"),
    ("jsonl", '{"text": ["a"], "label": ["O\\n"]}\n', ":1: unknown tag 'O\\n'"),
    ("jsonl", '{"text": ["a"], "label": ["B-LOC\\n"]}\n', ":1: unknown tag 'B-LOC\\n'"),
    ("umt", "IMGID:\nParis\tB-LOC\n", ":1: IMGID: line without an id"),
    ("conll", "\ufeff\n", "a.txt: file is empty"),
    (
        "conll",
        "x" * 5000 + "\n",
        ":1: token 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... (5,000 characters) has no label",
    ),
]


@pytest.mark.parametrize(("fmt", "content", "message"), CRASH_CASES + SILENT_CASES)
def test_fuzzer_findings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, content: str, message: str
) -> None:
    path = tmp_path / ("a.jsonl" if fmt == "jsonl" else "a.txt")
    path.write_text(content, encoding="utf-8")
    flat = _refused(capsys, [str(path), "--format", fmt, "--text", "minilm"], message)
    assert str(path) in flat
