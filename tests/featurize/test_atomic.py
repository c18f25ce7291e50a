"""featurize.atomic: a file or folder is replaced whole or not at all, and no temporary is left."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from featurize.atomic import (
    atomic_folder,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    temporary_sibling,
)


class Boom(RuntimeError):
    pass


def test_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    assert atomic_write_text(path, "one") == path
    atomic_write_text(path, "two", fsync=True)
    assert path.read_text() == "two"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_writer_sees_a_temporary_sibling(tmp_path: Path) -> None:
    path = tmp_path / "entry.h5"
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_text(f"x{len(seen)}")
        assert not path.exists() or path.read_text() == "x1"  # untouched until the writer returns

    atomic_write(path, write)
    assert seen == [tmp_path / f".entry.h5.tmp-{os.getpid()}"]
    atomic_write(path, write, hidden=False)  # the feature store's names: <name>.tmp-<pid>
    assert seen[-1] == tmp_path / f"entry.h5.tmp-{os.getpid()}"
    assert path.read_text() == "x2"


def test_exception_in_writer_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text("old")

    def half(tmp: Path) -> None:
        tmp.write_text("half of a new")
        raise Boom

    for hidden in (True, False):
        with pytest.raises(Boom):
            atomic_write(path, half, hidden=hidden, fsync=True)
        assert path.read_text() == "old"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_exception_before_any_file_is_written(tmp_path: Path) -> None:
    def nothing(tmp: Path) -> None:
        raise Boom

    with pytest.raises(Boom):
        atomic_write(tmp_path / "x", nothing)
    assert list(tmp_path.iterdir()) == []


def test_threads_get_their_own_temporary(tmp_path: Path) -> None:
    path = tmp_path / "answer.json"
    names: list[Path] = []
    thread = threading.Thread(target=lambda: names.append(temporary_sibling(path)))
    thread.start()
    thread.join()
    assert names[0] != temporary_sibling(path)
    assert names[0].name.startswith(f".answer.json.tmp-{os.getpid()}-")


def test_many_threads_writing_one_path(tmp_path: Path) -> None:
    path = tmp_path / "shared.txt"
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(20):
                atomic_write_text(path, f"{i}" * 1000)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    text = path.read_text()
    assert len(text) == 1000 and len(set(text)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["shared.txt"]


def test_folder_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "weights" / "model-1.0"
    with atomic_folder(target) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir())
        assert tmp == target.with_name(f".model-1.0.tmp-{os.getpid()}")
        (tmp / "config.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"1")
        assert not target.exists()
    assert (target / "config.json").read_text() == "{}" and (target / "sub" / "w.bin").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model-1.0"]


def test_folder_replaces_an_existing_one(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_folder_error_keeps_the_old_folder_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(Boom), atomic_folder(target) as tmp:
        (tmp / "half.txt").write_text("half")
        raise Boom
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    with pytest.raises(Boom), atomic_folder(tmp_path / "new") as tmp:
        raise Boom
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_folder_clears_a_stale_temporary(tmp_path: Path) -> None:
    target = tmp_path / "conv"
    stale = temporary_sibling(target)
    stale.mkdir()
    (stale / "left-by-a-killed-run").write_text("x")
    with atomic_folder(target) as tmp:
        assert tmp == stale and not any(tmp.iterdir())
        (tmp / "ok").write_text("1")
    assert [p.name for p in target.iterdir()] == ["ok"] and not stale.exists()


def test_a_failed_chunk_leaves_no_temporary(tmp_path: Path) -> None:
    import numpy as np

    from featurize.cache.store import EntryPlan, FeatureStore
    from featurize.errors import CacheError

    store = FeatureStore(tmp_path / "c")
    build = store.begin(EntryPlan("k" * 64, "toy/train/x.h5", n_items=3, chunk_size=3, metadata={}))
    bad = {"words": (np.ones((5, 4), np.float32), np.array([2, 2, 2]))}  # 6 rows promised, 5 given
    with pytest.raises(CacheError, match="lengths do not match"):
        build.write_chunk(0, bad)
    assert sorted(p.name for p in build.staging.iterdir()) == ["plan.json"]
