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


def probe_report(
    dataset: str,
    texts: list[str],
    poolings: list[str],
    layer_choices: list[str],
    weights_format: str,
    data_dir: object,
    cache_root: object,
    command: str,
) -> object:
    """``bench probe``: featurize (through the cache) each encoder x layers x pooling and probe
    it train -> dev; returns the report (heads.report_table.Report)."""
    from pathlib import Path

    from rich.console import Console

    from featurize.cache.store import FeatureStore
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as run_pipeline
    from featurize.text.transformer import WordFeatureOptions
    from heads.report_table import Report

    loaded = load_dataset(dataset, LoadOptions(data_dir=data_dir), ["train", "dev"])  # type: ignore[arg-type]
    store = FeatureStore(Path(cache_root))  # type: ignore[arg-type]
    report = Report(
        f"Linear probe of word features on {dataset} (train -> dev)",
        ["encoder", "weights", "layers", "pooling", "dev entity F1", "dev token macro F1"],
        command=command,
    )
    for name in texts:
        for layer_choice in layer_choices:
            for pool in poolings:
                options = WordFeatureOptions(layers=layer_choice, pooling=pool, weights_format=weights_format)
                paths = run_pipeline(
                    loaded, RunPlan(text=[name], word_options=options), store, Console(stderr=True)
                )
                train, dev = (TextFeatures.load(p) for p in paths[f"text:{name}"])
                scores = probe(train, dev)
                report.rows.append(
                    {
                        "encoder": name,
                        "weights": weights_format,
                        "layers": layer_choice,
                        "pooling": pool,
                        "dev entity F1": round(100 * scores["entity_f1"], 2),
                        "dev token macro F1": round(100 * scores["token_macro_f1"], 2),
                    }
                )
    report.notes.append(
        "Logistic regression on standardised word vectors; seqeval entity F1 (conlleval mode)."
    )
    return report
