"""Fixtures of the core's tests: a raw HTTP server on loopback (any bytes as the answer),
a port that never accepts, and notices said afresh in every test."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from harness import net
from llm_pinference.core import notices


@pytest.fixture(autouse=True)
def fresh_notices() -> None:
    """Each test sees the once-per-process notices as a new process would."""
    notices.forget()


class RawServer:
    """Answers every connection with `answer` (bytes, or a function of the request's
    head) once the request's head has arrived, then closes it; keeps the heads."""

    def __init__(self) -> None:
        self.answer: bytes | Callable[[bytes], bytes] = b""
        self.heads: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/v1"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        data = conn.recv(65536)
                        if not data:
                            break
                        head += data
                    self.heads.append(head)
                    answer = self.answer(head) if callable(self.answer) else self.answer
                    conn.sendall(answer)
                except OSError:  # the client gave up first
                    pass

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accept() (close alone does not)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    server = RawServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    with net.unaccepting_port() as port:
        yield port
