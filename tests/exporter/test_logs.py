"""Log lines: logfmt and JSON, and no secret in them, even one that arrives with a reload."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pinference_exporter.logs import kv, setup_logging


@pytest.mark.usefixtures("restore_root_logging")
@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_secrets_are_looked_up_per_line(fmt: str) -> None:
    """A key that a reload brings in (or URL credentials) is redacted from the next line."""
    secrets = ["first-key-1234"]
    stream = io.StringIO()
    setup_logging("info", fmt, secrets=lambda: secrets, stream=stream)
    log = logging.getLogger("exporter.test")
    log.info("probe failed", extra=kv(err="echo first-key-1234"))
    secrets.append("rotated-key-5678")  # what Exporter.secrets returns after a reload
    log.info("probe failed", extra=kv(err="echo rotated-key-5678"))
    secrets.append("pw-9999")
    log.info("probe failed", extra=kv(url="https://user:pw-9999@host/api/v1"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert "first-key-1234" not in line and "rotated-key-5678" not in line
        assert "pw-9999" not in line
        if fmt == "json":
            json.loads(line)
