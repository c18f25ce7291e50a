"""Shared fixtures: the real data under ../shared/data, a private cache, tiny random models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from heads_data import DATASET, Mini, featurize_argv, write_subset  # noqa: E402


def shared_data() -> Path:
    return Path(os.environ.get("MNER_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data()
    if not (path / "twitter2017" / "train.txt").is_file():
        pytest.fail(f"real data not found under {path}: set MNER_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of converted weights for the whole session: each conversion runs once."""
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights_dir: Path) -> None:
    """A private cache per test; the data folder is named but only checked by tests that read it
    (the ``data_dir`` fixture), so the fast tier runs without ../shared/data."""
    monkeypatch.setenv("MNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MNER_DATA_DIR", str(shared_data()))
    monkeypatch.setenv("MNER_WEIGHTS_DIR", str(weights_dir))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def mini(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, weights_dir: Path) -> Mini:
    """The subset written as UMT files and featurized once into a cache of its own."""
    folder = tmp_path_factory.mktemp("t17mini-data") / DATASET
    counts = write_subset(data_dir / "twitter2017", folder)
    cache = tmp_path_factory.mktemp("t17mini-cache")
    images = data_dir / "twitter_sample" / "twitter_2017" / "images"
    env = {
        **os.environ,
        "MNER_CACHE_DIR": str(cache),
        "MNER_DATA_DIR": str(data_dir),
        "MNER_WEIGHTS_DIR": str(weights_dir),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "featurize.cli", *featurize_argv(folder, images, cache)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Mini(cache, counts)
