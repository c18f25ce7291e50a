"""A chat-completions client for any OpenAI-compatible server: answers cached on disk, bounded
retries with exponential back-off, structured output where the server takes it.

- Cache: one JSON file per request under ``cache_dir``, named by the SHA-256 of the model,
  the server (its address, or the model file of a local server), the messages and the sampling settings (never the API key), written
  atomically (temporary file + rename), so an interrupted run continues and a re-run sends
  nothing.
- Back-off: 429, 5xx, time-outs and refused connections are retried after
  ``base * 2**attempt`` seconds (times a jitter in [1, 1.25), capped at ``cap``; a
  ``Retry-After`` header wins), at most ``attempts`` times in all. The openai client's own
  retries are off (``max_retries=0``) so the count and the waits are this module's, and
  reported.
- Structured output, ``auto``: a JSON-schema request first (``response_format`` of type
  ``json_schema``, as OpenAI takes it); a server that refuses it with 400/422 gets
  ``json_object`` with the schema (llama-cpp-python's form), then plain text. The mode that
  worked is kept for the rest of the run.
- The API key is read from an environment variable by name; it is handed to the client only
  and never written to a file or a log.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from featurize.atomic import atomic_write_text
from featurize.errors import ConfigError, MnerError

STRUCTURED_MODES = ("auto", "json_schema", "json_object", "off")
_FALLBACK = {"json_schema": "json_object", "json_object": "off"}


class ServerError(MnerError):
    """The server could not be used (refused, unreachable after every retry, bad key).
    ``status`` is the last HTTP status (None for a time-out or a refused connection), so a
    caller can tell a refused key (every request will fail) from one request that failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _FormatRefused(Exception):
    """The server refused the structured-output request (400/422, or any status whose message
    names response_format: some servers answer 500 to a ``json_schema`` they do not know)."""


@dataclass
class Reply:
    text: str
    cached: bool
    attempts: int  # HTTP requests sent for this answer (0 when cached)
    mode: str  # structured-output mode the answer was produced under


