"""The feature store's locks, and how it tells a dead writer's leftovers from a live one's.

A lock is an ``flock`` on ``.locks/<name>.lock``. The kernel drops it when its holder exits, even
after ``kill -9``, so a dead process never holds a lock; and the file is removed on release, so
lock files do not accumulate. Removing a lock file is safe because whoever acquires one checks,
after ``flock`` succeeds, that the path still names the file it locked (a waiter that locked a
file unlinked meanwhile opens the new one and tries again). The holder writes its pid and start
time into the file, for people looking at a stuck run.

A temporary (``<name>.tmp-<pid>``, see :mod:`featurize.atomic`) belongs to a dead writer when no
process with that pid runs here, or the one that does started after the temporary was last
written (the pid was reused). Only temporaries unchanged for :data:`GRACE_SECONDS` are judged,
so a writer on another machine sharing the cache (whose pid means nothing here) loses nothing
it is still writing.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path

GRACE_SECONDS = 120.0
TEMPORARY = re.compile(r"^(?P<target>[^.].*)\.tmp-(?P<pid>\d+)(?:-\d+)?$")


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), where /proc says; None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22: starttime, in clock ticks
    except (OSError, ValueError, IndexError):
        return None
    boot = _boot_time()
    return None if boot is None else boot + ticks / os.sysconf("SC_CLK_TCK")


def alive(pid: int, since: float | None = None) -> bool:
    """Whether ``pid`` is a running process here that existed at time ``since`` (when given)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if since is not None:
        started = process_start(pid)
        if started is not None and started > since + 1.0:
            return False  # the pid was reused by a process younger than the file
    return True


def stale_temporary(path: Path, now: float | None = None) -> bool:
    """A temporary left by a dead writer (see the module's docstring)."""
    match = TEMPORARY.match(path.name)
    if match is None:
        return False
    try:
        modified = path.lstat().st_mtime
    except OSError:
        return False
    if (now if now is not None else time.time()) - modified < GRACE_SECONDS:
        return False
    return not alive(int(match["pid"]), since=modified)


class StoreLock:
    """An exclusive lock on ``path``; the file exists only while someone holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock (waiting for it when ``blocking``); False when busy and not blocking."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder before us removed that file: lock the current one
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {process_start(os.getpid()) or 0:.0f}\n".encode())
        except OSError:
            pass  # the note is for people; the lock holds without it
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)  # still ours: nobody else can hold it now
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def sweep_locks(folder: Path) -> int:
    """Remove the lock files nobody holds (left by a process killed while holding one, or by
    versions that kept them); returns how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in sorted(folder.glob("*.lock")):
        lock = StoreLock(path)
        try:
            if lock.acquire(blocking=False):
                lock.release()
                removed += 1
        except OSError:
            continue
    return removed
