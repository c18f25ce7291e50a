"""The classic baseline: a linear-chain CRF (CRFsuite) over hand-made word features.

It needs no encoder and no cache, trains in about a minute on a laptop CPU, and is the floor
every learned head has to clear: a head that does not beat a feature CRF learned nothing the
spelling of the words did not already give away. Optionally, cluster ids of cached word
vectors (KMeans, the Brown-cluster trick with modern embeddings) are added as features, which
tells how much of an encoder's value survives being squashed into a few hundred word classes.

c1 (L1) and c2 (L2) are chosen on the validation split by entity micro F1 (seqeval default
mode, :func:`heads.metrics.entity_scores`), the number every MNER paper reports; the model of
the best grid point is kept, trained on the training split only.

On disk a model is ``model.crfsuite`` (CRFsuite's own format, read by ``pycrfsuite.Tagger``),
``config.json`` (c1/c2, feature options, the tag set) and, with cluster features,
``clusters.safetensors`` (the KMeans centres); nothing is pickled. Cluster ids are always
assigned by the same numpy nearest-centre rule, in training as after loading, so a loaded
model sees exactly the features it was trained on.
"""

from __future__ import annotations

import json
import math
import string
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from featurize.atomic import atomic_write
from featurize.errors import ConfigError
from featurize.integrity import verify_config, verify_files, with_checksums
from heads.config_file import read_versioned_json

FORMAT = "mner-crfsuite"
FORMAT_VERSION = 1
MODEL, CONFIG, CLUSTERS = "model.crfsuite", "config.json", "clusters.safetensors"

Features = dict[str, "str | float | bool"]
Progress = Callable[[dict[str, float]], None]


@dataclass
class CrfSuiteConfig:
    """Grid, training length and feature options; everything but the grid is saved with the model."""

    c1_grid: tuple[float, ...] = (0.05, 0.1, 0.2)
    c2_grid: tuple[float, ...] = (0.01, 0.05, 0.1)
    max_iterations: int = 100
    clusters: tuple[int, ...] = ()  # KMeans sizes over word vectors, e.g. (100, 500); () for none
    seed: int = 0
    window: int = 2  # neighbours at -window..+window contribute their lower form and case flags
    cluster_window: int = 1  # neighbours whose cluster ids are features too
    kmeans_n_init: int = 1
    kmeans_max_iter: int = 100

    def __post_init__(self) -> None:
        self.c1_grid = tuple(float(c) for c in self.c1_grid)
        self.c2_grid = tuple(float(c) for c in self.c2_grid)
        self.clusters = tuple(int(k) for k in self.clusters)
        if not self.c1_grid or not self.c2_grid:
            raise ConfigError("the c1 and c2 grids must each hold at least one value")
        if any(c < 0 or not math.isfinite(c) for c in self.c1_grid + self.c2_grid):
            raise ConfigError(f"c1/c2 must be finite and >= 0, got {self.c1_grid} and {self.c2_grid}")
        if self.max_iterations < 1:
            raise ConfigError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if any(k < 2 for k in self.clusters) or len(set(self.clusters)) != len(self.clusters):
            raise ConfigError(f"cluster sizes must be distinct and >= 2, got {self.clusters}")
        if self.window < 0 or self.cluster_window < 0:
            raise ConfigError("window and cluster_window must be >= 0")


# --------------------------------------------------------------------------- word features

_PUNCT = set(string.punctuation) | {"…", "“", "”", "‘", "’", "«", "»", "–", "—"}


def word_shape(word: str, cap: int = 4) -> str:
    """Capital/lower/digit pattern with runs cut at ``cap`` ("Washington" -> "Xxxxx", "2017" -> "dddd"),
    so long words of one pattern share a feature while "McDonald" still differs from "Mcdonald"."""
    out: list[str] = []
    run = 0
    for ch in word:
        c = "X" if ch.isupper() else "x" if ch.islower() else "d" if ch.isdigit() else ch
        run = run + 1 if out and out[-1] == c else 1
        if run <= cap:
            out.append(c)
    return "".join(out)


def short_shape(word: str) -> str:
    """Shape with every run collapsed ("Obama" -> "Xx", "2017" -> "d"): the coarse class that
    generalises to words never seen in training, which on Twitter are most of the names."""
    shape = word_shape(word, cap=1)
    return "".join(c for i, c in enumerate(shape) if i == 0 or c != shape[i - 1])


