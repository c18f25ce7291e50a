"""Fuzzing every input reader and the checkpoint loader (hypothesis, derandomized).

Random bytes, random text and random structural mutations of a small valid file (lines
inserted, deleted, repeated; columns swapped; tabs, invalid UTF-8, BOMs and CRs injected;
tags such as ``B-``, ``I-X``, ``B-FOO`` with declared types; tokens, lines and examples just
over the limits of :mod:`featurize.limits`) go to every featurize reader (the READERS registry,
then the whole loader), to ``heads predict``'s input files and ``--text``, and to the
checkpoint loader (random or truncated ``model.safetensors``, random or mutated
``config.json``). Each call returns what it reads or raises the toolkit's own error
(:class:`MnerError`, one line that names the file); anything else escaping is a bug, and
nothing is ever written to the cache.

Besides the random cases (derandomized: the same ones on every run), a sweep feeds every line
of the pools below to every reader for sure. The number of cases each test ran is printed at
the end of the module (``fuzz cases: ...``). ``MNER_FUZZ_CASES=5000`` runs more random cases
per test, ``MNER_FUZZ_RANDOM=1`` other ones on each run.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# hypothesis keeps a cache of its own (even with database=None): outside the repository
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "mner-hypothesis"))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from featurize.datasets import Dataset, LoadOptions, load_dataset
from featurize.errors import MnerError
from featurize.example import Example
from featurize.labels import check_tag
from featurize.limits import MAX_EXAMPLE_WORDS, MAX_LINE_BYTES, MAX_TOKEN_CHARS
from featurize.readers import READERS
from heads.input_files import INPUT_FORMATS, PredictInput, inputs_from_texts, read_inputs

# Cases per random test; derandomized, so every run (and CI) tries the same cases. A deeper
# run: MNER_FUZZ_CASES=5000 pytest tests/test_fuzz_readers.py
CASES = int(os.environ.get("MNER_FUZZ_CASES", "300"))
FUZZ = settings(
    max_examples=CASES,
    deadline=None,
    derandomize=os.environ.get("MNER_FUZZ_RANDOM") is None,
    database=None,  # nothing written under .hypothesis/
    print_blob=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # tmp_path is reused on purpose: one file, rewritten
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

SEEDS: dict[str, bytes] = {
    "umt": b"IMGID:1\nParis\tB-LOC\nis\tO\nnice\tO\n\nIMGID:2\nJustin\tB-PER\nBieber\tI-PER\n",
    "conll": b"-DOCSTART- -X- O\n\nParis B-LOC\nis O\n\nJustin\tB-PER\nBieber\tI-PER\n",
    "jsonl": b'{"text": ["Paris", "is"], "label": ["B-LOC", "O"], "images": ["1.jpg"]}\n'
    b'{"tokens": ["Justin", "Bieber"], "label": ["B-PER", "I-PER"], "image_id": "2", "id": "d:1"}\n',
    "hipe": b"# hipe2022:document_id = d1\nTOKEN\tNE-COARSE-LIT\tMISC\nBern\tB-LOC\t_\nist\tO\t_\n"
    b"schoen\tO\tEndOfSentence\n# hipe2022:document_id = d2\nTOKEN\tNE-COARSE-LIT\tMISC\n"
    b"Justin\tB-PER\tNoSpaceAfter\nBieber\tI-PER\tEndOfSentence\n",
    "text": b"Justin Bieber in #Paris !\nNew Post: @user at www.example.com\n",
}
SUFFIX = {"umt": ".txt", "conll": ".txt", "jsonl": ".jsonl", "hipe": ".tsv", "text": ".txt"}

# Lines a mutation may insert: each a known way a file goes wrong.
ANY_LINES = [
    b"",
    b" ",
    b"\t",
    b"\t\t",
    b"x",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xc3",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate: not valid UTF-8
    b"\x00",
    b"\r",
]
COLUMN_LINES = [
    b"IMGID:",
    b"IMGID:9",
    b"IMGID: \t",
    b"-DOCSTART- -X- O",
    b"TOKEN\tNE-COARSE-LIT\tMISC",
    b"TOKEN\tNE-COARSE-LIT\tMISC\tMISC",
    b"TOKEN\tMISC",
    b"TOKEN",
    b"# hipe2022:document_id = d9",
    b"# document_id =",
    b"#",
    b"x\tB-",
    b"x\tI-X",
    b"x\tB-FOO",
    b"x\tB-LOC\tEndOfSentence",
    b"x\t_\t_",
    b"x\tO\tEndOfSentence|NoSpaceAfter",
    b"\tO\t_",
    b"x\t\t_",
    b"x B-PER",
    b"x\tO\tO\tO",
    b"\tO",
    b"\xc2\xa0\tO",  # a no-break space as the token (T15 has one)
    b"x\tO\r",
    b"x\rO",
    b"\xef\xbb\xbfx\tO",
    b"\xed\xa0\x80\tO",
    b"\x00\tO",
    b"x\tO\x0b",
    b"x\xe2\x80\xa8\tO",  # U+2028, a line separator to str.splitlines, not to the readers
]
JSON_LINES = [
    b"{}",
    b"[]",
    b"null",
    b'"text"',
    b"{",
    b'{"text": "a b", "label": ["O", "O"]}',
    b'{"text": ["a"], "label": ["B-FOO"]}',
    b'{"text": ["a"], "label": ["B-"]}',
    b'{"text": ["a"], "label": ["O\\n"]}',
    b'{"text": ["a"], "label": ["B-LOC\\n"]}',
    b'{"text": [], "label": []}',
    b'{"text": [""], "label": ["O"]}',
    b'{"text": [" "], "label": ["O"]}',
    b'{"text": [1], "label": ["O"]}',
    b'{"text": "", "label": []}',
    b'{"text": null, "tokens": ["a"], "label": ["O"]}',
    b'{"text": ["a"], "label": "O", "image": 5}',
    b'{"text": ["a"], "label": ["O"], "image": [null]}',
    b'{"text": ["a"], "label": ["O"], "image": ["~nobody-here-x/a.jpg"]}',
    b'{"text": ["a"], "label": ["O"], "image": ["' + b"n" * 300 + b'.jpg"]}',
    b'{"text": ["a"], "label": ["O"], "image": ["a\\u0000b"]}',
    b'{"text": ["a"], "label": ["O"], "image": ["/"]}',
    b'{"text": ["a"], "label": ["O"], "caption": 3, "knowledge": ["k"]}',
    b'{"text": ["a"], "label": ["O"], "id": ' + b"9" * 5000 + b"}",
    b'{"text": ["a"], "label": ["O"], "id": {"x": [1]}}',
    b'{"text": ["\\ud800"], "label": ["O"]}',
    b'{"text": ["a"], "label": ["O"], "id": "\\udfff"}',
    b'{"text": ["\\ud83d\\ude00"], "label": ["O"]}',
    b'{"text": ["a"], "label": ["O"], "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"text": ["a"], "label": ["O"], "x": 1e999, "y": NaN}',
    b'{"text": ["a"], "text": 7, "label": ["O"]}',
]
POOLS = {
    "umt": COLUMN_LINES,
    "conll": COLUMN_LINES,
    "hipe": COLUMN_LINES,
    "jsonl": JSON_LINES,
    "text": COLUMN_LINES + JSON_LINES,
}
# Raw JSON values a "json" mutation puts under a key of a JSONL record (as text: some are not
# valid JSON, some are valid JSON that Python cannot hold or write back).
JSON_FRAGMENTS = [
    "9" * 5000,  # more digits than Python turns into an int
    "[" * 3000 + "]" * 3000,  # deeper than the JSON parser recurses
    "NaN",
    "1e999",
    '"\\ud800"',  # a lone surrogate escape
    '["\\udc00x"]',
    '"\\u0000"',
    '"~nobody-here-x/a.jpg"',
    '"' + "n" * 300 + '.jpg"',
    '"/"',
    '""',
    "[]",
    "{}",
    "[[]]",
    '[""]',
    '[" "]',
    "[null]",
    '["B-", "I-X"]',
    '["B-FOO"]',
    '"O\\n"',
]
JSON_KEYS = ["text", "tokens", "label", "images", "image", "image_id", "id", "caption", "knowledge"]
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES_TEXT = st.one_of(
    st.sampled_from(JSON_FRAGMENTS),
    st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4), max_leaves=6).map(json.dumps),
    st.lists(st.sampled_from(["O", "B-LOC", "I-LOC", "B-PER", "B-", "I-X", "B-FOO"]), max_size=4).map(
        json.dumps
    ),
)
CELL_VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", " ", "_", "TOKEN", "IMGID:", "EndOfSentence", "\u00a0", "w" * 1001, "#", "-DOCSTART-"]
    ),
)

TAGS = [
    "O",
    "B-",
    "I-",
    "B-FOO",
    "I-X",
    "B-LOC",
    "I-LOC",
    "B-PER",
    "b-loc",
    "B_LOC",
    "O O",
    "",
    "_",
    "-",
    "B-\u00a0",
]
INJECT = [b"\t", b"\xff", b"\xef\xbb\xbf", b" ", b"\r", b"\x00", b"\n", b"\t\t", b"\xe2\x80\xa8", b"\xc3("]
DECLARED = [None, frozenset({"LOC", "PER"}), frozenset({"PER"}), frozenset({"loc"}), frozenset({"FOO"})]
HUGE = ["token", "token_at_limit", "line", "json_words", "repeat_line"]

RAN: Counter[str] = Counter()
SECONDS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end of the module, one line with the cases each test ran."""
    yield
    if RAN:
        shown = ", ".join(f"{name} {n} ({SECONDS[name]:.1f} s)" for name, n in sorted(RAN.items()))
        line = f"fuzz cases: {shown}; total {sum(RAN.values())} in {sum(SECONDS.values()):.1f} s"
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if capture is not None and reporter is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            print(line)


