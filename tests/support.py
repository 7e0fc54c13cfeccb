"""Small helpers shared by every kind of test; they live in `harness`
(shared with the demo) and are re-exported here for the tests' imports."""

from __future__ import annotations

from typing import Any

import pytest

from harness import free_port, in_ci
from harness.pki import have_openssl
from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError
from llm_pinference.core.settings import Settings

__all__ = ["KEY", "client", "failure", "free_port", "in_ci", "require_openssl"]


def require_openssl() -> None:
    """Skip without the openssl command (it makes the test certificates); in CI, fail."""
    if not have_openssl():
        if in_ci():
            pytest.fail("the openssl command is needed to make test certificates")
        pytest.skip("the openssl command is not installed (it makes the test certificates)")


KEY = "pit_tls_probe_key_0123456789"


def client(base_url: str, **kwargs: Any) -> PinferenceClient:
    """A client with KEY and a 5 s total deadline (a hang fails the test, not the run)."""
    kwargs.setdefault("total_timeout", 5.0)
    return PinferenceClient(Settings(api_key=KEY, base_url=base_url), **kwargs)


def failure(call: Any) -> PinferenceError:
    """The PinferenceError `call` raises, checked to carry no key."""
    with pytest.raises(PinferenceError) as info:
        call()
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    return info.value