def _is_punct(word: str) -> bool:
    return bool(word) and all(ch in _PUNCT or unicodedata.category(ch).startswith("P") for ch in word)


def _is_url(lower: str) -> bool:
    # T15 keeps cut-off links ("http://t.co…", a bare "https"), so a prefix is all there is
    return lower.startswith(("http", "www."))


def _length_bucket(n: int) -> str:
    return (
        "1"
        if n <= 1
        else "2"
        if n == 2
        else "3"
        if n == 3
        else "4-5"
        if n <= 5
        else "6-8"
        if n <= 8
        else "9+"
    )


def _case_flags(word: str, prefix: str) -> Features:
    """Case of a neighbour: on Twitter a capitalised word after another capitalised word is
    a much stronger name cue than either alone, since many tweets capitalise at random."""
    out: Features = {}
    if word[:1].isupper():
        out[prefix + "init_cap"] = True
    if word.istitle():
        out[prefix + "is_title"] = True
    if word.isupper():
        out[prefix + "is_upper"] = True
    return out


def token_features(words: Sequence[str], i: int, window: int = 2) -> Features:
    """Features of ``words[i]`` in its tweet.

    Tweets are short, noisy and full of names never seen in training, so the features lean
    on spelling that generalises (shape, affixes, case) rather than on the word identity, and
    mark Twitter's own tokens (mentions, hashtags, URLs, "RT"), which are rarely entities in
    T17 (where "@"/"#" are split off) but often are in T15 (where "#Hopkins" is one token).
    Neighbours contribute their lower form and case, because case is only informative
    relative to the tweet around it. Only true flags are emitted: CRFsuite gives a false
    flag weight 0 anyway, and leaving it out keeps the model small. Pure: the same words
    give the same features, in training, validation and after loading.
    """
    word = words[i]
    lower = word.lower()
    core = lower.lstrip("#@") or lower
    f: Features = {
        "bias": 1.0,
        "lower": lower,
        "shape": word_shape(word),
        "short_shape": short_shape(word),
        "len": _length_bucket(len(word)),
    }
    for n in (1, 2, 3):
        if len(core) >= n:
            f[f"prefix{n}"] = core[:n]
            f[f"suffix{n}"] = core[-n:]
    f.update(_case_flags(word, ""))
    if word.isdigit():
        f["is_digit"] = True
    if any(ch.isdigit() for ch in word):
        f["has_digit"] = True
    if "-" in word:
        f["has_hyphen"] = True
    if word.startswith("@"):
        f["is_mention"] = True
    if word.startswith("#"):
        f["is_hashtag"] = True
    if word[:1] in "#@" and len(word) > 1:
        f["core"] = core
        f.update(_case_flags(word[1:], "core_"))
    if _is_url(lower):
        f["is_url"] = True
    if word == "RT":
        f["is_rt"] = True
    if _is_punct(word):
        f["is_punct"] = True
    if i == 0:
        f["BOS"] = True
    if i == len(words) - 1:
        f["EOS"] = True
    for d in range(-window, window + 1):
        j = i + d
        if d == 0:
            continue
        p = f"{d:+d}:"
        if 0 <= j < len(words):
            other = words[j]
            f[p + "lower"] = other.lower()
            f[p + "short_shape"] = short_shape(other)
            f.update(_case_flags(other, p))
        elif j == -1:
            f[p + "BOS"] = True
        elif j == len(words):
            f[p + "EOS"] = True
    if 0 < i:
        f["-1|0:lower"] = f"{words[i - 1].lower()}|{lower}"
    if i + 1 < len(words):
        f["0|+1:lower"] = f"{lower}|{words[i + 1].lower()}"
    return f


def sentence_features(
    words: Sequence[str],
    window: int = 2,
    cluster_ids: dict[int, np.ndarray] | None = None,
    cluster_window: int = 1,
) -> list[Features]:
    """Features of every word; ``cluster_ids`` maps a KMeans size to one id per word."""
    feats = [token_features(words, i, window) for i in range(len(words))]
    for k, ids in (cluster_ids or {}).items():
        if len(ids) != len(words):
            raise ValueError(f"{len(ids)} cluster ids for {len(words)} words")
        for i, f in enumerate(feats):
            for d in range(-cluster_window, cluster_window + 1):
                j = i + d
                if 0 <= j < len(words):
                    f[("" if d == 0 else f"{d:+d}:") + f"cluster{k}"] = str(int(ids[j]))
    return feats


