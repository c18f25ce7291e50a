"""Every console script answers --help; summary and inspect work on real data."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_runner import run_cli

import featurize.cli
import heads.cli

SCRIPTS = {"featurize": "featurize.cli", "heads": "heads.cli", "bench": "bench.cli"}


@pytest.mark.parametrize("module", SCRIPTS.values())
def test_help(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Usage" in result.stdout


@pytest.mark.parametrize("command", ["run", "summary", "datasets", "encoders", "ls", "rm"])
def test_featurize_subcommand_help(command: str, capsys) -> None:
    code, out, _ = run_cli(featurize.cli.main, [command, "--help"], capsys)
    assert code == 0 and "Usage" in out


def test_summary_real_t17(capsys) -> None:
    code, out, _ = run_cli(featurize.cli.main, ["summary", "t17"], capsys)
    assert code == 0
    assert "3,373" in out and "6,049" in out and "1,351" in out


def test_heads_inspect_reads_an_entry(capsys, tiny_bert, tmp_path) -> None:
    from toy_data import write_jsonl

    from featurize.cache.store import FeatureStore

    data = write_jsonl(tmp_path / "toy.jsonl")
    code, _, err = run_cli(
        featurize.cli.main, [str(data), "--format", "jsonl", "--text", f"hf:{tiny_bert}"], capsys
    )
    assert code == 0, err
    (path,) = FeatureStore(tmp_path / "cache").entries()
    code, out, _ = run_cli(heads.cli.main, ["inspect", str(path)], capsys)
    assert code == 0 and "23" in out and "B-LOC" in out
