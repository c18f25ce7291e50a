"""``heads predict --scans``: real Heimatbuch scans through real Tesseract, a CRFsuite head
that knows the scans' names, the JSON lines (entities with boxes on the scan, bad scans with
their reason, cached OCR on a re-run) and the HTML report in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runner import run_cli
from PIL import Image

from featurize.ocr import OcrWord
from heads.scan_pages import Token, join_words, page_tokens, rejoin_hyphenated, sentences

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--no-first-run"]  # fmt: skip
LOC_RGB = (0x1F, 0x77, 0xB4)  # heads.scan_report.COLOURS["LOC"]


def word(text: str, box: tuple[int, int, int, int], line: int, par: int = 1) -> OcrWord:
    return OcrWord(text, box, 95.0, (1, par, line))


# --------------------------------------------------------------------------- words to tokens


def test_page_tokens_split_punctuation_and_share_the_box() -> None:
    tokens = page_tokens([word("Dürrmaul,", (100, 10, 190, 30), 1), word("1938", (200, 10, 240, 30), 1)])
    assert [t.text for t in tokens] == ["Dürrmaul", ",", "1938"]
    name, comma = tokens[0].boxes[0], tokens[1].boxes[0]
    assert name[0] == 100 and comma[2] == 190 and name[2] <= comma[0] + 1  # side by side, in order
    assert name[1:4:2] == comma[1:4:2] == (10, 30)


def test_a_word_broken_at_a_line_end_is_rejoined_with_both_boxes() -> None:
    words = [
        word("die", (0, 0, 20, 10), 1),
        word("Kir-", (30, 0, 60, 10), 1),
        word("che", (0, 20, 25, 30), 2),
        word("Ost-", (30, 20, 60, 30), 2),
        word("Bayern", (0, 40, 50, 50), 3),
        word("Nord-", (60, 40, 90, 50), 3),  # last on its paragraph's line, next paragraph: kept
        word("und", (0, 60, 30, 70), 1, par=2),
    ]
    joined = rejoin_hyphenated(words)
    assert [w[0] for w in joined] == ["die", "Kirche", "Ost-Bayern", "Nord-", "und"]
    assert joined[1][1] == [(30, 0, 60, 10), (0, 20, 25, 30)]


def test_sentences_are_cut_at_full_stops_and_paragraphs() -> None:
    def tok(text: str, par: int = 1) -> Token:
        return Token(text, [(0, 0, 1, 1)], (1, par, 1))

    tokens = [tok(t) for t in "Das ist Maiersgrün . Dort steht die Kirche . 1945 kam".split()]
    tokens += [tok("Neu", 2), tok("Absatz", 2)]
    assert list(sentences(tokens)) == [(0, 4), (4, 9), (9, 11), (11, 13)]
    assert (
        join_words(["Monument", "(", "im", "Volksmund", ")", ",", "Nr", "."])
        == "Monument (im Volksmund), Nr."
    )


# --------------------------------------------------------------------------- the command

TRAIN = [
    ("Das Innere der Kirche von Maiersgrün nach 1945", "O O O O O B-LOC O O"),
    ("Blick vom Habl-Berg in die Plan-Pilsner Senke", "O O B-LOC O O B-LOC I-LOC"),
    ("Grußwort des Hessischen Ministerpräsidenten Holger Börner", "O O O O B-PER I-PER"),
    ("Bürger aus Maschowitz im Sudetenland", "O O B-LOC O B-LOC"),
    ("Das Land Hessen hat nach dem Krieg geholfen", "O O B-LOC O O O O O"),
    ("Die Kirche in Maiersgrün und der Hof in Dürrmaul", "O O O B-LOC O O O O B-LOC"),
]


@pytest.fixture(scope="module")
def crf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CRFsuite head on word features alone, trained on the scans' own captions: it tags
    their names, so the test can look for their boxes."""
    from featurize.atomic import atomic_write_text
    from heads.crf_suite import CrfSuiteConfig, CrfSuiteTagger
    from heads.crf_suite_run import MARKER
    from heads.inputs import InputSpec

    folder = tmp_path_factory.mktemp("scan-model") / "crf"
    words = [s.split() for s, _ in TRAIN] * 3
    tags = [t.split() for _, t in TRAIN] * 3
    tagger = CrfSuiteTagger(CrfSuiteConfig(c1_grid=(0.01,), c2_grid=(0.01,), clusters=(), max_iterations=60))
    tagger.fit(words, tags, words, tags)
    tagger.save(folder)
    atomic_write_text(folder / MARKER, json.dumps({"inputs": InputSpec("hipe-de", None).describe()}))
    return folder


@pytest.fixture
def scan_folder(tmp_path: Path, data_dir: Path) -> Path:
    folder = tmp_path / "book"
    (folder / "part2").mkdir(parents=True)
    for name in ("286.PNG", "52.PNG"):
        shutil.copy(data_dir / "heimatbuch_snippets" / name, folder / name)
    shutil.copy(data_dir / "heimatbuch_snippets" / "0070.PNG", folder / "part2" / "0070.PNG")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not a scan", encoding="utf-8")
    Image.new("RGB", (400, 300), "white").save(folder / "blank.png")
    return folder


