"""Every head end to end on a small real subset of Twitter-2017: it learns, it is deterministic,
it saves and loads to identical predictions, mismatched checkpoints are refused, and the
``heads`` command line trains, evaluates and fails with one clear line.

The subset (tests/heads_data.py) is featurized once per session with the real MiniLM, the
EfficientNet CNN and the ImageNet label words; that and the training make this module slow.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from heads_data import DATASET, Mini

import heads.cli
import heads.models  # noqa: F401  (registers the heads)
from featurize.cache.store import FeatureStore
from featurize.cache.text_features import TextFeatures
from featurize.errors import ConfigError
from heads import checkpoint
from heads.data import Batcher, load_split
from heads.experiment import RunSpec, evaluate_saved, prepare, run
from heads.inputs import EntryIndex, InputSpec
from heads.tagger import HEADS
from heads.train_config import TrainConfig
from heads.trainer import TIMING_KEYS, CachedFeatures, fit
from heads.trainer import predict_tags as predict

pytestmark = pytest.mark.slow

METRICS = {"entity_f1", "entity_f1_strict", "token_macro_f1", "token_macro_f1_relaxed"}


@pytest.fixture(autouse=True)
def _torch_threads():
    """Training sets torch's process-wide thread count; give the next module what it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def config(epochs: int, **kwargs: object) -> TrainConfig:
    options: dict[str, object] = {"patience": 100, "seed": 0, "threads": 1} | kwargs
    return TrainConfig(epochs=epochs, **options)  # type: ignore[arg-type]


def test_subset_cache_holds_every_input(mini: Mini) -> None:
    assert mini.counts == {"train.txt": 260, "valid.txt": 102, "test.txt": 102}  # 250/100/100 + photos
    index = EntryIndex(mini.cache)
    kinds = {
        (e.meta["dataset"], e.meta["split"], e.meta["kind"], e.meta["encoder"], e.meta.get("context", "none"))
        for e in index.entries
    }
    for split in ("train", "dev", "test"):  # valid.txt became the dev split
        for kind, encoder, context in (
            ("text", "minilm", "none"),
            ("text", "minilm", "labels"),
            ("image", "cnn", "none"),
            ("image", "labels", "none"),
        ):
            assert (DATASET, split, kind, encoder, context) in kinds
    assert len(index.entries) == 12
    dev = load_split(index, InputSpec(DATASET, "minilm", "cnn"), "dev")
    assert len(dev) == 102 and dev.text_dim == 384 and dev.image_dim == 1280
    assert dev.has_image is not None and int(dev.has_image.sum()) == 3  # the sample's 3 dev photos
    train_split = load_split(index, InputSpec(DATASET, "minilm", "cnn"), "train")
    assert int(train_split.has_image.sum()) == 10
    # The label words as a second segment change the vectors of tweets with a photo only
    # (beyond bf16 rounding, which may differ between batches).
    plain = load_split(index, InputSpec(DATASET, "minilm"), "dev")
    labelled = load_split(index, InputSpec(DATASET, "minilm", context="labels"), "dev")
    assert plain.words == labelled.words and plain.entries != labelled.entries
    for i in range(len(plain)):
        x = plain.features[plain.offsets[i] : plain.offsets[i + 1]]
        y = labelled.features[labelled.offsets[i] : labelled.offsets[i + 1]]
        cosine = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        assert (cosine.min() < 0.99) == bool(dev.has_image[i]), (i, cosine.min())
    (first,) = [p for p in FeatureStore(mini.cache).entries() if "train/text-minilm-" in str(p)]
    text = TextFeatures.load(first)
    assert text.example_ids[0] == "train:1" and text.words[:3] == ["New", "Post", ":"]


@dataclass(frozen=True)
class Combo:
    head: str
    modality: str | None
    inputs: dict[str, object]
    epochs: int
    bar: float | None  # dev entity F1 to beat; None: image only, the loss must fall
    lr: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        parts = [self.head, self.modality or "", str(self.inputs.get("text")), str(self.inputs.get("vision"))]
        parts.append(str(self.inputs.get("context", "")))
        return "-".join(p for p in parts if p and p != "None")


