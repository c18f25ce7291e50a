"""Pre-labels from a model whose types are not the session's: the type map (auto, shipped,
pairs, none), the BIO repair, ``annotate serve`` with it, and ``annotate prelabel-eval``."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import run_cli
from PIL import Image

from annotate.prelabels import map_tags, model_types, resolve_type_map
from annotate.store import DEFAULT_TYPES, check_labels
from featurize.errors import ConfigError
from featurize.ocr_text import tokenize

HICBAM = list(DEFAULT_TYPES)
REFERENCES = Path(__file__).resolve().parents[2] / "annotate" / "references"


def test_auto_picks_the_shipped_map_that_fits_the_session() -> None:
    conll_model = ["PER", "LOC", "ORG", "MISC"]
    hicbam = resolve_type_map(conll_model, HICBAM)
    assert hicbam.used == "hicbam" and hicbam.mapping == {
        "PER": "PER",
        "LOC": "LOC",
        "ORG": "MIS",
        "MISC": "MIS",
    }
    assert hicbam.describe() == "ORG→MIS, MISC→MIS"
    hipe = resolve_type_map(["pers", "loc", "org", "prod", "time"], ["PER", "LOC", "ORG", "MISC"])
    assert hipe.used == "conll"
    assert hipe.mapping == {"pers": "PER", "loc": "LOC", "org": "ORG", "prod": "MISC", "time": "O"}
    assert hipe.dropped == ["time"]
    same = resolve_type_map(["PER", "LOC"], HICBAM)
    assert same.used == "identity" and same.renamed == {} and same.dropped == []
    # a session type keeps its name even where the shipped map would rename it (conll: BUI -> LOC)
    kept = resolve_type_map(["BUI", "org"], ["PER", "LOC", "ORG", "BUI"])
    assert kept.used == "conll" and kept.mapping == {"BUI": "BUI", "org": "ORG"}
    nothing = resolve_type_map(["FOO", "PER"], HICBAM)
    assert nothing.used == "identity" and nothing.dropped == ["FOO"]


def test_named_maps_pairs_and_none() -> None:
    model = ["PER", "LOC", "ORG", "MISC"]
    assert resolve_type_map(model, HICBAM, "none").mapping == {
        "PER": "PER",
        "LOC": "LOC",
        "ORG": "O",
        "MISC": "O",
    }
    conll = resolve_type_map(model, HICBAM, "conll")  # its ORG and MISC have no target in this set
    assert conll.used == "conll" and conll.dropped == ["ORG", "MISC"]
    pairs = resolve_type_map(model, HICBAM, "ORG=BUI,MISC=O")
    assert pairs.used == "custom" and pairs.mapping == {"PER": "PER", "LOC": "LOC", "ORG": "BUI", "MISC": "O"}
    assert pairs.record() == {
        "spec": "ORG=BUI,MISC=O",
        "used": "custom",
        "renamed": {"ORG": "BUI"},
        "dropped": ["MISC"],
    }
    with pytest.raises(ConfigError, match="no type 'org'"):
        resolve_type_map(model, HICBAM, "org=MIS")
    with pytest.raises(ConfigError, match="'ORGANISATION' is not a type of this session"):
        resolve_type_map(model, HICBAM, "ORG=ORGANISATION")
    with pytest.raises(ConfigError, match="OLD=NEW"):
        resolve_type_map(model, HICBAM, "hicbamm")


def test_mapped_tags_keep_bio() -> None:
    mapping = {"ORG": "MIS", "MISC": "MIS", "time": "O", "PER": "PER"}
    tags = ["I-ORG", "I-ORG", "B-time", "I-PER", "B-ORG", "I-MISC", "I-time", "I-ORG"]
    mapped = map_tags(tags, mapping)
    assert mapped == ["B-MIS", "I-MIS", "O", "B-PER", "B-MIS", "I-MIS", "O", "B-MIS"]
    check_labels(mapped, HICBAM)
    assert model_types(["O", "B-loc", "I-loc", "B-pers", "I-pers"]) == ["loc", "pers"]


# --------------------------------------------------------------------------- a tiny model of HIPE's types

HIPE_ROWS = [
    (["Franz", "Huber", "in", "Plan"], ["B-pers", "I-pers", "O", "B-loc"]),
    (["Verein", "Eger", "um", "1850"], ["B-org", "B-loc", "O", "B-time"]),
]


@pytest.fixture(scope="module")
def hipe_model(
    tmp_path_factory: pytest.TempPathFactory, weights_dir: Path, tiny_bert: Path
) -> Iterator[Path]:
    """A word-embedding BiLSTM with the CNN image vector (so it reads pictures), trained until it
    knows its eight words, with HIPE's own type names pers/loc/org/time."""
    from rich.console import Console

    from featurize.cache.store import FeatureStore
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as featurize
    from heads.experiment import RunSpec, run
    from heads.inputs import InputSpec
    from heads.train_config import TrainConfig

    root = tmp_path_factory.mktemp("hipe-model")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNER_WEIGHTS_DIR", str(weights_dir))
        patch.setenv("MNER_CACHE_DIR", str(root / "cache"))
        import numpy as np

        noise = np.random.default_rng(0)
        for k in range(20):  # a picture of its own each: the tags must not hang on one image
            Image.fromarray(noise.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"{k}.png")
        lines = [
            json.dumps({"text": words, "label": labels, "image": [f"{k}.png"]})
            for k in range(20)
            for words, labels in [HIPE_ROWS[k % 2]]
        ]
        (root / "hipe.jsonl").write_text("\n".join(lines) + "\n")
        options = LoadOptions(format="jsonl", images=root, split_fractions=(0.6, 0.2, 0.2))
        dataset = load_dataset(str(root / "hipe.jsonl"), options)
        plan = RunPlan(text=[f"hf:{tiny_bert}"], vision=["cnn"])
        featurize(dataset, plan, FeatureStore(root / "cache"), Console(file=io.StringIO()))
        spec = RunSpec(
            "bilstm", InputSpec(dataset.name, None, "cnn"), "both", train=TrainConfig(epochs=30, threads=1)
        )
        run(spec, root / "cache", root / "head")
        yield root / "head"


