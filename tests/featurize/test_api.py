"""featurize.featurize_dataset: the Python face of ``featurize run``, on tiny data and a tiny BERT.

Needs no ../shared/data: the datasets are written here, the encoder is a random BERT folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_runner import run_cli
from rich.console import Console

from featurize.cache.store import FeatureStore
from featurize.cache.text_features import TextFeatures
from featurize.errors import ConfigError

WORDS = ["the", "new", "york", "city", "berlin", "abc", "xyz", "@", "#", "!"]
QUIET = Console(quiet=True)


def _examples(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), size=int(rng.integers(1, 9)))]
        out.append((words, ["B-LOC" if w in ("york", "berlin") else "O" for w in words]))
    return out


def write_jsonl(path: Path, n: int = 11, seed: int = 0) -> Path:
    lines = [
        json.dumps({"text": words, "label": labels, "image": [f"{i}.jpg"]})
        for i, (words, labels) in enumerate(_examples(n, seed))
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_conll(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for seed, split in enumerate(("train", "dev", "test")):
        blocks = ["\n".join(f"{w} {t}" for w, t in zip(*ex)) for ex in _examples(6, seed)]
        (folder / f"{split}.txt").write_text("\n\n".join(blocks) + "\n")
    return folder


def _relative(cache: Path) -> dict[str, str]:
    """Each entry's path under the cache root -> its content key."""
    with_keys = {}
    for path in FeatureStore(cache).entries():
        with h5py.File(path) as handle:
            with_keys[str(path.relative_to(cache))] = str(handle.attrs["key"])
    return with_keys


def test_import_stays_cheap_and_exports_the_function() -> None:
    code = (
        "import sys, featurize; "
        "assert 'featurize.api' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules); "
        "from featurize import featurize_dataset; "
        "from featurize.api import featurize_dataset as direct; "
        "assert featurize_dataset is direct and 'featurize_dataset' in dir(featurize); "
        "print(featurize_dataset.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "featurize_dataset"
    with pytest.raises(AttributeError):
        import featurize

        featurize.no_such_name  # noqa: B018


def test_same_entries_as_the_cli(tiny_bert: Path, tmp_path: Path, capsys) -> None:
    from featurize import featurize_dataset
    from featurize.cli import main

    data = write_jsonl(tmp_path / "toy.jsonl")
    spec = f"hf:{tiny_bert}"
    paths = featurize_dataset(
        data,
        format="jsonl",
        text=spec,
        chunk_size=4,
        bf16=False,
        cache_dir=tmp_path / "api",
        console=QUIET,
    )
    assert list(paths) == [f"text:{spec}"]
    (path,) = paths[f"text:{spec}"]
    assert path.is_file() and path.is_relative_to(tmp_path / "api")

    argv = [str(data), "--format", "jsonl", "--text", spec, "--chunk-size", "4", "--fp32"]
    code, _, err = run_cli(main, [*argv, "--cache-dir", str(tmp_path / "cli")], capsys)
    assert code == 0, err
    by_api, by_cli = _relative(tmp_path / "api"), _relative(tmp_path / "cli")
    assert by_api == by_cli and list(by_api) == [str(path.relative_to(tmp_path / "api"))]
    api_features = TextFeatures.load(path)
    cli_features = TextFeatures.load(tmp_path / "cli" / next(iter(by_cli)))
    np.testing.assert_array_equal(api_features.features, cli_features.features)

    # Again: found in the cache, the same path, no model loaded.
    again = featurize_dataset(
        str(data),
        format="jsonl",
        text=[spec],
        chunk_size=4,
        bf16=False,
        cache_dir=tmp_path / "api",
        console=QUIET,
    )
    assert again == paths


def test_folder_of_splits_options_and_defaults(tiny_bert: Path, tmp_path: Path, monkeypatch) -> None:
    from featurize import featurize_dataset

    folder = write_conll(tmp_path / "mini")
    monkeypatch.setenv("MNER_CACHE_DIR", str(tmp_path / "env-cache"))  # the default store
    spec = f"hf:{tiny_bert}"
    paths = featurize_dataset(
        folder,
        format="conll",
        text=spec,
        splits=["train", "test"],
        layers="last",
        pooling="mean",
        bf16=False,
        label_map={"LOC": "PLACE"},
        console=QUIET,
    )
    entries = paths[f"text:{spec}"]
    assert [p.parent.name for p in entries] == ["train", "test"]
    assert all(p.is_relative_to(tmp_path / "env-cache") and p.is_file() for p in entries)
    stored = TextFeatures.load(entries[0])
    assert stored.metadata["pooling"] == "mean" and stored.metadata["layers"] == [-1]
    assert "B-PLACE" in {t for i in range(len(stored)) for t in stored.example(i)[1]}
    everything = featurize_dataset(folder, format="conll", text=spec, bf16=False, console=QUIET)
    assert [p.parent.name for p in everything[f"text:{spec}"]] == ["dev", "test", "train"]  # file order


def test_split_fractions_and_no_text(tiny_bert: Path, tmp_path: Path) -> None:
    from featurize import featurize_dataset

    data = write_jsonl(tmp_path / "one.jsonl", n=20)
    assert featurize_dataset(data, format="jsonl", text="", cache_dir=tmp_path / "c", console=QUIET) == {}
    nothing = featurize_dataset(
        data, format="jsonl", text="none", vision="none", context="none", console=QUIET
    )
    assert nothing == {}  # "none", as the shared option help says
    spec = f"hf:{tiny_bert}"
    by_string = featurize_dataset(
        data,
        format="jsonl",
        text=spec,
        split_fractions="0.5,0.25,0.25",
        bf16=False,
        cache_dir=tmp_path / "c",
        console=QUIET,
    )
    by_tuple = featurize_dataset(
        data,
        format="jsonl",
        text=spec,
        split_fractions=(0.5, 0.25, 0.25),
        bf16=False,
        cache_dir=tmp_path / "c",
        console=QUIET,
    )
    assert by_string == by_tuple and [len(TextFeatures.load(p)) for p in by_string[f"text:{spec}"]] == [
        10,
        5,
        5,
    ]


def test_bad_options_are_config_errors(tmp_path: Path, capsys) -> None:
    from featurize import featurize_dataset
    from featurize.cli import main

    data = write_jsonl(tmp_path / "toy.jsonl")
    with pytest.raises(ConfigError, match="chunk-size"):
        featurize_dataset(data, format="jsonl", chunk_size=0, console=QUIET)
    with pytest.raises(ConfigError, match="OLD=NEW"):
        featurize_dataset(data, format="jsonl", label_map=["LOC"], console=QUIET)
    with pytest.raises(ConfigError, match="not a folder"):
        featurize_dataset(data, format="jsonl", images=data, console=QUIET)
    with pytest.raises(ConfigError, match="--pooling"):
        featurize_dataset(data, format="jsonl", pooling="max", console=QUIET)
    with pytest.raises(ConfigError, match="--context"):
        featurize_dataset(data, format="jsonl", text="", context="weather", console=QUIET)
    # The command reports the option errors as before: exit 2, the option named.
    code, _, err = run_cli(main, [str(data), "--format", "jsonl", "--label-map", "LOC"], capsys)
    assert code == 2 and "--label-map" in err
    code, _, err = run_cli(main, [str(data), "--format", "jsonl", "--chunk-size", "0"], capsys)
    assert code == 2 and "--chunk-size" in err
