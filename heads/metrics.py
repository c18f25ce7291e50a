"""The scores every MNER paper and the thesis report, computed one way for the whole toolkit.

- Entity-level micro P/R/F1 with seqeval's default (conlleval-compatible) mode: the headline.
  A span opening with I- counts as an entity, as conlleval counts it.
- Entity-level micro P/R/F1 in seqeval's strict IOB2 mode: an I- that opens a span is not an
  entity there, so a model that writes such spans is scored lower than by conlleval.
- Token-level macro F1 over the BIO tags, word by word: the thesis's metric ("token macro F1").
- The same with B-/I- stripped ("relaxed token macro F1": one class per entity type, plus O).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.metrics.v1 import _precision_recall_fscore_support as _seqeval_prfs
from seqeval.scheme import IOB2, Entities
from sklearn.metrics import f1_score as sk_f1


def entity_scores(
    gold: list[list[str]], predicted: list[list[str]], strict: bool = False
) -> dict[str, object]:
    """Micro P/R/F1 and per-type rows; ``strict`` uses seqeval's IOB2 scheme mode.

    seqeval's ``classification_report`` and ``precision/recall/f1_score`` each chunk both
    sequence lists again (seven times for one report: 1.3 s on T15 test with the strict mode,
    a tenth of a small head's grid cell). Here the entities are chunked once, with seqeval's
    own chunkers, and the counts go through seqeval's own divide-and-average function, so
    every number is the one seqeval returns (a test compares them on random taggings).
    """
    _check(gold, predicted)
    counts = _entity_counts(gold, predicted, strict)

    def prfs(average: str | None) -> tuple:
        return _seqeval_prfs(
            gold,
            predicted,
            average=average,
            zero_division=0,
            extract_tp_actual_correct=lambda *_: counts[1:],
        )

    p, r, f, _ = prfs("micro")
    per_type = dict(zip(counts[0], zip(*prfs(None))))
    return {
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        "per_type": {
            name: {"precision": float(pt), "recall": float(rt), "f1-score": float(ft), "support": float(st)}
            for name, (pt, rt, ft, st) in per_type.items()
        },
    }


def _entity_counts(
    gold: list[list[str]], predicted: list[list[str]], strict: bool
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(type names, predicted, correct, gold counts per type), as seqeval counts them."""
    if strict:
        true_entities, pred_entities = Entities(gold, IOB2, False), Entities(predicted, IOB2, False)
        names = sorted(true_entities.unique_tags | pred_entities.unique_tags)
        true_by = {n: true_entities.filter(n) for n in names}
        pred_by = {n: pred_entities.filter(n) for n in names}
    else:
        true_by, pred_by = defaultdict(set), defaultdict(set)
        for kind, start, end in get_entities(gold):
            true_by[kind].add((start, end))
        for kind, start, end in get_entities(predicted):
            pred_by[kind].add((start, end))
        names = sorted(set(true_by) | set(pred_by))
    pred_sum = np.array([len(pred_by.get(n, set())) for n in names], dtype=np.int32)
    tp_sum = np.array([len(true_by.get(n, set()) & pred_by.get(n, set())) for n in names], dtype=np.int32)
    true_sum = np.array([len(true_by.get(n, set())) for n in names], dtype=np.int32)
    return names, pred_sum, tp_sum, true_sum


def token_macro_f1(gold: list[list[str]], predicted: list[list[str]], relaxed: bool = False) -> float:
    """Macro F1 over the tags present in the gold labels (O included, as in the thesis);
    ``relaxed`` strips B-/I- first, so a word in the right type but the wrong position counts."""
    _check(gold, predicted)
    flat_gold = [_strip(t) if relaxed else t for s in gold for t in s]
    flat_pred = [_strip(t) if relaxed else t for s in predicted for t in s]
    labels = sorted(set(flat_gold))
    return float(sk_f1(flat_gold, flat_pred, labels=labels, average="macro", zero_division=0))


def all_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, object]:
    """Every metric of the report, named so nobody mistakes one for another."""
    entity = entity_scores(gold, predicted)
    strict = entity_scores(gold, predicted, strict=True)
    return {
        "entity_f1": entity["f1"],
        "entity_precision": entity["precision"],
        "entity_recall": entity["recall"],
        "entity_per_type": entity["per_type"],
        "entity_f1_strict": strict["f1"],
        "entity_precision_strict": strict["precision"],
        "entity_recall_strict": strict["recall"],
        "token_macro_f1": token_macro_f1(gold, predicted),
        "token_macro_f1_relaxed": token_macro_f1(gold, predicted, relaxed=True),
        "entity_confusion": entity_confusion(gold, predicted),
    }


