"""heads.metrics on examples scored by hand (every expected number below was derived on paper)."""

from __future__ import annotations

from fractions import Fraction as F

import pytest

from heads.metrics import METRIC_NOTES, DevScorer, all_scores, entity_confusion, entity_scores, token_macro_f1

# Two tweets. The second opens with an I- span: an entity in conlleval's (seqeval's default)
# mode, nothing in strict IOB2 mode.
GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG", "O", "B-PER", "O"]]
PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["I-ORG", "O", "B-PER", "B-PER"]]


def close(value: object, expected: F) -> bool:
    return value == pytest.approx(float(expected), abs=1e-12)


def test_entity_scores_default_mode_by_hand() -> None:
    # gold entities: PER(0:0-1) LOC(0:3) ORG(1:0) PER(1:2)                 -> 4
    # predicted:     PER(0:0-1) ORG(0:3) ORG(1:0) PER(1:2) PER(1:3)        -> 5
    # correct:       PER(0:0-1) ORG(1:0) PER(1:2)                          -> 3
    # P = 3/5, R = 3/4, F1 = 2PR/(P+R) = (9/10)/(27/20) = 2/3
    scores = entity_scores(GOLD, PRED)
    assert close(scores["precision"], F(3, 5))
    assert close(scores["recall"], F(3, 4))
    assert close(scores["f1"], F(2, 3))
    per_type = scores["per_type"]
    assert set(per_type) == {"PER", "LOC", "ORG"}
    # PER: 2 gold, 3 predicted, 2 correct -> P 2/3, R 1, F1 4/5
    assert close(per_type["PER"]["precision"], F(2, 3)) and close(per_type["PER"]["recall"], F(1))
    assert close(per_type["PER"]["f1-score"], F(4, 5)) and per_type["PER"]["support"] == 2
    # LOC: 1 gold, none predicted -> 0 everywhere (zero_division=0)
    assert per_type["LOC"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1.0}
    # ORG: 1 gold (the I- opening), 2 predicted, 1 correct -> P 1/2, R 1, F1 2/3
    assert close(per_type["ORG"]["precision"], F(1, 2)) and close(per_type["ORG"]["recall"], F(1))
    assert close(per_type["ORG"]["f1-score"], F(2, 3)) and per_type["ORG"]["support"] == 1


def test_entity_scores_strict_mode_by_hand() -> None:
    # strict IOB2: the I-ORG openings are no entities, on either side
    # gold: PER(0:0-1) LOC(0:3) PER(1:2)                    -> 3
    # pred: PER(0:0-1) ORG(0:3) PER(1:2) PER(1:3)           -> 4
    # correct: PER(0:0-1) PER(1:2)                          -> 2
    # P = 1/2, R = 2/3, F1 = (2/3)/(7/6) = 4/7
    scores = entity_scores(GOLD, PRED, strict=True)
    assert close(scores["precision"], F(1, 2))
    assert close(scores["recall"], F(2, 3))
    assert close(scores["f1"], F(4, 7))
    per_type = scores["per_type"]
    assert close(per_type["PER"]["f1-score"], F(4, 5)) and per_type["PER"]["support"] == 2
    assert per_type["LOC"]["support"] == 1 and per_type["LOC"]["f1-score"] == 0.0
    # ORG: no gold entity left, one wrong prediction (B-ORG at 0:3)
    assert per_type["ORG"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0.0}


def test_span_opening_with_i_counts_in_default_mode_only() -> None:
    gold = [["I-PER", "I-PER", "O"]]
    same = entity_scores(gold, [["I-PER", "I-PER", "O"]])
    assert (same["precision"], same["recall"], same["f1"]) == (1.0, 1.0, 1.0)
    assert same["per_type"]["PER"]["support"] == 1
    # conlleval reads I-PER I-PER as the same PER(0-1) entity as B-PER I-PER
    assert entity_scores(gold, [["B-PER", "I-PER", "O"]])["f1"] == 1.0
    strict = entity_scores(gold, [["I-PER", "I-PER", "O"]], strict=True)
    assert (strict["precision"], strict["recall"], strict["f1"]) == (0.0, 0.0, 0.0)
    assert strict["per_type"] == {}
    # strict: the prediction B-PER I-PER is an entity the gold does not have -> P 0/1, R 0/0
    wrong = entity_scores(gold, [["B-PER", "I-PER", "O"]], strict=True)
    assert wrong["f1"] == 0.0 and wrong["per_type"]["PER"]["support"] == 0