def _cache_is_empty() -> None:
    cache = Path(os.environ["MNER_CACHE_DIR"])
    assert not cache.exists() or not any(cache.rglob("*")), f"something was written to {cache}"


def _huge(kind: str, fmt: str) -> list[bytes]:
    """Input just over (or, ``token_at_limit``, exactly at) a limit of featurize.limits."""
    if kind in ("token", "token_at_limit"):
        token = "w" * (MAX_TOKEN_CHARS + (kind == "token"))
        if fmt == "jsonl":
            return [json.dumps({"text": [token], "label": ["O"]}).encode()]
        if fmt == "text":
            return [token.encode()]
        return [f"{token}\tO\t_".encode() if fmt == "hipe" else f"{token}\tO".encode()]
    if kind == "line":
        return [b"x" * (MAX_LINE_BYTES + 1)]
    if kind == "json_words":
        words = ["w"] * (MAX_EXAMPLE_WORDS + 1)
        return [json.dumps({"text": words, "label": ["O"] * len(words)}).encode()]
    row = b"w\tO\t_" if fmt == "hipe" else b"w\tO"
    return [row] * (MAX_EXAMPLE_WORDS + 1)


def ops(fmt: str) -> st.SearchStrategy[tuple[Any, ...]]:
    """One mutation of a file of ``fmt``; lines of its own kind are inserted most often."""
    at = st.integers(0, 40)
    own = st.sampled_from(POOLS[fmt] + ANY_LINES)
    return st.one_of(
        st.tuples(st.just("insert"), at, own),
        st.tuples(st.just("insert"), st.integers(0, 2), own),  # early, before other mistakes
        st.tuples(st.just("insert"), at, st.sampled_from(COLUMN_LINES + JSON_LINES + ANY_LINES)),
        st.tuples(st.just("insert"), at, st.binary(max_size=40)),
        st.tuples(st.just("delete"), at),
        st.tuples(st.just("repeat"), at, st.integers(2, 5)),
        st.tuples(st.just("swap_columns"), at),
        st.tuples(st.just("inject"), at, st.integers(0, 60), st.sampled_from(INJECT)),
        st.tuples(st.just("tag"), at, st.sampled_from(TAGS)),
        st.tuples(st.just("json"), at, st.sampled_from(JSON_KEYS), JSON_VALUES_TEXT, st.booleans()),
        st.tuples(st.just("cell"), at, st.integers(0, 3), CELL_VALUES),
        st.tuples(st.just("huge"), at, st.sampled_from(HUGE)),
        st.tuples(st.just("bom")),
        st.tuples(st.just("crlf")),
        st.tuples(st.just("truncate"), st.integers(0, 400)),
    )


