"""`bench llm` without a model: strict answer checks, the prompt, the client's cache, back-off
and structured-output fallback, and the whole command on real T17 tweets against a scripted
OpenAI-compatible server on 127.0.0.1 (the real-model run is in test_llm_local_server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_cli
from llm_stub_server import StubServer, words_of

from bench.cli import main as bench_main
from bench.llm_answers import check_answer
from bench.llm_prompt import PromptBuilder, PromptTemplate, answer_schema, few_shot
from featurize.errors import ConfigError, DataFormatError
from featurize.example import Example
from featurize.llm_client import ChatClient, ServerError

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def ok(text: str) -> tuple[int, str, dict[str, str]]:
    return 200, text, {}


# -- answers -----------------------------------------------------------------------------------
def test_valid_answers_in_the_forms_models_write() -> None:
    assert check_answer('{"entities": ["B-PER", "O"]}', 2, LABELS).labels == ["B-PER", "O"]
    fenced = 'Sure:\n```json\n{"entities": [["Obama", "B-PER"], ["spoke", "O"]]}\n```'
    assert check_answer(fenced, 2, LABELS).labels == ["B-PER", "O"]
    objects = '{"entities": [{"word": "Obama", "label": "B-PER"}, {"word": "spoke", "label": "O"}]}'
    assert check_answer(objects, 2, LABELS).labels == ["B-PER", "O"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("B-PER O", "not a JSON object"),
        ('{"labels": ["O", "O"]}', "no 'entities' key"),
        ('{"entities": "O O"}', "not a list"),
        ('{"entities": ["O"]}', "1 labels for 2 words"),
        ('{"entities": ["B-PER", "B-MIS"]}', "outside the allowed set: 'B-MIS'"),
        ('{"entities": ["b-per", "O"]}', "outside the allowed set: 'b-per'"),  # no silent renaming
        ('{"entities": [1, "O"]}', "not a label"),
    ],
)
def test_invalid_answers_say_what_is_wrong(text: str, problem: str) -> None:
    verdict = check_answer(text, 2, LABELS)
    assert not verdict.ok and problem in str(verdict.problem)


# -- prompt ------------------------------------------------------------------------------------
def example(words: list[str], labels: list[str] | None = None, **kw: object) -> Example:
    return Example("x", words, labels or ["O"] * len(words), **kw)  # type: ignore[arg-type]


def test_default_template_is_the_thesis_instruction_with_the_labels() -> None:
    builder = PromptBuilder(PromptTemplate.read(), LABELS)
    shot = example(["Obama", "spoke"], ["B-PER", "O"])
    messages = builder.messages(example(["RT", "Paris"]), [shot])
    assert messages[0]["role"] == "system"
    assert "Perform Multimodal Named Entity Recognition" in str(messages[0]["content"])
    assert "O, B-LOC, I-LOC, B-PER, I-PER" in str(messages[0]["content"])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert json.loads(str(messages[2]["content"])) == {"entities": ["B-PER", "O"]}
    assert '["RT", "Paris"]' in str(messages[3]["content"]) and "(2 words)" in str(messages[3]["content"])
    retry = builder.retry(["RT", "Paris"], "'entities' holds 1 labels for 2 words")
    assert "holds 1 labels for 2 words" in str(retry["content"]) and "exactly 2 labels" in str(
        retry["content"]
    )


def test_captions_and_images_enter_the_user_turn(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG fake bytes")
    ex = example(["Paris"], caption="a tower at night", image_paths=[str(image)])
    with_caption = PromptBuilder(PromptTemplate.read(), LABELS, "captions").user_content(ex)
    assert isinstance(with_caption, str) and "The image shows: a tower at night" in with_caption
    parts = PromptBuilder(PromptTemplate.read(), LABELS, send_images=True).user_content(ex)
    assert isinstance(parts, list) and parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")  # type: ignore[index]


def test_template_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "t.txt"
    bad.write_text("[system]\nhi\n[nonsense]\n")
    with pytest.raises(DataFormatError, match=r"t.txt:3: unknown section \[nonsense\]"):
        PromptTemplate.read(bad)
    bad.write_text("[system]\nlabels $labels\n[user]\n$missing\n[retry]\n$problem\n")
    template = PromptTemplate.read(bad)
    with pytest.raises(ConfigError, match=r"\[user\] uses the placeholder 'missing'"):
        PromptBuilder(template, LABELS).user_content(example(["a"]))
    with pytest.raises(ConfigError, match="no such file"):
        PromptTemplate.read(tmp_path / "absent.txt")


def test_few_shot_examples_are_fixed_by_the_seed() -> None:
    train = [example([str(i)]) for i in range(50)]
    assert few_shot(train, 3, 0) == few_shot(train, 3, 0)
    assert few_shot(train, 3, 0) != few_shot(train, 3, 1)
    with pytest.raises(ConfigError):
        few_shot(train[:2], 3, 0)


def test_schema_asks_for_one_allowed_label_per_word() -> None:
    items = answer_schema(LABELS, 4)["properties"]["entities"]  # type: ignore[index]
    assert items["minItems"] == items["maxItems"] == 4 and items["items"]["enum"] == LABELS


# -- client ------------------------------------------------------------------------------------
def test_backoff_on_429_and_5xx_then_the_answer(tmp_path: Path) -> None:
    script = [(429, "slow down", {"retry-after": "0.25"}), (503, "busy", {}), ok('{"entities": ["O"]}')]
    waits: list[float] = []
    with StubServer(lambda body: script.pop(0)) as server:
        client = ChatClient(server.base_url, "m", tmp_path, backoff_base=0.5, sleep=waits.append)
        reply = client.complete([{"role": "user", "content": "hi"}], None, 10)
    assert reply.text == '{"entities": ["O"]}' and reply.attempts == 3 and not reply.cached
    assert waits[0] == 0.25  # Retry-After wins
    assert 1.0 <= waits[1] < 1.25  # 0.5 * 2**1, jitter in [1, 1.25)
    assert client.stats.backoffs == 2 and client.stats.requests == 3


def test_gives_up_after_the_attempts_and_refuses_a_bad_key(tmp_path: Path) -> None:
    with StubServer(lambda body: (500, "down", {})) as server:
        client = ChatClient(server.base_url, "m", tmp_path, attempts=3, sleep=lambda s: None)
        with pytest.raises(ServerError, match="gave up after 3 attempts"):
            client.complete([{"role": "user", "content": "hi"}], None, 10)
        assert len(server.requests) == 3
    with StubServer(lambda body: (401, "bad key", {})) as server:
        client = ChatClient(server.base_url, "m", tmp_path, sleep=lambda s: None)
        with pytest.raises(ServerError, match="refused the API key"):
            client.complete([{"role": "user", "content": "hi"}], None, 10)
        assert len(server.requests) == 1  # never retried


@pytest.mark.parametrize("status", [400, 500])  # some servers answer 500 to an unknown response_format
def test_structured_output_falls_back_when_the_server_refuses_it(tmp_path: Path, status: int) -> None:
    def respond(body: dict) -> tuple[int, str, dict[str, str]]:
        kind = body.get("response_format", {}).get("type")
        refusal = "response_format type must be one of text or json_object, but got: json_schema"
        return (status, refusal, {}) if kind == "json_schema" else ok("{}")

    with StubServer(respond) as server:
        client = ChatClient(server.base_url, "m", tmp_path)
        reply = client.complete([{"role": "user", "content": "hi"}], answer_schema(LABELS, 1), 10)
        assert reply.mode == client.mode == "json_object"
        assert server.requests[-1]["response_format"]["schema"]["required"] == ["entities"]
        client.complete([{"role": "user", "content": "again"}], answer_schema(LABELS, 1), 10)
        assert server.requests[-1]["response_format"]["type"] == "json_object"  # remembered
        assert len(server.requests) == 3
        rerun = ChatClient(server.base_url, "m", tmp_path)  # a later run starts where this one ended
        assert rerun.mode == "json_object"
        assert rerun.complete([{"role": "user", "content": "hi"}], answer_schema(LABELS, 1), 10).cached
        assert len(server.requests) == 3


def test_answers_are_cached_without_the_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-secret-do-not-write")
    with StubServer(lambda body: ok('{"entities": ["O"]}')) as server:
        client = ChatClient(server.base_url, "m", tmp_path / "cache", api_key_env="MY_KEY")
        first = client.complete([{"role": "user", "content": "hi"}], None, 10)
        again = ChatClient(server.base_url, "m", tmp_path / "cache", api_key_env="MY_KEY")
        second = again.complete([{"role": "user", "content": "hi"}], None, 10)
        assert server.headers[0]["authorization"] == "Bearer sk-secret-do-not-write"
    assert not first.cached and second.cached and second.attempts == 0 and len(server.requests) == 1
    files = list((tmp_path / "cache").rglob("*"))
    assert any(f.suffix == ".json" for f in files)
    assert not any("sk-secret" in f.read_text() for f in files if f.is_file())


# -- the command -------------------------------------------------------------------------------
def test_bench_llm_on_real_t17_tweets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Example 0: valid at once; 1: invalid, then valid after a retry; 2: never valid -> all-O,
    counted as failed; the rest: a correct tagging copied from the gold file."""
    from featurize.datasets import load_dataset

    monkeypatch.setenv("STUB_KEY", "sk-never-in-a-file")
    tweets = load_dataset("t17", splits=["test"]).splits["test"].examples[:6]
    gold = {tuple(e.words): e.labels for e in tweets}
    order = [tuple(e.words) for e in tweets]

    def respond(body: dict) -> tuple[int, str, dict[str, str]]:
        words = tuple(words_of(body))
        turns = sum(1 for m in body["messages"] if m["role"] == "assistant")
        position = order.index(words)
        if position == 2 or (position == 1 and turns == 0):
            return ok('{"entities": ["B-NOPE"]}')
        return ok(json.dumps({"entities": ["O"] * len(words) if position == 0 else gold[words]}))

    argv = [
        "llm",
        "--dataset",
        "t17",
        "--split",
        "test",
        "--limit",
        "6",
        "--model",
        "stub",
        "--api-key-env",
        "STUB_KEY",
    ]
    argv += ["--out", str(tmp_path / "llm"), "--concurrency", "2"]
    with StubServer(respond) as server:
        code, out, err = run_cli(bench_main, [*argv, "--base-url", server.base_url], capsys)
        assert code == 0, out + err
        sent = len(server.requests)
        assert sent == 1 + 2 + 3 + 3  # retries: example 1 once, example 2 twice
        code, out2, err = run_cli(bench_main, [*argv, "--base-url", server.base_url], capsys)
        assert code == 0 and len(server.requests) == sent  # everything from the cache
    report = json.loads(next((tmp_path / "llm" / "report").glob("llm-t17-test-stub.json")).read_text())
    row = report["tables"][0]["rows"][0]
    assert row["examples"] == 6 and row["failed (all-O)"] == 1 and row["retries"] == 1 + 2
    assert row["valid first try"] == 4 and row["cached answers"] == sent and row["requests"] == 0
    assert 0 < row["entity F1"] < 100 and report["tables"][1]["title"].startswith("Published, NOT")
    lines = [
        json.loads(x) for x in next((tmp_path / "llm").glob("*-predictions.jsonl")).read_text().splitlines()
    ]
    assert lines[2]["predicted"] == ["O"] * len(lines[2]["words"]) and not lines[2]["valid"]
    assert lines[3]["predicted"] == lines[3]["gold"]
    assert "entity F1" in out and "1 of 6 without a valid answer" in out
    for path in (tmp_path / "llm").rglob("*"):
        if path.is_file():
            assert "sk-never-in-a-file" not in path.read_text(errors="replace")


def test_bench_llm_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        bench_main, ["llm", "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path)], capsys
    )
    assert code == 2 and "--model" in out + err
    code, out, err = run_cli(
        bench_main,
        ["llm", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--context", "pictures"],
        capsys,
    )
    assert code == 2 and "--context must be one of none, captions" in out + err
