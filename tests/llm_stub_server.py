"""A small OpenAI-compatible HTTP server on 127.0.0.1 whose answers a test scripts: it speaks
the real chat-completions wire format, so the real openai client, its errors and the back-off
path run end to end. The model server test (test_llm_local_server.py) uses llama.cpp instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (status, body text or answer, headers)
Answer = tuple[int, str, dict[str, str]]


class StubServer:
    def __init__(self, respond: Callable[[dict], Answer]) -> None:
        self.respond = respond
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.requests.append(body)
                owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, text, headers = owner.respond(body)
                if status == 200:
                    payload = {
                        "id": "stub",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", ""),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                else:
                    payload = {"error": {"message": text, "type": "stub", "code": status}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def words_of(body: dict) -> list[str]:
    """The words of the last text the request asks about (the default template's user turn)."""
    for message in reversed(body["messages"]):
        if message["role"] != "user":
            continue
        content = message["content"]
        text = content if isinstance(content, str) else content[0]["text"]
        if "Sentence (" in text:
            return json.loads(text.split(": ", 1)[1].splitlines()[0])
    raise AssertionError("no sentence in the request")