def test_entity_boundaries_and_types_must_both_match() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]]
    # PER cut short, LOC right: 1 of 2 predicted right, 1 of 2 gold found
    scores = entity_scores(gold, [["B-PER", "O", "O", "B-LOC", "I-LOC"]])
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.5, 0.5, 0.5)
    # B-X I-Y: two entities in default mode (PER at 0, LOC at 1), neither is gold's PER(0-1)
    scores = entity_scores(gold, [["B-PER", "I-LOC", "O", "B-LOC", "I-LOC"]])
    assert close(scores["precision"], F(1, 3)) and close(scores["recall"], F(1, 2))


def test_token_macro_f1_by_hand() -> None:
    # flat gold: B-PER I-PER O B-LOC I-ORG O B-PER O
    # flat pred: B-PER I-PER O B-ORG I-ORG O B-PER B-PER
    # labels = the gold tags: B-LOC B-PER I-ORG I-PER O (B-ORG only predicted: not a label)
    #   B-LOC: 1 gold, 0 pred             -> F1 0
    #   B-PER: 2 gold, 3 pred, 2 right    -> F1 2*2/(2+3) = 4/5
    #   I-ORG: 1 gold, 1 pred, 1 right    -> 1
    #   I-PER: 1 gold, 1 pred, 1 right    -> 1
    #   O:     3 gold, 2 pred, 2 right    -> F1 2*2/(3+2) = 4/5
    # macro = (0 + 4/5 + 1 + 1 + 4/5) / 5 = 18/25
    assert close(token_macro_f1(GOLD, PRED), F(18, 25))
    # relaxed (B-/I- stripped): gold PER PER O LOC ORG O PER O, pred PER PER O ORG ORG O PER PER
    #   LOC: 1 gold, 0 pred               -> 0
    #   O:   3 gold, 2 pred, 2 right      -> 4/5
    #   ORG: 1 gold, 2 pred, 1 right      -> 2*1/(1+2) = 2/3
    #   PER: 3 gold, 4 pred, 3 right      -> 2*3/(3+4) = 6/7
    # macro = (0 + 4/5 + 2/3 + 6/7) / 4 = (244/105) / 4 = 61/105
    assert close(token_macro_f1(GOLD, PRED, relaxed=True), F(61, 105))


def test_relaxed_token_f1_forgives_the_position_only() -> None:
    gold = [["B-PER", "I-PER", "O"]]
    pred = [["B-PER", "B-PER", "O"]]
    # strict tags: B-PER 1 gold 2 pred 1 right -> 2/3; I-PER -> 0; O -> 1; macro (2/3 + 0 + 1)/3 = 5/9
    assert close(token_macro_f1(gold, pred), F(5, 9))
    assert token_macro_f1(gold, pred, relaxed=True) == 1.0
    # the wrong type is wrong either way: PER 2 gold 0 pred -> 0, O -> 1 (LOC is no gold label)
    assert token_macro_f1(gold, [["B-LOC", "I-LOC", "O"]], relaxed=True) == 0.5


@pytest.mark.parametrize(
    "gold, pred",
    [
        ([["O", "B-PER"]], [["O"]]),  # one sentence shorter
        ([["O"], ["O"]], [["O"]]),  # one sentence missing
        ([["O"]], [["O"], ["O"]]),  # one sentence too many
    ],
)
def test_length_mismatch_is_refused(gold: list[list[str]], pred: list[list[str]]) -> None:
    for score in (entity_scores, token_macro_f1, all_scores):
        with pytest.raises(ValueError, match="differ"):
            score(gold, pred)
    with pytest.raises(ValueError):
        entity_scores(gold, pred, strict=True)


