"""Shared fixtures: the real data under ../shared/data, a private cache, tiny random models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


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
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path, weights_dir: Path) -> None:
    monkeypatch.setenv("MNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MNER_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MNER_WEIGHTS_DIR", str(weights_dir))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
