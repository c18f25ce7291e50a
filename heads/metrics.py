"""The scores every MNER paper and the thesis report, computed one way for the whole toolkit.

- Entity-level micro P/R/F1 with seqeval's default (conlleval-compatible) mode: the headline.
  A span opening with I- counts as an entity, as conlleval counts it.
- Token-level macro F1 over the BIO tags, word by word: the thesis's metric.
"""

from __future__ import annotations

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from sklearn.metrics import f1_score as sk_f1


def entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, object]:
    _check(gold, predicted)
    per_type = classification_report(gold, predicted, output_dict=True, zero_division=0)
    return {
        "precision": float(precision_score(gold, predicted, zero_division=0)),
        "recall": float(recall_score(gold, predicted, zero_division=0)),
        "f1": float(f1_score(gold, predicted, zero_division=0)),
        "per_type": {
            name: {k: float(v) for k, v in row.items()}
            for name, row in per_type.items()
            if not name.endswith("avg")
        },
    }


def token_macro_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """Macro F1 over the BIO tags present in the gold labels (O included, as in the thesis)."""
    _check(gold, predicted)
    flat_gold = [t for s in gold for t in s]
    flat_pred = [t for s in predicted for t in s]
    labels = sorted(set(flat_gold))
    return float(sk_f1(flat_gold, flat_pred, labels=labels, average="macro", zero_division=0))


def _check(gold: list[list[str]], predicted: list[list[str]]) -> None:
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted sequences differ in number or length")
