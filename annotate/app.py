"""The web app of ``annotate serve``: a JSON API over one dataset and one folder of scans,
and the page in ``static/``.

Endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, so OCR (seconds
per box) never blocks the server's event loop, and the page shows a busy state meanwhile.

What a browser should not send is refused: requests from other sites, other ``Host`` names and
bodies over the limit by :class:`annotate.guard.Guard` before any endpoint runs; bad input
(not JSON, wrong types, boxes that are not four finite numbers inside the scan, tokens over
:data:`MAX_TOKEN_CHARS`, items over :data:`MAX_TOKENS`, text that is not Unicode) by the
request models and the checks below, always with a 4xx and a JSON ``{"detail": "..."}`` that
names no path of the server.
"""

from __future__ import annotations

import html
import io
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from annotate.guard import Guard, new_token
from annotate.prelabels import TypeMap, model_types, resolve_type_map
from annotate.store import IMAGE_SUFFIXES, Dataset, list_scans
from featurize import ocr
from featurize.errors import ConfigError, MnerError
from featurize.ocr_text import rejoin_lines, tokenize

STATIC = Path(__file__).parent / "static"
MAX_TOKEN_CHARS = 200  # the longest token (a word or a punctuation mark) of an item
MAX_TOKENS = 2000  # the most tokens of one item (a whole dense book page is about 600)
MAX_TEXT_CHARS = 100_000  # the longest caption text sent to be split into tokens or saved
BOX_TOLERANCE = 0.5  # pixels a box may stick out of the scan (rounding); clamped to it
log = logging.getLogger("annotate")


def _unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate)") from None
    return value


Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS), AfterValidator(_unicode)]
Name = Annotated[  # an OCR engine or language: no control characters
    str, StringConstraints(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$"), AfterValidator(_unicode)
]
Tag = Annotated[str, StringConstraints(max_length=100), AfterValidator(_unicode)]  # a label: O, B-PER ...
Token = Annotated[str, AfterValidator(_unicode)]  # its length is checked by _check_tokens
Index = Annotated[int, Field(strict=True)]
Coordinate = Annotated[float, Field(strict=True, allow_inf_nan=False)]
# [x0, y0, x1, y1] in the scan's pixels, x0 < x1, y0 < y1, inside the scan; None: the whole scan
Box = Annotated[list[Coordinate], Field(min_length=4, max_length=4)] | None


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OcrRequest(_Request):
    index: Index
    box: Box = None
    engine: Name = "tesseract"
    lang: Name = "deu"


class TokenizeRequest(_Request):
    index: Index
    text: Text
    picture_box: Box = None


class SaveRequest(_Request):
    index: Index
    picture_box: Box = None
    caption_box: Box = None
    text: list[Token]
    label: list[Tag]
    ocr_text: Text = ""
    engine: Name | None = None
    lang: Name | None = None
    suggested: list[Tag] | None = None


class IndexRequest(_Request):
    index: Index


def _check_tokens(tokens: list[str], what: str = "the item") -> None:
    """422 for an item over :data:`MAX_TOKENS` tokens or with a token over
    :data:`MAX_TOKEN_CHARS` characters, naming the limit."""
    if len(tokens) > MAX_TOKENS:
        raise HTTPException(
            422, f"{what} has {len(tokens)} tokens: the limit is {MAX_TOKENS} tokens per item (MAX_TOKENS)"
        )
    for i, token in enumerate(tokens):
        if len(token) > MAX_TOKEN_CHARS:
            raise HTTPException(
                422,
                f"token {i + 1} of {what} is {len(token)} characters long: the limit is "
                f"{MAX_TOKEN_CHARS} characters per token (MAX_TOKEN_CHARS)",
            )


def _check_box(image: Any, box: Box, what: str) -> tuple[int, int, int, int] | None:
    """The box in whole pixels, or 422: not x0 < x1 and y0 < y1, or outside the scan."""
    if box is None:
        return None
    x0, y0, x1, y1 = box
    if not (x0 < x1 and y0 < y1):
        raise HTTPException(422, f"the {what} box [x0, y0, x1, y1] needs x0 < x1 and y0 < y1")
    width, height = image.size
    tol = BOX_TOLERANCE
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        raise HTTPException(
            422, f"the {what} box lies outside the scan (0 to {width} across, 0 to {height} down)"
        )
    return (
        max(0, round(x0)),
        max(0, round(y0)),
        min(width, round(x1)),
        min(height, round(y1)),
    )


def _crop(image: Any, box: Box, what: str = "picture") -> Any:
    pixels = _check_box(image, box, what)
    if pixels is None:
        return image
    x0, y0, x1, y1 = pixels
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise HTTPException(422, "the box is too small: drag a larger one")
    return image.crop(pixels)


_PATH = re.compile(r"""(?<![\w/.~-])(?:/[^\s'"/:,;()\[\]]+){2,}/?""")


def _validation_message(errors: Any) -> str:
    parts = []
    for error in list(errors)[:3]:
        if error.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'decode error')})")
            continue
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "bad request: " + "; ".join(parts) + more


