"""OCR engines, found by name: Tesseract (the default; Debian's ``tesseract-ocr`` with the
``deu`` and ``frk`` (Fraktur) models) and EasyOCR when it and its weights are installed.

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

    def read(self, image: Any, lang: str) -> str:
        known = set(self.languages())
        missing = [part for part in lang.split("+") if part not in known]
        if missing:
            raise ConfigError(
                f"tesseract has no {'+'.join(missing)} model (installed: {', '.join(sorted(known))}); "
                f"apt-get install {' '.join('tesseract-ocr-' + m for m in missing)}"
            )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "box.png"
            image.convert("RGB").save(path)
            done = subprocess.run(
                ["tesseract", str(path), "stdout", "-l", lang, "--psm", str(self.psm)],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "OMP_THREAD_LIMIT": "1"},  # one box is small; threads only add overhead
                timeout=120,
            )
        if done.returncode != 0:
            raise ConfigError(f"tesseract failed: {done.stderr.strip()[-300:]}")
        return done.stdout.strip()


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

    def read(self, image: Any, lang: str) -> str:
        import easyocr
        import numpy as np

        if lang not in self._readers:
            self._readers[lang] = easyocr.Reader(
                lang.split("+"),
                gpu=False,
                model_storage_directory=str(self._model_dir()),
                download_enabled=False,
            )
        lines = self._readers[lang].readtext(np.asarray(image.convert("RGB")), detail=0, paragraph=True)
        return "\n".join(lines)


ENGINES.register("tesseract")(Tesseract())
ENGINES.register("easyocr")(EasyOcr())


def engine_status() -> list[dict[str, object]]:
    """Every engine with its languages, or why it cannot run here."""
    return [
        {"name": name, "problem": engine.available(), "languages": engine.languages()}
        for name, engine in ENGINES.items()
    ]
