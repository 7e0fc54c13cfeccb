"""Loopback ports (free, or never accepting) and the CI switch."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator


def in_ci() -> bool:
    """In CI a missing tool (prometheus, promtool, node) is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, then released): free to use,
    or, left alone, a port where connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def unaccepting_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connect waits, as for a blackholed
    host, until its own timeout."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = int(listener.getsockname()[1])
    fillers = [socket.socket() for _ in range(3)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    time.sleep(0.05)  # the fillers' handshakes take the queue
    try:
        yield port
    finally:
        for sock in (*fillers, listener):
            sock.close()
