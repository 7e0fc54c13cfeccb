"""Shared fixtures: an isolated environment for every test, and the fake server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

SETTINGS_ENV = ("PRIME_API_KEY", "PRIME_TEAM_ID", "PRIME_INFERENCE_URL")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test sees the developer's keys, ~/.prime or llm directory."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm"))
    for name in (*SETTINGS_ENV, "OPENROUTER_KEY", "LLM_PINFERENCE_CACHE_TTL"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def fake() -> Iterator[object]:
    """The project's fake Pinference server on 127.0.0.1, a fresh one per test."""
    from pinference_fake import FakePinference

    server = FakePinference().start()
    try:
        yield server
    finally:
        server.stop()
