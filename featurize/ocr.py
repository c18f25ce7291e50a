"""OCR engines, found by name: Tesseract (the default; Debian's ``tesseract-ocr`` with the
``deu`` and ``frk`` (Fraktur) models) and EasyOCR when it and its weights are installed.

Two ways to read: :meth:`OcrEngine.run` gives the text of one caption box (``annotate``);
:func:`read_page` gives every word of a whole scan with its box on the scan, its confidence
and its line (``heads predict --scans``).

Tesseract runs as its own command-line program (``tesseract IMAGE stdout -l LANG``), the
interface Debian ships and pytesseract wraps; nothing to gain from the wrapper.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurize.errors import ConfigError
from featurize.registry import Registry


@dataclass(frozen=True)
class OcrWord:
    """One word as the engine read it, with its box in the scan's pixels."""

    text: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    confidence: float  # 0-100 as the engine gives it
    line: tuple[int, int, int]  # block, paragraph, line: reading order and where lines break

    def to_json(self) -> list[object]:
        return [self.text, *self.box, round(self.confidence, 1), *self.line]

    @classmethod
    def from_json(cls, row: list[object]) -> OcrWord:
        text, x0, y0, x1, y1, conf, block, par, line = row
        return cls(
            str(text), (int(x0), int(y0), int(x1), int(y1)), float(conf), (int(block), int(par), int(line))
        )  # type: ignore[arg-type]


@dataclass
class OcrResult:
    text: str  # as the engine gave it (lines kept)
    engine: str
    lang: str
    seconds: float


class OcrEngine:
    name = ""

    def available(self) -> str | None:
        """None when usable, else why not (shown to the user)."""
        raise NotImplementedError

    def languages(self) -> list[str]:
        raise NotImplementedError

    def read(self, image: Any, lang: str) -> str:
        raise NotImplementedError

    def read_words(self, image: Any, lang: str) -> list[OcrWord]:
        """Every word of a whole page with its box, in reading order."""
        raise NotImplementedError

    def version(self) -> str:
        """What changes the output: part of the OCR cache's key."""
        return self.name

    def run(self, image: Any, lang: str) -> OcrResult:
        problem = self.available()
        if problem:
            raise ConfigError(f"OCR engine {self.name}: {problem}")
        started = time.perf_counter()
        text = self.read(image, lang)
        return OcrResult(text, self.name, lang, time.perf_counter() - started)


ENGINES: Registry[OcrEngine] = Registry("OCR engine")


class Tesseract(OcrEngine):
    name = "tesseract"

    def __init__(self, psm: int = 6) -> None:
        self.psm = psm  # 6: one uniform block of text, what a caption box holds

    def available(self) -> str | None:
        if shutil.which("tesseract") is None:
            return "not installed (apt-get install tesseract-ocr tesseract-ocr-deu tesseract-ocr-frk)"
        return None

    def languages(self) -> list[str]:
        if self.available():
            return []
        out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, check=False)
        return [
            line.strip() for line in out.stdout.splitlines()[1:] if line.strip() and line.strip() != "osd"
        ]

    def check_languages(self, lang: str) -> None:
        known = set(self.languages())
        missing = [part for part in lang.split("+") if part not in known]
        if missing:
            raise ConfigError(
                f"tesseract has no {'+'.join(missing)} model (installed: {', '.join(sorted(known))}); "
                f"apt-get install {' '.join('tesseract-ocr-' + m for m in missing)}"
            )

    def version(self) -> str:
        out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, check=False)
        return (
            (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "tesseract"
        )

    def _tesseract(self, image: Any, lang: str, psm: int, *extra: str) -> str:
        self.check_languages(lang)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "box.png"
            image.convert("RGB").save(path)
            done = subprocess.run(
                ["tesseract", str(path), "stdout", "-l", lang, "--psm", str(psm), *extra],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "OMP_THREAD_LIMIT": "1"},  # one box is small; threads only add overhead
                timeout=300,
            )
        if done.returncode != 0:
            raise ConfigError(f"tesseract failed: {done.stderr.strip()[-300:]}")
        return done.stdout

    def read(self, image: Any, lang: str) -> str:
        return self._tesseract(image, lang, self.psm).strip()

    def read_words(self, image: Any, lang: str, psm: int = 3) -> list[OcrWord]:
        """Tesseract's TSV output (``tsv`` config): level-5 rows are words with their boxes.
        Page segmentation 3 (fully automatic) finds the text blocks of a page beside pictures;
        11 (sparse text) finds a lone caption under a picture that 3 takes for part of it."""
        rows = self._tesseract(image, lang, psm, "tsv").splitlines()
        words = []
        for row in rows[1:]:
            cells = row.split("\t")
            if len(cells) < 12 or cells[0] != "5" or not cells[11].strip():
                continue
            block, par, line = (int(c) for c in cells[2:5])
            left, top, width, height = (int(c) for c in cells[6:10])
            words.append(
                OcrWord(
                    cells[11].strip(),
                    (left, top, left + width, top + height),
                    float(cells[10]),
                    (block, par, line),
                )
            )
        return words