# --------------------------------------------------------------------------- cluster ids


def fit_clusters(
    vectors: Sequence[np.ndarray], sizes: Sequence[int], seed: int = 0, **kmeans: int
) -> dict[int, np.ndarray]:
    """KMeans centres (float32, ``(k, dim)``) for each size, fitted on every training word vector.

    Only the centres are kept: ids are then assigned by :func:`assign_clusters` in numpy, the
    same way before and after saving, so no fitted sklearn object has to be stored.
    """
    from sklearn.cluster import KMeans

    data = _stack(vectors, "train_vectors")
    centres: dict[int, np.ndarray] = {}
    for k in sizes:
        if k > len(data):
            raise ConfigError(f"{k} clusters asked for but only {len(data)} training word vectors given")
        model = KMeans(
            n_clusters=k,
            random_state=seed,
            n_init=kmeans.get("n_init", 1),
            max_iter=kmeans.get("max_iter", 100),
        )
        model.fit(data)
        centres[int(k)] = np.ascontiguousarray(model.cluster_centers_, dtype=np.float32)
    return centres


def assign_clusters(vectors: np.ndarray, centres: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean distance, float64) for each row."""
    return NearestCentre(centres)(vectors, chunk)


class NearestCentre:
    """:func:`assign_clusters` with the centres converted once: the CRF assigns ids one sentence
    at a time, and converting 500 x 768 centres to float64 for each sentence took six times
    as long as the distances (the ids are the same: the same float64 arithmetic per sentence)."""

    def __init__(self, centres: np.ndarray) -> None:
        self.centres = np.asarray(centres, dtype=np.float64)
        self.squared = (self.centres * self.centres).sum(axis=1)

    def __call__(self, vectors: np.ndarray, chunk: int = 8192) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float64)
        out = np.empty(len(x), dtype=np.int64)
        for start in range(0, len(x), chunk):
            block = x[start : start + chunk]
            dist = (block * block).sum(axis=1, keepdims=True) - 2.0 * block @ self.centres.T
            out[start : start + chunk] = (dist + self.squared[None, :]).argmin(axis=1)
        return out


def _stack(vectors: Sequence[np.ndarray], name: str) -> np.ndarray:
    arrays = [np.asarray(v, dtype=np.float32) for v in vectors]
    if not arrays or any(a.ndim != 2 for a in arrays) or len({a.shape[1] for a in arrays}) != 1:
        raise ValueError(f"{name}: expected a non-empty list of (n_words, dim) arrays of one dim")
    return np.concatenate(arrays, axis=0)


# --------------------------------------------------------------------------- the tagger


@dataclass
class CrfSuiteTagger:
    """CRFsuite tagger over :func:`token_features` (and cluster ids when ``config.clusters``)."""

    config: CrfSuiteConfig = field(default_factory=CrfSuiteConfig)
    c1: float | None = None
    c2: float | None = None
    tags: list[str] = field(default_factory=list)
    centres: dict[int, np.ndarray] = field(default_factory=dict)
    _model_bytes: bytes | None = field(default=None, init=False, repr=False)
    _crf: object | None = field(default=None, init=False, repr=False)

    # -- features

    def features(
        self, words: list[list[str]], vectors: Sequence[np.ndarray] | None = None
    ) -> list[list[Features]]:
        """Feature dicts for every sentence, with cluster ids when the model uses them."""
        if self.config.clusters:
            if vectors is None:
                raise ConfigError(
                    f"this CRF uses cluster features ({', '.join(map(str, self.config.clusters))}): pass word vectors"
                )
            if len(vectors) != len(words):
                raise ValueError(f"{len(vectors)} vector arrays for {len(words)} sentences")
        nearest = {k: NearestCentre(self.centres[k]) for k in self.config.clusters}
        out = []
        for n, sentence in enumerate(words):
            ids = None
            if self.config.clusters:
                v = np.asarray(vectors[n])  # type: ignore[index]
                if v.ndim != 2 or len(v) != len(sentence):
                    raise ValueError(f"sentence {n}: vectors of shape {v.shape} for {len(sentence)} words")
                ids = {}
                for k in self.config.clusters:
                    c = self.centres[k]
                    if v.shape[1] != c.shape[1]:
                        raise ConfigError(
                            f"word vectors are {v.shape[1]}-d, the clusters were fitted on {c.shape[1]}-d"
                        )
                    ids[k] = nearest[k](v) if len(v) else np.zeros(0, dtype=np.int64)
            out.append(sentence_features(sentence, self.config.window, ids, self.config.cluster_window))
        return out

    # -- training

    def fit(
        self,
        train_words: list[list[str]],
        train_tags: list[list[str]],
        dev_words: list[list[str]],
        dev_tags: list[list[str]],
        train_vectors: Sequence[np.ndarray] | None = None,
        dev_vectors: Sequence[np.ndarray] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, object]:
        """Train one model per (c1, c2) of the grid, keep the best on dev entity micro F1.

        Returns ``{"c1", "c2", "dev_f1", "grid": [{"c1", "c2", "dev_f1"}, ...]}``; ties go to
        the earlier grid point (c1 outer, c2 inner). ``progress`` is called after each grid
        point with that point's row.
        """
        import pycrfsuite

        from heads.metrics import entity_scores

        _check_aligned(train_words, train_tags, "train")
        _check_aligned(dev_words, dev_tags, "dev")
        if self.config.clusters:
            if train_vectors is None or dev_vectors is None:
                raise ConfigError("cluster features need train_vectors and dev_vectors")
            self.centres = fit_clusters(
                train_vectors,
                self.config.clusters,
                seed=self.config.seed,
                n_init=self.config.kmeans_n_init,
                max_iter=self.config.kmeans_max_iter,
            )
        # One CRFsuite trainer holds the training sequences for the whole c1/c2 grid, and the dev
        # sequences are converted once: sklearn-crfsuite's ``fit`` builds a trainer and converts
        # every feature dict again for each grid point. The models are the same to the byte
        # (tests/heads/test_crf_suite.py trains each grid point through sklearn-crfsuite too).
        trainer = pycrfsuite.Trainer(
            algorithm="lbfgs",
            params={"feature.possible_transitions": True, "max_iterations": self.config.max_iterations},
            verbose=False,
        )
        for x, y in zip(self.features(train_words, train_vectors), train_tags):
            trainer.append(pycrfsuite.ItemSequence(x), list(y))
        x_dev = [pycrfsuite.ItemSequence(x) for x in self.features(dev_words, dev_vectors)]
        gold = [list(t) for t in dev_tags]

        grid: list[dict[str, float]] = []
        best: tuple[float, float, float, bytes] | None = None
        with tempfile.TemporaryDirectory(prefix="crfsuite-grid-") as tmp:
            for c1 in self.config.c1_grid:
                for c2 in self.config.c2_grid:
                    path = Path(tmp) / f"c1={c1}_c2={c2}.crfsuite"
                    trainer.set_params({"c1": c1, "c2": c2})
                    trainer.train(str(path), holdout=-1)
                    tagger = pycrfsuite.Tagger()
                    tagger.open(str(path))
                    predicted = [list(tagger.tag(x)) if len(x) else [] for x in x_dev]
                    tagger.close()
                    score = float(entity_scores(gold, predicted)["f1"])
                    row = {"c1": c1, "c2": c2, "dev_f1": score}
                    grid.append(row)
                    if best is None or score > best[2]:
                        best = (c1, c2, score, path.read_bytes())
                    if progress is not None:
                        progress(row)
        assert best is not None
        self.c1, self.c2 = best[0], best[1]
        self._open(best[3], None)
        return {"c1": self.c1, "c2": self.c2, "dev_f1": best[2], "grid": grid}

    def _open(self, model: bytes, path: Path | None) -> None:
        """Open the CRFsuite model; CRFsuite reads the whole file into memory, so the bytes are
        kept for :meth:`save` and no temporary file has to outlive this call."""
        import sklearn_crfsuite

        with tempfile.TemporaryDirectory(prefix="crfsuite-") as tmp:
            file = path if path is not None else Path(tmp) / MODEL
            if path is None:
                file.write_bytes(model)
            crf = sklearn_crfsuite.CRF(model_filename=str(file))
            try:
                tagger = crf.tagger_
            except Exception as err:  # pycrfsuite raises ValueError/OSError with no file name
                raise ConfigError(f"{file}: not a CRFsuite model ({err})") from None
            self.tags = list(tagger.labels())
        self._model_bytes = model
        self._crf = crf

    # -- prediction

    def predict(self, words: list[list[str]], vectors: Sequence[np.ndarray] | None = None) -> list[list[str]]:
        """BIO tags for each sentence (an empty sentence gets an empty list)."""
        if self._crf is None:
            raise ConfigError("this CRF has not been trained or loaded")
        x = self.features(words, vectors)
        return [list(self._crf.predict_single(s)) if s else [] for s in x]  # type: ignore[attr-defined]

    def marginals(
        self, words: list[list[str]], vectors: Sequence[np.ndarray] | None = None
    ) -> list[list[dict[str, float]]]:
        """Per word, the probability of every tag (CRFsuite's forward-backward)."""
        if self._crf is None:
            raise ConfigError("this CRF has not been trained or loaded")
        x = self.features(words, vectors)
        return [list(self._crf.predict_marginals_single(s)) if s else [] for s in x]  # type: ignore[attr-defined]

    # -- disk

    def save(self, folder: Path) -> Path:
        """Write ``model.crfsuite``, ``config.json`` and (with clusters) ``clusters.safetensors``."""
        from safetensors.numpy import save_file

        if self._model_bytes is None:
            raise ConfigError("this CRF has not been trained or loaded: nothing to save")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "c1": self.c1,
            "c2": self.c2,
            "tags": self.tags,
            "features": {k: v for k, v in asdict(self.config).items() if k not in ("c1_grid", "c2_grid")},
            "grid": {"c1": list(self.config.c1_grid), "c2": list(self.config.c2_grid)},
        }
        writers: list[tuple[str, Callable[[Path], None]]] = [
            (MODEL, lambda p: p.write_bytes(self._model_bytes or b"")),
        ]
        if self.centres:
            tensors = {str(k): np.ascontiguousarray(c, dtype=np.float32) for k, c in self.centres.items()}
            writers.append((CLUSTERS, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT})))
        for name, write in writers:  # through temporary names, so a crash leaves no half model
            atomic_write(folder / name, write)
        # Last: the sha256 of the files above and of itself (featurize.integrity).
        full = with_checksums(folder, config, [name for name, _ in writers])
        atomic_write(folder / CONFIG, lambda p: p.write_text(json.dumps(full, indent=1), encoding="utf-8"))
        return folder

    @classmethod
    def load(cls, folder: Path) -> CrfSuiteTagger:
        """Rebuild a saved tagger; every problem is a :class:`ConfigError` naming the file, or an
        :class:`~featurize.errors.IntegrityError` when a file differs from the sha256 its config
        records (checked before CRFsuite parses the model; a tagger saved before checksums
        records none and is read as before)."""
        folder = Path(folder)
        path = folder / CONFIG
        raw = read_versioned_json(path, FORMAT, FORMAT_VERSION, "a saved CRFsuite tagger")
        try:
            grid = raw.get("grid") or {}
            config = CrfSuiteConfig(
                c1_grid=tuple(grid.get("c1") or (raw["c1"],)),
                c2_grid=tuple(grid.get("c2") or (raw["c2"],)),
                **raw["features"],
            )
            c1, c2 = float(raw["c1"]), float(raw["c2"])
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: incomplete or wrong config ({type(err).__name__}: {err})") from None
        verify_config(raw, path)
        model_path = folder / MODEL
        if not model_path.is_file():
            raise ConfigError(f"{folder}: {MODEL} is missing")
        tagger = cls(config=config, c1=c1, c2=c2)
        if config.clusters:
            tagger.centres = _load_centres(folder / CLUSTERS, config.clusters)
        verify_files(folder, raw)  # every file its save recorded
        tagger._open(model_path.read_bytes(), model_path)
        return tagger


def _load_centres(path: Path, sizes: tuple[int, ...]) -> dict[int, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.is_file():
        raise ConfigError(f"{path} is missing (the config lists cluster features {sizes})")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ConfigError(f"{path}: not a safetensors file ({err})") from None
    centres = {}
    for k in sizes:
        c = tensors.get(str(k))
        if c is None or c.ndim != 2 or c.shape[0] != k:
            raise ConfigError(f"{path}: no ({k}, dim) centres for the {k}-cluster feature")
        centres[k] = c.astype(np.float32)
    return centres


def _check_aligned(words: list[list[str]], tags: list[list[str]], name: str) -> None:
    if len(words) != len(tags):
        raise ValueError(f"{name}: {len(words)} sentences but {len(tags)} tag sequences")
    for n, (w, t) in enumerate(zip(words, tags)):
        if len(w) != len(t):
            raise ValueError(f"{name} sentence {n}: {len(w)} words but {len(t)} tags")
