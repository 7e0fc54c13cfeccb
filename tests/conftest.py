"""Shared fixtures: an isolated environment for every test, and the fake server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from harness.pki import Certificates, make_certificates
from tests.support import require_openssl

# CI runs the fuzz tests on a fixed seed sequence, so a red build is reproducible and a new
# finding shows up in a developer's run, not as one fresh-clone run in N; locally each run
# explores new inputs.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

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


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA that expires in 1 day and a leaf for 127.0.0.1 signed by it that
    expires in 3 (so the chain's earliest expiry is not the leaf's)."""
    require_openssl()
    return make_certificates(tmp_path_factory.mktemp("pki"), ca_days=1, leaf_days=3)


@pytest.fixture
def https_fake(pki: Certificates) -> Iterator[object]:
    """The fake serving HTTPS with the chain of `pki` (the leaf, then the CA)."""
    from pinference_fake import FakePinference

    with FakePinference(certfile=pki.chain, keyfile=pki.leaf_key) as server:
        yield server


@pytest.fixture
def fake() -> Iterator[object]:
    """The project's fake Pinference server on 127.0.0.1, a fresh one per test."""
    from pinference_fake import FakePinference

    server = FakePinference().start()
    try:
        yield server
    finally:
        server.stop()
