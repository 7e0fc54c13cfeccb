"""Fixtures shared by the plugin tests (the helpers they call are in helpers.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import net
from llm_pinference import cache as catalog
from llm_pinference.core.models import ModelInfo
from pinference_fake import FakePinference
from tests.plugin.helpers import KEY, ChatServer, ensure_registered, reset_state


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
