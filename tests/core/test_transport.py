"""The transport: what each kind of connection failure says, a sub-second total deadline,
a proxy, a session the caller shares, and hostile HTTP framing on a raw loopback socket
(numbers that do not fit, compressed bombs, fuzzed status lines, headers and chunks): the
client returns, or raises PinferenceError with a reason from the closed set, in time."""

from __future__ import annotations

import gzip
import socket
import time
import tracemalloc
import zlib

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from harness import free_port
from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import REASONS, PinferenceError, Reason
from llm_pinference.core.settings import Settings
from llm_pinference.core.transport import describe_failure
from pinference_fake import FakePinference, Fault
from tests.core.conftest import RawServer

KEY = "pit_framing_key_0123456789"


def failure(base_url: str, **kwargs: int | float) -> PinferenceError:
    api = PinferenceClient(Settings(base_url=base_url), **kwargs)
    with pytest.raises(PinferenceError) as info:
        api.list_models()
    return info.value


@pytest.mark.parametrize("url", ["api.test/v1", "ftp://api.test/v1", "http:///v1"])
def test_a_base_url_that_is_no_http_url_says_where_to_look(url: str) -> None:
    err = failure(url)
    assert err.reason is Reason.CONNECTION_ERROR
    assert str(err) == "connection_error: invalid base URL (check PRIME_INFERENCE_URL)"


@pytest.mark.parametrize(
    "answer, said",
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: 16\r\nConnection: close\r\n\r\nthis is not gzip",
            "invalid_response: the response body cannot be decoded",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "invalid_response: the answer is not valid HTTP"),
    ],
    ids=["not-gzip", "not-http"],
)
def test_an_answer_that_cannot_be_read_is_an_invalid_response(
    raw_server: RawServer, answer: bytes, said: str
) -> None:
    raw_server.answer = answer
    err = failure(raw_server.base_url, total_timeout=5)
    assert (err.reason, str(err)) == (Reason.INVALID_RESPONSE, said)