def _mutate(seed: bytes, ops: list[tuple[Any, ...]], fmt: str) -> bytes:
    lines = seed.split(b"\n")
    whole: list[tuple[Any, ...]] = []  # BOM and truncation, applied to the joined bytes
    for op in ops:
        name, at = op[0], (op[1] % max(len(lines), 1)) if len(op) > 1 else 0
        if name == "insert":
            lines.insert(at, op[2])
        elif name == "huge":
            lines[at:at] = _huge(op[2], fmt)
        elif name in ("bom", "truncate"):
            whole.append(op)
        elif name == "crlf":
            lines = [line + b"\r" for line in lines]
        elif not lines:
            continue
        elif name == "delete":
            del lines[at]
        elif name == "repeat":
            lines[at:at] = [lines[at]] * (op[2] - 1)
        elif name == "swap_columns":
            lines[at] = b"\t".join(lines[at].split(b"\t")[::-1])
        elif name == "inject":
            cut = min(op[2], len(lines[at]))
            lines[at] = lines[at][:cut] + op[3] + lines[at][cut:]
        elif name == "tag":
            cells = lines[at].split(b"\t")
            cells[1 if fmt == "hipe" and len(cells) > 2 else -1] = op[2].encode()
            lines[at] = b"\t".join(cells)
        elif name == "cell":
            cells = lines[at].split(b"\t")
            cells[op[2] % len(cells)] = op[3].encode("utf-8", "surrogatepass")
            lines[at] = b"\t".join(cells)
        elif name == "json":
            lines[at] = _json_set(lines[at], op[2], op[3], op[4])
    data = b"\n".join(lines)
    for op in whole:
        data = b"\xef\xbb\xbf" + data if op[0] == "bom" else data[: op[1] % (len(data) + 1)]
    return data


