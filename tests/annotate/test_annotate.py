"""``annotate``: text clean-up, the dataset file (atomic appends, resume, undo, edits), the
API on real scans with real Tesseract, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from cli_runner import run_cli
from PIL import Image

from annotate.store import Dataset, check_labels
from featurize.errors import ConfigError, DataFormatError
from featurize.ocr_text import rejoin_lines, tokenize

SCANS = ["100.PNG", "52.PNG", "286.PNG"]
CAPTION_100 = [20, 298, 260, 325]  # "Südlicher Ortseingang von Dürrmaul"


@pytest.fixture
def scans(tmp_path: Path, data_dir: Path) -> Path:
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in SCANS:
        shutil.copy(data_dir / "heimatbuch_snippets" / name, folder / name)
    return folder


def test_hyphenated_line_breaks_are_rejoined() -> None:
    assert (
        rejoin_lines("im „Ge-\ndenkbuch der Pfarre Drey-\n hacken“")
        == "im „Gedenkbuch der Pfarre Dreyhacken“"
    )
    assert (
        rejoin_lines("Ost-\nBayern und\n\nWest") == "Ost-Bayern und West"
    )  # a capital: a compound keeps its hyphen
    assert rejoin_lines("Kir\u00ad\nche") == "Kirche"


def test_tokens_are_words_and_punctuation() -> None:
    text = "„Schott“-Hof, Nr. 16, und Franz I. (um 1850) in Plan-Pilsner"
    assert tokenize(text) == [
        "„", "Schott", "“", "-", "Hof", ",", "Nr", ".", "16", ",", "und", "Franz", "I", ".", "(", "um", "1850", ")",
        "in", "Plan-Pilsner",
    ]  # fmt: skip


def test_labels_must_be_bio_of_the_type_set() -> None:
    check_labels(["B-PER", "I-PER", "O", "B-LOC"], ["PER", "LOC"])
    for bad in (["I-PER"], ["B-ORG"], ["B-PER", "I-LOC"], ["X"]):
        with pytest.raises(ConfigError):
            check_labels(bad, ["PER", "LOC"])


def _item(source: str, words: list[str], labels: list[str]) -> dict:
    return {"text": words, "label": labels, "source": source}


def test_dataset_appends_resumes_undoes_and_edits(tmp_path: Path) -> None:
    out = tmp_path / "set.jsonl"
    crop = Image.new("RGB", (20, 10), "white")
    data = Dataset.open(out)
    assert data.types == ["PER", "LOC", "BUI", "MIS"]
    data.save(_item("a.png", ["Franz", "Huber"], ["B-PER", "I-PER"]), crop)
    data.save(_item("b.png", ["in", "Plan"], ["O", "B-LOC"]), crop)
    assert (tmp_path / "set-crops" / "a.png").is_file()
    again = Dataset.open(out)  # resume
    assert [i["source"] for i in again.items] == ["a.png", "b.png"]
    assert again.status("a.png") == "done" and again.status("c.png") == "todo"
    again.save(_item("a.png", ["Franz", "Huber"], ["B-PER", "B-PER"]), crop)  # re-opened and edited
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["label"] == ["B-PER", "B-PER"]
    assert again.undo()["source"] == "a.png"  # the last saved one
    assert [json.loads(x)["source"] for x in out.read_text().splitlines()] == ["b.png"]
    assert not (tmp_path / "set-crops" / "a.png").exists()
    again.skip("c.png")
    assert Dataset.open(out).status("c.png") == "skipped"


def test_torn_last_line_is_ignored_and_repaired(tmp_path: Path) -> None:
    out = tmp_path / "set.jsonl"
    data = Dataset.open(out)
    data.save(_item("a.png", ["Plan"], ["B-LOC"]), Image.new("RGB", (8, 8)))
    with out.open("ab") as handle:
        handle.write(b'{"text": ["Hu')  # a crash in the middle of a write
    again = Dataset.open(out)
    assert again.torn and len(again.items) == 1
    again.save(_item("b.png", ["Eger"], ["B-LOC"]), Image.new("RGB", (8, 8)))
    assert [json.loads(x)["source"] for x in out.read_text().splitlines()] == ["a.png", "b.png"]


def test_bad_out_and_bad_lines_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="jsonl"):
        Dataset.open(tmp_path / "set.csv")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": ["a"], "label": ["O"]}\nnot json\n')
    with pytest.raises(DataFormatError, match="bad.jsonl:2"):
        Dataset.open(bad)
    Dataset.open(tmp_path / "typed.jsonl", ["PER"])
    with pytest.raises(ConfigError, match="mix two sets"):
        Dataset.open(tmp_path / "typed.jsonl", ["PER", "LOC"])


# --------------------------------------------------------------------------- the API


def local_client(app):  # noqa: ANN001, ANN201
    """A test client that calls as the page does: its own Host, the session token."""
    from fastapi.testclient import TestClient

    from annotate.guard import TOKEN_HEADER

    return TestClient(app, base_url="http://127.0.0.1:8000", headers={TOKEN_HEADER: app.state.token})


@pytest.fixture
def client(scans: Path, tmp_path: Path):  # noqa: ANN201
    from annotate.app import create_app

    (scans / "notes.txt").write_text("not an image")
    (scans / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return local_client(create_app(scans, tmp_path / "out" / "set.jsonl", port=8000))


def test_api_ocr_tokenize_save_resume(client, tmp_path: Path) -> None:  # noqa: ANN001
    state = client.get("/api/state").json()
    names = [s["name"] for s in state["scans"]]
    index = names.index("100.PNG")
    assert client.get(f"/api/scan/{index}/image").headers["content-type"] == "image/png"
    ocr = client.post("/api/ocr", json={"index": index, "box": CAPTION_100, "lang": "deu"}).json()
    assert "Ortseingang" in ocr["text"] and "Dürrmaul" in ocr["text"]
    tokens = client.post("/api/tokenize", json={"index": index, "text": ocr["text"]}).json()["tokens"]
    labels = ["B-LOC" if t == "Dürrmaul" else "O" for t in tokens]
    saved = client.post(
        "/api/save",
        json={"index": index, "caption_box": CAPTION_100, "picture_box": [0, 0, 497, 295], "text": tokens,
              "label": labels, "ocr_text": ocr["text"], "engine": "tesseract", "lang": "deu"},
    ).json()  # fmt: skip
    assert saved["item"]["image"] == ["set-crops/100.png"]
    assert Image.open(tmp_path / "out" / "set-crops" / "100.png").size == (497, 295)
    assert client.get("/api/state").json()["scans"][index]["status"] == "done"
    assert client.get(f"/api/scan/{index}/item").json()["item"]["label"] == labels


def test_api_bad_inputs_get_messages(client) -> None:  # noqa: ANN001
    scans = client.get("/api/state").json()["scans"]
    by_name = {s["name"]: s["index"] for s in scans}
    response = client.get(f"/api/scan/{by_name['notes.txt']}/image")
    assert response.status_code == 422 and "not an image" in response.json()["detail"]
    response = client.get(f"/api/scan/{by_name['broken.png']}/image")
    assert response.status_code == 422 and "cannot be read" in response.json()["detail"]
    response = client.post("/api/ocr", json={"index": by_name["100.PNG"], "box": [1, 1, 2, 2]})
    assert response.status_code == 422 and "too small" in response.json()["detail"]
    response = client.post("/api/ocr", json={"index": by_name["100.PNG"], "lang": "xyz"})
    assert response.status_code == 422 and "xyz" in response.json()["detail"]
    bad = {"index": by_name["100.PNG"], "text": ["Plan"], "label": ["I-LOC"]}
    response = client.post("/api/save", json=bad)
    assert response.status_code == 422 and "continues no LOC span" in response.json()["detail"]


def test_saved_dataset_trains_a_head_without_conversion(
    tmp_path: Path, data_dir: Path, tiny_bert: Path
) -> None:
    """The produced JSONL is read by featurize's JSONL reader as it is (images by crop name),
    featurized and trained on."""
    import io

    from rich.console import Console

    from featurize.cache.store import FeatureStore
    from featurize.datasets import LoadOptions, load_dataset
    from featurize.pipeline import RunPlan
    from featurize.pipeline import run as featurize
    from heads.experiment import RunSpec, run
    from heads.inputs import InputSpec
    from heads.train_config import TrainConfig

    out = tmp_path / "set.jsonl"
    data = Dataset.open(out)
    source = Image.open(data_dir / "heimatbuch_snippets" / "100.PNG").convert("RGB")
    for k in range(10):
        words = ["Blick", "auf", "Dürrmaul", "und", "Plan"] if k % 2 else ["Franz", "Huber", "in", "Eger"]
        labels = ["O", "O", "B-LOC", "O", "B-LOC"] if k % 2 else ["B-PER", "I-PER", "O", "B-LOC"]
        data.save(_item(f"s{k}.png", words, labels), source)
    options = LoadOptions(format="jsonl", images=data.crops, split_fractions=(0.6, 0.2, 0.2))
    dataset = load_dataset(str(out), options)
    examples = [e for split in dataset.splits.values() for e in split.examples]
    assert len(examples) == 10 and examples[1].labels == ["O", "O", "B-LOC", "O", "B-LOC"]
    assert all(e.image_paths and Path(e.image_paths[0]).is_file() for e in examples)
    cache = tmp_path / "cache"
    plan = RunPlan(text=[f"hf:{tiny_bert}"], vision=["cnn"])
    featurize(dataset, plan, FeatureStore(cache), Console(file=io.StringIO()))
    spec = RunSpec(
        "linear", InputSpec(dataset.name, f"hf:{tiny_bert}", "cnn"), train=TrainConfig(epochs=2, threads=1)
    )
    record = run(spec, cache, tmp_path / "head")
    assert "entity_f1" in record["metrics"]["test"] and (tmp_path / "head" / "model.safetensors").is_file()


def test_ocr_eval_reports_cer(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    import annotate.cli

    reference = Path(annotate.cli.__file__).parent / "references" / "heimatbuch.jsonl"
    argv = [
        "ocr-eval",
        "--images",
        str(data_dir / "heimatbuch_snippets"),
        "--reference",
        str(reference),
        "--lang",
        "deu",
    ]
    code, out, err = run_cli(annotate.cli.main, argv, capsys)
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("| tesseract | deu |"))
    cer = float(row.split("|")[6])
    assert 0 < cer < 20  # printed Antiqua captions: a few percent


def test_serve_refuses_bad_out_with_one_line(
    scans: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import annotate.cli

    code, _out, err = run_cli(
        annotate.cli.main, ["serve", "--images", str(scans), "--out", str(tmp_path / "x.txt")], capsys
    )
    assert code == 2 and "jsonl" in err


# --------------------------------------------------------------------------- the page, in Chromium

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--no-first-run"]  # fmt: skip


@pytest.fixture
def server(scans: Path, tmp_path: Path):  # noqa: ANN201
    import uvicorn

    from annotate.app import create_app
    from annotate.cli import free_port

    (scans / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # listed last
    out = tmp_path / "out" / "set.jsonl"
    port = free_port("127.0.0.1")
    config = uvicorn.Config(
        create_app(scans, out, port=port), host="127.0.0.1", port=port, log_level="warning"
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    for _ in range(100):
        if running.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", out
    running.should_exit = True
    thread.join(timeout=10)


def test_page_draw_ocr_label_save_reload(server, tmp_path: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import sync_playwright

    url, out = server
    if not Path(CHROMIUM).is_file():
        pytest.fail("Debian's chromium is needed: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        page.wait_for_function("document.getElementById('scan').naturalWidth > 0")
        assert "100.PNG" in page.inner_text("#title")  # the first scan to do
        zoom = page.evaluate("S.zoom")
        img = page.locator("#scan").bounding_box()
        x0, y0, x1, y1 = CAPTION_100
        page.mouse.move(img["x"] + x0 * zoom, img["y"] + y0 * zoom)
        page.mouse.down()
        page.mouse.move(img["x"] + x1 * zoom, img["y"] + y1 * zoom, steps=5)
        page.mouse.up()
        assert page.is_visible("#captionBox")
        page.keyboard.press("o")
        page.wait_for_selector(".chip", timeout=60_000)
        tokens = page.eval_on_selector_all(".chip", "els => els.map(e => e.firstChild.textContent)")
        assert tokens[:3] == ["Südlicher", "Ortseingang", "von"]  # then the place name, as OCR read it
        page.screenshot(path=str(tmp_path / "annotate.png"))
        # label two tokens by keyboard: "Südlicher" as MIS (4), the place name as LOC (2)
        page.focus("#chips")
        page.keyboard.press("4")
        for _ in range(len(tokens) - 2):
            page.keyboard.press("ArrowRight")
        page.keyboard.press("2")
        page.screenshot(path=str(tmp_path / "annotate-labelled.png"))
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('message').textContent.startsWith('saved')")
        if os.environ.get("ANNOTATE_SCREENSHOTS"):  # to look at the page: a folder to copy them to
            for shot in ("annotate.png", "annotate-labelled.png"):
                shutil.copy(tmp_path / shot, Path(os.environ["ANNOTATE_SCREENSHOTS"]) / shot)
        browser.close()
        lines = out.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 1
        item = json.loads(lines[0])
        assert item["source"] == "100.PNG"
        assert all(abs(a - b) <= 2 for a, b in zip(item["caption_box"], CAPTION_100))  # the box as drawn
        assert item["label"][0] == "B-MIS" and item["label"][-1] == "B-LOC"
        assert sum(tag != "O" for tag in item["label"]) == 2
        assert item["ocr"]["engine"] == "tesseract"
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page()
        page.goto(url)  # reload: the item shows as done, the next scan to do opens
        page.wait_for_selector("#scans li .done")
        assert "100.PNG" in page.inner_text("#scans li:has(.done)")
        assert "100.PNG" not in page.inner_text("#title")
        page.click("#scans li:has-text('zz-broken.png')")  # a broken file: a message, no crash
        page.wait_for_function("document.getElementById('message').textContent.includes('cannot be read')")
        assert "error" in page.get_attribute("#message", "class")
        page.click("#scans li:has-text('52.PNG')")  # and the page still works
        page.wait_for_function("document.getElementById('title').textContent.includes('52.PNG')")
        browser.close()


def test_model_pre_labels_and_changes_are_counted(scans: Path, tmp_path: Path, mini) -> None:  # noqa: ANN001
    """--model: a head trained on the T17 subset suggests labels; saving counts the ones changed."""
    from heads_data import DATASET

    from annotate.app import create_app
    from heads.experiment import RunSpec, run
    from heads.inputs import InputSpec
    from heads.train_config import TrainConfig

    model = tmp_path / "head"
    run(
        RunSpec("bilstm-crf", InputSpec(DATASET, "minilm"), train=TrainConfig(epochs=2, threads=1)),
        mini.cache,
        model,
    )
    client = local_client(create_app(scans, tmp_path / "set.jsonl", ["PER", "LOC", "MIS"], model))
    assert client.get("/api/state").json()["model"] == model.name  # no server path in an answer
    text = "Obama besucht Paris mit Angela Merkel"
    answer = client.post("/api/tokenize", json={"index": 0, "text": text}).json()
    suggested = answer["suggested"]
    assert len(suggested) == len(answer["tokens"]) == 6
    assert all(t == "O" or t[2:] in ("PER", "LOC", "MIS") for t in suggested)
    final = ["B-PER", "O", "B-LOC", "O", "B-PER", "I-PER"]
    saved = client.post(
        "/api/save", json={"index": 0, "text": answer["tokens"], "label": final, "suggested": suggested}
    ).json()["item"]
    on_disk = json.loads((tmp_path / "set.jsonl").read_text(encoding="utf-8"))
    assert on_disk["suggestions"]["model"] == str(model)  # the dataset keeps the run as given
    assert saved["suggestions"] == on_disk["suggestions"] | {"model": model.name}
    assert saved["suggestions"] == {
        "model": model.name,
        "label_map": {
            "spec": "auto",
            "used": "hicbam",
            "renamed": {"MISC": "MIS", "ORG": "MIS"},
            "dropped": [],
        },
        "changed": sum(a != b for a, b in zip(suggested, final)),
    }


def test_easyocr_engine_is_used_when_its_weights_are_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EasyOCR's weights cannot be downloaded here: a stand-in module pins the wiring (weights
    found in EASYOCR_MODULE_PATH, languages passed on, downloads off, paragraphs joined)."""
    import sys
    import types

    from featurize.ocr import ENGINES

    engine = ENGINES.get("easyocr")
    monkeypatch.setenv("EASYOCR_MODULE_PATH", str(tmp_path))
    seen: dict = {}

    class Reader:
        def __init__(self, langs: list[str], **kwargs: object) -> None:
            seen.update(langs=langs, **kwargs)

        def readtext(self, image, detail: int, paragraph: bool) -> list[str]:  # noqa: ANN001
            seen.update(shape=image.shape, detail=detail, paragraph=paragraph)
            return ["Blick vom Habl-", "Berg"]

    monkeypatch.setitem(sys.modules, "easyocr", types.SimpleNamespace(Reader=Reader))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object() if name == "easyocr" else None)
    assert "no weights" in (engine.available() or "")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "latin_g2.pth").write_bytes(b"")
    assert engine.available() is None
    engine._readers.clear()
    result = engine.run(Image.new("RGB", (40, 20), "white"), "de")
    assert result.text == "Blick vom Habl-\nBerg" and rejoin_lines(result.text) == "Blick vom Habl-Berg"
    assert seen["langs"] == ["de"] and seen["download_enabled"] is False and seen["shape"] == (20, 40, 3)