def test_a_proxy_that_refuses_says_proxy(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP(S)_PROXY from the environment is honoured; a dead proxy is named as such."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    err = failure(fake.base_url, total_timeout=5)
    assert err.reason is Reason.CONNECTION_ERROR
    assert "cannot connect to the API through the proxy" in str(err)


def describe(exc: Exception) -> tuple[Reason, str]:
    return describe_failure(exc, connect=1.0, read=1.0)


def wrapped(reason: Exception) -> requests.ConnectionError:
    """How requests reports a failed connection: its error, around urllib3's, around why."""
    return requests.ConnectionError(MaxRetryError(None, "/api/v1/models", reason=reason))  # type: ignore[arg-type]


def test_an_unresolved_host_name_is_said_so() -> None:
    gaierror = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    reason = NameResolutionError("api.test", None, gaierror)  # type: ignore[arg-type]
    assert describe(wrapped(reason)) == (
        Reason.CONNECTION_ERROR,
        "cannot connect to the API (host name not resolved)",
    )


def test_refused_is_said_only_when_refused() -> None:
    unreachable = NewConnectionError(None, "Failed to establish a new connection: unreachable")  # type: ignore[arg-type]
    unreachable.__cause__ = OSError(101, "Network is unreachable")
    assert describe(wrapped(unreachable)) == (
        Reason.CONNECTION_ERROR,
        "cannot connect to the API",
    )
    refused = NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert describe(wrapped(refused))[1] == "cannot connect to the API (connection refused)"


def test_a_missing_ca_bundle_is_named_and_other_os_errors_are_not() -> None:
    said = "TLS error: the CA bundle to trust cannot be found"
    bundle = "Could not find a suitable TLS CA certificate bundle"
    assert describe(OSError(f"{bundle}, invalid path: /etc/x.pem")) == (
        Reason.CONNECTION_ERROR,
        f"{said} (/etc/x.pem)",
    )
    lost = "connection closed before the response was complete"
    assert describe(OSError("Broken pipe")) == (Reason.CONNECTION_ERROR, lost)
    # requests' own errors are OSErrors too: not taken for a missing bundle by their words
    assert describe(requests.ConnectionError(bundle))[1] == lost


def test_an_unexpected_failure_is_named_by_its_kind() -> None:
    assert describe(RuntimeError("pool exploded")) == (
        Reason.CONNECTION_ERROR,
        "request failed (RuntimeError)",
    )


def test_a_sub_second_total_deadline_is_kept(fake: FakePinference) -> None:
    """`--probe.timeout=500ms` gives the client a total under a second."""
    fake.set_fault("list", Fault(mode="drip", drip_part="all", drip_interval=0.1))
    started = time.monotonic()
    err = failure(fake.base_url, connect_timeout=1, read_timeout=1, total_timeout=0.3)
    elapsed = time.monotonic() - started
    assert str(err) == "timeout: no complete answer within 0.3s (total deadline)"
    assert 0.3 <= elapsed < 5, elapsed  # not before the deadline; a hang only past 5 s


def head(status: bytes, *headers: bytes) -> bytes:
    return b"\r\n".join((status, *headers)) + b"\r\n\r\n"


@pytest.mark.parametrize(
    "answer, expected",
    [
        # A Retry-After past any number or date: the status's reason, no retry time.
        (head(b"HTTP/1.1 429 Slow down", b"Retry-After: " + b"9" * 400, b"Content-Length: 0"),
         "rate_limited (HTTP 429): Slow down from {url}"),
        (head(b"HTTP/1.1 429 Slow down", b"Retry-After: Mon, 01 Jan 2020 00:00:00 +" + b"9" * 20,
              b"Content-Length: 0"), "rate_limited (HTTP 429): Slow down from {url}"),
        (head(b"HTTP/1.1 429 Slow down", b"Retry-After: Mon, 01 Jan 9999999999 00:00:00 GMT",
              b"Content-Length: 0"), "rate_limited (HTTP 429): Slow down from {url}"),
        # Chunk sizes that are no size, too large for any read, or negative.
        (head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked") + b"zz\r\n{}\r\n0\r\n\r\n",
         "invalid_response: the answer is not valid HTTP"),
        (head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked") + b"f" * 40 + b"\r\n{}",
         "connection_error: connection closed before the response was complete"),
        (head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked") + b"-5\r\n{}\r\n0\r\n\r\n",
         "connection_error: connection closed before the response was complete"),
        (head(b"HTTP/1.1 200 OK", b"Content-Length: " + b"9" * 40) + b"{}",
         "invalid_response (HTTP 200): response larger than 16777216 bytes"),
        (head(b"HTTP/1.1 99999999999999999999 OK", b"Content-Length: 2") + b"{}",
         "invalid_response: the answer is not valid HTTP"),
        (head(b"HTTP/1.1 200 OK", b"Content-Encoding: gzip, " * 6 + b"gzip",
              b"Content-Length: 2") + b"{}",
         "invalid_response: the response body cannot be decoded"),
    ],
)  # fmt: skip
def test_numbers_that_do_not_fit_are_named_reasons(
    raw_server: RawServer, answer: bytes, expected: str
) -> None:
    raw_server.answer = answer
    assert str(failure(raw_server.base_url)) == expected.format(url=raw_server.base_url)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_bomb_stops_at_the_size_cap_in_bounded_memory(
    raw_server: RawServer, encoding: str
) -> None:
    """200 MB of zeros in ~200 KB: the cap counts what decompresses, and no read
    decompresses much more than it asks for (urllib3 2.6), so memory stays near the cap."""
    zeros = b"\0" * (200 * 1024 * 1024)
    bomb = gzip.compress(zeros, 9) if encoding == "gzip" else zlib.compress(zeros, 9)
    del zeros
    raw_server.answer = head(
        b"HTTP/1.1 200 OK", b"Content-Encoding: " + encoding.encode(),
        b"Content-Length: %d" % len(bomb),
    ) + bomb  # fmt: skip
    tracemalloc.start()
    try:
        err = failure(raw_server.base_url, max_bytes=1024 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err) == "invalid_response (HTTP 200): response larger than 1048576 bytes"
    assert peak < 8 * 1024 * 1024, peak


STATUS_LINES = st.sampled_from(
    [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 429 Too Many Requests",
        b"HTTP/1.1 302 Found",
        b"HTTP/1.0 500 Internal",
        b"HTTP/1.1 401 ",
        b"HTTP/1.1 99999999999999999999 X",
        b"HTTP/1.1 -200 X",
        b"HTTP/2 200",
        b"SSH-2.0-OpenSSH",
        b"",
    ]
) | st.binary(max_size=24)
HEADER_VALUES = st.sampled_from(
    [
        b"0",
        b"2",
        b"-1",
        b"9" * 30,
        b"chunked",
        b"gzip",
        b"deflate",
        b"br",
        b"zstd",
        b"identity",
        b"gzip, gzip",
        b"text/event-stream",
        b"application/json",
        b"http://127.0.0.1:9/x",
        b"/x",
        b"Mon, 01 Jan 2020 00:00:00 +" + b"9" * 20,
        b"Mon, 01 Jan 9999999999 00:00:00 GMT",
        b"1e400",
        b"nan",
    ]
) | st.binary(max_size=16).filter(lambda v: b"\r" not in v and b"\n" not in v)
HEADERS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                b"Content-Length",
                b"Transfer-Encoding",
                b"Content-Encoding",
                b"Retry-After",
                b"Location",
                b"Content-Type",
                b"X-Other",
            ]
        ),
        HEADER_VALUES,
    ),
    max_size=5,
)
CHUNK_SIZES = st.sampled_from([b"0", b"2", b"ff", b"-5", b"f" * 40, b"zz", b"2;ext=1", b""])
BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b'{"data": [{"id": "a/b"}]}', b"data: [DONE]\n\n",
                     gzip.compress(b'{"data": []}')]),
    st.lists(st.tuples(CHUNK_SIZES, st.binary(max_size=8)), max_size=4).map(
        lambda chunks: b"".join(size + b"\r\n" + data + b"\r\n" for size, data in chunks)),
)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(status=STATUS_LINES, headers=HEADERS, body=BODIES, chat=st.booleans())
def test_any_framing_gives_an_answer_or_a_named_reason_in_time(
    raw_server: RawServer,
    status: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    chat: bool,
) -> None:
    """Fuzzed: whatever status line, headers, chunks and encodings come back, the call
    returns or raises PinferenceError with a reason from the closed set, within its
    deadline (2 s; a hang bound of 5 s, never met by an answer that ends)."""
    raw_server.answer = head(status, *(name + b": " + value for name, value in headers)) + body
    api = PinferenceClient(
        Settings(api_key=KEY, base_url=raw_server.base_url),
        connect_timeout=1,
        read_timeout=1,
        total_timeout=2,
    )
    started = time.monotonic()
    try:
        api.chat_probe("a/b") if chat else api.list_models()
    except PinferenceError as exc:
        assert exc.reason.value in REASONS
        assert "\n" not in str(exc) and KEY not in str(exc)
    finally:
        api.close()
    assert time.monotonic() - started < 5
