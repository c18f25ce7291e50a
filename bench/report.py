"""One report format for every benchmark: a Markdown table for people, JSON for programs."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from featurize.build import library_versions


@dataclass
class Report:
    title: str
    columns: list[str]
    rows: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = ""

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.command:
            lines += [f"`{self.command}`", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            lines.append("| " + " | ".join(_cell(row.get(c)) for c in self.columns) + " |")
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def save(self, folder: Path, stem: str) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        md, js = folder / f"{stem}-{stamp}.md", folder / f"{stem}-{stamp}.json"
        md.write_text(self.markdown())
        payload = {
            "title": self.title,
            "command": self.command,
            "columns": self.columns,
            "rows": self.rows,
            "notes": self.notes,
            "machine": {"platform": platform.platform(), "processor": platform.processor()},
            "library_versions": library_versions(),
        }
        js.write_text(json.dumps(payload, indent=1))
        return md, js


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
