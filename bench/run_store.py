"""The grid's append-only run store: one JSON line per finished (or failed) cell.

JSONL rather than SQLite: one writer (the grid's main process) appends whole lines and syncs
them, so an interrupted grid leaves at worst one torn last line, which is ignored on reading
(with a warning) and rewritten when the cell runs again. A line is never edited; a cell that
ran twice (a retried failure) counts by its last ``done`` line. ``stopped`` lines are cells a
successive-halving round paused at a rung (``bench heads --halving``): an exact grid ignores them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "mner-bench-heads-runs"
VERSION = 1


@dataclass
class RunStore:
    path: Path
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> Iterator[dict]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    self.warnings.append(f"{self.path}:{number}: torn or unreadable line ignored")
                    continue
                if line.get("format") != FORMAT or line.get("version") != VERSION:
                    self.warnings.append(f"{self.path}:{number}: not a {FORMAT} v{VERSION} line, ignored")
                    continue
                yield line

    def done(self) -> dict[str, dict]:
        """The last successful line of each cell key."""
        return {line["key"]: line for line in self.lines() if line["status"] == "done"}

    def stopped(self, rung: int) -> dict[str, dict]:
        """Cells paused at successive-halving rung ``rung`` (their record: the first epochs)."""
        return {
            line["key"]: line
            for line in self.lines()
            if line["status"] == "stopped" and line.get("stop_after") == rung
        }

    def failed(self) -> dict[str, dict]:
        done = self.done()
        return {
            line["key"]: line
            for line in self.lines()
            if line["status"] == "failed" and line["key"] not in done
        }

    def append(self, line: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"format": FORMAT, "version": VERSION} | line, ensure_ascii=False)
        with self.path.open("a+b") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell():
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a torn line from an interrupted run: start afresh
                    handle.write(b"\n")
            handle.write(payload.encode("utf-8") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