def test_serve_maps_the_models_types_onto_the_session(
    tmp_path: Path, hipe_model: Path, data_dir: Path
) -> None:
    from fastapi.testclient import TestClient

    from annotate.app import create_app
    from annotate.guard import TOKEN_HEADER

    scans = tmp_path / "scans"
    scans.mkdir()
    Image.open(data_dir / "heimatbuch_snippets" / "100.PNG").save(scans / "100.png")
    notes: list[str] = []
    app = create_app(scans, tmp_path / "set.jsonl", None, hipe_model, note=notes.append)
    # as the page calls: its own Host (the port the app serves), the session token
    client = TestClient(app, base_url="http://127.0.0.1:8000", headers={TOKEN_HEADER: app.state.token})
    state = client.get("/api/state").json()
    assert state["label_map"] == {
        "spec": "auto",
        "used": "hicbam",
        "renamed": {"loc": "LOC", "org": "MIS", "pers": "PER"},
        "dropped": ["time"],
    }
    assert state["prelabels"] == "model head, loc→LOC, org→MIS, pers→PER; dropped (become O): time"
    assert len([n for n in notes if "time" in n and "never pre-labelled" in n]) == 1  # said once, at start
    first = client.post("/api/tokenize", json={"index": 0, "text": "Franz Huber in Plan"}).json()
    assert first["suggested"] == ["B-PER", "I-PER", "O", "B-LOC"]
    answer = client.post("/api/tokenize", json={"index": 0, "text": "Verein Eger um 1850"}).json()
    assert answer["tokens"] == ["Verein", "Eger", "um", "1850"]
    assert answer["suggested"] == ["B-MIS", "B-LOC", "O", "O"]  # org renamed, time dropped
    final = ["B-BUI", "B-LOC", "O", "O"]
    saved = client.post(
        "/api/save",
        json={"index": 0, "text": answer["tokens"], "label": final, "suggested": answer["suggested"]},
    ).json()["item"]
    assert saved["suggestions"]["changed"] == 1
    assert saved["suggestions"]["label_map"]["used"] == "hicbam"
    app = create_app(scans, tmp_path / "set2.jsonl", None, hipe_model, label_map="none")
    none = TestClient(app, base_url="http://127.0.0.1:8000", headers={TOKEN_HEADER: app.state.token})
    answer = none.post("/api/tokenize", json={"index": 0, "text": "Verein Eger um 1850"}).json()
    assert answer["suggested"] == ["O", "O", "O", "O"]  # no map: the lower-case names fit no type
    with pytest.raises(ConfigError, match="give --model"):
        create_app(scans, tmp_path / "set3.jsonl", label_map="hicbam")