def _spans(sequences: list[list[str]]) -> set[tuple[int, str, int, int]]:
    """(sentence, type, start, end) of every entity, seqeval's default (conlleval) chunking."""
    return {(i, *span) for i, seq in enumerate(sequences) for span in get_entities(seq)}


def entity_confusion(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, dict[str, int]]:
    """Counts of gold type -> predicted type for entities with the same span; a gold entity no
    prediction covers exactly counts as ``missed``, a prediction with no gold span as ``spurious``
    (the row name). seqeval has no such matrix; its chunker decides what an entity is."""
    _check(gold, predicted)
    gold_spans = {(i, s, e): t for i, t, s, e in _spans(gold)}
    pred_spans = {(i, s, e): t for i, t, s, e in _spans(predicted)}
    counts: Counter[tuple[str, str]] = Counter()
    for span, kind in gold_spans.items():
        counts[kind, pred_spans.get(span, "missed")] += 1
    for span, kind in pred_spans.items():
        if span not in gold_spans:
            counts["spurious", kind] += 1
    table: dict[str, dict[str, int]] = {}
    for (row, col), n in sorted(counts.items()):
        table.setdefault(row, {})[col] = n
    return table


class DevScorer:
    """The two selection metrics for one fixed split, fast enough to run every epoch.

    seqeval re-chunks the gold tags and builds a per-type report on every call (about 1 s on
    T17 dev, a fifth of an epoch); here the gold spans are chunked once, with seqeval's own
    chunker, and micro F1 is counted from span sets exactly as seqeval's default mode counts
    it (a test checks both agree).
    """

    def __init__(self, gold: list[list[str]]) -> None:
        self.gold = gold
        self.gold_spans = _spans(gold)
        self.flat_gold = [t for s in gold for t in s]
        self.labels = sorted(set(self.flat_gold))

    def scores(self, predicted: list[list[str]]) -> dict[str, float]:
        _check(self.gold, predicted)
        pred_spans = _spans(predicted)
        correct = len(self.gold_spans & pred_spans)
        p = correct / len(pred_spans) if pred_spans else 0.0
        r = correct / len(self.gold_spans) if self.gold_spans else 0.0
        flat_pred = [t for s in predicted for t in s]
        token = sk_f1(self.flat_gold, flat_pred, labels=self.labels, average="macro", zero_division=0)
        return {
            "entity_f1": 2 * p * r / (p + r) if p + r else 0.0,
            "token_macro_f1": float(token),
        }


METRIC_NOTES = {
    "entity_f1": "entity-level micro F1, seqeval default mode (conlleval-compatible): the headline",
    "entity_f1_strict": "entity-level micro F1, seqeval strict IOB2 mode",
    "token_macro_f1": "token-level macro F1 over BIO tags at word level (the thesis's metric)",
    "token_macro_f1_relaxed": "token-level macro F1 with B-/I- stripped (entity type per word)",
}


def _strip(tag: str) -> str:
    return tag[2:] if tag[:2] in ("B-", "I-") else tag


def _check(gold: list[list[str]], predicted: list[list[str]]) -> None:
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted sequences differ in number or length")
