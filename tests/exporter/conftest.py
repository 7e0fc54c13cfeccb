"""Fixtures shared by the exporter tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.exporter.helpers import make_certificate


@pytest.fixture(scope="module")
def web_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (also usable as its own CA), per module."""
    return make_certificate(tmp_path_factory.mktemp("tls"))
