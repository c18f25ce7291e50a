"""featurize --engine ray: chunks computed by Ray actors, written and published by the driver.

A Ray instance started here (2 CPUs, no dashboard, on 127.0.0.1) featurizes a slice of the real
Twitter-2017 data; its entries must equal the local engine's to the bit, also when a worker is
killed in the middle of an entry and when the driver is interrupted and run again. The checks
without Ray (options, a worker's encoder that differs from the driver's) run everywhere.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
from heads_data import read_blocks
from rich.console import Console

from featurize.api import featurize_dataset
from featurize.cache.integrity import ATTRIBUTE
from featurize.cache.store import FeatureStore
from featurize.engines import EncoderRecipe, EngineOptions
from featurize.errors import ConfigError
from featurize.text import build_text_encoder
from featurize.text.transformer import WordFeatureOptions

try:
    import ray
except ImportError:  # the distributed extra is not installed: the tests on Ray are skipped
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed: pip install -e '.[distributed]'")

QUIET = Console(quiet=True)
CAPTIONS = "blip2_twitter2017.txt"
SLICE = {"train.txt": 24, "valid.txt": 90, "test.txt": 24}  # tweets per UMT file
# Attributes that differ between two runs of the same entry by nature: the time it was written
# (and the checksum record, which covers it); everything else must be equal.
RUN_ATTRIBUTES = ("created", ATTRIBUTE)


# -- without Ray ------------------------------------------------------------------------------


def test_engine_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="choose one of local, ray"):
        EngineOptions("spark")
    with pytest.raises(ConfigError, match="go with --engine ray"):
        EngineOptions("local", workers=2)
    with pytest.raises(ConfigError, match="at least 1"):
        EngineOptions("ray", workers=0)


def test_without_ray_the_ray_engine_is_one_clear_error(monkeypatch, tmp_path: Path) -> None:
    from featurize import ray_engine

    monkeypatch.setattr(ray_engine, "ray_available", lambda: False)
    data = tmp_path / "toy.jsonl"
    data.write_text('{"text": ["new", "york"], "label": ["B-LOC", "I-LOC"]}\n')
    with pytest.raises(ConfigError, match=r"--engine ray needs Ray: pip install -e '\.\[distributed\]'"):
        featurize_dataset(data, format="jsonl", engine="ray", cache_dir=tmp_path / "cache", console=QUIET)


def test_a_worker_with_another_encoder_refuses(tiny_bert: Path) -> None:
    spec = f"hf:{tiny_bert}"
    encoder = build_text_encoder(spec, WordFeatureOptions(bf16=False))
    recipe = EncoderRecipe.of("text", spec, WordFeatureOptions(), encoder)
    assert recipe.options.bf16 is False  # the driver's precision travels with the recipe
    assert recipe.build().identity() == encoder.identity()
    other = EncoderRecipe("text", spec, WordFeatureOptions(bf16=True), encoder.identity())
    with pytest.raises(ConfigError, match=r"precision \('bf16', driver 'fp32'\)"):
        other.build()


# -- on a Ray instance started here -----------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    """``ray.init(num_cpus=2, include_dashboard=False)`` on 127.0.0.1, for the whole module; the
    engine finds it running, uses it and leaves it running."""
    from featurize.ray_engine import loopback_only

    saved = {k: os.environ.get(k) for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")}
    loopback_only()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def t17_slice(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The first tweets of each Twitter-2017 file, as a UMT folder of its own, and its captions."""
    folder = tmp_path_factory.mktemp("t17slice") / "t17slice"
    folder.mkdir()
    for name, first in SLICE.items():
        blocks = read_blocks(data_dir / "twitter2017" / name)[:first]
        (folder / name).write_text("\n\n".join("\n".join(b) for b in blocks) + "\n", encoding="utf-8")
    shutil.copy(data_dir / "captions" / CAPTIONS, folder.parent / CAPTIONS)  # BLIP-2's, by image id
    return folder


