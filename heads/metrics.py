"""The scores every MNER paper and the thesis report, computed one way for the whole toolkit.

- Entity-level micro P/R/F1 with seqeval's default (conlleval-compatible) mode: the headline.
  A span opening with I- counts as an entity, as conlleval counts it.
- Entity-level micro P/R/F1 in seqeval's strict IOB2 mode: an I- that opens a span is not an
  entity there, so a model that writes such spans is scored lower than by conlleval.
- Token-level macro F1 over the BIO tags, word by word: the thesis's metric ("token macro F1").
- The same with B-/I- stripped ("relaxed token macro F1": one class per entity type, plus O).
"""

from __future__ import annotations

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2
from sklearn.metrics import f1_score as sk_f1


def entity_scores(
    gold: list[list[str]], predicted: list[list[str]], strict: bool = False
) -> dict[str, object]:
    """Micro P/R/F1 and per-type rows; ``strict`` uses seqeval's IOB2 scheme mode."""
    _check(gold, predicted)
    mode = {"mode": "strict", "scheme": IOB2} if strict else {}
    per_type = classification_report(gold, predicted, output_dict=True, zero_division=0, **mode)
    return {
        "precision": float(precision_score(gold, predicted, zero_division=0, **mode)),
        "recall": float(recall_score(gold, predicted, zero_division=0, **mode)),
        "f1": float(f1_score(gold, predicted, zero_division=0, **mode)),
        "per_type": {
            name: {k: float(v) for k, v in row.items()}
            for name, row in per_type.items()
            if not name.endswith("avg")
        },
    }


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