def _json_set(line: bytes, key: str, value: str, drop_others: bool) -> bytes:
    """A JSONL line with ``key`` set to the raw JSON text ``value`` (the others kept, or dropped)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        record = {}
    fields = {} if drop_others or not isinstance(record, dict) else dict(record)
    parts = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in fields.items() if k != key]
    return ("{" + ", ".join([*parts, f"{json.dumps(key)}: {value}"]) + "}").encode("utf-8", "surrogatepass")


@st.composite
def files(draw: st.DrawFn, fmt: str) -> bytes:
    """A file for ``fmt``: mostly mutations of its valid seed, sometimes bytes or text."""
    kind = draw(st.sampled_from(["mutated"] * 7 + ["other_seed", "bytes", "text", "empty"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    if kind == "empty":
        return draw(st.sampled_from([b"", b"\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n", b" \t\r\n"]))
    seed = SEEDS[fmt] if kind == "mutated" else SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    return _mutate(seed, draw(st.lists(ops(fmt), min_size=1, max_size=5)), fmt)


def _check_error(err: MnerError, path: Path | None) -> None:
    """The toolkit's error: one line, short enough to read, naming the file it is about."""
    text = str(err)
    assert "\n" not in text and len(text) < 600, text[:600]
    if path is not None:
        assert str(path) in text or path.name in text, text


