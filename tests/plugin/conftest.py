"""Fixtures shared by the plugin tests (the helpers they call are in helpers.py)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import net
from llm_pinference import cache as catalog
from llm_pinference.core.models import ModelInfo
from pinference_fake import FakePinference
from tests.plugin.helpers import KEY, ensure_registered, reset_state


@pytest.fixture
def configured(fake: FakePinference, monkeypatch: pytest.MonkeyPatch) -> FakePinference:
    """The plugin registered with llm, a fresh process state, and a key for the fake."""
    ensure_registered()
    reset_state()
    monkeypatch.setenv("PRIME_INFERENCE_URL", fake.base_url)
    monkeypatch.setenv("PRIME_API_KEY", KEY)
    monkeypatch.delenv("LLM_PINFERENCE_TIMEOUT", raising=False)
    return fake


@pytest.fixture
def fresh_cache() -> None:
    """No memo or back-off left by another test."""
    catalog.reset_process_state()


@pytest.fixture
def path(tmp_path: Path, fresh_cache: None) -> Path:
    """Where a cache test keeps its cache file."""
    return tmp_path / "llm" / catalog.CACHE_FILENAME


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every API object parsed into a ModelInfo from now on."""
    seen: list[object] = []
    real = ModelInfo.from_api.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ModelInfo], obj: object) -> ModelInfo | None:
        seen.append(obj)
        return real(cls, obj)

    monkeypatch.setattr(ModelInfo, "from_api", classmethod(counting))
    return seen


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connection attempt hangs."""
    with net.unaccepting_port() as port:
        yield port


Reply = tuple[int, dict[str, str], Iterable[bytes]]


class ChatServer:
    """A loopback chat endpoint for answers the fake does not send (any headers, any
    bytes, at any pace): every POST gets `reply()` (status, headers, body chunks), sent as
    it is and ended by closing the connection."""

    def __init__(self) -> None:
        self.reply: Callable[[], Reply] = lambda: (200, {}, [b""])
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                server.requests += 1
                status, headers, chunks = server.reply()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(OSError):
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def model(self, *, async_: bool = False) -> Any:
        """A registered-like pinference model whose chat goes to this server."""
        from llm_pinference import plugin
        from llm_pinference.core.models import ModelInfo
        from llm_pinference.core.settings import Settings
        from llm_pinference.registration import record

        pair = plugin.build_models(record(ModelInfo("m", "m")), Settings(base_url=self.base_url))
        return pair[1] if async_ else pair[0]


@pytest.fixture
def chat_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatServer]:
    ensure_registered()
    monkeypatch.setenv("PRIME_API_KEY", KEY)
    server = ChatServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