COMBOS = [
    Combo("bilstm-crf", None, {"text": "minilm"}, 4, 0.2),
    Combo("linear", "both", {"text": "minilm", "vision": "cnn"}, 4, 0.2),
    Combo("linear", "text", {"text": "minilm", "vision": "cnn"}, 4, 0.2),
    Combo("linear", "image", {"text": "minilm", "vision": "cnn"}, 3, None),
    Combo("cross-attention", "both", {"text": "minilm", "vision": "cnn"}, 4, 0.2),
    Combo("partial", "both", {"text": "minilm", "vision": "cnn"}, 5, 0.2),
    # Word embeddings trained from scratch learn at the heads' own default rate (text 1e-2,
    # Tagger.default_learning_rates), not the 1e-3 chosen for frozen features.
    Combo("bilstm", "text", {"text": None}, 10, 0.2),
    Combo("bilstm", "both", {"text": None, "vision": "cnn"}, 10, 0.2),
    Combo("cwi", "both", {"text": "minilm", "vision": "labels"}, 4, 0.2),
    Combo("cwi", "both", {"text": None, "vision": "labels"}, 6, 0.2),
    Combo("cwi-attention", "both", {"text": "minilm", "vision": "labels"}, 6, 0.2),
    Combo("msb", None, {"text": "minilm"}, 4, 0.2),
    Combo("msb", None, {"text": "minilm", "context": "labels"}, 4, 0.2),
]


def combo_param(combo: Combo):
    return pytest.param(combo, id=combo.id)


def test_every_registered_head_is_trained_here() -> None:
    """Every torch head has its rows here (the crfsuite family has tests/heads/test_crf_suite.py)."""
    assert {c.head for c in COMBOS} == {h for h in HEADS if HEADS.trait(h, "family") == "torch"}


@pytest.mark.parametrize("combo", [combo_param(c) for c in COMBOS])
def test_head_learns(combo: Combo, mini: Mini) -> None:
    spec = RunSpec(
        combo.head, InputSpec(DATASET, **combo.inputs), combo.modality, {}, config(combo.epochs, lr=combo.lr)
    )
    record = run(spec, mini.cache, out=None)
    history = record["history"]
    assert [row["epoch"] for row in history] == list(range(1, combo.epochs + 1))
    losses = [row["train_loss"] for row in history]
    assert losses[-1] < 0.8 * losses[0], losses
    dev = record["metrics"]["dev"]
    # The model kept is the best dev epoch's, and scoring it again gives that epoch's number.
    best = max(row["dev_entity_f1"] for row in history)
    assert dev["entity_f1"] == best == history[record["best_epoch"] - 1]["dev_entity_f1"]
    assert set(record["metrics"]) == {"dev", "test"} and METRICS <= set(record["metrics"]["test"])
    if combo.bar is not None:
        assert dev["entity_f1"] > combo.bar, [round(row["dev_entity_f1"], 3) for row in history]
        assert record["metrics"]["test"]["entity_f1"] > combo.bar / 2
    modality = combo.modality or HEADS.get(combo.head).modalities[0]
    assert record["modality"] == modality
    uses_images = modality != "text" and combo.inputs.get("vision")
    assert bool(record["inputs"]["vision"]) == bool(uses_images)


