"""``bench knowledge``: how much of a knowledge file an encoder reads, and where its signal is.

A knowledge text (PGIM's, or one ``featurize knowledge`` wrote) names the entities a chat model
sees, then reasons about the text and the image. Read as a second segment it is cut to a subword
budget (``--context-budget``). This report says, per split, without loading any model (the
encoder's tokenizer only):

- how long the texts are in the encoder's subwords, and the share cut at each budget;
- how many gold entity mentions the knowledge names at all, in its entity list (before
  "Reasoning"), and within the first B subwords for each budget B: a mention cut away cannot
  help, and one the list already names is most of what the reasoning adds.

It is the measurement behind the default budget's range and behind why T15 gains less than T17
from PGIM's knowledge (docs/knowledge.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurize.datasets import LoadOptions, load_dataset
from featurize.datasets import data_dir as root_of
from featurize.errors import ConfigError
from featurize.example import Example
from featurize.knowledge import join_knowledge, knowledge_file, read_knowledge
from featurize.knowledge_entities import entity_list, listed_entities
from heads.report_table import Report

BUDGETS = (64, 96, 128, 192, 256)


@dataclass
class CoverageRequest:
    datasets: Sequence[str] = ("t15", "t17")
    text: str = "mpnet"
    budgets: Sequence[int] = BUDGETS
    knowledge: Path | None = None  # None: each dataset's own file
    data_dir: Path | None = None


def listed_kinds(text: str) -> list[tuple[str, str]]:
    """``(name, type)`` of each item of the entity list (``1. Kawhi Leonard (person)``)."""
    return [(_normal(item.name), item.type) for item in listed_entities(text)]


def _mentions(example: Example) -> list[tuple[str, str]]:
    from seqeval.metrics.sequence_labeling import get_entities  # the metric's own span reading

    return [(" ".join(example.words[s : e + 1]), kind) for kind, s, e in get_entities(list(example.labels))]


def _normal(text: str) -> str:
    return " ".join(text.lower().replace("#", " ").replace("@", " ").split())


def coverage(request: CoverageRequest) -> list[Report]:
    """One table: a row per dataset and split."""
    from transformers import AutoTokenizer

    from featurize.text import build_text_encoder
    from featurize.text.transformer import WordFeatureOptions

    encoder = build_text_encoder(request.text, WordFeatureOptions())
    tokenizer = AutoTokenizer.from_pretrained(encoder.weights.folder())
    budgets = sorted(set(int(b) for b in request.budgets))
    rows: list[dict[str, object]] = []
    for name in request.datasets:
        options = LoadOptions(data_dir=request.data_dir, use_captions=False)
        dataset = load_dataset(name, options)
        source = knowledge_file(name, dataset.spec.knowledge, root_of(request.data_dir), request.knowledge)
        knowledge = read_knowledge(source)
        for split, loaded in dataset.splits.items():
            joined = join_knowledge(loaded.examples, knowledge)
            lengths: list[int] = []
            mentions = named = listed = typed = agree = 0
            by_type: dict[str, list[int]] = {}  # gold type -> [listed with a kind, kind agrees]
            within = dict.fromkeys(budgets, 0)
            for example, text in zip(loaded.examples, joined.texts):
                gold_typed = [(_normal(m), kind) for m, kind in _mentions(example)]
                gold = [m for m, _ in gold_typed]
                mentions += len(gold)
                if text is None:
                    continue
                items = listed_kinds(text)
                for mention, kind in gold_typed:
                    match = next(
                        (t for name, t in items if mention and (mention == name or mention in name)), None
                    )
                    if match is not None:
                        typed += 1
                        agree += match == kind
                        counts = by_type.setdefault(kind, [0, 0])
                        counts[0] += 1
                        counts[1] += match == kind
                encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
                offsets = encoded["offset_mapping"]
                lengths.append(len(offsets))
                whole, head = _normal(text), _normal(entity_list(text))
                cut = {
                    b: _normal(text[: offsets[min(b, len(offsets)) - 1][1]]) if offsets else ""
                    for b in budgets
                }
                for mention in gold:
                    named += mention in whole
                    listed += mention in head
                    for b in budgets:
                        within[b] += mention in cut[b]
            array = np.array(lengths or [0])
            row: dict[str, object] = {
                "dataset": name,
                "split": split,
                "examples": len(loaded.examples),
                "with knowledge": joined.found,
                "subwords p50": int(np.percentile(array, 50)),
                "p90": int(np.percentile(array, 90)),
                "max": int(array.max()),
                "gold mentions": mentions,
                "named anywhere %": 100 * named / max(1, mentions),
                "in entity list %": 100 * listed / max(1, mentions),
                "listed with a kind %": 100 * typed / max(1, mentions),
                "kind = gold type %": 100 * agree / max(1, typed),
            }
            for kind in sorted(by_type):  # where the model's kinds and the annotation disagree
                listed_of, agreeing = by_type[kind]
                row[f"{kind}: kind agrees %"] = 100 * agreeing / max(1, listed_of)
            for b in budgets:
                row[f"cut at {b} %"] = 100 * float((array > b).mean())
            for b in budgets:
                row[f"named in first {b} %"] = 100 * within[b] / max(1, mentions)
            rows.append(row)
    columns = list(rows[0]) if rows else []
    report = Report(f"Knowledge read by {request.text}'s tokenizer", columns, rows)
    report.notes += [
        "Subwords: the knowledge text alone, as the encoder's tokenizer splits it (no special tokens).",
        "A gold mention is 'named' when its words (lower-cased, # and @ dropped) occur in the text; "
        "'in entity list' counts the part before 'Reasoning:'; 'named in first B' the part a budget "
        "of B subwords keeps.",
        "'listed with a kind': the mention is an item 'N. name (kind)' or '- name (kind)' of the entity list; "
        "'kind = gold type': that kind, read onto PER/LOC/ORG/MISC by keywords (person, city, team, ...; "
        "anything else MISC), is the gold type.",
    ]
    return [report]


@dataclass
class SwapRequest:
    """``bench knowledge --model``: one head trained with knowledge, scored on the examples a
    knowledge file covers, with that file's knowledge and with the dataset's own."""

    model: Path
    knowledge: Path
    split: str = "test"
    baseline: Path | None = None  # a head without knowledge, scored on the same examples
    data_dir: Path | None = None
    cache_dir: Path | None = None


def swap(request: SwapRequest) -> Report:
    """Entity F1 of one knowledge head on the examples ``request.knowledge`` names: the head
    reads the dataset's own knowledge (what it was trained with) and then the file's, so the
    file's quality shows as the change in F1 on the same examples; a ``baseline`` head without
    knowledge gives the floor."""
    from heads.families import load
    from heads.input_files import PredictInput
    from heads.metrics import all_scores

    predictor = load(request.model, request.cache_dir)
    if "knowledge" not in predictor.inputs.context:
        raise ConfigError(f"{request.model} was not trained with --context knowledge")
    name = predictor.inputs.dataset
    dataset = load_dataset(name, LoadOptions(data_dir=request.data_dir), [request.split])
    examples = dataset.splits[request.split].examples
    theirs = join_knowledge(examples, read_knowledge(request.knowledge))
    own_file = knowledge_file(name, dataset.spec.knowledge, root_of(request.data_dir), None)
    own = join_knowledge(examples, read_knowledge(own_file))
    chosen = [i for i, t in enumerate(theirs.texts) if t is not None and own.texts[i] is not None]
    if not chosen:
        raise ConfigError(f"{request.knowledge}: no line names an example of {name}/{request.split}")
    gold = [examples[i].labels for i in chosen]

    def score(texts: list[str | None] | None, model: Path | None = None) -> dict[str, object]:
        runner = predictor if model is None else load(model, request.cache_dir)
        items = [
            PredictInput(
                list(examples[i].words),
                caption=examples[i].caption,
                id=examples[i].id,
                knowledge=texts[i] if texts is not None else None,
            )
            for i in chosen
        ]
        tags = [p.tags for p in runner.predict(items)]
        scores = all_scores(gold, tags)
        per_type = scores["entity_per_type"]
        assert isinstance(per_type, dict)
        row: dict[str, object] = {"entity F1": 100 * float(scores["entity_f1"])}  # type: ignore[arg-type]
        for kind in sorted(per_type):
            row[f"{kind} F1"] = 100 * float(per_type[kind]["f1-score"])
        return row

    rows = [
        {"head": str(request.model), "knowledge": f"{own_file.name} (trained with)"} | score(own.texts),
        {"head": str(request.model), "knowledge": request.knowledge.name} | score(theirs.texts),
    ]
    if request.baseline is not None:
        rows.append({"head": str(request.baseline), "knowledge": "none"} | score(None, request.baseline))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    report = Report(f"Knowledge swapped on {len(chosen)} examples of {name}/{request.split}", columns, rows)
    report.notes.append(
        f"The {len(chosen)} examples of {name}/{request.split} that {request.knowledge.name} has a line for; "
        "features computed live by the head's own encoders (heads predict), scored with seqeval's default mode."
    )
    return report