@dataclass
class ClientStats:
    requests: int = 0
    cached: int = 0
    backoffs: int = 0
    waited_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: float) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class ChatClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        cache_dir: Path,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        structured: str = "auto",
        temperature: float = 0.0,
        seed: int = 0,
        server_identity: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import openai

        if structured not in STRUCTURED_MODES:
            raise ConfigError(f"--structured must be one of {', '.join(STRUCTURED_MODES)}")
        if attempts < 1:
            raise ConfigError("--attempts must be at least 1")
        key = os.environ.get(api_key_env, "")
        # A local server needs no key, but the client wants a non-empty one.
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=base_url, api_key=key or "not-needed", timeout=timeout, max_retries=0
        )
        self.base_url = base_url
        # what the cache key names as the server: its address, or a stable name for a server
        # started per run at a random port (``--base-url local``)
        self.server_identity = server_identity or base_url
        self.model = model
        self.cache_dir = cache_dir
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.temperature = temperature
        self.seed = seed
        self.auto = structured == "auto"
        self.mode = (self._learned_mode() or "json_schema") if self.auto else structured
        self.stats = ClientStats()
        self._sleep = sleep
        self._jitter = random.Random(seed)
        self._lock = threading.Lock()

    # -- the structured-output mode a server took, kept so a re-run sends no refused request --
    def _modes_file(self) -> Path:
        return self.cache_dir / "structured-modes.json"

    def _mode_key(self) -> str:
        return f"{self.server_identity} {self.model}"

    def _learned_mode(self) -> str | None:
        try:
            mode = json.loads(self._modes_file().read_text(encoding="utf-8")).get(self._mode_key())
        except (OSError, ValueError, AttributeError):
            return None
        return mode if mode in STRUCTURED_MODES[1:] else None

    def _learn_mode(self, mode: str) -> None:
        path = self._modes_file()
        try:
            known = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(known | {self._mode_key(): mode}, indent=1))

    # -- cache -----------------------------------------------------------------------------
    def request(
        self, messages: list[dict], schema: dict | None, max_tokens: int, mode: str
    ) -> dict[str, object]:
        body: dict[str, object] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": max_tokens,
        }
        if schema is not None and mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "mner_labels", "schema": schema, "strict": True},
            }
        elif schema is not None and mode == "json_object":
            body["response_format"] = {"type": "json_object", "schema": schema}
        return body

    def cache_key(self, body: dict[str, object]) -> str:
        payload = json.dumps(
            {"server": self.server_identity, "request": body}, sort_keys=True, ensure_ascii=False
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, key: str) -> str | None:
        path = self._cache_path(key)
        if not path.is_file():
            return None
        try:
            return str(json.loads(path.read_text(encoding="utf-8"))["text"])
        except (OSError, ValueError, KeyError):
            return None  # a damaged entry is asked again and rewritten

    def _store(self, key: str, body: dict[str, object], text: str, usage: dict | None) -> None:
        path = self._cache_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "model": self.model,
            "server": self.server_identity,
            "request": body,
            "text": text,
            "usage": usage,
        }
        atomic_write_text(path, json.dumps(record, ensure_ascii=False))

    # -- one answer ------------------------------------------------------------------------
    def complete(self, messages: list[dict], schema: dict | None, max_tokens: int) -> Reply:
        while True:
            mode = self.mode
            body = self.request(messages, schema, max_tokens, mode)
            key = self.cache_key(body)
            text = self._cached(key)
            if text is not None:
                self.stats.add(cached=1)
                return Reply(text, True, 0, mode)
            try:
                text, usage, sent = self._send(body)
            except _FormatRefused:
                with self._lock:
                    if self.mode == mode:
                        self.mode = _FALLBACK[mode]
                        self._learn_mode(self.mode)
                continue
            except self._openai.APIStatusError as err:
                raise ServerError(_describe(err, self.base_url), err.status_code) from None
            self._store(key, body, text, usage)
            return Reply(text, False, sent, mode)

    def _send(self, body: dict[str, object]) -> tuple[str, dict | None, int]:
        openai = self._openai
        last: Exception | None = None
        for attempt in range(self.attempts):
            self.stats.add(requests=1)
            try:
                response = self._client.chat.completions.create(**body)  # type: ignore[arg-type]
            except openai.APIStatusError as err:
                if self._format_refused(err, body):
                    raise _FormatRefused from None
                if err.status_code != 429 and err.status_code < 500:
                    raise  # 4xx: the request is wrong, sending it again will not help
                last = err
            except (openai.APITimeoutError, openai.APIConnectionError) as err:
                last = err
            else:
                choice = response.choices[0] if response.choices else None
                text = (choice.message.content if choice and choice.message else None) or ""
                usage = response.usage.model_dump() if response.usage is not None else None
                return text, usage, attempt + 1
            if attempt + 1 == self.attempts:
                break
            wait = self._wait(attempt, last)
            self.stats.add(backoffs=1, waited_seconds=wait)
            self._sleep(wait)
        assert last is not None
        raise ServerError(
            f"{_describe(last, self.base_url)} (gave up after {self.attempts} attempts)",
            getattr(last, "status_code", None),
        )

    def _format_refused(self, err: Exception, body: dict[str, object]) -> bool:
        if not (self.auto and "response_format" in body and self.mode in _FALLBACK):
            return False
        status = getattr(err, "status_code", 0)
        text = str(getattr(err, "message", "")) + str(getattr(err, "body", ""))
        return status in (400, 422) or "response_format" in text or "json_schema" in text

    def _wait(self, attempt: int, err: Exception) -> float:
        response = getattr(err, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        if header:
            try:
                return min(self.backoff_cap, max(0.0, float(header)))
            except ValueError:
                pass
        with self._lock:
            jitter = 1.0 + 0.25 * self._jitter.random()
        return min(self.backoff_cap, self.backoff_base * 2**attempt * jitter)


def _describe(err: Exception, base_url: str) -> str:
    status = getattr(err, "status_code", None)
    if status in (401, 403):
        return f"{base_url} refused the API key (HTTP {status}): set the variable named by --api-key-env"
    if status == 404:
        return f"{base_url}: HTTP 404 (is the model name right, and does the address end in /v1?)"
    if status is not None:
        message = getattr(err, "message", "") or str(err)
        return f"{base_url}: HTTP {status}: {message[:300]}"
    return f"{base_url}: {type(err).__name__}: {err}"