def create_app(
    images: Path,
    out: Path,
    types: list[str] | None = None,
    model: Path | None = None,
    lang: str = "deu",
    label_map: str = "auto",
    note: Callable[[str], None] = lambda _message: None,
    port: int | None = None,
    host: str = "127.0.0.1",
) -> FastAPI:
    """The app over one folder of scans and one dataset; ``label_map`` maps the model's types
    onto the dataset's (:mod:`annotate.prelabels`), ``note`` gets the one-line remarks (the
    model types that are dropped) once, at start. ``port`` and ``host`` are where the server
    listens (the ``Host`` and ``Origin`` it accepts; port None: the port each request came in
    on); the session token the page must send is ``app.state.token``."""
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
    token = new_token()
    # no /docs: its page runs scripts from a CDN at this server's origin, where the token is
    app = FastAPI(title="annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = token
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, token=token, port=port, host=host)
    # the server's own folders, longest first: never named in an answer
    hidden = sorted(
        {str(images), str(Path(out).resolve().parent)} | ({str(Path(model).resolve())} if model else set()),
        key=len,
        reverse=True,
    )

    def scrub(text: str) -> str:
        """The text with the server's paths taken out: a file of the scans folder by its name
        in it, any other path by its last part."""
        text = text.replace(str(images) + "/", "")
        for path in hidden:
            text = text.replace(path + "/", "").replace(path, Path(path).name)
        text = text.replace(str(Path.home()) + "/", "~/")
        return _PATH.sub(lambda match: match.group(0).rstrip("/").rsplit("/", 1)[-1], text)

    def public(item: dict[str, Any] | None) -> dict[str, Any] | None:
        """A saved item as the API shows it: the model by its folder's name."""
        if item and isinstance(item.get("suggestions"), dict) and item["suggestions"].get("model"):
            item = item | {
                "suggestions": item["suggestions"] | {"model": Path(item["suggestions"]["model"]).name}
            }
        return item

    @app.exception_handler(StarletteHTTPException)
    def http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        detail = scrub(err.detail) if isinstance(err.detail, str) else err.detail
        return JSONResponse({"detail": detail}, err.status_code, headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    def bad_request(_request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": scrub(_validation_message(err.errors()))}, 422)

    @app.exception_handler(Exception)
    def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.error("annotate: %s %s failed", request.method, request.url.path, exc_info=err)
        return JSONResponse({"detail": "internal error: the server's log has the details"}, 500)

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
        except UnidentifiedImageError:
            raise HTTPException(
                422, f"{rel(path)} cannot be read as an image (unknown format): skip it"
            ) from None
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            reason = scrub(str(err) or type(err).__name__)
            raise HTTPException(422, f"{rel(path)} cannot be read as an image ({reason}): skip it") from None

    page_html = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{token}}", html.escape(token))

    @app.get("/")
    def page() -> Response:
        return Response(page_html, media_type="text/html", headers={"Cache-Control": "no-store"})

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        return {
            "types": dataset.types,
            "out": dataset.out.name,
            "lang": lang,
            "model": Path(model).name if model else None,
            "label_map": type_map.record() if type_map else None,
            "prelabels": f"model {Path(model).name}, {type_map.describe()}" if model and type_map else None,
            "engines": [
                engine | {"problem": scrub(engine["problem"]) if engine["problem"] else None}
                for engine in ocr.engine_status()
            ],
            "warning": scrub(dataset.torn) if dataset.torn else None,
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
        return {"item": public(dataset.items[at]) if at is not None else None}

    @app.post("/api/ocr")
    def run_ocr(request: OcrRequest) -> dict[str, Any]:
        image = _crop(load(request.index), request.box, "caption")
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
        _check_tokens(tokens, "the text")
        suggested = None
        if predictor is not None and type_map is not None:
            from heads.input_files import PredictInput

            picture = _crop(load(request.index), request.picture_box, "picture")
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
        _check_tokens(request.text)
        if len(request.label) > MAX_TOKENS or len(request.suggested or ()) > MAX_TOKENS:
            raise HTTPException(
                422, f"more labels than the limit of {MAX_TOKENS} tokens per item (MAX_TOKENS)"
            )
        image = load(request.index)
        picture = _crop(image, request.picture_box, "picture")
        _check_box(image, request.caption_box, "caption")
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
        return {"item": public(saved), "done": sum(1 for _ in dataset.items)}

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
