"""`featurize knowledge` without a model: the PGIM-style prompt built from gold training labels,
and the whole run on real T17 tweets against a scripted OpenAI-compatible server on 127.0.0.1
(cache, back-off, failures, the key kept out of every file, the file read back); one slow test
runs the real SmolLM2 on llama.cpp's server."""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_runner import run_cli
from llm_stub_server import StubServer
from rich.console import Console

from featurize.datasets import load_dataset
from featurize.errors import ConfigError
from featurize.example import Example
from featurize.knowledge import example_key, read_knowledge
from featurize.knowledge_generate import KnowledgeRunConfig, run_knowledge, summary_path
from featurize.knowledge_prompt import gold_answer, gold_spans, messages, pick_shots, query
from featurize.llm_client import ServerError

KEY = "sk-knowledge-never-in-a-file"
Answer = tuple[int, str, dict[str, str]]


def ok(text: str) -> Answer:
    return 200, text, {}


def asked(body: dict) -> str:
    """The words of the text a request asks about (its last user turn's ``Text:`` line)."""
    content = body["messages"][-1]["content"]
    assert body["messages"][-1]["role"] == "user" and content.startswith("Text: ")
    return content.splitlines()[0][len("Text: ") :]


def answer_for(text: str) -> str:
    return f"Named entities: 1. {text.split()[0]} (person)\nReasoning: about {len(text.split())} words."


def echo(body: dict) -> Answer:
    return ok(answer_for(asked(body)))


@pytest.fixture
def featurize_main() -> Callable[[], None]:
    from featurize import cli

    return cli.main


def dev_tweets(n: int) -> list[Example]:
    return load_dataset("t17", splits=["dev"]).splits["dev"].examples[:n]


def config(server: StubServer, tmp_path: Path, **kw: object) -> KnowledgeRunConfig:
    values: dict[str, object] = dict(
        dataset="t17",
        splits=["dev"],
        base_url=server.base_url,
        model="stub",
        api_key_env="STUB_KEY",
        limit=4,
        shots=2,
        concurrency=2,
        out=tmp_path / "k.tsv",
        cache_dir=tmp_path / "cache",
    )
    return KnowledgeRunConfig(**(values | kw))  # type: ignore[arg-type]


