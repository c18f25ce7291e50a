"""``annotate prelabel-eval``: how many labels a user changes with a model's pre-labels, against
labelling from scratch, on captions whose labels are known.

Every token of a new caption starts as O, so without pre-labels the user sets each gold
non-O label; with them, the user changes each token whose (mapped) pre-label differs from the
gold label, the count ``annotate serve`` saves as ``suggestions.changed``. The pre-labels'
entity precision/recall/F1 (seqeval's default mode, as every report here) and token accuracy
say why.

The gold file is JSON lines, one caption each::

    {"image": "100.PNG", "box": [x0, y0, x1, y1], "picture_box": [x0, y0, x1, y1] or null,
     "text": "Südlicher Ortseingang von Dürrmaul", "tokens": [...], "label": [...]}

``tokens`` are :func:`featurize.ocr_text.tokenize` of ``text`` (what the tool shows as chips);
``picture_box`` is the picture part of the scan (null: the whole scan), the image a head that
reads images gets.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotate.prelabels import TypeMap, model_types, resolve_type_map
from annotate.store import check_labels
from featurize.errors import ConfigError, DataFormatError
from featurize.readers.jsonl import json_object

Box = list[float] | None
COLUMNS = [
    "caption", "tokens", "gold labels (no pre-labels)", "changes with pre-labels", "saved",
    "gold entities", "predicted entities", "entity P", "entity R", "entity F1", "token accuracy",
]  # fmt: skip


@dataclass
class GoldCaption:
    image: str | None
    picture_box: Box
    text: str
    tokens: list[str]
    labels: list[str]
    line: int


def _box(value: object, path: Path, number: int, key: str) -> Box:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 4 or not all(isinstance(v, (int, float)) for v in value):
        raise DataFormatError(path, number, f'"{key}" must be [x0, y0, x1, y1] or null')
    return [float(v) for v in value]


def read_gold(path: Path, types: list[str]) -> list[GoldCaption]:
    """The gold captions of ``path``; a label that is not BIO of ``types`` names its line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--reference {path}: cannot read it ({err})") from None
    gold = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = json_object(line, Path(path), number)
        tokens, labels = record.get("tokens"), record.get("label")
        if not isinstance(tokens, list) or not isinstance(labels, list) or not tokens:
            raise DataFormatError(
                Path(path), number, 'needs "tokens" and "label" (lists, one label per token)'
            )
        if len(tokens) != len(labels):
            raise DataFormatError(Path(path), number, f"{len(tokens)} tokens but {len(labels)} labels")
        if not all(isinstance(t, str) and t for t in tokens):
            raise DataFormatError(Path(path), number, '"tokens" must be non-empty strings')
        try:
            check_labels([str(x) for x in labels], types)
        except ConfigError as err:
            raise DataFormatError(Path(path), number, str(err)) from None
        image = record.get("image")
        if image is not None and not isinstance(image, str):
            raise DataFormatError(Path(path), number, '"image" must be a file name or null')
        gold.append(
            GoldCaption(
                image,
                _box(record.get("picture_box"), Path(path), number, "picture_box"),
                str(record.get("text", " ".join(tokens))),
                [str(t) for t in tokens],
                [str(x) for x in labels],
                number,
            )
        )
    if not gold:
        raise ConfigError(f"--reference {path}: no captions")
    return gold


