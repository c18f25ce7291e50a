"""One report format for every table the toolkit writes (`heads report`, `bench featurize`, `bench probe`,
`bench heads`, `annotate ocr-eval`): Markdown tables for people, JSON and CSV for programs and spreadsheets."""

from __future__ import annotations

import csv
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

    def payload(self) -> dict[str, object]:
        return {
            "title": self.title,
            "command": self.command,
            "columns": self.columns,
            "rows": self.rows,
            "notes": self.notes,
        }

    def save(self, folder: Path, stem: str) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        md, js = folder / f"{stem}-{stamp}.md", folder / f"{stem}-{stamp}.json"
        md.write_text(self.markdown())
        js.write_text(json.dumps(self.payload() | machine_facts(), indent=1))
        _write_csv([self], folder / f"{stem}-{stamp}.csv")
        return md, js


def machine_facts() -> dict[str, object]:
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "library_versions": library_versions(),
    }


def save_reports(
    reports: list[Report], folder: Path, stem: str, title: str, preamble: list[str] | None = None
) -> dict[str, Path]:
    """Several tables in one document (.md), one JSON and one CSV (every row of every table,
    with its table's title in the first column); names without a time stamp, so a re-run of a
    resumable benchmark replaces its report."""
    folder.mkdir(parents=True, exist_ok=True)
    md, js, sheet = folder / f"{stem}.md", folder / f"{stem}.json", folder / f"{stem}.csv"
    text = [f"## {title}", ""] + [*(preamble or [])] + ([""] if preamble else [])
    md.write_text("\n".join(text) + "\n".join(r.markdown() for r in reports))
    js.write_text(
        json.dumps({"title": title, "tables": [r.payload() for r in reports]} | machine_facts(), indent=1)
    )
    _write_csv(reports, sheet)
    return {"md": md, "json": js, "csv": sheet}


def _write_csv(reports: list[Report], path: Path) -> None:
    columns = ["table"] + list(dict.fromkeys(c for r in reports for c in r.columns))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for r in reports:
            for row in r.rows:
                writer.writerow({"table": r.title} | {c: row.get(c) for c in r.columns})


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
