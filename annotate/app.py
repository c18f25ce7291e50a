"""The web app of ``annotate serve``: a JSON API over one dataset and one folder of scans,
and the page in ``static/``.

Endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, so OCR (seconds
per box) never blocks the server's event loop, and the page shows a busy state meanwhile.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from annotate.prelabels import TypeMap, model_types, resolve_type_map
from annotate.store import IMAGE_SUFFIXES, Dataset, list_scans
from featurize import ocr
from featurize.errors import ConfigError, MnerError
from featurize.ocr_text import rejoin_lines, tokenize

STATIC = Path(__file__).parent / "static"
Box = list[float] | None  # [x0, y0, x1, y1] in the scan's pixels


class OcrRequest(BaseModel):
    index: int
    box: Box = None
    engine: str = "tesseract"
    lang: str = "deu"


class TokenizeRequest(BaseModel):
    index: int
    text: str
    picture_box: Box = None


class SaveRequest(BaseModel):
    index: int
    picture_box: Box = None
    caption_box: Box = None
    text: list[str]
    label: list[str]
    ocr_text: str = ""
    engine: str | None = None
    lang: str | None = None
    suggested: list[str] | None = None


class IndexRequest(BaseModel):
    index: int


def _crop(image: Any, box: Box) -> Any:
    if not box:
        return image
    x0, y0, x1, y1 = (round(v) for v in box)
    x0, x1 = sorted((max(0, x0), min(image.width, x1)))
    y0, y1 = sorted((max(0, y0), min(image.height, y1)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise HTTPException(422, "the box is too small: drag a larger one")
    return image.crop((x0, y0, x1, y1))


def create_app(
    images: Path,
    out: Path,
    types: list[str] | None = None,
    model: Path | None = None,
    lang: str = "deu",
    label_map: str = "auto",
    note: Callable[[str], None] = lambda _message: None,
) -> FastAPI:
    """The app over one folder of scans and one dataset; ``label_map`` maps the model's types
    onto the dataset's (:mod:`annotate.prelabels`), ``note`` gets the one-line remarks (the
    model types that are dropped) once, at start."""
    images = Path(images).resolve()
    scans = list_scans(images)
    dataset = Dataset.open(out, types)
    lock = threading.Lock()  # one writer to the dataset at a time
    predictor = None
    type_map: TypeMap | None = None
    if model is None and label_map != "auto":
        raise ConfigError(f"--label-map {label_map}: maps a model's types; give --model too")
    if model is not None:
        from heads.families import load

        predictor = load(Path(model))
        type_map = resolve_type_map(model_types(list(predictor.tags)), dataset.types, label_map)
        note(f"pre-labels: model {model}, {type_map.describe()}")
        if type_map.dropped:
            note(
                f"model types without a type in {', '.join(dataset.types)} are never pre-labelled: "
                f"{', '.join(type_map.dropped)} (--label-map OLD=NEW maps them)"
            )
    app = FastAPI(title="annotate")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def source(index: int) -> Path:
        if not 0 <= index < len(scans):
            raise HTTPException(404, f"no scan {index}")
        return scans[index]

    def rel(path: Path) -> str:
        return path.relative_to(images).as_posix()

    def load(index: int) -> Any:
        from PIL import Image, UnidentifiedImageError

        path = source(index)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise HTTPException(422, f"{rel(path)} is not an image file: skip it")
        try:
            with Image.open(path) as img:
                img.load()
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise HTTPException(422, f"{rel(path)} cannot be read as an image ({err}): skip it") from None

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        return {
            "types": dataset.types,
            "out": str(dataset.out),
            "lang": lang,
            "model": str(model) if model else None,
            "label_map": type_map.record() if type_map else None,
            "prelabels": f"model {Path(model).name}, {type_map.describe()}" if model and type_map else None,
            "engines": ocr.engine_status(),
            "warning": dataset.torn,
            "scans": [
                {
                    "index": i,
                    "name": rel(p),
                    "status": dataset.status(rel(p)),
                    "image": p.suffix.lower() in IMAGE_SUFFIXES,
                }
                for i, p in enumerate(scans)
            ],
        }

    @app.get("/api/scan/{index}/image")
    def scan_image(index: int) -> Response:
        image = load(index)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/api/scan/{index}/item")
    def scan_item(index: int) -> dict[str, Any]:
        at = dataset.find(rel(source(index)))
        return {"item": dataset.items[at] if at is not None else None}

    @app.post("/api/ocr")
    def run_ocr(request: OcrRequest) -> dict[str, Any]:
        image = _crop(load(request.index), request.box)
        try:
            result = ocr.ENGINES.get(request.engine).run(image, request.lang)
        except MnerError as err:
            raise HTTPException(422, str(err)) from None
        text = rejoin_lines(result.text)
        return {
            "raw": result.text,
            "text": text,
            "engine": result.engine,
            "lang": result.lang,
            "seconds": round(result.seconds, 2),
        }

    @app.post("/api/tokenize")
    def run_tokenize(request: TokenizeRequest) -> dict[str, Any]:
        tokens = tokenize(request.text)
        if not tokens:
            raise HTTPException(422, "no words in the text")
        suggested = None
        if predictor is not None and type_map is not None:
            from heads.input_files import PredictInput

            picture = _crop(load(request.index), request.picture_box)
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            tmp = dataset.crops / ".suggest.png"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(buffer.getvalue())
            item = PredictInput(tokens, [tmp] if predictor.reads_images else [], caption=request.text)
            suggested = type_map.apply(predictor.predict([item])[0].tags)
        return {"tokens": tokens, "suggested": suggested}

    @app.post("/api/save")
    def save(request: SaveRequest) -> dict[str, Any]:
        image = load(request.index)
        picture = _crop(image, request.picture_box)
        changed = None
        if request.suggested is not None and len(request.suggested) == len(request.label):
            changed = sum(a != b for a, b in zip(request.suggested, request.label))
        item = {
            "text": request.text,
            "label": request.label,
            "source": rel(source(request.index)),
            "picture_box": request.picture_box,
            "caption_box": request.caption_box,
            "ocr": {"engine": request.engine, "lang": request.lang, "text": request.ocr_text},
            "types": dataset.types,
            "suggestions": (
                {
                    "model": str(model),
                    "label_map": type_map.record() if type_map else None,
                    "changed": changed,
                }
                if changed is not None
                else None
            ),
        }
        with lock:
            try:
                saved = dataset.save(item, picture)
            except MnerError as err:
                raise HTTPException(422, str(err)) from None
        return {"item": saved, "done": sum(1 for _ in dataset.items)}

    @app.post("/api/skip")
    def skip(request: IndexRequest) -> dict[str, Any]:
        with lock:
            dataset.skip(rel(source(request.index)))
        return {"ok": True}

    @app.post("/api/undo")
    def undo() -> dict[str, Any]:
        with lock:
            item = dataset.undo()
        return {"undone": item.get("source") if item else None}

    return app
