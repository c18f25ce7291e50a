"""``annotate serve`` refuses what a browser should not send: requests from other sites and
other Host names, bodies and tokens over the limits, boxes that are not boxes, malformed
JSON; no answer names a server path, bad input never gets a 500. The API through FastAPI's
test client, the limits on the wire against a real uvicorn, the cross-site attack in a real
headless Chromium."""

from __future__ import annotations

import http.server
import json
import random
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from annotate.app import MAX_TOKEN_CHARS, MAX_TOKENS, create_app
from annotate.cli import free_port
from annotate.guard import MAX_BODY_BYTES, TOKEN_HEADER
from annotate.store import Dataset

PORT = 8765  # what the test client's app believes it serves on
OWN = f"http://127.0.0.1:{PORT}"
SIZE = (120, 80)  # every test scan
EVIL = "http://evil.example"


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    folder = tmp_path / "scans"
    folder.mkdir()
    for name, colour in (("a.png", "white"), ("b.png", "gray"), ("c.png", "black")):
        Image.new("RGB", SIZE, colour).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


@pytest.fixture
def out(scans: Path, tmp_path: Path) -> Path:
    """A dataset with two saved items (a.png, b.png)."""
    path = tmp_path / "out" / "set.jsonl"
    data = Dataset.open(path)
    for name in ("a.png", "b.png"):
        data.save(
            {"text": ["Franz", "Huber"], "label": ["B-PER", "I-PER"], "source": name}, Image.new("RGB", SIZE)
        )
    return path


def _items(out: Path) -> list[str]:
    return [json.loads(line)["source"] for line in out.read_text(encoding="utf-8").splitlines()]


def _client(app, token: bool = True, base_url: str = OWN, **kwargs):  # noqa: ANN001, ANN003, ANN202
    """A test client calling as the page does (its own Host; the session token unless token=False)."""
    from fastapi.testclient import TestClient

    headers = {TOKEN_HEADER: app.state.token} if token else {}
    return TestClient(app, base_url=base_url, headers=headers, **kwargs)


@pytest.fixture
def app(scans: Path, out: Path):  # noqa: ANN201
    return create_app(scans, out, port=PORT)


def _index(client, name: str) -> int:  # noqa: ANN001
    return next(s["index"] for s in client.get("/api/state").json()["scans"] if s["name"] == name)


def _refused(response, status: int) -> str:  # noqa: ANN001
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    return detail


# --------------------------------------------------------------------------- origin, token, host


