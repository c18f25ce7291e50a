"""Damaged cache entries are found and named: checksums recorded at publish and verified by the
readers, a truncated or flipped entry rebuilt by `featurize` and refused by `heads` with one line
(not "run featurize first"), `ls`/`rm`/`verify` never crash on one; what killed runs leave
behind is cleaned up; the counts of a resumed build cover the whole entry. A toy dataset and a
tiny random BERT: no shared data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_runner import run_cli
from toy_data import write_jsonl

import heads.cli
from featurize.cache import integrity
from featurize.cache.locks import GRACE_SECONDS, StoreLock, alive, stale_temporary
from featurize.cache.store import EntryPlan, FeatureStore, open_entry
from featurize.cache.text_features import TextFeatures
from featurize.cli import main
from featurize.errors import CacheError, IntegrityError
from heads.inputs import EntryIndex

DATASET = "toy.jsonl"


def cache() -> Path:
    return Path(os.environ["MNER_CACHE_DIR"])


def featurize(capsys, data: Path, tiny_bert: Path, *extra: str) -> tuple[int, str]:
    args = [str(data), "--format", "jsonl", "--text", f"hf:{tiny_bert}", "--fp32", "--chunk-size", "5"]
    code, out, err = run_cli(main, [*args, "--split-fractions", "0.6,0.2,0.2", *extra], capsys)
    return code, out + err


def has(text: str, *phrases: str) -> bool:
    """Each phrase is in the output, whatever the console's line breaks (it folds long paths)."""
    squash = "".join(text.split())
    return all("".join(p.split()) in squash for p in phrases)


def entry(split: str) -> Path:
    (path,) = [p for p in FeatureStore(cache()).entries() if p.parent.name == split]
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, Path]:
    """The toy dataset featurized once (train/dev/test); each test gets a copy of the cache."""
    import io

    from rich.console import Console

    from featurize.datasets import LoadOptions, load_dataset
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as run_pipeline
    from featurize.text.transformer import WordFeatureOptions

    root = tmp_path_factory.mktemp("integrity")
    data = write_jsonl(root / DATASET, n=40)
    dataset = load_dataset(str(data), LoadOptions(format="jsonl", split_fractions=(0.6, 0.2, 0.2)))
    plan = RunPlan(text=[f"hf:{tiny_bert}"], word_options=WordFeatureOptions(bf16=False), chunk_size=5)
    run_pipeline(dataset, plan, FeatureStore(root / "cache"), Console(file=io.StringIO()))
    return data, root / "cache"


@pytest.fixture
def built(template: tuple[Path, Path]) -> Path:
    """The featurized toy dataset in this test's cache; returns the data file."""
    data, source = template
    shutil.copytree(source, cache())
    return data


def flip(path: Path, dataset: str, n: int = 64) -> None:
    """Flip ``n`` bytes of a dataset's stored data, as a bad disk or a bad copy would."""
    with h5py.File(path, "r") as handle:
        ds = handle[dataset]
        if ds.chunks:
            info = ds.id.get_chunk_info(0)
            offset, size = info.byte_offset, info.size
        else:
            offset, size = ds.id.get_offset(), ds.id.get_storage_size()
    raw = bytearray(path.read_bytes())
    for i in range(n):
        raw[offset + (i * 7) % size] ^= 0xFF
    path.write_bytes(bytes(raw))


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return " ".join(err.split())