def _check_examples(examples: list[Example], types: frozenset[str] | None) -> None:
    assert isinstance(examples, list)
    for example in examples:
        assert isinstance(example, Example)
        assert example.words and len(example.words) == len(example.labels) <= MAX_EXAMPLE_WORDS
        for word in example.words:
            assert isinstance(word, str) and 0 < len(word) <= MAX_TOKEN_CHARS, word[:80]
            word.encode("utf-8")
        for tag in example.labels:
            check_tag(tag, "-", 0, types)


def _check_words(inputs: list[PredictInput]) -> None:
    assert isinstance(inputs, list)
    for item in inputs:
        assert isinstance(item, PredictInput) and 0 < len(item.words) <= MAX_EXAMPLE_WORDS
        assert all(isinstance(w, str) and 0 < len(w) <= MAX_TOKEN_CHARS for w in item.words)


def _fuzz(name: str, body: Callable[..., None]) -> Callable[..., None]:
    """Count the cases ``body`` runs under ``name``; check the cache after each."""

    @functools.wraps(body)  # given() reads the signature of body
    def counted(*args: Any, **kwargs: Any) -> None:
        RAN[name] += 1
        start = time.perf_counter()
        try:
            body(*args, **kwargs)
        finally:
            SECONDS[name] += time.perf_counter() - start
        _cache_is_empty()

    return counted


def _read_or_refuse(fmt: str, path: Path, data: bytes, types: frozenset[str] | None) -> None:
    """READERS[fmt] and then load_dataset on the same file: examples within the limits, every
    tag valid (and of a declared type), or a DataFormatError naming the file."""
    path.write_bytes(data)
    try:
        examples = READERS.get(fmt)(path, set(types) if types is not None else None)
    except MnerError as err:
        _check_error(err, path)
        return
    _check_examples(examples, types)
    try:
        loaded = load_dataset(str(path), LoadOptions(format=fmt, types=types))
    except MnerError as err:
        _check_error(err, path)
        return
    assert isinstance(loaded, Dataset) and all(len(fp) == 64 for fp in loaded.fingerprints.values())
    assert loaded.types_declared == types
    if types is not None:
        assert set(loaded.types_found) <= types and loaded.options["types"] == sorted(types)
    else:
        assert "types" not in loaded.options


def _predict_or_refuse(path: Path, data: bytes, fmt: str) -> None:
    """heads predict --input FILE --input-format fmt: inputs within the limits, or an MnerError."""
    path.write_bytes(data)
    try:
        inputs = read_inputs(path, fmt)
    except MnerError as err:
        _check_error(err, path)
        return
    _check_words(inputs)


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_every_reader_reads_or_refuses(fmt: str, tmp_path: Path) -> None:
    assert fmt in SEEDS, f"reader {fmt!r} has no seed file in this fuzz test: add one"
    path = tmp_path / f"fuzz{SUFFIX[fmt]}"
    one = functools.partial(_read_or_refuse, fmt, path)
    FUZZ(given(files(fmt), st.sampled_from(DECLARED))(_fuzz(f"reader:{fmt}", one)))()


def test_predict_input_files_read_or_refuse(tmp_path: Path) -> None:
    """heads predict --input: every format (auto, text, jsonl, conll, umt) on every kind of file."""
    names = {fmt: tmp_path / f"fuzz{suffix}" for fmt, suffix in SUFFIX.items()}

    def one(seeded: tuple[str, bytes], fmt: str) -> None:
        _predict_or_refuse(names[seeded[0]], seeded[1], fmt)

    seeded = st.sampled_from(sorted(SEEDS)).flatmap(lambda f: st.tuples(st.just(f), files(f)))
    FUZZ(given(seeded, st.sampled_from(INPUT_FORMATS))(_fuzz("predict:--input", one)))()


