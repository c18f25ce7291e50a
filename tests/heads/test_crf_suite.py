"""The CRFsuite baseline: its features, grid search on real T17 tweets, clusters, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from featurize.datasets import LoadOptions, load_dataset
from featurize.errors import ConfigError, IntegrityError
from heads.crf_suite import (
    CLUSTERS,
    CONFIG,
    MODEL,
    CrfSuiteConfig,
    CrfSuiteTagger,
    assign_clusters,
    fit_clusters,
    sentence_features,
    short_shape,
    token_features,
    word_shape,
)

TWEET = ["RT", "@user", ":", "Obama", "visits", "#tag", "http://t.co/x", "2017"]


def test_shapes() -> None:
    assert word_shape("Obama") == "Xxxxx"
    assert word_shape("Washington") == "Xxxxx"
    assert word_shape("McDonald") == "XxXxxxx"
    assert word_shape("2017") == "dddd"
    assert word_shape("@user") == "@xxxx"
    assert short_shape("Obama") == "Xx"
    assert short_shape("2017") == "d"
    assert short_shape("McDonald") == "XxXx"
    assert short_shape("http://t.co/x") == "x:/x.x/x"


def test_twitter_markers_and_case() -> None:
    rt, user, _, obama, _, tag, url, year = (token_features(TWEET, i) for i in range(len(TWEET)))
    assert rt["is_rt"] is True and rt["BOS"] is True and rt["-1:BOS"] is True and rt["is_upper"] is True
    assert user["is_mention"] is True and user["core"] == "user" and "is_hashtag" not in user
    assert tag["is_hashtag"] is True and tag["core"] == "tag" and tag["prefix1"] == "t"
    assert url["is_url"] is True and "is_title" not in url
    assert token_features(TWEET, 2)["is_punct"] is True
    assert obama["lower"] == "obama" and obama["is_title"] is True and obama["init_cap"] is True
    assert obama["shape"] == "Xxxxx" and obama["short_shape"] == "Xx"
    assert (obama["prefix1"], obama["prefix2"], obama["prefix3"]) == ("o", "ob", "oba")
    assert (obama["suffix1"], obama["suffix2"], obama["suffix3"]) == ("a", "ma", "ama")
    assert obama["len"] == "4-5"
    assert obama["-1:lower"] == ":" and obama["-2:lower"] == "@user" and obama["+1:lower"] == "visits"
    assert obama["+2:lower"] == "#tag" and "+2:is_title" not in obama
    assert obama["-1|0:lower"] == ":|obama"
    for flag in ("is_rt", "is_mention", "is_hashtag", "is_url", "is_punct", "is_digit", "BOS", "EOS"):
        assert flag not in obama
    assert year["is_digit"] is True and year["has_digit"] is True and year["EOS"] is True
    assert year["+1:EOS"] is True and "+2:lower" not in year
    assert not any(key.startswith("cluster") for key in obama)


def test_features_are_pure() -> None:
    words = list(TWEET)
    first = sentence_features(words)
    assert sentence_features(words) == first and words == TWEET
    assert token_features(["Obama"], 0)["EOS"] is True


@pytest.fixture(scope="module")
def t17(data_dir: Path) -> dict[str, tuple[list[list[str]], list[list[str]]]]:
    ds = load_dataset("t17", LoadOptions(data_dir=data_dir), ["train", "dev"])
    out = {}
    for split, n in (("train", 300), ("dev", 150)):
        examples = ds.splits[split].examples[:n]
        out[split] = ([e.words for e in examples], [e.labels for e in examples])
    return out


@pytest.fixture(scope="module")
def trained(t17: dict) -> tuple[CrfSuiteTagger, dict, list[dict]]:
    calls: list[dict] = []
    tagger = CrfSuiteTagger(CrfSuiteConfig(c1_grid=(0.1,), c2_grid=(0.01, 0.1), max_iterations=50))
    result = tagger.fit(*t17["train"], *t17["dev"], progress=calls.append)
    return tagger, result, calls


def test_grid_search_on_real_tweets(trained: tuple, t17: dict) -> None:
    from heads.metrics import entity_scores

    tagger, result, calls = trained
    assert [(row["c1"], row["c2"]) for row in result["grid"]] == [(0.1, 0.01), (0.1, 0.1)]
    assert calls == result["grid"]
    best = max(result["grid"], key=lambda row: row["dev_f1"])
    assert (result["c1"], result["c2"], result["dev_f1"]) == (best["c1"], best["c2"], best["dev_f1"])
    assert (tagger.c1, tagger.c2) == (result["c1"], result["c2"])
    words, gold = t17["dev"]
    predicted = tagger.predict(words)
    assert [len(p) for p in predicted] == [len(w) for w in words]
    # all-O scores 0; 300 training tweets already give a real tagger
    assert entity_scores(gold, predicted)["f1"] == pytest.approx(result["dev_f1"])
    assert result["dev_f1"] > 0.3
    assert {"O", "B-PER", "I-PER"} <= set(tagger.tags)
    assert tagger.predict([[]]) == [[]]


def test_grid_equals_sklearn_crfsuite_per_point(trained: tuple, t17: dict, tmp_path: Path) -> None:
    """The grid trains every (c1, c2) on one CRFsuite trainer; each point must be the model
    sklearn-crfsuite's own ``fit`` makes for it: the same dev scores and the chosen model's bytes."""
    import sklearn_crfsuite

    from heads.metrics import entity_scores

    tagger, result, _ = trained
    x_train, x_dev = tagger.features(t17["train"][0]), tagger.features(t17["dev"][0])
    for row in result["grid"]:
        path = tmp_path / f"{row['c1']}-{row['c2']}.crfsuite"
        crf = sklearn_crfsuite.CRF(
            algorithm="lbfgs",
            c1=row["c1"],
            c2=row["c2"],
            max_iterations=tagger.config.max_iterations,
            all_possible_transitions=True,
            model_filename=str(path),
        )
        crf.fit(x_train, [list(t) for t in t17["train"][1]])
        predicted = [list(crf.predict_single(x)) if x else [] for x in x_dev]
        assert entity_scores(t17["dev"][1], predicted)["f1"] == row["dev_f1"]
        if (row["c1"], row["c2"]) == (result["c1"], result["c2"]):
            assert path.read_bytes() == tagger._model_bytes


def test_save_load_same_predictions(trained: tuple, t17: dict, tmp_path: Path) -> None:
    tagger, _, _ = trained
    tagger.save(tmp_path / "crf")
    assert sorted(p.name for p in (tmp_path / "crf").iterdir()) == [CONFIG, MODEL]
    config = json.loads((tmp_path / "crf" / CONFIG).read_text())
    assert (config["c1"], config["c2"]) == (tagger.c1, tagger.c2)
    assert config["features"]["window"] == 2 and config["features"]["clusters"] == []
    loaded = CrfSuiteTagger.load(tmp_path / "crf")
    words = t17["dev"][0]
    assert loaded.predict(words) == tagger.predict(words)
    assert (loaded.c1, loaded.c2, loaded.tags) == (tagger.c1, tagger.c2, tagger.tags)
    assert loaded.config.window == tagger.config.window
    # a loaded model saves the same bytes again
    loaded.save(tmp_path / "again")
    assert (tmp_path / "again" / MODEL).read_bytes() == (tmp_path / "crf" / MODEL).read_bytes()


def _random_vectors(words: list[list[str]], dim: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((len(w), dim)).astype(np.float32) for w in words]


def test_cluster_features(t17: dict, tmp_path: Path) -> None:
    train_words, train_tags = (x[:80] for x in t17["train"])
    dev_words, dev_tags = (x[:40] for x in t17["dev"])
    train_vec, dev_vec = _random_vectors(train_words, 8, 0), _random_vectors(dev_words, 8, 1)
    config = CrfSuiteConfig(c1_grid=(0.1,), c2_grid=(0.05,), max_iterations=20, clusters=(5, 12))
    tagger = CrfSuiteTagger(config)
    result = tagger.fit(train_words, train_tags, dev_words, dev_tags, train_vec, dev_vec)
    assert len(result["grid"]) == 1
    assert {k: c.shape for k, c in tagger.centres.items()} == {5: (5, 8), 12: (12, 8)}

    feats = tagger.features(dev_words[:1], dev_vec[:1])[0]
    ids = assign_clusters(dev_vec[0], tagger.centres[12])
    assert feats[0]["cluster12"] == str(ids[0]) and feats[0]["+1:cluster12"] == str(ids[1])
    assert feats[1]["-1:cluster12"] == str(ids[0]) and "cluster5" in feats[1]
    assert "+2:cluster5" not in feats[0]  # cluster_window defaults to 1

    predicted = tagger.predict(dev_words, dev_vec)
    tagger.save(tmp_path / "crf")
    assert (tmp_path / "crf" / CLUSTERS).is_file()
    loaded = CrfSuiteTagger.load(tmp_path / "crf")
    assert loaded.config.clusters == (5, 12)
    np.testing.assert_array_equal(loaded.centres[12], tagger.centres[12])
    assert loaded.predict(dev_words, dev_vec) == predicted

    with pytest.raises(ConfigError, match="pass word vectors"):
        loaded.predict(dev_words)
    with pytest.raises(ConfigError, match="16-d"):
        loaded.predict(dev_words[:1], _random_vectors(dev_words[:1], 16, 2))
    with pytest.raises(ValueError, match="sentence 0"):
        loaded.predict(dev_words[:1], [np.zeros((len(dev_words[0]) + 1, 8), dtype=np.float32)])
    (tmp_path / "crf" / CLUSTERS).unlink()
    with pytest.raises(ConfigError, match=CLUSTERS):
        CrfSuiteTagger.load(tmp_path / "crf")


def test_assign_clusters_matches_kmeans() -> None:
    from sklearn.cluster import KMeans

    data = np.random.default_rng(0).standard_normal((300, 6)).astype(np.float32)
    kmeans = KMeans(n_clusters=7, random_state=0, n_init=1).fit(data)
    ids = assign_clusters(data, kmeans.cluster_centers_.astype(np.float32), chunk=50)
    np.testing.assert_array_equal(ids, kmeans.labels_)


def test_clusters_are_seeded() -> None:
    vectors = [np.random.default_rng(n).standard_normal((20, 4)).astype(np.float32) for n in range(5)]
    first, again = fit_clusters(vectors, (3, 6), seed=0), fit_clusters(vectors, (3, 6), seed=0)
    for k in (3, 6):
        np.testing.assert_array_equal(first[k], again[k])
    with pytest.raises(ConfigError, match="only 100 training word vectors"):
        fit_clusters(vectors, (101,))


def test_load_refuses_broken_folders(trained: tuple, tmp_path: Path) -> None:
    tagger, _, _ = trained
    folder = tagger.save(tmp_path / "crf")
    config = folder / CONFIG
    text = config.read_text()

    config.unlink()
    with pytest.raises(ConfigError, match=f"{CONFIG} is missing"):
        CrfSuiteTagger.load(folder)

    config.write_text(text[: len(text) // 2])
    with pytest.raises(ConfigError, match=f"{CONFIG}: not valid JSON"):
        CrfSuiteTagger.load(folder)

    config.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match=f"{CONFIG}: not a mner-crfsuite config"):
        CrfSuiteTagger.load(folder)

    broken = json.loads(text)
    del broken["features"]
    config.write_text(json.dumps(broken))
    with pytest.raises(ConfigError, match=f"{CONFIG}: incomplete"):
        CrfSuiteTagger.load(folder)

    config.write_text(text)
    (folder / MODEL).write_bytes(b"not a model")
    with pytest.raises(IntegrityError, match=f"{MODEL} is damaged .its sha256 differs"):
        CrfSuiteTagger.load(folder)  # the config records the model's sha256
    unrecorded = json.loads(text)
    del unrecorded["checksums"]  # as saved before checksums: CRFsuite itself refuses it
    config.write_text(json.dumps(unrecorded))
    with pytest.raises(ConfigError, match=f"{MODEL}: not a CRFsuite model"):
        CrfSuiteTagger.load(folder)
    (folder / MODEL).unlink()
    with pytest.raises(ConfigError, match=f"{MODEL} is missing"):
        CrfSuiteTagger.load(folder)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        CrfSuiteConfig(c1_grid=())
    with pytest.raises(ConfigError, match="cluster sizes"):
        CrfSuiteConfig(clusters=(100, 100))
    with pytest.raises(ConfigError, match="has not been trained"):
        CrfSuiteTagger().predict([["a"]])
    with pytest.raises(ValueError, match="train sentence 0"):
        CrfSuiteTagger().fit([["a", "b"]], [["O"]], [["a"]], [["O"]])