def score(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """The counts and scores of one row: labels to set, labels to change, entity P/R/F1, accuracy."""
    from seqeval.metrics.sequence_labeling import get_entities

    from heads.metrics import entity_scores

    entities = entity_scores(gold, predicted)
    tokens = sum(len(g) for g in gold)
    labels = sum(t != "O" for g in gold for t in g)
    changes = sum(a != b for g, p in zip(gold, predicted) for a, b in zip(g, p))
    return {
        "tokens": tokens,
        "gold labels (no pre-labels)": labels,
        "changes with pre-labels": changes,
        "saved": labels - changes,
        "gold entities": sum(len(get_entities(g)) for g in gold),
        "predicted entities": sum(len(get_entities(p)) for p in predicted),
        "entity P": round(100 * entities["precision"], 2),
        "entity R": round(100 * entities["recall"], 2),
        "entity F1": round(100 * entities["f1"], 2),
        "token accuracy": round(100 * (tokens - changes) / max(tokens, 1), 2),
    }


def _pictures(gold: list[GoldCaption], images: Path | None, folder: Path) -> list[list[Path]]:
    """Per caption, its picture crop written to ``folder`` (empty when it names no image)."""
    from PIL import Image, UnidentifiedImageError

    if images is None:
        raise ConfigError("this model reads images: give --images, the folder of the references' scans")
    out: list[list[Path]] = []
    for n, item in enumerate(gold):
        if item.image is None:
            out.append([])
            continue
        path = images / item.image
        try:
            with Image.open(path) as img:
                picture = img.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise ConfigError(f"line {item.line}: image {path} cannot be read ({err})") from None
        if item.picture_box:
            x0, y0, x1, y1 = (round(v) for v in item.picture_box)
            picture = picture.crop((max(0, x0), max(0, y0), min(picture.width, x1), min(picture.height, y1)))
        crop = folder / f"{n:04d}.png"
        picture.save(crop, format="PNG")
        out.append([crop])
    return out


def predict(
    predictor: Any, gold: list[GoldCaption], type_map: TypeMap, images: Path | None
) -> list[list[str]]:
    """The mapped pre-labels of every caption, as ``annotate serve`` makes them."""
    from heads.input_files import PredictInput

    with tempfile.TemporaryDirectory(prefix="prelabel-eval-") as tmp:
        pictures = _pictures(gold, images, Path(tmp)) if predictor.reads_images else [[] for _ in gold]
        inputs = [
            PredictInput(item.tokens, files, caption=item.text, id=f"line {item.line}")
            for item, files in zip(gold, pictures)
        ]
        return [type_map.apply(p.tags) for p in predictor.predict(inputs)]


def prelabel_report(
    model: Path,
    reference: Path,
    types: list[str],
    label_map: str = "auto",
    images: Path | None = None,
    cache_dir: Path | None = None,
    command: str = "",
    note: Callable[[str], None] = lambda _message: None,
) -> list[Any]:
    """``annotate prelabel-eval``: a table with one row per gold caption and a row ``all`` (the
    sums, and micro scores over every caption), and a table per type. Returns both."""
    from heads.families import load
    from heads.report_table import Report

    gold = read_gold(reference, types)
    predictor = load(Path(model), cache_dir, note=note)
    type_map = resolve_type_map(model_types(list(predictor.tags)), types, label_map)
    note(f"pre-labels: model {model}, {type_map.describe()}")
    predicted = predict(predictor, gold, type_map, images)
    rows = [
        {"caption": f"{item.image or 'line ' + str(item.line)}: {item.text[:40]}"}
        | score([item.labels], [tags])
        for item, tags in zip(gold, predicted)
    ]
    rows.append({"caption": "**all**"} | score([g.labels for g in gold], predicted))
    per_type = _per_type([g.labels for g in gold], predicted, types, command)
    table = Report(
        f"Pre-labels of {Path(model).name} on {len(gold)} gold captions (types {', '.join(types)})",
        COLUMNS,
        rows,
        command=command,
    )
    table.notes += [
        f"model: {predictor.describe()}; label map {label_map!r}: {type_map.used}, {type_map.describe()}.",
        "gold labels: the non-O tokens, each a label the user sets when every token starts as O; "
        "changes: tokens whose mapped pre-label differs from the gold label (suggestions.changed "
        "of annotate serve); saved = gold labels - changes (negative: pre-labels cost more than they save).",
        "entity P/R/F1: seqeval default mode, micro, in %; token accuracy: tokens whose pre-label is right, in %.",
    ]
    return [table, per_type]


def _per_type(gold: list[list[str]], predicted: list[list[str]], types: list[str], command: str) -> Any:
    """Entity scores per session type: a type the map gives no model type (BUI from a CoNLL model)
    has no recall at all."""
    from seqeval.metrics.sequence_labeling import get_entities

    from heads.metrics import entity_scores
    from heads.report_table import Report

    scores = entity_scores(gold, predicted)["per_type"]
    rows = []
    for kind in types:
        found = scores.get(kind, {})
        rows.append(
            {
                "type": kind,
                "gold entities": sum(k == kind for g in gold for k, _, _ in get_entities(g)),
                "predicted entities": sum(k == kind for p in predicted for k, _, _ in get_entities(p)),
                "entity P": round(100 * float(found.get("precision", 0.0)), 2),
                "entity R": round(100 * float(found.get("recall", 0.0)), 2),
                "entity F1": round(100 * float(found.get("f1-score", 0.0)), 2),
            }
        )
    columns = ["type", "gold entities", "predicted entities", "entity P", "entity R", "entity F1"]
    return Report("Pre-labels per type", columns, rows, command=command)