def no_file_holds(folder: Path, secret: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


# -- the prompt --------------------------------------------------------------------------------
def test_in_context_answers_are_the_gold_spans_with_their_kinds() -> None:
    shot = Example(
        "train:1",
        ["RT", "Kawhi", "Leonard", "wins", "NBA", "award"],
        ["O", "B-PER", "I-PER", "O", "B-ORG", "O"],
    )
    assert gold_spans(shot) == [("Kawhi Leonard", "person"), ("NBA", "organization")]
    answer = gold_answer(shot)
    assert answer.startswith("Named entities:\n1. Kawhi Leonard (person)\n2. NBA (organization)\nReasoning: ")
    assert "Kawhi Leonard is a person; NBA is an organization" in answer
    odd = Example("x", ["in", "Paris", "Texas", "at", "SXSW"], ["O", "I-LOC", "I-LOC", "O", "B-MISC"])
    assert gold_spans(odd) == [("Paris Texas", "location"), ("SXSW", "miscellaneous")]  # a span opened by I-
    assert gold_answer(Example("y", ["hello"], ["O"])).startswith("Named entities: none.")


def test_prompt_is_system_then_shots_then_the_query_with_its_caption() -> None:
    shot = Example("train:1", ["Obama", "spoke"], ["B-PER", "O"], caption="a man at a desk")
    target = Example("dev:1", ["Paris", "tonight"], ["O", "O"], caption="a tower at night")
    chat = messages(target, [shot], "location, person", captions=True)
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert "Named entities:" in chat[0]["content"] and "Reasoning:" in chat[0]["content"]
    assert "(location, person, ...)" in chat[0]["content"] and "not JSON" in chat[0]["content"]
    assert chat[1]["content"] == "Text: Obama spoke\nImage caption: a man at a desk"
    assert chat[2]["content"] == gold_answer(shot)
    assert chat[3]["content"] == "Text: Paris tonight\nImage caption: a tower at night"
    assert query(target, captions=False) == "Text: Paris tonight"


def test_shots_are_fixed_by_the_seed() -> None:
    train = [Example(str(i), [str(i)], ["O"]) for i in range(50)]
    assert pick_shots(train, 3, 0) == pick_shots(train, 3, 0) != pick_shots(train, 3, 1)
    with pytest.raises(ConfigError, match="only 2 examples"):
        pick_shots(train[:2], 3, 0)


# -- a run against the scripted server ---------------------------------------------------------
def test_knowledge_for_real_t17_tweets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_KEY", KEY)
    tweets = dev_tweets(4)
    train_ids = {e.id for e in load_dataset("t17", splits=["train"]).splits["train"].examples}
    with StubServer(echo) as server:
        summary = run_knowledge(config(server, tmp_path), _quiet())
        assert len(server.requests) == 4
        assert all(h["authorization"] == f"Bearer {KEY}" for h in server.headers)
        first = [r["messages"] for r in server.requests]
        made = json.loads(summary_path(tmp_path / "k.tsv").read_text())
        assert made["model"] == "stub" and made["server"] == server.base_url and made["seed"] == 0
        assert made["splits"]["dev"] | {"seconds": 0} == {
            "examples": 4,
            "written": 4,
            "failed": 0,
            "cached": 0,
            "seconds": 0,
        }
        assert made["shots"] == 2 and made["failed"] == []

        # one line per tweet, keyed by its image id, in dataset order, with the server's answer
        written = read_knowledge(tmp_path / "k.tsv")
        assert list(written) == [example_key(e) for e in tweets]
        assert all(key.startswith(("16_", "17_", "O_")) for key in written)
        assert list(written.values()) == [" ".join(answer_for(" ".join(e.words)).split()) for e in tweets]
        assert len((tmp_path / "k.tsv").read_text().splitlines()) == 4

        # the in-context examples: two from train, the same before every text, answered from gold
        assert len(summary.shot_ids) == 2 and set(summary.shot_ids) <= train_ids
        for chat in first:
            assert chat[:5] == first[0][:5] and [m["role"] for m in chat] == [
                "system",
                *["user", "assistant"] * 2,
                "user",
            ]
        assert all(m["content"].startswith("Named entities:") for m in first[0][2:5:2])
        asked_texts = {asked(r) for r in server.requests}
        assert asked_texts == {" ".join(e.words) for e in tweets}
        # the caption of a tweet that has one is in its request
        with_caption = [e for e in tweets if e.caption]
        assert with_caption, "the T17 dev tweets here have BLIP-2 captions"
        for e in with_caption:
            (request,) = [r for r in server.requests if asked(r) == " ".join(e.words)]
            assert f"Image caption: {e.caption}" in request["messages"][-1]["content"]
        assert request["temperature"] == 0.0 and "response_format" not in request  # plain text

        # the same run again: everything from the cache, nothing sent, the same file
        before = (tmp_path / "k.tsv").read_text()
        again = run_knowledge(config(server, tmp_path), _quiet())
        assert len(server.requests) == 4 and again.requests == 0
        assert (
            again.totals.cached == 4
            and again.totals.written == 4
            and (tmp_path / "k.tsv").read_text() == before
        )

        # another seed: other in-context examples (and so new requests)
        other = run_knowledge(config(server, tmp_path, seed=1, out=tmp_path / "k1.tsv"), _quiet())
        assert set(other.shot_ids) <= train_ids and other.shot_ids != summary.shot_ids
        assert server.requests[-1]["messages"][1] != first[0][1]
        assert len(server.requests) == 8

    no_file_holds(tmp_path, KEY)


def test_retries_then_failures_are_counted_and_left_out(tmp_path: Path) -> None:
    """Tweet 1 answers 500 every time, tweet 2 answers 500 once then 200, tweet 3 answers an
    empty text: 1 and 3 get no knowledge (counted, listed), the others are written."""
    tweets = dev_tweets(5)
    texts = [" ".join(e.words) for e in tweets]
    seen: dict[str, int] = {}

    def respond(body: dict) -> Answer:
        text = asked(body)
        seen[text] = seen.get(text, 0) + 1
        busy: Answer = (500, "overloaded", {"retry-after": "0"})
        if text == texts[1] or (text == texts[2] and seen[text] == 1):
            return busy
        return ok("   ") if text == texts[3] else echo(body)

    with StubServer(respond) as server:
        summary = run_knowledge(config(server, tmp_path, limit=5, attempts=3), _quiet())
    assert seen[texts[1]] == 3 and seen[texts[2]] == 2 and seen[texts[0]] == 1
    counts = summary.splits["dev"]
    assert (counts.examples, counts.written, counts.failed) == (5, 3, 2)
    assert [f["id"] for f in summary.failed] == [example_key(tweets[1]), example_key(tweets[3])]
    assert (
        "HTTP 500" in summary.failed[0]["error"] and "gave up after 3 attempts" in summary.failed[0]["error"]
    )
    assert summary.failed[1]["error"] == "empty answer"
    written = read_knowledge(tmp_path / "k.tsv")
    assert list(written) == [example_key(tweets[i]) for i in (0, 2, 4)]
    made = json.loads(summary_path(tmp_path / "k.tsv").read_text())
    assert made["splits"]["dev"]["failed"] == 2 and len(made["failed"]) == 2


def test_a_refused_key_stops_the_run(tmp_path: Path) -> None:
    with StubServer(lambda body: (401, "bad key", {})) as server:
        with pytest.raises(ServerError, match="refused the API key"):
            run_knowledge(config(server, tmp_path, limit=20, concurrency=1), _quiet())
        assert len(server.requests) == 1  # nothing is sent after the refusal
    assert not (tmp_path / "k.tsv").exists()


# -- the command -------------------------------------------------------------------------------
def test_the_command_writes_the_file_and_says_how_to_use_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    featurize_main: Callable[[], None],
) -> None:
    monkeypatch.setenv("STUB_KEY", KEY)
    argv = ["knowledge", "t17", "--split", "dev", "--limit", "3", "--shots", "1", "--model", "stub/v1"]
    argv += ["--api-key-env", "STUB_KEY"]
    with StubServer(echo) as server:
        code, out, err = run_cli(featurize_main, [*argv, "--base-url", server.base_url], capsys)
    assert code == 0, out + err
    default = tmp_path / "cache" / "knowledge" / "t17-stub_v1.tsv"  # conftest's MNER_CACHE_DIR
    assert len(read_knowledge(default)) == 3 and summary_path(default).is_file()
    assert "examples 3, written 3, failed 0, cached 0" in out and "wall time" in out
    assert f"knowledge: {default}" in out
    assert f"use it: featurize t17 --text mpnet --context knowledge --knowledge {default}" in out
    no_file_holds(tmp_path, KEY)
    assert KEY not in out + err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--base-url", "http://127.0.0.1:9/v1"], "--model: name the server's model"),
        (["--base-url", "local", "--concurrency", "0"], "--concurrency must be at least 1, got 0"),
        (["--base-url", "local", "--shots", "-1"], "--shots must be at least 0, got -1"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    featurize_main: Callable[[], None],
) -> None:
    code, out, err = run_cli(featurize_main, ["knowledge", "t17", *extra], capsys)
    assert code == 2 and message in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


