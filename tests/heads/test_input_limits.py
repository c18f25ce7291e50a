"""``heads predict``'s inputs obey featurize's size limits (featurize.limits): ``--input`` files
(text, JSONL, CoNLL/UMT) are refused with file and line, ``--text`` values with their number;
and the JSONL image lookups the fuzzer crashed are plain "not found" errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurize.errors import ConfigError, DataFormatError
from featurize.limits import MAX_EXAMPLE_WORDS, MAX_LINE_BYTES, MAX_TOKEN_CHARS
from heads.input_files import inputs_from_texts, read_inputs

LONG = "w" * (MAX_TOKEN_CHARS + 1)
TOKEN_LIMIT = rf"token of {MAX_TOKEN_CHARS + 1:,} characters, over the limit of {MAX_TOKEN_CHARS:,}"
WORDS_LIMIT = rf"example of more than {MAX_EXAMPLE_WORDS:,} words"
MANY = MAX_EXAMPLE_WORDS + 1

FILE_CASES = [
    ("a.txt", "auto", f"Paris is nice\nhello {LONG}\n", rf"a\.txt:2: {TOKEN_LIMIT}"),
    ("a.txt", "text", "Paris\n" + "x" * (MAX_LINE_BYTES + 1) + "\n", r"a\.txt:2: line of 1,000,001 bytes"),
    ("a.txt", "text", "w " * MANY + "\n", rf"a\.txt:1: {WORDS_LIMIT}"),
    ("a.jsonl", "auto", json.dumps({"text": f"Paris {LONG}"}) + "\n", rf"a\.jsonl:1: {TOKEN_LIMIT}"),
    ("a.jsonl", "jsonl", json.dumps({"text": ["w"] * MANY}) + "\n", rf"a\.jsonl:1: {WORDS_LIMIT}"),
    ("a.txt", "conll", f"Paris\tB-LOC\n{LONG}\tO\n", rf"a\.txt:2: {TOKEN_LIMIT}"),
    ("a.txt", "umt", "IMGID:1\n" + "w\tO\n" * MANY, rf"a\.txt:{MANY + 1}: {WORDS_LIMIT}"),
]


@pytest.mark.parametrize(("name", "fmt", "content", "message"), FILE_CASES)
def test_input_files_over_a_limit_are_refused(
    tmp_path: Path, name: str, fmt: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError, match=message) as caught:
        read_inputs(path, fmt)
    assert caught.value.path == str(path) and len(str(caught.value)) < 400


def test_input_files_at_the_limits_are_read(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("w" * MAX_TOKEN_CHARS + " " + "w " * (MAX_EXAMPLE_WORDS - 1) + "\n", encoding="utf-8")
    (item,) = read_inputs(path, "text")
    assert len(item.words) == MAX_EXAMPLE_WORDS and len(item.words[0]) == MAX_TOKEN_CHARS


def test_text_values_over_a_limit_are_refused() -> None:
    cases = [
        (["Paris", LONG], rf"--text number 2: {TOKEN_LIMIT}"),
        (["w " * MANY], rf"--text number 1: {WORDS_LIMIT}"),
        (["x" * (MAX_LINE_BYTES + 1)], rf"--text number 1 is over the limit of {MAX_LINE_BYTES:,} bytes"),
        ([["Paris", LONG]], rf"--text number 1: {TOKEN_LIMIT}"),  # a word list, taken as given
        (["Paris \ud800"], "--text number 1 is not valid UTF-8"),  # what a shell passes for bad bytes
    ]
    for texts, message in cases:
        with pytest.raises(ConfigError, match=message):
            inputs_from_texts(texts)
    assert len(inputs_from_texts(["w" * MAX_TOKEN_CHARS])[0].words[0]) == MAX_TOKEN_CHARS


@pytest.mark.parametrize("image", ["~nobody-here-x/a.jpg", "n" * 300 + ".jpg", "a\u0000b.jpg"])
def test_unfindable_image_names_are_not_found_errors(tmp_path: Path, image: str) -> None:
    """A ~user that does not exist (RuntimeError before), a name too long for the file system
    (OSError), a NUL byte: each is an image that is not found, on its line."""
    path = tmp_path / "a.jsonl"
    path.write_text(
        json.dumps({"text": "Paris"}) + "\n" + json.dumps({"text": "Rome", "image": image}) + "\n"
    )
    with pytest.raises(DataFormatError, match=r"a\.jsonl:2: image .* not found"):
        read_inputs(path)