def test_serve_refuses_a_bad_label_map_with_one_line(
    tmp_path: Path, hipe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import annotate.cli

    scans = tmp_path / "scans"
    scans.mkdir()
    Image.new("RGB", (40, 30), "white").save(scans / "a.png")
    base = ["serve", "--images", str(scans), "--out", str(tmp_path / "set.jsonl")]
    code, _out, err = run_cli(
        annotate.cli.main, [*base, "--model", str(hipe_model), "--label-map", "org=FOO"], capsys
    )
    assert code == 2 and "'FOO' is not a type of this session" in err and len(err.strip().splitlines()) == 1
    code, _out, err = run_cli(annotate.cli.main, [*base, "--label-map", "hicbam"], capsys)
    assert code == 2 and "give --model" in err


def _gold(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    lines = [
        json.dumps({"image": "100.PNG", "picture_box": [0, 0, 497, 295], "text": text, "tokens": tokenize(text),
                    "label": labels}, ensure_ascii=False)
        for text, labels in rows
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_prelabel_eval_counts_the_changes(
    tmp_path: Path, hipe_model: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import annotate.cli

    gold = _gold(
        tmp_path / "gold.jsonl",
        [
            ("Franz Huber in Plan", ["B-PER", "I-PER", "O", "B-LOC"]),  # all four right
            ("Verein Eger um 1850", ["B-BUI", "B-LOC", "O", "O"]),  # the model says MIS: one change
            ("Eger in Plan", ["O", "O", "B-LOC"]),  # the model also tags Eger: one change
        ],
    )
    images = data_dir / "heimatbuch_snippets"
    argv = ["prelabel-eval", "--model", str(hipe_model), "--reference", str(gold), "--images", str(images),
            "--report", str(tmp_path / "report")]  # fmt: skip
    code, out, err = run_cli(annotate.cli.main, argv, capsys)
    assert code == 0, err
    assert "| caption | tokens | gold labels (no pre-labels) |" in out and "org→MIS" in out
    report = json.loads((tmp_path / "report" / "prelabel-eval.json").read_text())
    captions, per_type = report["tables"]
    body = captions["rows"]
    assert body[-1]["caption"] == "**all**"
    assert [r["gold labels (no pre-labels)"] for r in body] == [3, 2, 1, 6]
    assert [r["changes with pre-labels"] for r in body] == [0, 1, 1, 2]
    total = body[-1]
    assert total["saved"] == 4 and total["token accuracy"] == round(100 * 9 / 11, 2)
    # entities: gold 2 + 2 + 1 = 5, predicted 2 + 2 + 2 = 6, right 2 + 1 + 1 = 4
    assert total["entity P"] == round(100 * 4 / 6, 2) and total["entity R"] == round(100 * 4 / 5, 2)
    kinds = {r["type"]: r for r in per_type["rows"]}
    bui = kinds["BUI"]
    assert (bui["gold entities"], bui["predicted entities"], bui["entity R"]) == (1, 0, 0)
    assert (kinds["MIS"]["gold entities"], kinds["MIS"]["predicted entities"]) == (0, 1)
    assert (
        kinds["LOC"]["entity P"] == 75 and kinds["LOC"]["entity R"] == 100
    )  # Plan, Eger, Eger, Plan: 3 of 4
    # the image is needed: the model reads pictures
    code, _out, err = run_cli(annotate.cli.main, argv[:5], capsys)
    assert code == 2 and "--images" in err


def test_prelabel_eval_refuses_bad_gold_with_one_line(
    tmp_path: Path, hipe_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import annotate.cli

    gold = _gold(tmp_path / "gold.jsonl", [("Franz Huber", ["B-PER", "I-PER"]), ("in Plan", ["O", "I-LOC"])])
    code, _out, err = run_cli(
        annotate.cli.main, ["prelabel-eval", "--model", str(hipe_model), "--reference", str(gold)], capsys
    )
    assert code == 2 and "gold.jsonl:2" in err and "continues no LOC span" in err
    assert len(err.strip().splitlines()) == 1


def test_shipped_gold_captions_are_consistent(data_dir: Path) -> None:
    """annotate/references/heimatbuch_labels.jsonl: the chips of the tool, BIO of HiCBaM's set,
    the eight OCR references among them with the same text, boxes inside their scans."""
    from annotate.prelabel_eval import read_gold

    path = REFERENCES / "heimatbuch_labels.jsonl"
    gold = read_gold(path, HICBAM)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(gold) >= 8
    for item, record in zip(gold, records):
        assert item.tokens == tokenize(item.text), item.text
        with Image.open(data_dir / "heimatbuch_snippets" / str(item.image)) as scan:
            width, height = scan.size
        for key in ("box", "picture_box"):
            if record.get(key):
                x0, y0, x1, y1 = record[key]
                assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (item.image, key)
    ocr = [
        json.loads(line)
        for line in (REFERENCES / "heimatbuch.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    texts = {(r["image"], r["text"]) for r in records}
    assert all((r["image"], r["text"]) in texts for r in ocr)
    assert sum(t != "O" for item in gold for t in item.labels) > 20


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