@pytest.mark.slow
def test_scans_in_entities_out_with_boxes_report_and_cached_ocr(
    crf_model: Path, scan_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from heads.cli import main

    out, report = tmp_path / "entities.jsonl", tmp_path / "report.html"
    argv = ["predict", "--model", str(crf_model), "--scans", str(scan_folder), "--ocr", "deu"]
    code, _, err = run_cli(main, [*argv, "--out", str(out), "--html", str(report)], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_scan = {line["scan"]: line for line in lines}
    assert list(by_scan) == ["286.PNG", "52.PNG", "blank.png", "broken.png", "notes.txt", "part2/0070.PNG"]
    assert "no words" in by_scan["blank.png"]["error"]
    assert "cannot be read as an image" in by_scan["broken.png"]["error"]
    assert "not an image file" in by_scan["notes.txt"]["error"]
    assert "3 bad scans" in err and "bad scan broken.png" in err

    page = by_scan["286.PNG"]
    assert (page["width"], page["height"]) == Image.open(scan_folder / "286.PNG").size
    place = next(e for e in page["entities"] if e["text"] == "Maiersgrün")
    assert place["type"] == "LOC" and 0.5 < place["score"] <= 1.0
    x0, y0, x1, y1 = place["box"]
    assert 30 <= x0 < x1 <= 100 and 30 <= y0 < y1 <= 55  # where the word is printed on the scan
    assert place["boxes"] == [place["box"]]
    tagged = [w for w in page["words"] if w["tag"] != "O"]
    assert [w["text"] for w in tagged] == ["Maiersgrün"] and tagged[0]["box"] == place["box"]
    names = {(e["text"], e["type"]) for e in by_scan["part2/0070.PNG"]["entities"]}
    assert ("Holger Börner", "PER") in names and ("Maschowitz", "LOC") in names
    assert not any(line["ocr"].get("cached") for line in lines if "words" in line)

    # The report: every good scan's copy, boxes over it, the tables
    html = report.read_text(encoding="utf-8")
    assert html.count('class="scan"') == 3 and "Maiersgrün" in html and "broken.png" in html
    assert len(list((tmp_path / "report_files").glob("*.jpg"))) == 3

    # A re-run reads no page twice and gives the same entities
    again = tmp_path / "again.jsonl"
    code, _, err = run_cli(main, [*argv, "--out", str(again)], capsys)
    assert code == 0, err
    second = [json.loads(line) for line in again.read_text(encoding="utf-8").splitlines()]
    assert all(line["ocr"]["cached"] for line in second if "words" in line)
    assert [line.get("entities") for line in second] == [line.get("entities") for line in lines]
    assert "OCR reused for 4" in err  # the blank page too: its OCR found nothing, and is kept

    _check_report_in_chromium(report, tmp_path)


def _check_report_in_chromium(report: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail("Debian's chromium is needed: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(report.as_uri())
        page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        total = page.locator("#entities tbody tr").count()
        assert total >= 4
        page.fill("#search", "maiersg")
        assert page.locator("#entities tbody tr:visible").count() == 1
        assert page.inner_text("#shown") == "1"
        page.fill("#search", "")
        page.click("#entities th:has-text('score')")  # sort: ascending scores
        scores = [
            float(s)
            for s in page.eval_on_selector_all(
                "#entities tbody td:nth-child(3)", "e => e.map(x => x.textContent)"
            )
        ]
        assert scores == sorted(scores)
        page.uncheck(".typefilter[value='LOC']")  # types filter rows and boxes
        assert page.locator("#entities tbody tr:visible").count() < total
        assert page.locator("#scan-0 rect.ent.hidden").count() >= 1
        page.check(".typefilter[value='LOC']")
        shot = tmp_path / "scan.png"
        page.locator("#scan-0 .frame").screenshot(path=str(shot))
        clean = tmp_path / "clean.png"
        page.evaluate("document.querySelectorAll('svg').forEach(s => s.style.display = 'none')")
        page.locator("#scan-0 .frame").screenshot(path=str(clean))
        browser.close()
    drawn, bare = _near(Image.open(shot), LOC_RGB), _near(Image.open(clean), LOC_RGB)
    assert drawn > 100 and bare < drawn / 10, (drawn, bare)  # the LOC box is there, in its colour


def _near(image: Image.Image, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - np.array(rgb)).max(axis=-1) <= tolerance).sum())


def test_easyocr_words_share_their_run_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EasyOCR's weights cannot be downloaded here: a stand-in module pins the page reading
    (runs split into words with their share of the box, Tesseract's language names mapped)."""
    import sys
    import types

    from featurize.ocr import ENGINES, read_page

    seen: dict = {}

    class Reader:
        def __init__(self, langs: list[str], **kwargs: object) -> None:
            seen["langs"] = langs

        def readtext(self, image, detail: int, paragraph: bool) -> list:  # noqa: ANN001
            assert detail == 1 and paragraph is False
            return [([[10, 5], [110, 5], [110, 25], [10, 25]], "Kirche Maiersgrün", 0.9)]

    monkeypatch.setitem(sys.modules, "easyocr", types.SimpleNamespace(Reader=Reader))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object() if name == "easyocr" else None)
    monkeypatch.setenv("EASYOCR_MODULE_PATH", str(tmp_path))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "latin_g2.pth").write_bytes(b"")
    ENGINES.get("easyocr")._readers.clear()
    words = read_page("easyocr", Image.new("RGB", (2000, 100), "white"), "deu+frk")
    assert seen["langs"] == ["de"]
    assert [w.text for w in words] == ["Kirche", "Maiersgrün"] and words[0].confidence == pytest.approx(90)
    assert words[0].box[0] == 10 and words[1].box[2] == 110 and words[0].box[2] <= words[1].box[0]
