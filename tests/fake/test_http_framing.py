"""HTTP framing on the fake: whatever bytes arrive on a connection, the fake answers or
closes, never hangs and never breaks (a following normal request still works).

The fuzz test sends Hypothesis-made raw requests (odd request lines, headers, bodies) on
a loopback socket, then half-closes it: the fake must end the connection within TIMEOUT.
It runs 200 examples, a few seconds.
"""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinference_fake import FakePinference
from tests.fake.helpers import TIMEOUT, get


def exchange(fake: FakePinference, raw: bytes) -> bytes:
    """Send `raw`, half-close, and read until the fake closes; a hang fails the test."""
    with socket.create_connection(("127.0.0.1", fake.port), timeout=TIMEOUT) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pytest.fail(f"the fake neither answered nor closed within {TIMEOUT}s: {raw!r}")
        except ConnectionResetError:
            pass  # a close with unread bytes in the fake's buffer: a close all the same
        return b"".join(chunks)


def test_malformed_requests_get_a_400_or_a_close(fake: FakePinference) -> None:
    assert b'"error"' in exchange(fake, b"THIS IS NOT HTTP\r\n\r\n")
    bad_length = exchange(
        fake, b"POST /api/v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n"
    )
    assert bad_length.startswith(b"HTTP/1.1 400 ") and b"Invalid Content-Length" in bad_length
    bad_chunk = exchange(
        fake,
        b"POST /api/v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
    )
    assert bad_chunk.startswith(b"HTTP/1.1 400 ") and b"Invalid chunked" in bad_chunk
    exchange(fake, b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Le")  # cut off: ends
    assert get(fake, "/models").status_code == 200


_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=40)
_METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW"])
_TARGETS = st.sampled_from(
    ["/api/v1/models", "/api/v1/models/deepseek-chat", "/api/v1/chat/completions",
     "/api/v1/models/%3A%zz", "/_admin/", "/_admin/requests", "*", "", "//", "/%00"]
)  # fmt: skip
_VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/1.1x", ""])
_HEADER_NAMES = st.sampled_from(
    ["Host", "Content-Length", "Transfer-Encoding", "Connection", "Expect", "Authorization",
     "X-Prime-Team-ID", "Content-Type"]
)  # fmt: skip
_HEADER_VALUES = st.sampled_from(
    ["chunked", "0", "5", "-1", "99999999999", "abc", "100-continue", "close", "keep-alive",
     "Bearer k", "application/json", "chunked, gzip"]
)  # fmt: skip
_BODIES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}',
                     b"5\r\nhello\r\n0\r\n\r\n", b"ffffffff\r\nx", b"0\r\n\r\n", b"[" * 5000])
)  # fmt: skip


def http09(raw: bytes) -> bool:
    """An HTTP/0.9 request line, as http.server reads one: its answer has no status line."""
    words = raw.split(b"\n", 1)[0].decode("iso-8859-1").rstrip("\r\n").split()
    return (len(words) == 2 and words[0] == "GET") or (len(words) == 3 and words[2] == "HTTP/0.9")


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    """Mostly request-shaped bytes, oddly so; sometimes plain garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(min_size=1, max_size=300))
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    parts = [draw(st.one_of(_METHODS, _TEXT)), draw(st.one_of(_TARGETS, _TEXT))]
    if draw(st.booleans()):
        parts.append(draw(_VERSIONS))
    line = " ".join(parts)
    headers = draw(
        st.lists(
            st.tuples(st.one_of(_HEADER_NAMES, _TEXT), st.one_of(_HEADER_VALUES, _TEXT)),
            max_size=6,
        )
    )
    head = newline.join([line, *(f"{name}: {value}" for name, value in headers)])
    return head.encode("utf-8", "surrogatepass") + (newline * 2).encode() + draw(_BODIES)


def test_any_bytes_get_an_answer_or_a_close_and_the_server_lives_on(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with FakePinference() as fake:

        @settings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(raw=raw_requests())
        def answers_or_closes(raw: bytes) -> None:
            reply = exchange(fake, raw)
            if reply and not reply.startswith(b"HTTP/1."):  # HTTP/0.9: the body alone
                assert http09(raw), reply[:200]
                json.loads(reply)  # the body alone, still JSON (an empty list included)
            fake.reset()  # whatever a request changed through an admin route

        answers_or_closes()
        assert fake.running and get(fake, "/models").status_code == 200
    assert "Traceback" not in capfd.readouterr().err
