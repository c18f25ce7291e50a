"""Files and folders written whole or not at all: through a temporary sibling renamed into place.

Every writer in the toolkit whose output another process may read (cache entries and their
chunks, converted weights, saved heads, the LLM answer cache, annotation files) goes through
this module, so a crash or an exception leaves the previous file (or none), never half of one,
and no temporary behind.

The temporary is a sibling, ``.<name>.tmp-<pid>`` (``hidden=True``, the default: listings that
skip dot-files never see it) or ``<name>.tmp-<pid>`` (``hidden=False``: the feature store's
chunks and entries, whose globs ``*.h5`` never match it). A thread other than the main one adds
``-<thread id>``, so two threads of one process writing one path never share a temporary.
``os.replace`` is atomic on one file system, which a sibling always shares.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_folder", "atomic_write", "atomic_write_bytes", "atomic_write_text", "temporary_sibling"]


def temporary_sibling(path: Path, *, hidden: bool = True, tag: str = "tmp") -> Path:
    """The temporary name for ``path`` in this process (and thread): ``.<name>.<tag>-<pid>``,
    without the leading dot when ``hidden`` is false."""
    path = Path(path)
    suffix = f"{tag}-{os.getpid()}"
    if threading.current_thread() is not threading.main_thread():
        suffix += f"-{threading.get_ident()}"
    return path.with_name(f"{'.' if hidden else ''}{path.name}.{suffix}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write(
    path: Path, write: Callable[[Path], None], *, hidden: bool = True, fsync: bool = False
) -> Path:
    """Call ``write(tmp)`` to write the whole file at a temporary sibling ``tmp``, then rename it
    to ``path`` (replacing any file there). ``fsync`` flushes the file to disk before the rename
    (for files that must survive a power cut, not only a crash). On any exception the temporary
    is removed, ``path`` is left as it was, and the exception propagates. Returns ``path``."""
    path = Path(path)
    tmp = temporary_sibling(path, hidden=hidden)
    try:
        write(tmp)
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes, *, hidden: bool = True, fsync: bool = False) -> Path:
    """``data`` as the whole of ``path``, atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), hidden=hidden, fsync=fsync)


def atomic_write_text(
    path: Path, text: str, *, encoding: str = "utf-8", hidden: bool = True, fsync: bool = False
) -> Path:
    """``text`` as the whole of ``path``, atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding), hidden=hidden, fsync=fsync)


@contextmanager
def atomic_folder(path: Path, *, hidden: bool = True) -> Iterator[Path]:
    """Yield an empty temporary sibling folder to fill; when the block ends without an exception
    it becomes ``path`` (a folder already there is replaced, removed only once the new one is in
    place). On an exception the temporary is removed and ``path`` is left as it was.

    >>> with atomic_folder(out / "model") as tmp:
    ...     (tmp / "config.json").write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, hidden=hidden)
    _remove(tmp)  # a stale one from a killed process with our pid
    tmp.mkdir()
    try:
        yield tmp
        if path.exists() or path.is_symlink():
            old = temporary_sibling(path, hidden=True, tag="old")
            _remove(old)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous folder back
                raise
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
