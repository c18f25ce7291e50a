"""What ``annotate serve`` refuses before a request reaches an endpoint.

The server listens on 127.0.0.1 and is opened in the annotator's everyday browser, next to
any other web page. A page from elsewhere can make that browser send requests to the server
(a form, a ``fetch`` in ``no-cors`` mode) and, with a DNS name that it re-points at 127.0.0.1
("DNS rebinding"), even read the answers. :class:`Guard` wraps the whole app (the page, the
static files and the API) and checks, in this order:

- ``Host`` on every request, reads included: ``127.0.0.1:<port>``, ``localhost:<port>``,
  ``[::1]:<port>`` (or the ``--host`` address, or the local IP address the connection came in
  on); anything else is refused with **421** (Misdirected Request).
- every request that is not a read (all but GET, HEAD, OPTIONS): an ``Origin`` header, when
  there is one, must be the server's own (``http://`` and one of the hosts above); a
  ``Sec-Fetch-Site`` header, when there is one, must say ``same-origin``; and the
  ``X-Annotate-Token`` header must carry the session token (made at start with
  :func:`secrets.token_urlsafe`, put into the page the server serves, sent by its script).
  Otherwise **403**.
- the body: a ``Content-Length`` over :data:`MAX_BODY_BYTES` is refused with **413** before a
  byte is read; a body without one (chunked) is counted while it is read and refused with 413
  as soon as it passes the limit.

Every answer also tells the browser not to show the page inside another site's frame.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

TOKEN_HEADER = "X-Annotate-Token"
MAX_BODY_BYTES = 2 * 1024 * 1024  # the largest request body (JSON; the app takes no uploads)
READS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("", "0.0.0.0", "::", "[::]")
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_token() -> str:
    return secrets.token_urlsafe(32)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _ip_literal(host: str) -> str | None:
    try:
        return _bracketed(str(ipaddress.ip_address(host.strip("[]"))))
    except ValueError:
        return None


class Guard:
    """ASGI middleware: the checks of the module docstring, in front of ``app``.

    ``port`` is the port the server listens on; None takes the port of the socket each request
    came in on (the ASGI ``server`` of the request). ``host`` is the ``--host`` address."""

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        port: int | None = None,
        host: str = "127.0.0.1",
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.token = token.encode("ascii")
        self.port = port
        self.max_body = max_body
        self.names = list(LOCAL_NAMES)
        if host.strip() not in WILDCARDS:
            self.names.append(_bracketed(host.strip().lower()))
        elif host.strip():  # the address printed at start (http://0.0.0.0:PORT/) works too
            self.names.append(_bracketed(host.strip()))

    def allowed_hosts(self, scope: Scope) -> set[str]:
        server = scope.get("server") or (None, None)
        port = self.port if self.port is not None else server[1]
        names = list(self.names)
        local = _ip_literal(str(server[0])) if server[0] else None
        if local:
            names.append(local)
        hosts = {f"{name}:{port}" for name in names} if port else set()
        if port in (None, 80):
            hosts |= set(names)
        return hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        hosts = self.allowed_hosts(scope)
        if headers.get("host", "").strip().lower() not in hosts:
            await self._refuse(scope, send, 421, "this server answers only to its own address (Host)")
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in READS:
            problem = self._foreign(headers, hosts)
            if problem:
                await self._refuse(scope, send, 403, problem)
                return
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.strip().isdigit()):
                await self._refuse(scope, send, 400, "the Content-Length header is not a number")
                return
            if int(length) > self.max_body:
                await self._refuse(scope, send, 413, BodyTooLarge(self.max_body).detail)
                return
        started = False
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, counted, secured)
        except BodyTooLarge as err:
            if started:
                raise
            await self._refuse(scope, send, 413, err.detail)

    def _foreign(self, headers: Headers, hosts: set[str]) -> str | None:
        origin = headers.get("origin")
        if origin is not None and origin.strip().lower() not in {f"http://{h}" for h in hosts}:
            return "cross-origin request refused: only the annotate page itself may change the dataset"
        site = headers.get("sec-fetch-site")
        if site is not None and site.strip().lower() not in ("same-origin", "none"):
            return "cross-site request refused: only the annotate page itself may change the dataset"
        sent = headers.get(TOKEN_HEADER)
        if sent is None or not secrets.compare_digest(sent.encode("latin-1"), self.token):
            return (
                f"missing or wrong session token ({TOKEN_HEADER}): reload the page "
                "(a restarted server has a new token)"
            )
        return None

    async def _refuse(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