def without_time(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def test_same_spec_twice_gives_identical_results(mini: Mini) -> None:
    spec = RunSpec("cross-attention", InputSpec(DATASET, "minilm", "cnn"), "both", {}, config(2))
    first, second = run(spec, mini.cache, None), run(spec, mini.cache, None)
    assert first["metrics"] == second["metrics"]
    assert without_time(first["history"]) == without_time(second["history"])
    assert first["best_epoch"] == second["best_epoch"]
    other = run(RunSpec(spec.head, spec.inputs, "both", {}, config(2, seed=1)), mini.cache, None)
    assert without_time(other["history"]) != without_time(first["history"])  # the seed matters


SAVED = [  # smaller than the defaults: the same code, half the time
    RunSpec("bilstm-crf", InputSpec(DATASET, "minilm"), None, {"proj": "64", "hidden": "32"}, config(2)),
    RunSpec(
        "linear", InputSpec(DATASET, "minilm", "cnn"), "both", {"fusion": "64", "hidden": "32"}, config(2)
    ),
    RunSpec("cwi", InputSpec(DATASET, None, "labels"), "both", {"word": "64", "hidden": "32"}, config(2)),
]


@pytest.mark.parametrize("spec", SAVED, ids=lambda s: f"{s.head}-{s.inputs.text}-{s.inputs.vision}")
def test_save_load_gives_identical_predictions(spec: RunSpec, mini: Mini, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    record = run(spec, mini.cache, folder)
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "run.json"}
    assert json.loads((folder / "run.json").read_text()) == json.loads(json.dumps(record))

    model, saved = checkpoint.load(folder)
    assert not model.training and model.tags == saved["tags"]
    _, scores = evaluate_saved(folder, mini.cache, ("dev",))
    assert scores == {"dev": record["metrics"]["dev"]}

    # The same run again in memory (runs are deterministic) gives the trained model itself.
    trained, batchers, data, vocab, _, _ = prepare(spec, mini.cache)
    fit(CachedFeatures(trained, batchers["train"], batchers["dev"]), spec.train)
    loaded_state = model.state_dict()
    for name, tensor in trained.state_dict().items():
        assert torch.equal(tensor, loaded_state[name]), name
    vocab_loaded = checkpoint.vocabularies(saved)
    assert vocab_loaded == vocab
    assert (vocab is not None) == (spec.head == "cwi")
    needs = type(model).needs(model.hyper, model.modality, bool(saved["inputs"]["text"]))
    dev_loaded = Batcher(data["dev"], model.tags, vocab_loaded, needs)
    expected = predict(trained, batchers["dev"])
    assert predict(model, dev_loaded) == expected
    assert len(expected) == len(data["dev"]) and all(
        len(p) == len(w) for p, w in zip(expected, data["dev"].words)
    )


@pytest.fixture(scope="module")
def saved_head(mini: Mini, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small bilstm-crf on MiniLM, trained one epoch and saved: the original of every mismatch."""
    folder = tmp_path_factory.mktemp("saved") / "bilstm-crf"
    spec = RunSpec(
        "bilstm-crf", InputSpec(DATASET, "minilm"), None, {"proj": "32", "hidden": "16"}, config(1)
    )
    run(spec, mini.cache, folder)
    return folder


def edited(saved_head: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(saved_head, folder)
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_saved_head_loads_unchanged(saved_head: Path, tmp_path: Path) -> None:
    model, cfg = checkpoint.load(edited(saved_head, tmp_path, lambda c: None))
    assert cfg["dims"]["text"] == 384 and model.dims.text == 384 and cfg["head"] == "bilstm-crf"


def test_checkpoint_with_other_text_width_is_refused(saved_head: Path, tmp_path: Path) -> None:
    folder = edited(saved_head, tmp_path, lambda c: c["dims"].update(text=256))
    with pytest.raises(ConfigError, match=r"proj\.0\.weight has shape \(32, 384\).*\(32, 256\)"):
        checkpoint.load(folder)


def test_checkpoint_with_other_sizes_or_tags_is_refused(saved_head: Path, tmp_path: Path) -> None:
    folder = edited(saved_head, tmp_path, lambda c: c["hyper"].update(hidden=24))
    with pytest.raises(ConfigError, match=r"lstm\.lstm\.\w+ has shape \(\d+, ?\d*\), the config implies"):
        checkpoint.load(folder)
    folder = edited(saved_head, tmp_path / "b", lambda c: c["tags"].pop())
    with pytest.raises(ConfigError, match=r"has shape \(9,\), the config implies \(8,\)"):
        checkpoint.load(folder)
    folder = edited(saved_head, tmp_path / "c", lambda c: c["hyper"].update(proj=0))
    with pytest.raises(ConfigError, match=r"missing none; unexpected proj\.0\.bias, proj\.0\.weight"):
        checkpoint.load(folder)


def test_checkpoint_of_another_schema_is_refused(saved_head: Path, tmp_path: Path) -> None:
    folder = edited(saved_head, tmp_path, lambda c: c.update(schema_version=99))
    with pytest.raises(ConfigError, match="cache schema 99"):
        checkpoint.load(folder)
    folder = edited(saved_head, tmp_path / "b", lambda c: c.update(format_version=2))
    with pytest.raises(ConfigError, match="format version 2"):
        checkpoint.load(folder)


def test_checkpoint_without_weights_is_refused(saved_head: Path, tmp_path: Path) -> None:
    folder = edited(saved_head, tmp_path, lambda c: None)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="model.safetensors is missing"):
        checkpoint.load(folder)
    (folder / "config.json").unlink()
    with pytest.raises(ConfigError, match="config.json is missing"):
        checkpoint.load(folder)


def test_inputs_of_another_width_are_refused(saved_head: Path, mini: Mini) -> None:
    _, cfg = checkpoint.load(saved_head)
    checkpoint.check_dims(cfg, 384, 0)  # its own inputs fit
    with pytest.raises(ConfigError, match="768-d, the head was trained on 384-d"):
        checkpoint.check_dims(cfg, 768, 0)
    image_cfg = {"dims": {"text": 384, "image": 1280}, "inputs": {}}
    checkpoint.check_dims(image_cfg, 384, 1280)
    with pytest.raises(ConfigError, match="image features are 384-d, the head was trained on 1280-d"):
        checkpoint.check_dims(image_cfg, 384, 384)


# -- the command line ------------------------------------------------------------------------


def eval_dev(folder: Path, mini: Mini, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    """`heads eval --split dev --json`: what it prints is a score table, what it writes the scores."""
    scores = tmp_path / "scores.json"
    argv = [
        "eval",
        "--model",
        str(folder),
        "--split",
        "dev",
        "--cache-dir",
        str(mini.cache),
        "--json",
        str(scores),
    ]
    code, out, err = run_cli(heads.cli.main, argv, capsys)
    assert code == 0, err
    assert "entity F1" in out
    return json.loads(scores.read_text())


def test_cli_train_then_eval(mini: Mini, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "run"
    argv = ["train", "--dataset", DATASET, "--head", "bilstm-crf", "--text", "minilm", "--epochs", "2"]
    code, out, err = run_cli(
        heads.cli.main, [*argv, "--cache-dir", str(mini.cache), "--out", str(folder)], capsys
    )
    assert code == 0, err
    assert "entity F1" in out and "epoch   2" in out and "epoch   3" not in out
    assert {"model.safetensors", "config.json", "run.json"} <= {p.name for p in folder.iterdir()}
    record = json.loads((folder / "run.json").read_text())
    for split in ("dev", "test"):
        assert METRICS <= set(record["metrics"][split])
    assert record["seed"] == 0 and record["epochs_run"] == 2 and record["head"] == "bilstm-crf"
    assert record["train_seconds"] > 0 and record["peak_memory_mib"] > 0
    assert record["inputs"]["dataset"] == DATASET

    assert eval_dev(folder, mini, tmp_path, capsys) == {"dev": record["metrics"]["dev"]}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--head", "nosuch"], "unknown head 'nosuch'"),
        (["--set", "nosuch=1"], "unknown option(s) nosuch for this head"),
        (["--set", "hidden=many"], "option hidden='many': expected int"),
        (["--text", "mpnet"], f"no cached mpnet features for {DATASET}/train"),
        (["--text", "none"], "needs cached text features"),
        (["--dataset", "t99"], "no cached minilm features for t99/train"),
        (["--head", "linear"], "needs image features: add --vision"),
    ],
)
def test_cli_train_refuses_with_one_line(
    extra: list[str], message: str, mini: Mini, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--dataset", DATASET, "--text", "minilm", "--epochs", "1", *extra]
    code, out, err = run_cli(
        heads.cli.main, [*argv, "--cache-dir", str(mini.cache), "--out", str(tmp_path / "run")], capsys
    )
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "run").exists()


def test_cli_crfsuite_head(mini: Mini, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "crf"
    argv = ["train", "--dataset", DATASET, "--head", "crf", "--text", "minilm"]
    # --set splits on commas: a 1x1 grid written both ways; small clusters keep it quick.
    options = ["--set", "c1=0.1,c2=0.05", "--set", "clusters=20", "--set", "max_iterations=30"]
    code, out, err = run_cli(
        heads.cli.main, [*argv, *options, "--cache-dir", str(mini.cache), "--out", str(folder)], capsys
    )
    assert code == 0, err
    assert "entity F1" in out
    record = json.loads((folder / "run.json").read_text())
    assert record["head"] == "crf" and record["hyper"]["c1"] == 0.1 and record["hyper"]["c2"] == 0.05
    assert record["hyper"]["clusters"] == [20] and len(record["grid"]) == 1
    assert METRICS <= set(record["metrics"]["dev"]) and METRICS <= set(record["metrics"]["test"])
    assert record["metrics"]["dev"]["entity_f1"] > 0.2

    assert eval_dev(folder, mini, tmp_path, capsys) == {"dev": record["metrics"]["dev"]}

    # A list inside a value uses '/'; a comma would start the next NAME=VALUE.
    code, _, err = run_cli(
        heads.cli.main,
        [*argv, "--set", "c1=0.05,0.1", "--cache-dir", str(mini.cache), "--out", str(tmp_path / "x")],
        capsys,
    )
    assert code == 2 and "expected NAME=VALUE, got '0.1'" in err
