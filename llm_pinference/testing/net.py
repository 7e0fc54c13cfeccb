"""Loopback ports and the CI switch."""

from __future__ import annotations

import os
import socket


def in_ci() -> bool:
    """In CI a missing tool (prometheus, promtool, node) is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, then released): free to use,
    or, left alone, a port where connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