def test_all_scores_names_every_metric_once() -> None:
    scores = all_scores(GOLD, PRED)
    assert set(scores) == {
        "entity_f1",
        "entity_precision",
        "entity_recall",
        "entity_per_type",
        "entity_f1_strict",
        "entity_precision_strict",
        "entity_recall_strict",
        "token_macro_f1",
        "token_macro_f1_relaxed",
        "entity_confusion",
    }
    assert close(scores["entity_f1"], F(2, 3)) and close(scores["entity_f1_strict"], F(4, 7))
    assert close(scores["entity_precision"], F(3, 5)) and close(scores["entity_recall"], F(3, 4))
    assert close(scores["entity_precision_strict"], F(1, 2))
    assert close(scores["entity_recall_strict"], F(2, 3))
    assert close(scores["token_macro_f1"], F(18, 25))
    assert close(scores["token_macro_f1_relaxed"], F(61, 105))
    assert scores["entity_per_type"] == entity_scores(GOLD, PRED)["per_type"]  # the default mode's rows
    assert set(METRIC_NOTES) <= set(scores)
    perfect = all_scores(GOLD, GOLD)
    assert all(
        perfect[k] == 1.0
        for k in scores
        if k not in ("entity_per_type", "entity_confusion") and "strict" not in k
    )
    assert perfect["entity_f1_strict"] == 1.0  # gold against itself agrees in strict mode too


def test_dev_scorer_agrees_with_seqeval_and_sklearn() -> None:
    import random

    from seqeval.metrics import f1_score

    rng = random.Random(0)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG", "B-ORG"]
    for _ in range(100):
        gold = [[rng.choice(tags) for _ in range(rng.randint(1, 8))] for _ in range(15)]
        pred = [[rng.choice(tags) for _ in seq] for seq in gold]
        fast = DevScorer(gold).scores(pred)
        assert fast["entity_f1"] == pytest.approx(f1_score(gold, pred, zero_division=0), abs=1e-12)
        assert fast["token_macro_f1"] == pytest.approx(token_macro_f1(gold, pred), abs=1e-12)
    assert DevScorer(GOLD).scores(PRED)["entity_f1"] == all_scores(GOLD, PRED)["entity_f1"]


def test_entity_scores_equal_seqeval_public_functions() -> None:
    """The one-pass counting returns seqeval's own numbers, in both modes, to the last bit."""
    import random
    import warnings

    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    rng = random.Random(1)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG", "B-ORG", "B-MISC"]
    for trial in range(60):
        gold = [[rng.choice(tags) for _ in range(rng.randint(1, 9))] for _ in range(12)]
        pred = [[rng.choice(tags) for _ in seq] for seq in gold]
        if trial % 10 == 0:
            pred = [list(seq) for seq in gold]
        for strict in (False, True):
            mode = {"mode": "strict", "scheme": IOB2} if strict else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report = classification_report(gold, pred, output_dict=True, zero_division=0, **mode)
                expected = (
                    precision_score(gold, pred, zero_division=0, **mode),
                    recall_score(gold, pred, zero_division=0, **mode),
                    f1_score(gold, pred, zero_division=0, **mode),
                )
            ours = entity_scores(gold, pred, strict=strict)
            assert (ours["precision"], ours["recall"], ours["f1"]) == expected
            assert ours["per_type"] == {
                name: {k: float(v) for k, v in row.items()}
                for name, row in report.items()
                if not name.endswith("avg")
            }


def test_entity_confusion_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-ORG", "I-ORG", "O", "O"], ["B-ORG", "B-MISC"]]
    assert entity_confusion(gold, pred) == {
        "PER": {"ORG": 1},  # same span, another type
        "LOC": {"missed": 1},
        "ORG": {"ORG": 1},
        "spurious": {"MISC": 1},
    }
    with pytest.raises(ValueError):
        entity_confusion(gold, pred[:1])