def _known_bad(fmt: str) -> Iterator[bytes]:
    """Every line of the pools, first in the file and after the seed's first example; for JSONL
    also every raw JSON value under every key of the seed's first record."""
    seed = SEEDS[fmt].split(b"\n")
    for line in COLUMN_LINES + JSON_LINES + ANY_LINES:
        yield b"\n".join([line, *seed])
        yield b"\n".join([*seed[:4], line, *seed[4:]])
    if fmt in ("jsonl", "text"):
        first = SEEDS["jsonl"].split(b"\n")[0]
        for key in JSON_KEYS:
            for value in JSON_FRAGMENTS:
                yield _json_set(first, key, value, drop_others=False)
    for kind in HUGE:
        yield b"\n".join([*seed[:2], *_huge(kind, fmt), *seed[2:]])


def test_every_known_bad_line_is_read_or_refused(tmp_path: Path) -> None:
    """The pools and fragments above, each one for sure (random cases draw only some of them):
    through every reader, with and without declared types, and through every predict format."""
    for fmt in sorted(READERS):
        path = tmp_path / f"sweep{SUFFIX[fmt]}"
        for data in _known_bad(fmt):
            for types in (None, frozenset({"LOC", "PER"})):
                _fuzz(f"sweep:{fmt}", _read_or_refuse)(fmt, path, data, types)
    for seed_format in ("jsonl", "text"):  # conll and umt input is read by READERS, swept above
        path = tmp_path / f"sweep-predict{SUFFIX[seed_format]}"
        for data in _known_bad(seed_format):
            for fmt in ("auto", "text", "jsonl"):
                _fuzz("sweep:predict", _predict_or_refuse)(path, data, fmt)