def _featurize(folder: Path, cache: Path, **engine: object) -> dict[str, list[Path]]:
    return featurize_dataset(
        folder,
        format="umt",
        text="minilm",
        context="captions",  # a second segment too: its texts and budget travel with each chunk
        captions=folder.parent / CAPTIONS,
        splits=["dev"],
        chunk_size=8,
        cache_dir=cache,
        console=QUIET,
        **engine,  # type: ignore[arg-type]
    )


def _contents(path: Path) -> tuple[dict[str, tuple[str, tuple, bytes]], dict[str, dict]]:
    """Every dataset of an HDF5 file as (dtype, shape, bytes), and every object's attributes."""
    arrays: dict[str, tuple[str, tuple, bytes]] = {}
    attrs: dict[str, dict] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            value = np.ascontiguousarray(obj[()])
            arrays[name] = (str(value.dtype), value.shape, value.tobytes())
        attrs[name] = {k: str(v) for k, v in obj.attrs.items()}  # type: ignore[attr-defined]

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
        attrs["/"] = {k: str(v) for k, v in handle.attrs.items() if k not in RUN_ATTRIBUTES}
    return arrays, attrs


def assert_same_entries(local: Path, other: Path) -> None:
    """Same entries (same keys, so same paths), every array equal to the bit."""
    mine = sorted(p.relative_to(local) for p in FeatureStore(local).entries())
    theirs = sorted(p.relative_to(other) for p in FeatureStore(other).entries())
    assert mine and mine == theirs
    for relative in mine:
        (arrays_a, attrs_a), (arrays_b, attrs_b) = _contents(local / relative), _contents(other / relative)
        assert sorted(arrays_a) == sorted(arrays_b)
        for name in arrays_a:
            assert arrays_a[name] == arrays_b[name], f"{relative}: {name} differs"
        assert attrs_a == attrs_b


@pytest.fixture(scope="module")
def local_cache(tmp_path_factory: pytest.TempPathFactory, t17_slice: Path) -> Path:
    cache = tmp_path_factory.mktemp("local-cache")
    written = _featurize(t17_slice, cache)
    assert len(written["text:minilm"]) == 2  # plain and with captions
    return cache


@pytest.mark.slow
@needs_ray
def test_ray_entries_equal_the_local_engines(
    ray_local, t17_slice: Path, local_cache: Path, tmp_path: Path, capsys
) -> None:
    console = Console(stderr=True)
    featurize_dataset(
        t17_slice,
        format="umt",
        text="minilm",
        context="captions",
        captions=t17_slice.parent / CAPTIONS,
        splits=["dev"],
        chunk_size=8,
        cache_dir=tmp_path,
        engine="ray",
        workers=2,
        console=console,
    )
    err = " ".join(capsys.readouterr().err.split())
    assert "ray: 2 workers ready for minilm" in err and "chunks/s" in err and "words/s" in err
    assert "ray: 12 chunks" in err  # 90 tweets in chunks of 8, per entry
    assert_same_entries(local_cache, tmp_path)
    assert not (tmp_path / ".staging").exists() or not any((tmp_path / ".staging").iterdir())


@pytest.mark.slow
@needs_ray
def test_a_worker_killed_mid_entry_costs_its_chunks_only(
    ray_local, t17_slice: Path, local_cache: Path, tmp_path: Path, monkeypatch
) -> None:
    from featurize import ray_engine

    pools: list[ray_engine.RayWorkers] = []

    def kill_a_busy_worker(pool: ray_engine.RayWorkers, chunk: int) -> None:
        if pools:
            return
        pools.append(pool)
        busy = sorted({number for _, number in pool.in_flight.values()})
        victim = busy[0]
        os.kill(pool.worker_pids()[victim], signal.SIGKILL)  # its process dies mid-chunk

    monkeypatch.setattr(ray_engine, "CHUNK_HOOKS", [kill_a_busy_worker])
    _featurize(t17_slice, tmp_path, engine="ray", workers=2)
    (pool,) = pools
    assert pool.lost_workers >= 1 and pool.lost_chunks >= 1
    assert_same_entries(local_cache, tmp_path)