def test_cross_origin_undo_is_refused_and_nothing_is_removed(app, out: Path) -> None:  # noqa: ANN001
    bare = _client(app, token=False)
    assert "cross-origin" in _refused(bare.post("/api/undo", headers={"Origin": EVIL}), 403)
    assert "token" in _refused(bare.post("/api/undo"), 403)  # neither Origin nor token
    with_token = _client(app)  # even the right token does not make a foreign page welcome
    for headers in (
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": f"http://127.0.0.1:{PORT + 1}"},  # another local server
        {"Origin": f"https://127.0.0.1:{PORT}"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        _refused(with_token.post("/api/undo", headers=headers), 403)
    for path, body in (
        ("/api/skip", {"index": 2}),
        ("/api/save", {"index": 2, "text": ["x"], "label": ["O"]}),
    ):
        _refused(bare.post(path, json=body, headers={"Origin": EVIL}), 403)
    assert _items(out) == ["a.png", "b.png"]
    assert [s["status"] for s in with_token.get("/api/state").json()["scans"][:3]] == ["done", "done", "todo"]


def test_missing_or_wrong_token_is_refused(app, out: Path) -> None:  # noqa: ANN001
    bare = _client(app, token=False)
    wrong = "x" * len(app.state.token)
    for headers in (
        {},
        {TOKEN_HEADER: ""},
        {TOKEN_HEADER: wrong},
        {TOKEN_HEADER: "ä".encode()},
        {"Origin": OWN},
    ):
        for path in ("/api/undo", "/api/skip", "/api/save", "/api/ocr", "/api/tokenize"):
            detail = _refused(bare.post(path, json={"index": 2}, headers=headers), 403)
            assert TOKEN_HEADER in detail
    for method in ("PUT", "DELETE", "PATCH"):
        _refused(bare.request(method, "/api/undo"), 403)
    assert _items(out) == ["a.png", "b.png"]
    assert "c.png" not in json.loads(out.with_suffix(".annotate.json").read_text())["skipped"]


def test_right_token_from_the_own_origin_is_accepted(app, out: Path) -> None:  # noqa: ANN001
    client = _client(app)
    assert client.post("/api/undo", headers={"Origin": OWN}).json() == {"undone": "b.png"}
    assert client.post("/api/undo").json() == {"undone": "a.png"}  # no Origin: the token suffices
    local = _client(app, base_url=f"http://localhost:{PORT}")
    response = local.post("/api/skip", json={"index": 2}, headers={"Origin": f"http://localhost:{PORT}"})
    assert response.json() == {"ok": True}
    assert out.read_text() == "" and local.get("/api/state").json()["scans"][2]["status"] == "skipped"
    same = client.post("/api/undo", headers={"Origin": OWN, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        f"evil.example:{PORT}",
        f"127.0.0.1:{PORT + 1}",
        "127.0.0.1",
        f"localhost.evil:{PORT}",
        "",
    ],
)
def test_a_foreign_host_is_refused_for_reads_too(app, out: Path, host: str) -> None:  # noqa: ANN001
    client = _client(app)
    for path in ("/", "/api/state", "/static/app.js", "/api/scan/0/image", "/api/scan/0/item"):
        detail = _refused(client.get(path, headers={"Host": host}), 421)
        assert "Host" in detail
    _refused(client.post("/api/undo", headers={"Host": host}), 421)
    assert _items(out) == ["a.png", "b.png"]


def test_the_page_carries_the_session_token(scans: Path, out: Path, app) -> None:  # noqa: ANN001
    client = _client(app, token=False)
    page = client.get("/")
    assert f'<meta name="annotate-token" content="{app.state.token}">' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert (
        page.headers["x-frame-options"] == "DENY"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    assert "X-Annotate-Token" in client.get("/static/app.js").text
    assert len(app.state.token) >= 40 and create_app(scans, out).state.token != app.state.token  # per session
    assert client.get("/docs").status_code == 404  # no page that runs a CDN's scripts at this origin


# --------------------------------------------------------------------------- limits


def test_a_body_over_the_limit_is_refused_413(app, out: Path) -> None:  # noqa: ANN001
    client = _client(app)
    huge = "x" * (MAX_BODY_BYTES + 1)  # a token of megabytes: the body limit answers first
    body = json.dumps({"index": 2, "text": [huge], "label": ["O"]})
    detail = _refused(
        client.post("/api/save", content=body, headers={"Content-Type": "application/json"}), 413
    )
    assert str(MAX_BODY_BYTES) in detail
    _refused(client.post("/api/save", content=b"{}", headers={"Content-Length": "abc"}), 400)
    assert _items(out) == ["a.png", "b.png"]


def test_token_and_item_limits_are_refused_422_naming_the_limit(app, out: Path) -> None:  # noqa: ANN001
    client = _client(app)
    long = "W" * (MAX_TOKEN_CHARS + 1)
    detail = _refused(
        client.post("/api/save", json={"index": 2, "text": ["in", long], "label": ["O", "O"]}), 422
    )
    assert "token 2" in detail and f"{MAX_TOKEN_CHARS} characters" in detail and "MAX_TOKEN_CHARS" in detail
    detail = _refused(client.post("/api/tokenize", json={"index": 2, "text": f"Blick auf {long}"}), 422)
    assert "MAX_TOKEN_CHARS" in detail
    many = ["a"] * (MAX_TOKENS + 1)
    detail = _refused(
        client.post("/api/save", json={"index": 2, "text": many, "label": ["O"] * len(many)}), 422
    )
    assert f"{MAX_TOKENS} tokens" in detail and "MAX_TOKENS" in detail
    assert _items(out) == ["a.png", "b.png"]
    at_limit = "W" * MAX_TOKEN_CHARS  # the limit itself is fine
    saved = client.post("/api/save", json={"index": 2, "text": [at_limit], "label": ["B-PER"]})
    assert saved.status_code == 200 and _items(out) == ["a.png", "b.png", "c.png"]


BAD_BOXES = {
    "NaN": "[NaN, 1, 50, 50]",
    "Infinity": "[0, 0, Infinity, 50]",
    "-Infinity": "[-Infinity, 0, 50, 50]",
    "huge": "[0, 0, 1e999, 50]",
    "three": "[0, 0, 50]",
    "five": "[0, 0, 50, 50, 60]",
    "empty": "[]",
    "string": '["0", 0, 50, 50]',
    "bool": "[true, 0, 50, 50]",
    "null inside": "[null, 0, 50, 50]",
    "not a list": '"0,0,50,50"',
    "an object": '{"x0": 0}',
    "reversed": "[50, 50, 10, 10]",
    "flat": "[10, 20, 10, 40]",
    "outside right": f"[0, 0, {SIZE[0] + 10}, 50]",
    "outside bottom": f"[0, 0, 50, {SIZE[1] + 1}]",
    "negative": "[-5, 0, 50, 50]",
    "far away": "[1e300, 1e300, 1e301, 1e301]",
}


@pytest.mark.parametrize("box", BAD_BOXES.values(), ids=BAD_BOXES.keys())
def test_bad_boxes_are_refused_422(app, out: Path, box: str) -> None:  # noqa: ANN001
    client = _client(app)
    headers = {"Content-Type": "application/json"}
    bodies = {
        "/api/ocr": f'{{"index": 2, "box": {box}}}',
        "/api/save": f'{{"index": 2, "text": ["x"], "label": ["O"], "picture_box": {box}}}',
    }
    bodies["/api/save "] = f'{{"index": 2, "text": ["x"], "label": ["O"], "caption_box": {box}}}'
    for path, body in bodies.items():
        _refused(client.post(path.strip(), content=body, headers=headers), 422)
    assert _items(out) == ["a.png", "b.png"]


def test_a_box_on_the_edge_is_accepted(app, out: Path) -> None:  # noqa: ANN001
    client = _client(app)
    box = [0, 0, SIZE[0] + 0.4, SIZE[1]]  # rounding slack: clamped to the scan
    saved = client.post("/api/save", json={"index": 2, "text": ["x"], "label": ["O"], "picture_box": box})
    assert saved.status_code == 200, saved.text
    assert Image.open(out.parent / saved.json()["item"]["image"][0]).size == SIZE


# --------------------------------------------------------------------------- no paths, no 500


def test_no_answer_names_a_server_path(app, out: Path, tmp_path: Path) -> None:  # noqa: ANN001
    client = _client(app)
    notes = client.get(f"/api/scan/{_index(client, 'notes.txt')}/image")
    assert "notes.txt is not an image" in _refused(notes, 422)
    broken = client.get(f"/api/scan/{_index(client, 'zz-broken.png')}/image")
    detail = _refused(broken, 422)
    assert detail.startswith("zz-broken.png cannot be read as an image") and str(tmp_path) not in detail
    with out.open("ab") as handle:
        handle.write(b'{"text": ["Hu')  # a torn last line: the warning names the file only
    torn = create_app(tmp_path / "scans", out, port=PORT)
    answers = [
        _client(torn).get("/api/state"),
        client.get("/api/state"),
        client.get("/api/scan/0/item"),
        client.get("/api/scan/99/item"),
        client.get("/nowhere"),
        broken,
        notes,
    ]
    assert "set.jsonl" in answers[0].json()["warning"]
    for answer in answers:
        assert str(tmp_path) not in answer.text and "/tmp" not in answer.text, answer.text


def test_an_unexpected_error_is_a_generic_500(app, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    def explode(_text: str) -> list[str]:
        raise RuntimeError(f"{tmp_path}/secret went wrong")

    monkeypatch.setattr("annotate.app.tokenize", explode)
    response = _client(app, raise_server_exceptions=False).post(
        "/api/tokenize", json={"index": 0, "text": "x"}
    )
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error: the server's log has the details"}
    assert "secret" not in response.text and "Traceback" not in response.text


MALFORMED = [
    b"",
    b"{",
    b"not json",
    b"[]",
    b"null",
    b"42",
    b'"index"',
    b"\xff\xfe\x00garbage",
    b"{'index': 0}",
    b'{"index": 0,}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"index": ' + b"9" * 5000 + b"}",
    b'{"index": 1e999}',
    b'{"index": -1}',
    b'{"index": 99999999999999999999999999999}',
    b'{"index": true, "text": "x"}',
    b'{"index": "0", "text": "x"}',
    b'{"index": 0.5}',
    b'{"index": null}',
    b'{"index": 0, "text": 12}',
    b'{"index": 0, "text": ["x"]}',
    b'{"index": 0, "text": "\\ud800"}',
    b'{"index": 0, "text": ["\\udfff"], "label": ["O"]}',
    b'{"index": 0, "text": ["x"], "label": ["\\ud83d"]}',
    b'{"index": 0, "text": ["x"], "label": ["O"], "ocr_text": "\\udc80"}',
    b'{"index": 0, "text": ["x"], "label": ["O"], "lang": "deu\\u0000"}',
    b'{"index": 0, "text": ["x"], "label": ["X-PER"]}',
    b'{"index": 0, "text": ["x"], "label": []}',
    b'{"index": 0, "text": [], "label": []}',
    b'{"index": 0, "text": [null], "label": ["O"]}',
    b'{"index": 0, "text": [["x"]], "label": ["O"]}',
    b'{"index": 0, "text": ["x"], "label": ["O"], "suggested": "O"}',
    b'{"index": 0, "text": "   "}',
    b'{"index": 0, "engine": "nope"}',
    b'{"index": 0, "lang": "deu\\u0000"}',
    b'{"index": 0, "lang": "\\ud800"}',
    b'{"index": 0, "lang": "' + b"x" * 500 + b'"}',
    b'{"index": 3, "box": [0, 0, 50, 50]}',
    b'{"index": 4}',
]


def _no_500(response, tmp_path: Path) -> None:  # noqa: ANN001
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert isinstance(response.json()["detail"], str)
    assert str(tmp_path) not in response.text


def test_malformed_bodies_get_a_4xx_never_a_500(app, out: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """Each body against each endpoint, as text/plain (what a form can send): a 4xx with a
    message; as JSON: the same, or a 200 for a body that happens to fit the endpoint (an OCR of
    scan 0, a skip)."""
    client = _client(app)  # raises on any server error
    refused = 0
    for body in MALFORMED:
        for path in ("/api/ocr", "/api/tokenize", "/api/save", "/api/skip"):
            response = client.post(path, content=body, headers={"Content-Type": "text/plain"})
            _no_500(response, tmp_path)
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            if response.status_code != 200 or path not in ("/api/ocr", "/api/skip"):
                _no_500(response, tmp_path)
                refused += 1
    assert refused > 3 * len(MALFORMED)
    for path in ("/api/scan/-1/image", "/api/scan/1e9/image", "/api/scan/%00/item", "/api/scan/x/image"):
        _no_500(client.get(path), tmp_path)
    assert _items(out) == ["a.png", "b.png"]


def test_random_mutations_of_a_save_never_get_a_500(app, tmp_path: Path) -> None:  # noqa: ANN001
    """A valid save, then one to three of its fields replaced by junk, 300 times (seeded)."""
    client = _client(app)
    valid = {"index": 2, "text": ["Franz", "Huber"], "label": ["B-PER", "I-PER"], "picture_box": [0, 0, 50, 40],
             "caption_box": [0, 40, 100, 80], "ocr_text": "Franz Huber", "engine": "tesseract", "lang": "deu",
             "suggested": ["O", "O"]}  # fmt: skip
    junk = [None, True, -1, 0, 2**70, 1.5, "", "x", "\u0000", "ä" * 300, [], [None], [1, 2], ["O"], ["B-PER"] * 3,
            {"a": 1}, [0, 0, 1, 1], [0, 0, 500, 500], ["\u202e", "\ufeff"], "B-" + "X" * 90]  # fmt: skip
    rng = random.Random(18)
    statuses = set()
    for _ in range(300):
        body = dict(valid)
        for key in rng.sample(sorted(valid), rng.randint(1, 3)):
            body[key] = rng.choice(junk)
        response = client.post("/api/save", json=body)
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            _no_500(response, tmp_path)
        statuses.add(response.status_code)
    assert 422 in statuses


# --------------------------------------------------------------------------- on the wire, real uvicorn


@pytest.fixture
def served(scans: Path, out: Path) -> Iterator[tuple[int, object, list]]:
    """The annotate app in a real uvicorn on a free port; every request it answers is logged
    (method, path, status)."""
    import uvicorn

    port = free_port("127.0.0.1")
    app = create_app(scans, out, port=port)
    seen: list[tuple[str, str, int]] = []

    async def logged(scope, receive, send):  # noqa: ANN001, ANN202
        async def watch(message):  # noqa: ANN001, ANN202
            if message["type"] == "http.response.start":
                seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await app(scope, receive, watch if scope["type"] == "http" else send)

    server = uvicorn.Server(uvicorn.Config(logged, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield port, app, seen
    server.should_exit = True
    thread.join(timeout=10)


def _raw(port: int, head: str, chunks: Iterator[bytes] = iter(())) -> tuple[int, bytes, int]:
    """Send a request by hand; the status, the answer's body and the bytes of body sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode("latin-1"))
        sent = 0
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: stop sending
                break
            sent += len(chunk)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 10:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    head_part, _, body = data.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), body, sent


def test_a_huge_content_length_is_refused_before_the_body_is_read(served, out: Path) -> None:  # noqa: ANN001
    port, app, _seen = served
    head = (
        f"POST /api/save HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"{TOKEN_HEADER}: {app.state.token}\r\nContent-Length: {200 * 1024 * 1024}\r\n\r\n"
    )
    started = time.perf_counter()
    status, body, _ = _raw(port, head, iter([b'{"index": 2, "text": ["']))  # 200 MB announced, 24 bytes sent
    assert status == 413 and b"larger than the limit" in body
    assert time.perf_counter() - started < 10  # answered at once, not after waiting for 200 MB
    assert _items(out) == ["a.png", "b.png"]


def test_a_chunked_body_is_counted_while_it_is_read(served, out: Path) -> None:  # noqa: ANN001
    port, app, _seen = served
    head = (
        f"POST /api/save HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"{TOKEN_HEADER}: {app.state.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = 64 * 1024
    chunk = f"{piece:x}\r\n".encode() + b"x" * piece + b"\r\n"
    count = MAX_BODY_BYTES // piece + 1  # just over the limit; never the closing chunk
    status, body, sent = _raw(port, head, iter([chunk] * count))
    assert status == 413 and b"larger than the limit" in body
    assert sent <= (count + 1) * len(chunk)
    assert _items(out) == ["a.png", "b.png"]


def test_a_foreign_host_is_refused_on_the_wire(served) -> None:  # noqa: ANN001
    port, _app, _seen = served
    status, body, _ = _raw(port, f"GET /api/state HTTP/1.1\r\nHost: rebound.example:{port}\r\n\r\n")
    assert status == 421 and b"scans" not in body
    status, _body, _ = _raw(port, f"GET /api/state HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
    assert status == 200


# --------------------------------------------------------------------------- in Chromium

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--host-resolver-rules=MAP evil.example 127.0.0.1"]  # fmt: skip

EVIL_PAGE = """<!doctype html><html><body>
<form id="f" method="POST" action="http://127.0.0.1:{port}/api/undo" target="sink"></form>
<iframe name="sink"></iframe>
<script>
const target = "http://127.0.0.1:{port}/api/undo";
Promise.allSettled([
  fetch(target, {{method: "POST", mode: "no-cors"}}),
  fetch(target, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: "{{}}"}}),
  fetch(target, {{method: "POST", headers: {{"X-Annotate-Token": "guess"}}}}),
]).then(() => {{ document.getElementById("f").submit(); document.title = "sent"; }});
</script></body></html>"""


@pytest.fixture
def evil_site(tmp_path: Path, served) -> Iterator[str]:  # noqa: ANN001
    """A second local server (python's http.server on another free port) with the attack page."""
    port = served[0]
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "index.html").write_text(EVIL_PAGE.format(port=port))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *_args) -> None:  # noqa: ANN002
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://evil.example:{httpd.server_address[1]}/"
    httpd.shutdown()
    thread.join(timeout=10)


def test_an_evil_page_in_the_browser_cannot_undo(served, evil_site: str, out: Path) -> None:  # noqa: ANN001
    """A page from another site posts to /api/undo (fetch no-cors, a form, a fetch with a guessed
    token); a rebound name reads /api/state; the dataset keeps its items. Then the real page,
    with its token, still undoes."""
    from playwright.sync_api import sync_playwright

    port, _app, seen = served
    if not Path(CHROMIUM).is_file():
        pytest.fail("Debian's chromium is needed: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page()
        page.goto(evil_site)
        page.wait_for_function("document.title === 'sent'", timeout=20_000)
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and sum(1 for m, p_, _ in seen if (m, p_) == ("POST", "/api/undo")) < 3
        ):
            time.sleep(0.1)  # the two no-cors fetches and the form
        undos = [status for method, path, status in seen if (method, path) == ("POST", "/api/undo")]
        assert len(undos) >= 3 and set(undos) == {403}, seen  # they arrived, and were refused
        assert ("OPTIONS", "/api/undo", 405) in seen  # the guessed token needs a preflight: refused too
        assert _items(out) == ["a.png", "b.png"]
        rebound = page.goto(f"http://evil.example:{port}/api/state")  # DNS rebinding: same port, other name
        assert rebound.status == 421 and "a.png" not in page.content()
        real = browser.new_page()  # the annotate page itself, with its token
        real.goto(f"http://127.0.0.1:{port}/")
        real.wait_for_selector("#scans li .done")
        real.wait_for_function("document.getElementById('scan').naturalWidth > 0")
        real.keyboard.press("u")
        real.wait_for_function("document.getElementById('message').textContent.startsWith('undid')")
        assert _items(out) == ["a.png"]
        browser.close()
