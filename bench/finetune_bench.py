"""What ``bench finetune`` runs and reports: per seed a frozen-feature cell and its fine-tuned
counterpart, stored as lines of the grid's run store format, reported in the grid's format.

The frozen cell is a ``bench heads`` cell (same key, same training settings), so its line is
found again and not retrained; a fine-tuned line's key hashes the cell and every fine-tuning
setting, so a re-run with the same command trains nothing and only reports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import winners as winner_file
from bench.grid import GRID_TRAIN, Cell
from bench.grid_summary import ConfigResult, summarise
from bench.references import REFERENCES
from featurize.errors import ConfigError
from heads.report_table import Report, save_reports


@dataclass(frozen=True)
class Choice:
    dataset: str
    head: str
    modality: str
    text: str | None
    vision: str | None
    context: str
    train: dict[str, Any]
    source: str  # where the choice came from (the winner file, or the command line)
    label_map: str | None = None  # several corpora (--dataset a,b) mapped onto one scheme
    knowledge_hints: bool = False  # heads.knowledge_hints' columns after the word features


def choose(
    dataset: str,
    best: bool,
    winners_path: Path,
    head: str | None,
    modality: str | None,
    text: str | None,
    vision: str | None,
    context: str | None,
    knowledge_hints: bool | None = None,
) -> Choice:
    """``--best``: the grid's winner (chosen on validation), each option given overriding it;
    else every part from the options (``knowledge_hints`` None: the winner's, else off)."""
    if best:
        table = winner_file.read(winners_path)
        if dataset not in table:
            raise ConfigError(
                f"{winners_path}: no winner for {dataset} (run `bench heads --dataset {dataset}`)"
            )
        w = table[dataset]
        overridden = [
            n
            for n, v in (
                ("head", head),
                ("modality", modality),
                ("text", text),
                ("vision", vision),
                ("context", context),
                ("knowledge_hints", knowledge_hints),
            )
            if v is not None
        ]
        source = f"winner of {winners_path} ({w.get('label')})" + (
            f", {', '.join(overridden)} from the command line" if overridden else ""
        )
        return Choice(
            dataset,
            head or str(w["head"]),
            modality or str(w["modality"]),
            text or (str(w["text"]) if w.get("text") else None),
            (None if vision == "none" else vision)
            if vision is not None
            else (str(w["vision"]) if w.get("vision") else None),
            context or str(w.get("context") or "none"),
            dict(w.get("train") or {}),
            source,
            knowledge_hints=bool(w.get("knowledge_hints")) if knowledge_hints is None else knowledge_hints,
        )
    if head is None or text is None:
        raise ConfigError(
            "name the combination (--head and --text, optionally --vision/--context/--modality) or pass --best"
        )
    import heads.models  # noqa: F401
    from heads.tagger import HEADS

    return Choice(
        dataset,
        head,
        modality or HEADS.get(head).modalities[0],
        text,
        None if vision in (None, "none") else vision,
        context or "none",
        GRID_TRAIN.key_settings(),
        "command line",
        knowledge_hints=bool(knowledge_hints),
    )


def frozen_cell(choice: Choice, seed: int) -> Cell:
    return Cell(
        choice.dataset,
        choice.head,
        choice.modality,
        choice.text,
        choice.vision,
        choice.context,
        seed,
        choice.train,
        choice.label_map,
        knowledge_hints=choice.knowledge_hints,
    )


def tuned_key(cell: Cell, fine_tune: dict[str, Any]) -> str:
    """A fine-tuned line's key: its frozen cell and every fine-tuning setting but the device."""
    settings = dict(fine_tune) | {"seed": cell.seed}
    settings.pop("device", None)
    payload = json.dumps({"cell": cell.identity(), "fine_tune": settings}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def tuned_train(fine_tune: dict[str, Any], method: str | None) -> dict[str, Any]:
    """The ``train`` part of a fine-tuned line's cell: groups seeds of one fine-tuning setting."""
    settings = dict(fine_tune)
    for k in ("seed", "device", "merge", "eval_batch"):
        settings.pop(k, None)
    return {"fine_tune": method or settings.get("method")} | settings


COLUMNS = [
    "mode",
    "head",
    "modality",
    "text",
    "context",
    "vision",
    "seeds",
    "dev entity F1",
    "test entity F1",
    "test token macro F1",
    "Δ test entity F1 vs frozen",
    "train s",
    "epochs",
    "peak MiB",
]


def mode_of(result: ConfigResult) -> str:
    train = result.config.get("train")
    train = json.loads(train) if isinstance(train, str) else dict(train or {})  # type: ignore[arg-type]
    method = train.get("fine_tune")
    return f"fine-tuned ({method})" if method else "frozen features"


def report(lines: list[dict], command: str, preamble: list[str]) -> list[Report]:
    """One table per dataset: each configuration frozen and fine-tuned, the seeds both ran."""
    results = summarise(lines)
    reports = []
    for dataset in sorted({r.dataset for r in results}):
        rows = []
        mine = [r for r in results if r.dataset == dataset]
        frozen = {_identity(r): r for r in mine if mode_of(r) == "frozen features"}
        for r in sorted(mine, key=lambda r: (_identity(r), mode_of(r) != "frozen features")):
            c = r.config
            base = frozen.get(_identity(r))
            delta = "" if base is None or base is r else f"{r.test_f1.mean - base.test_f1.mean:+.2f}"
            rows.append(
                {
                    "mode": mode_of(r),
                    "head": c["head"],
                    "modality": c["modality"],
                    "text": c["text"] or "-",
                    "context": str(c["context"]) + (" + hints" if c.get("knowledge_hints") else ""),
                    "vision": c["vision"] or "-",
                    "seeds": ", ".join(str(s) for s in r.seeds),
                    "dev entity F1": str(r.dev_f1),
                    "test entity F1": str(r.test_f1),
                    "test token macro F1": str(r.test_token_macro),
                    "Δ test entity F1 vs frozen": delta,
                    "train s": round(r.train_seconds.mean),
                    "epochs": f"{r.epochs.mean:.1f}",
                    "peak MiB": round(r.peak_memory_mib),
                }
            )
        table = Report(
            f"{dataset}: frozen-feature head vs fine-tuned end to end", COLUMNS, rows, command=command
        )
        ref = next((x for x in REFERENCES if x.model == "UMT"), None)
        if ref is not None:
            table.notes.append(
                f"Published, not our run: UMT {ref.value(dataset) if ref.value(dataset) is not None else '-'} test entity F1 "
                f"({ref.source}; BERT-base + ResNet-152 fine-tuned on a GPU)."
            )
        table.notes.append(
            "Mean ± sample std over the seeds listed; both modes use the same splits and seeds; the model of "
            "each mode was chosen on dev entity F1 (epoch 0 of fine-tuning is the frozen head it starts from)."
        )
        reports.append(table)
    return reports


def _identity(r: ConfigResult) -> tuple:
    c = r.config
    return (c["head"], c["modality"], c["text"], c["vision"], c["context"], bool(c.get("knowledge_hints")))


def write(lines: list[dict], folder: Path, command: str, preamble: list[str]) -> dict[str, Path]:
    return save_reports(report(lines, command, preamble), folder, "finetune", "bench finetune", preamble)
