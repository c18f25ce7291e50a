"""`bench llm --base-url local`: llama-cpp-python's OpenAI-compatible server with the real
SmolLM2-135M GGUF on 127.0.0.1, a few real T17 test tweets, answers parsed or retried, metrics
computed, and the cache reused on a second run. CI installs llama-cpp-python; elsewhere the
test is skipped when it is missing, and says so."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from cli_runner import run_cli

from bench.cli import main as bench_main

pytestmark = pytest.mark.slow

if importlib.util.find_spec("llama_cpp") is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must install llama-cpp-python[server] (the README's test command does)")
    pytest.skip(
        "llama-cpp-python is not installed: pip install 'llama-cpp-python[server]'", allow_module_level=True
    )


def test_bench_llm_with_smollm2_on_llama_cpp_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["llm", "--dataset", "t17", "--split", "test", "--limit", "4", "--base-url", "local"]
    argv += ["--shots", "1", "--out", str(tmp_path / "llm"), "--concurrency", "1", "--threads", "2"]
    code, out, err = run_cli(bench_main, argv, capsys)
    assert code == 0, out + err
    assert "llama_cpp.server with SmolLM2-135M-Instruct.Q4_1.gguf at http://127.0.0.1:" in out
    report_file = tmp_path / "llm" / "report" / "llm-t17-test-smollm2-135m-instruct.json"
    row = json.loads(report_file.read_text())["tables"][0]["rows"][0]
    assert row["examples"] == 4 and row["requests"] >= 4 and row["cached answers"] == 0
    assert 0.0 <= row["entity F1"] <= 100.0 and 0.0 <= row["token macro F1"] <= 100.0
    assert row["valid first try"] + row["failed (all-O)"] <= 4
    assert row["structured output"] in ("json_schema", "json_object", "off")
    predictions = (tmp_path / "llm" / "llm-t17-test-smollm2-135m-instruct-predictions.jsonl").read_text()
    lines = [json.loads(x) for x in predictions.splitlines()]
    assert all(len(x["predicted"]) == len(x["words"]) for x in lines)
    assert all(x["valid"] or x["predicted"] == ["O"] * len(x["words"]) for x in lines)

    code, out, err = run_cli(bench_main, argv, capsys)  # the same run again: nothing is sent
    assert code == 0, out + err
    again = json.loads(report_file.read_text())["tables"][0]["rows"][0]
    assert again["requests"] == 0 and again["cached answers"] >= 4
    assert again["entity F1"] == row["entity F1"] and again["token macro F1"] == row["token macro F1"]
