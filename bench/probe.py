"""A linear probe of cached word features: how much entity information each choice keeps.

Used to pick defaults (which subword stands for a word, which layers) by measurement rather
than by habit: a logistic regression per word on the train split, scored on dev with the
toolkit's metrics. It is not a tagger anyone should use; heads are.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from featurize.cache.text_features import TextFeatures
from heads.metrics import entity_scores, token_macro_f1


def probe(train: TextFeatures, dev: TextFeatures, seed: int = 0) -> dict[str, float]:
    names = sorted(set(train.label_names) | set(dev.label_names))
    to_train = np.array([names.index(train.label_names[c]) for c in train.labels])
    model = LogisticRegression(max_iter=300, C=1.0, random_state=seed)
    mean, std = train.features.mean(0), train.features.std(0) + 1e-6
    model.fit((train.features - mean) / std, to_train)
    predicted = model.predict((dev.features - mean) / std)
    gold_seqs, pred_seqs = [], []
    for i in range(len(dev)):
        start, end = dev.offsets[i], dev.offsets[i + 1]
        gold_seqs.append([dev.label_names[c] for c in dev.labels[start:end]])
        pred_seqs.append([names[c] for c in predicted[start:end]])
    return {
        "entity_f1": entity_scores(gold_seqs, pred_seqs)["f1"],
        "token_macro_f1": token_macro_f1(gold_seqs, pred_seqs),
    }