@pytest.mark.slow
@needs_ray
def test_an_interrupted_driver_resumes_from_its_chunks(
    ray_local, t17_slice: Path, local_cache: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from featurize import ray_engine

    written: list[int] = []

    def interrupt(pool: ray_engine.RayWorkers, chunk: int) -> None:
        written.append(chunk)
        if len(written) == 5:
            raise KeyboardInterrupt  # Ctrl-C in the driver, five chunk files on disk

    monkeypatch.setattr(ray_engine, "CHUNK_HOOKS", [interrupt])
    with pytest.raises(KeyboardInterrupt):
        _featurize(t17_slice, tmp_path, engine="ray", workers=2)
    assert not FeatureStore(tmp_path).entries()
    staged = list((tmp_path / ".staging").glob("*/chunk-*.h5"))
    assert len(staged) == 5

    monkeypatch.setattr(ray_engine, "CHUNK_HOOKS", [])
    capsys.readouterr()
    featurize_dataset(
        t17_slice,
        format="umt",
        text="minilm",
        context="captions",
        captions=t17_slice.parent / CAPTIONS,
        splits=["dev"],
        chunk_size=8,
        cache_dir=tmp_path,
        engine="ray",
        workers=2,
        console=Console(stderr=True),
    )
    err = " ".join(capsys.readouterr().err.split())
    assert "resuming: 5/12 chunks already written" in err and "ray: 7 chunks" in err
    assert_same_entries(local_cache, tmp_path)


@pytest.mark.slow
@needs_ray
def test_image_entries_on_ray_equal_the_local_engines(
    ray_local, tmp_path: Path, data_dir: Path, capsys
) -> None:
    """Image bytes travel to the workers (they read no file): a corrupt one is named as locally."""
    from tiny_vision import save_tiny_vit

    images = tmp_path / "images"
    images.mkdir()
    for name in ("130", "201", "654", "660", "694"):
        shutil.copy(data_dir / "twitter_sample/twitter_2015/images/dev" / f"{name}.jpg", images)
    broken = images / "694.jpg"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    vit = save_tiny_vit(tmp_path / "tiny-vit")
    runs = {}
    for engine in ("local", "ray"):
        extra = {"engine": "ray", "workers": 2} if engine == "ray" else {}
        featurize_dataset(
            "t15",
            text=(),
            vision=f"vit=hf:{vit}",
            images=images,
            splits=["dev"],
            patches=True,
            cache_dir=tmp_path / engine,
            console=Console(stderr=True),
            **extra,  # type: ignore[arg-type]
        )
        runs[engine] = " ".join(capsys.readouterr().err.split())
    for err in runs.values():
        assert "694.jpg: cannot read image" in err
    assert_same_entries(tmp_path / "local", tmp_path / "ray")


@pytest.mark.slow
@needs_ray
def test_an_error_on_a_worker_stops_the_run_as_itself(ray_local, tiny_bert: Path, tmp_path: Path) -> None:
    """Not a lost worker: the worker's ConfigError (its encoder is not the driver's) is raised
    here as it is, and no worker is started again for it."""
    from featurize import ray_engine
    from featurize.build import text_plan
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.engines import text_jobs

    data = tmp_path / "toy.jsonl"
    data.write_text('{"text": ["new", "york"], "label": ["B-LOC", "I-LOC"]}\n')
    dataset = load_dataset(str(data), LoadOptions(format="jsonl"), None)
    split = next(iter(dataset.splits))
    spec = f"hf:{tiny_bert}"
    encoder = build_text_encoder(spec, WordFeatureOptions(bf16=False))
    wrong = EncoderRecipe("text", spec, WordFeatureOptions(bf16=True), encoder.identity())
    engine = ray_engine.RayEngine(EngineOptions("ray", workers=1), QUIET)
    try:
        build = FeatureStore(tmp_path / "cache").begin(text_plan(dataset, split, encoder, 8))
        jobs = text_jobs(dataset.splits[split].examples, None, encoder, "toy")
        with pytest.raises(ConfigError, match="differs from the driver's in precision"):
            engine.workers(wrong).run(build, jobs)
    finally:
        engine.close()
    assert ray.is_initialized()  # the module's Ray: the engine did not start it, nor stop it
