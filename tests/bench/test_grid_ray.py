"""bench heads --engine ray: cells as Ray tasks on a cluster, the run store kept by the driver.

A head node started here (``ray start --head`` on 127.0.0.1 with 2 CPUs and a token of its
own) runs a tiny grid on a real Twitter-2017 slice; its store lines must carry the metrics
the local runner's do for the same cells, its models must land in the driver's runs folder, and
it must resume like a local grid. The node is stopped in a ``finally``, by its own process.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cli_runner import run_cli
from heads_data import read_blocks
from rich.console import Console

import bench.cli
from bench.grid_run import GridRun
from bench.run_store import RunStore
from featurize.api import featurize_dataset
from featurize.errors import ConfigError

try:
    import ray
except ImportError:  # the distributed extra is not installed: the tests on Ray are skipped
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed: pip install -e '.[distributed]'")

ROOT = Path(__file__).resolve().parents[2]
NAME = "t17grid"
SLICE = {"train.txt": 120, "valid.txt": 60, "test.txt": 60}


def test_ray_options_go_with_the_ray_engine() -> None:
    with pytest.raises(ConfigError, match="go with --engine ray"):
        GridRun(ray_address="127.0.0.1:6379")
    with pytest.raises(ConfigError, match="choose local or ray"):
        GridRun(engine="dask")


@pytest.fixture(scope="module")
def slice_cache(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """MiniLM features of the first tweets of each Twitter-2017 file."""
    folder = tmp_path_factory.mktemp("data") / NAME
    folder.mkdir()
    for name, first in SLICE.items():
        blocks = read_blocks(data_dir / "twitter2017" / name)[:first]
        (folder / name).write_text("\n\n".join("\n".join(b) for b in blocks) + "\n", encoding="utf-8")
    cache = tmp_path_factory.mktemp("cache")
    featurize_dataset(folder, format="umt", text="minilm", cache_dir=cache, console=Console(quiet=True))
    return cache


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _grid(cache: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "heads",
        "--dataset",
        NAME,
        "--head",
        "bilstm-crf,msb",
        "--vision",
        "none",
        "--context",
        "none",
        "--seeds",
        "1",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--runs",
        str(runs),
        "--cache-dir",
        str(cache),
        *extra,
    ]


def _bench_in_subprocess(argv: list[str], env: dict[str, str]) -> str:
    """``bench`` as its own process (a Ray driver of its own, as a user runs it); its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    return result.stderr


@pytest.mark.slow
@needs_ray
def test_a_grid_on_a_ray_head_node_equals_the_local_grid(
    slice_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local_runs, ray_runs = tmp_path / "local", tmp_path / "ray"
    code, out, err = run_cli(bench.cli.main, _grid(slice_cache, local_runs, "--workers", "1"), capsys)
    assert code == 0, out + err
    local = RunStore(local_runs / "runs.jsonl").done()
    assert len(local) == 2

    token = tmp_path / "ray-token"
    token.write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # a one-machine cluster: everything on 127.0.0.1
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    port = _free_port()
    # its own Ray folder (short: Ray's socket paths must fit in 107 bytes), so nothing of this
    # node (its sessions, the "current cluster" file) is left where other Ray users look
    ray_temp = Path(tempfile.mkdtemp(prefix="mner-ray-", dir="/tmp"))
    log = tmp_path / "head.log"
    ray_cli = Path(sys.executable).parent / "ray"
    with log.open("w") as sink:
        head = subprocess.Popen(
            [
                str(ray_cli),
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={ray_temp}",
                "--block",  # this process owns the node: stopping it stops the node's processes
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        on_node = ("--engine", "ray", "--ray-address", f"127.0.0.1:{port}")
        stderr = _bench_in_subprocess(_grid(slice_cache, ray_runs, *on_node), env)
        assert f"as Ray tasks of 1 thread(s) on 127.0.0.1:{port}" in " ".join(stderr.split())
        # Successive halving on Ray: the paused state goes to the driver and back with the
        # survivor's next task, so it resumes there too.
        halving = ("--halving", "--halving-eta", "2", "--halving-first-rung", "1")
        _bench_in_subprocess(_grid(slice_cache, tmp_path / "ray-halving", *on_node, *halving), env)
    finally:
        head.terminate()  # `ray start --block` stops the node's processes on SIGTERM
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, 9)
            head.wait()
        shutil.rmtree(ray_temp, ignore_errors=True)

    on_ray = RunStore(ray_runs / "runs.jsonl").done()
    assert sorted(on_ray) == sorted(local)
    for key, line in local.items():
        theirs = on_ray[key]
        assert theirs["cell"] == line["cell"]
        assert theirs["record"]["metrics"] == line["record"]["metrics"]
        assert theirs["record"]["epochs_run"] == line["record"]["epochs_run"]
        model = Path(theirs["model"])  # written by the driver, from the bytes the task returned
        assert model == ray_runs / "cells" / key
        trained = (Path(line["model"]) / "model.safetensors").read_bytes()
        assert (model / "model.safetensors").read_bytes() == trained  # the same weights, to the bit
        assert "mner-cell-" not in json.dumps(theirs)  # no path of the worker's temporary folder left
    report = (ray_runs / "report" / "heads-grid.json").read_text()
    assert "bilstm-crf" in report and "msb" in report

    halved = RunStore(tmp_path / "ray-halving" / "runs.jsonl")
    assert len(halved.stopped(1)) == 2 and len(halved.done()) == 1  # one of two went on
    for key, line in halved.done().items():  # resumed on Ray, and the local exact grid's cell
        assert line["record"]["resumed_after"] == 1
        assert line["record"]["metrics"] == local[key]["record"]["metrics"]
    assert not any((tmp_path / "ray-halving" / "paused").iterdir())

    # Resumable as a local grid: nothing left to run, so Ray is not even reached.
    code, out, err = run_cli(
        bench.cli.main,
        _grid(slice_cache, ray_runs, "--engine", "ray", "--ray-address", "127.0.0.1:1"),
        capsys,
    )
    assert code == 0 and "2 finished earlier, 0 to run" in " ".join(err.split())