def heads_train(capsys, tiny_bert: Path, tmp_path: Path) -> tuple[int, str, str]:
    argv = ["train", "--dataset", DATASET, "--head", "linear", "--modality", "text"]
    argv += ["--text", f"hf:{tiny_bert}", "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "run")]
    return run_cli(heads.cli.main, argv, capsys)


# --------------------------------------------------------------------------- checksums


def test_publish_records_checksums_that_readers_verify(built: Path) -> None:
    path = entry("train")
    with h5py.File(path, "r") as handle:
        record = json.loads(handle.attrs[integrity.ATTRIBUTE])
        assert record["algorithm"] == "sha256"
        assert set(record["datasets"]) == set(integrity.dataset_names(handle))
        assert {"features/words", "offsets/words", "labels/words", "strings/words/utf8"} <= set(
            record["datasets"]
        )
        words = handle["features/words"][()]
        assert record["datasets"]["features/words"] == integrity.array_digest(words)
        assert integrity.dataset_digest(handle["features/words"]) == integrity.array_digest(words)
    assert integrity.verify_entry(path) is True
    assert len(TextFeatures.load(path)) == 24


def test_flipped_bytes_are_refused_by_name_and_rebuilt(capsys, built: Path, tiny_bert: Path) -> None:
    path = entry("train")
    good = TextFeatures.load(path).features
    flip(path, "features/words")
    with pytest.raises(IntegrityError, match="features/words differs from its recorded sha256") as caught:
        TextFeatures.load(path)
    assert str(path) in str(caught.value) and f"featurize rm {path}" in str(caught.value)
    code, _, err = run_cli(heads.cli.main, ["inspect", str(path)], capsys)
    assert code == 2 and "is damaged" in one_line_error(err)
    code, out = featurize(capsys, built, tiny_bert)
    assert code == 0 and has(out, f"damaged cache entry {path}", "building it again")
    assert not has(out, f"cached: {path}")
    np.testing.assert_array_equal(TextFeatures.load(path).features, good)


def test_changed_attribute_is_damage(built: Path) -> None:
    path = entry("dev")
    with h5py.File(path, "a") as handle:
        handle.attrs["split"] = "test"
    with pytest.raises(IntegrityError, match="attributes differ"):
        open_entry(path).close()


def test_truncated_entry_heads_say_damaged_featurize_rebuilds(
    capsys, built: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    path = entry("train")
    truncate(path)
    index = EntryIndex(cache())
    assert [Path(e.path) for e in index.damaged] == [path] and len(index.entries) == 2
    code, _, err = heads_train(capsys, tiny_bert, tmp_path)
    message = one_line_error(err)
    assert code == 2 and f"{path} is damaged" in message and "truncated file" in message
    assert "run `featurize" not in message and f"`featurize rm {path}`" in message
    code, out = featurize(capsys, built, tiny_bert)
    assert code == 0 and has(out, f"damaged cache entry {path}", f"wrote {path}")
    code, out, err = heads_train(capsys, tiny_bert, tmp_path)
    assert code == 0, err


def test_ls_verify_and_rm_never_crash_on_damaged_entries(capsys, built: Path) -> None:
    truncated, foreign = entry("train"), entry("dev")
    truncate(truncated)
    foreign.write_bytes(b"\x80\x04\x95 a pickle, not HDF5" * 10)
    code, out, err = run_cli(main, ["ls"], capsys)
    assert code == 0 and "Traceback" not in err
    assert out.count("damaged") == 2 and "last4/first/fp32" in out  # the test split still reads
    assert has(err, f"{truncated} is damaged")
    code, out, err = run_cli(main, ["verify"], capsys)
    assert code == 2 and "2 damaged" in out and "1 ok" in out and "Traceback" not in err
    key = truncated.stem.rsplit("-", 1)[1]
    code, out, _ = run_cli(main, ["rm", key[:10]], capsys)  # the key in its file name
    assert code == 0 and has(out, f"removed {truncated}")
    code, out, _ = run_cli(main, ["rm", str(foreign)], capsys)
    assert code == 0 and not foreign.exists() and not truncated.exists()
    code, out, _ = run_cli(main, ["verify"], capsys)
    assert code == 0 and "1 checked: 1 ok" in out


def test_rm_by_dataset_takes_damaged_entries_too(capsys, built: Path) -> None:
    truncate(entry("test"))
    code, out, _ = run_cli(main, ["rm", "--dataset", DATASET], capsys)
    assert code == 0 and " ".join(out.split()).count("removed") == 3
    assert FeatureStore(cache()).entries() == []


def test_entry_written_before_checksums_is_still_read(capsys, built: Path, tiny_bert: Path) -> None:
    path = entry("train")
    with h5py.File(path, "a") as handle:
        del handle.attrs[integrity.ATTRIBUTE]
    assert integrity.verify_entry(path) is False
    assert len(TextFeatures.load(path)) == 24
    code, out, _ = run_cli(main, ["verify"], capsys)
    assert code == 0 and "unverified-old" in out and "1 unverified" in out
    code, out = featurize(capsys, built, tiny_bert)
    assert code == 0 and has(out, f"cached: {path}")


def test_a_damaged_staged_chunk_is_removed_and_named(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "c")
    plan = EntryPlan("k" * 64, "toy/train/x.h5", n_items=6, chunk_size=3, metadata={"kind": "text"})
    build = store.begin(plan)
    build.run(lambda r: {"words": (np.ones((len(r), 4), np.float32), np.ones(len(r), np.int64))})
    truncate(build.chunk_path(1))
    with pytest.raises(CacheError, match="chunk-000001.h5 was unreadable") as caught:
        build.publish(lambda handle: None)
    assert "run the same command again" in str(caught.value)
    assert build.pending() == [1] and not store.path(plan).exists()


# --------------------------------------------------------------------------- clean-up


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def age(path: Path, seconds: float = GRACE_SECONDS + 60) -> Path:
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def test_liveness_of_a_pid() -> None:
    assert alive(os.getpid()) and alive(os.getpid(), since=time.time())
    assert not alive(dead_pid())
    assert not alive(os.getpid(), since=0.0)  # "this pid, but from before this process started"


def test_stale_temporaries_locks_and_staging_are_cleaned_on_the_next_run(
    capsys, built: Path, tiny_bert: Path
) -> None:
    root = cache()
    published = entry("train")
    dead = dead_pid()
    stale_entry = published.with_name(f"{published.name}.tmp-{dead}")
    stale_entry.write_bytes(b"half")
    age(stale_entry)
    young = published.with_name(f"{published.name}.tmp-{dead}-7")
    young.write_bytes(b"being written on another machine, perhaps")
    mine = published.with_name(f"{published.name}.tmp-{os.getpid()}")
    mine.write_bytes(b"a live writer")
    age(mine, 10)
    with h5py.File(published, "r") as handle:
        key = str(handle.attrs["key"])
    staging = root / ".staging" / key  # a publish killed between its rename and its clean-up
    staging.mkdir(parents=True)
    (staging / "plan.json").write_text(json.dumps({"key": key, "relpath": str(published.relative_to(root))}))
    (staging / "chunk-000000.h5").write_bytes(b"done")
    other = root / ".staging" / ("9" * 64)
    other.mkdir()
    (other / "plan.json").write_text(json.dumps({"key": "9" * 64, "relpath": "toy.jsonl/train/y.h5"}))
    chunk_tmp = other / f"chunk-000002.h5.tmp-{dead}"
    chunk_tmp.write_bytes(b"half a chunk")
    age(chunk_tmp)
    (root / ".locks").mkdir(exist_ok=True)
    leftover = root / ".locks" / f"{'9' * 64}.chunk-000002.lock"
    leftover.write_text("12345 0\n")
    held = StoreLock(root / ".locks" / "busy.lock")
    assert held.acquire(blocking=False)
    try:
        code, out = featurize(capsys, built, tiny_bert)
    finally:
        held.release()
    assert code == 0 and has(
        out, "cleaned up after dead processes: 2 temporary files, 1 lock files, 1 staging"
    )
    assert not stale_entry.exists() and not chunk_tmp.exists() and not leftover.exists()
    assert young.exists() and mine.exists()  # too recent to judge; a live writer
    assert not staging.exists() and other.is_dir()  # an entry not published yet keeps its chunks
    assert not (root / ".locks" / "busy.lock").exists()  # removed on release
    assert sorted(p.name for p in (root / ".locks").iterdir()) == []  # no lock file accumulates


def test_a_lock_file_exists_only_while_held(tmp_path: Path) -> None:
    path = tmp_path / ".locks" / "k.lock"
    first, second = StoreLock(path), StoreLock(path)
    assert first.acquire(blocking=False) and path.read_text().split()[0] == str(os.getpid())
    assert not second.acquire(blocking=False)
    got = threading.Event()

    def wait() -> None:
        second.acquire()  # blocks on the file `first` holds, which first removes on release
        got.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    assert not got.is_set()
    first.release()
    waiter.join(5)
    assert got.is_set() and second.held
    assert path.exists() and os.stat(path).st_ino == os.fstat(second._fd).st_ino  # the file in place
    assert not StoreLock(path).acquire(blocking=False)  # so a newcomer really waits
    second.release()
    assert not path.exists()


def test_stale_temporary_needs_a_dead_writer_and_an_old_file(tmp_path: Path) -> None:
    dead = dead_pid()
    old = tmp_path / f"x.h5.tmp-{dead}"
    old.write_bytes(b"x")
    age(old)
    young = tmp_path / f"y.h5.tmp-{dead}"
    young.write_bytes(b"x")
    live = tmp_path / f"z.h5.tmp-{os.getpid()}"
    live.write_bytes(b"x")
    age(live, 10)
    hidden = tmp_path / f".weights.tmp-{dead}"
    hidden.write_bytes(b"x")
    age(hidden)
    assert stale_temporary(old) and not stale_temporary(young)
    assert not stale_temporary(live) and not stale_temporary(hidden)


# --------------------------------------------------------------------------- counts after a resume


def test_counts_after_a_resume_cover_the_whole_entry(
    capsys, tmp_path: Path, tiny_bert: Path, monkeypatch
) -> None:
    from featurize.cache.store import EntryBuild

    rows = [
        {
            "text": ["new", "\ufe0f", "york"] if i % 2 else ["\ufe0f", "city"],
            "label": ["O"] * (3 if i % 2 else 2),
        }
        for i in range(12)
    ]
    data = tmp_path / "empty.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [str(data), "--format", "jsonl", "--text", f"hf:{tiny_bert}", "--fp32", "--chunk-size", "3"]
    original = EntryBuild.write_chunk
    calls = []

    def killed_after_two(self, chunk, arrays, counts=None):  # noqa: ANN001, ANN202
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(chunk)
        return original(self, chunk, arrays, counts)

    monkeypatch.setattr(EntryBuild, "write_chunk", killed_after_two)
    code, _, _ = run_cli(main, args, capsys)
    assert code == 130 and len(calls) == 2
    monkeypatch.setattr(EntryBuild, "write_chunk", original)
    code, out, err = run_cli(main, args, capsys)
    assert code == 0 and has(out + err, "resuming: 2/4 chunks already written")
    assert has(out + err, "12 words had no subwords")  # every example has one, not only this run's 6
    (path,) = FeatureStore(cache()).entries()
    assert TextFeatures.load(path).metadata["counts"]["empty_words"] == 12