TEXTS = st.one_of(
    st.text(max_size=200),
    st.lists(st.text(max_size=30), max_size=8),
    st.sampled_from(
        [
            "",
            " ",
            "\u00a0",
            "\ud800",
            "w" * (MAX_TOKEN_CHARS + 1),
            "w" * MAX_TOKEN_CHARS,
            "w " * (MAX_EXAMPLE_WORDS + 1),
            "w" * (MAX_LINE_BYTES + 1),
            "é" * (MAX_LINE_BYTES // 2 + 1),
        ]
    ),
)


def test_predict_text_values_are_read_or_refused() -> None:
    """heads predict --text: raw strings and word lists, in both tokenizer styles."""

    def one(texts: list[Any], style: str) -> None:
        try:
            inputs = inputs_from_texts(texts, style=style)
        except MnerError as err:
            _check_error(err, None)
            return
        _check_words(inputs)
        assert len(inputs) == len(texts)

    FUZZ(
        given(st.lists(TEXTS, min_size=1, max_size=3), st.sampled_from(["tweet", "split"]))(
            _fuzz("predict:--text", one)
        )
    )()


# -- the checkpoint loader ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, loadable checkpoint of a very small bilstm-crf (8-d inputs): the seed of every case."""
    import heads.models  # noqa: F401  (registers the heads)
    from heads import checkpoint
    from heads.tagger import HEADS, Dims, hyper_from

    cls = HEADS.get("bilstm-crf")
    tags = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    model = cls(tags, Dims(text=8), hyper_from(cls.Hyper, {"proj": 4, "hidden": 4}), "text")
    folder = tmp_path_factory.mktemp("checkpoint") / "head"
    checkpoint.save(folder, model, {"inputs": {"text": "fuzz"}})
    checkpoint.load(folder)  # the seed itself loads
    return folder


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 64)  # no sizes that would make the loader allocate gigabytes
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["bilstm-crf", "cwi", "text", "both", "mner-head", "O", "B-LOC"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
CONFIG_KEYS = ["format", "format_version", "schema_version", "head", "modality", "hyper", "tags", "dims"]
SUBKEYS = {"hyper": ["proj", "hidden", "layers", "crf", "dropout", "constrain"], "dims": ["text", "image"]}


@st.composite
def config_edits(draw: st.DrawFn) -> list[tuple[str, str | None, str, Any]]:
    """Edits of config.json: (key, sub-key or None, 'set' or 'delete', value)."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(CONFIG_KEYS))
        sub = draw(st.none() | st.sampled_from(SUBKEYS.get(key, ["x"])))
        edits.append((key, sub, draw(st.sampled_from(["set", "set", "delete"])), draw(JSON_VALUES)))
    return edits


CHECKPOINT_CASES = st.one_of(
    st.tuples(st.just("weights_random"), st.binary(max_size=200)),
    st.tuples(st.just("weights_truncated"), st.integers(0, 10_000)),
    st.tuples(st.just("weights_flipped"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("weights_header"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("config_random"), st.binary(max_size=200)),
    st.tuples(st.just("config_truncated"), st.integers(0, 2_000)),
    st.tuples(st.just("config_edited"), config_edits()),
    st.tuples(st.just("config_replaced"), JSON_VALUES),
)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # a config with a 0-d input
def test_checkpoint_loader_loads_or_refuses(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """heads.checkpoint.load on a damaged model.safetensors or config.json: a loaded head or an
    MnerError, never SafetensorError, KeyError, TypeError, ... Half the cases drop the config's
    checksums (a folder saved before them), so the damage reaches the parsers behind them."""
    from heads import checkpoint

    folder = tmp_path / "head"
    weights, config = tiny_checkpoint / "model.safetensors", tiny_checkpoint / "config.json"

    def one(case: tuple[Any, ...], unverified: bool) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(tiny_checkpoint, folder)
        if unverified:  # as saved before checksums existed, so the damage reaches the parsers
            stripped = json.loads(config.read_text())
            stripped.pop("checksums", None)
            (folder / "config.json").write_text(json.dumps(stripped))
        kind = case[0]
        if kind == "weights_random":
            (folder / "model.safetensors").write_bytes(case[1])
        elif kind == "weights_truncated":
            data = weights.read_bytes()
            (folder / "model.safetensors").write_bytes(data[: case[1] % len(data)])
        elif kind == "weights_flipped":
            data = bytearray(weights.read_bytes())
            data[case[1] % len(data)] ^= case[2]
            (folder / "model.safetensors").write_bytes(bytes(data))
        elif kind == "weights_header":
            data = weights.read_bytes()
            (folder / "model.safetensors").write_bytes(case[1].to_bytes(8, "little") + data[8:])
        elif kind == "config_random":
            (folder / "config.json").write_bytes(case[1])
        elif kind == "config_truncated":
            data = (folder / "config.json").read_bytes()
            (folder / "config.json").write_bytes(data[: case[1] % len(data)])
        elif kind == "config_replaced":
            (folder / "config.json").write_text(json.dumps(case[1]))
        else:
            edited = json.loads((folder / "config.json").read_text())
            for key, sub, action, value in case[1]:
                target, name = (edited, key) if sub is None else (edited.get(key), sub)
                if not isinstance(target, dict):
                    continue
                if action == "delete":
                    target.pop(name, None)
                else:
                    target[name] = value
            (folder / "config.json").write_text(json.dumps(edited))
        try:
            model, loaded = checkpoint.load(folder)
        except MnerError as err:
            _check_error(err, None)  # not every message names the folder yet (a wrong modality)
            return
        assert isinstance(loaded, dict) and model is not None

    no_shrinking = settings(FUZZ, phases=[Phase.explicit, Phase.generate])
    no_shrinking(given(CHECKPOINT_CASES, st.booleans())(_fuzz("checkpoint", one)))()