# One --ocr setting for both engines: Tesseract's model names read as EasyOCR's language codes
# (EasyOCR has no Fraktur model; its German one is the nearest).
TESSERACT_TO_EASYOCR = {"deu": "de", "frk": "de", "eng": "en", "ces": "cs"}


class EasyOcr(OcrEngine):
    name = "easyocr"
    _readers: dict[str, Any] = {}

    def _model_dir(self) -> Path:
        return Path(os.environ.get("EASYOCR_MODULE_PATH", Path.home() / ".EasyOCR")) / "model"

    def available(self) -> str | None:
        if importlib.util.find_spec("easyocr") is None:
            return "not installed (pip install easyocr)"
        if not any(self._model_dir().glob("*.pth")):
            return f"no weights in {self._model_dir()} (EasyOCR downloads them where a network is reachable)"
        return None

    def languages(self) -> list[str]:
        return ["de", "en"] if not self.available() else []

    def _reader(self, lang: str) -> Any:
        """One easyocr.Reader per language setting, built on first use (it loads its models)."""
        import easyocr

        if lang not in self._readers:
            codes = dict.fromkeys(TESSERACT_TO_EASYOCR.get(part, part) for part in lang.split("+"))
            self._readers[lang] = easyocr.Reader(
                list(codes),
                gpu=False,
                model_storage_directory=str(self._model_dir()),
                download_enabled=False,
            )
        return self._readers[lang]

    def read(self, image: Any, lang: str) -> str:
        import numpy as np

        lines = self._reader(lang).readtext(np.asarray(image.convert("RGB")), detail=0, paragraph=True)
        return "\n".join(lines)

    def read_words(self, image: Any, lang: str) -> list[OcrWord]:
        """EasyOCR boxes whole text runs; a run's words share its box in proportion to their
        characters (a run is one line, so each run is its own line)."""
        import numpy as np

        runs = self._reader(lang).readtext(np.asarray(image.convert("RGB")), detail=1, paragraph=False)
        words: list[OcrWord] = []
        for n, (corners, text, conf) in enumerate(runs):
            xs, ys = [p[0] for p in corners], [p[1] for p in corners]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            parts = str(text).split()
            total = max(1, sum(len(p) + 1 for p in parts) - 1)
            at = 0
            for part in parts:
                left = x0 + (x1 - x0) * at / total
                at += len(part)
                right = x0 + (x1 - x0) * at / total
                at += 1
                words.append(
                    OcrWord(part, (int(left), int(y0), int(right), int(y1)), float(conf) * 100, (n, 0, 0))
                )
        return words


ENGINES.register("tesseract")(Tesseract())
ENGINES.register("easyocr")(EasyOcr())


SPARSE_CONFIDENCE = 80.0  # words kept from Tesseract's sparse-text fallback


def read_page(engine: str, image: Any, lang: str, min_width: int = 1600) -> list[OcrWord]:
    """Every word of a whole scan, boxes in the scan's own pixels. A small scan is enlarged to
    ``min_width`` first (at most 4x): a book's captions scanned at 100 dpi are too small for
    Tesseract, whose models expect text about 30 pixels high (measured on the Heimatbuch
    scans: "Blick vom Habl-Berg ..." is found at 2x and not at 1x). Where Tesseract's page
    mode finds nothing, its sparse-text mode is tried."""
    from PIL import Image

    chosen = ENGINES.get(engine)
    problem = chosen.available()
    if problem:
        raise ConfigError(f"OCR engine {engine}: {problem}")
    scale = min(4.0, max(1.0, min_width / max(1, image.width)))
    if scale > 1:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.convert("L").resize(size, Image.Resampling.LANCZOS)
    words = chosen.read_words(image, lang)
    if isinstance(chosen, Tesseract) and not any(w.confidence >= SPARSE_CONFIDENCE for w in words):
        # Nothing found: a caption under a picture (measured on the Heimatbuch scans: "Marienbad"
        # and "Sandau" under coats of arms). Sparse-text mode reads the picture's texture as
        # letters too, so only confident words of two letters or more are kept.
        words = [
            w
            for w in chosen.read_words(image, lang, psm=11)
            if w.confidence >= SPARSE_CONFIDENCE and sum(c.isalnum() for c in w.text) >= 2
        ]
    if scale == 1:
        return words
    return [
        OcrWord(w.text, tuple(round(v / scale) for v in w.box), w.confidence, w.line)  # type: ignore[arg-type]
        for w in words
    ]


def engine_status() -> list[dict[str, object]]:
    """Every engine with its languages, or why it cannot run here."""
    return [
        {"name": name, "problem": engine.available(), "languages": engine.languages()}
        for name, engine in ENGINES.items()
    ]
