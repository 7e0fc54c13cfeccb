"""Small helpers shared by every kind of test; they live in `harness`
(shared with the demo) and are re-exported here for the tests' imports."""

from __future__ import annotations

import pytest

from harness import free_port, in_ci
from harness.pki import have_openssl

__all__ = ["free_port", "in_ci", "require_openssl"]


def require_openssl() -> None:
    """Skip without the openssl command (it makes the test certificates); in CI, fail."""
    if not have_openssl():
        if in_ci():
            pytest.fail("the openssl command is needed to make test certificates")
        pytest.skip("the openssl command is not installed (it makes the test certificates)")