# -- the real model ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed: pip install 'llama-cpp-python[server]'",
)
def test_knowledge_from_smollm2_on_llama_cpp_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], featurize_main: Callable[[], None]
) -> None:
    out_file = tmp_path / "smollm2.tsv"
    argv = ["knowledge", "t17", "--base-url", "local", "--split", "dev", "--limit", "3", "--shots", "1"]
    argv += ["--max-tokens", "64", "--concurrency", "1", "--threads", "2", "--out", str(out_file)]
    code, out, err = run_cli(featurize_main, argv, capsys)
    assert code == 0, out + err
    assert "llama_cpp.server with SmolLM2-135M-Instruct.Q4_1.gguf at http://127.0.0.1:" in out + err
    written = read_knowledge(out_file)
    made = json.loads(summary_path(out_file).read_text())
    assert made["splits"]["dev"]["examples"] == 3 and made["model"] == "smollm2-135m-instruct"
    assert made["server"] == "llama_cpp.server:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert len(written) == made["splits"]["dev"]["written"] >= 1  # a failed one is absent, never invented
    assert all(len(text.split()) >= 2 for text in written.values())
    assert set(written) <= {example_key(e) for e in dev_tweets(3)}


def _quiet() -> Console:
    return Console(file=io.StringIO())  # the bar's output is not under test
