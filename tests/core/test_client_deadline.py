"""The client's total deadline over real loopback sockets: a server that drips its headers or
a small body (each byte well inside the read timeout) is cut at `total_timeout`, and the
connect, read and total timeouts each give their own message.

Timing bounds hold under any load: the call ends no sooner than its deadline, and its
message names the timeout that ended it; the upper bound (HANG past the deadline) is met
only by a call the deadline did not end (the drip alone takes 10 s or more, the other
timeouts in play 5 s). How close to the deadline it ends (1-20 ms on an idle 2-core box)
is measured in bench/bench_probe_accuracy.py, not asserted here.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.pki import Certificates
from llm_pinference import cache as catalog
from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.settings import Settings
from llm_pinference.core.transport import WatchedHTTPSConnection, deadline
from pinference_fake import FakePinference, Fault

TOTAL = 1.5
HANG = 3.0  # past the deadline: only a call that something else ended (5 s, 10 s) gets there
INTERVAL = 0.25  # each dripped byte arrives 4x faster than the read timeout
SMALL_BODY = '{"object":"list","data":[{"id":"a/b"}]}       '  # 46 bytes: one chunk


def client(base_url: str, **kwargs: Any) -> PinferenceClient:
    kwargs.setdefault("connect_timeout", 1.0)
    kwargs.setdefault("read_timeout", 1.0)
    kwargs.setdefault("total_timeout", TOTAL)
    return PinferenceClient(Settings(api_key="pit_deadline_key", base_url=base_url), **kwargs)


def timed_failure(call: Callable[[], object]) -> tuple[float, PinferenceError]:
    started = time.monotonic()
    with pytest.raises(PinferenceError) as info:
        call()
    return time.monotonic() - started, info.value


def assert_cut_at(elapsed: float, deadline: float) -> None:
    assert deadline - 0.05 <= elapsed < deadline + HANG, f"{elapsed:.3f}s for {deadline}s"


@pytest.mark.parametrize("part", ["head", "body", "all"])
def test_a_dripped_response_is_cut_at_the_total_deadline(fake: FakePinference, part: str) -> None:
    assert 40 <= len(SMALL_BODY) <= 60
    fake.set_fault(
        "list", Fault(mode="drip", body=SMALL_BODY, drip_part=part, drip_interval=INTERVAL)
    )
    elapsed, err = timed_failure(client(fake.base_url).list_models)
    assert err.reason is Reason.TIMEOUT and err.status is None
    assert str(err) == "timeout: no complete answer within 1.5s (total deadline)"
    assert_cut_at(elapsed, TOTAL)


def test_the_deadline_covers_a_kept_alive_connection(fake: FakePinference) -> None:
    # The second request reuses the pooled connection: no new connect to hook into.
    api = client(fake.base_url)
    assert api.get_model("deepseek-chat").id == "deepseek-chat"
    fake.set_fault("get", Fault(mode="drip", drip_part="head", drip_interval=INTERVAL))
    elapsed, err = timed_failure(lambda: api.get_model("deepseek-chat"))
    assert err.reason is Reason.TIMEOUT
    assert_cut_at(elapsed, TOTAL)
    fake.clear_faults()
    assert api.get_model("deepseek-chat").id == "deepseek-chat"  # the client still works
    assert len({r.client for r in fake.requests_for("get")}) == 2  # reused, then a new one


def test_a_slow_drip_that_ends_in_time_is_a_success(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="drip", body=SMALL_BODY, drip_bytes=16, drip_interval=0.1))
    assert [m.id for m in client(fake.base_url).list_models().models] == ["a/b"]


def test_the_deadline_is_per_call_and_per_thread(fake: FakePinference) -> None:
    # One client shared by two threads (as a pool of probes might): the dripping call
    # times out alone, the other answers at once.
    api = client(fake.base_url)
    fake.set_fault("list", Fault(mode="drip", drip_part="body", drip_interval=INTERVAL))
    results: dict[str, object] = {}

    def slow() -> None:
        results["slow"] = timed_failure(api.list_models)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    assert api.get_model("deepseek-chat").id == "deepseek-chat"
    assert thread.is_alive()  # answered while the other call still waits for its deadline
    thread.join(10)
    elapsed, err = results["slow"]  # type: ignore[misc]
    assert err.reason is Reason.TIMEOUT
    assert_cut_at(elapsed, TOTAL)


def test_no_watchdog_thread_outlives_its_call(fake: FakePinference) -> None:
    def timers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if isinstance(t, threading.Timer)]

    api = client(fake.base_url)
    for _ in range(20):
        api.list_models()
    deadline = time.monotonic() + 2
    while timers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert timers() == []


def test_the_plugin_list_fetch_ends_within_five_seconds(fake: FakePinference) -> None:
    # The README's promise for `llm models` against a dripping server: 2 s to connect,
    # 5 s in all.
    assert (catalog.CONNECT_TIMEOUT, catalog.TOTAL_TIMEOUT) == (2.0, 5.0)
    fake.set_fault("list", Fault(mode="drip", drip_part="all", drip_interval=0.5))
    started = time.monotonic()
    with pytest.raises(PinferenceError) as info:
        catalog.fetch_models(Settings(base_url=fake.base_url))
    elapsed = time.monotonic() - started
    assert str(info.value) == "timeout: no complete answer within 5s (total deadline)"
    assert 4.95 <= elapsed < 5.0 + HANG, elapsed


def test_connect_timeout_has_its_own_message(unaccepting_port: int) -> None:
    url = f"http://127.0.0.1:{unaccepting_port}/api/v1"
    elapsed, err = timed_failure(client(url, connect_timeout=0.5, total_timeout=5).list_models)
    assert err.reason is Reason.TIMEOUT
    assert str(err) == "timeout: cannot connect within 0.5s (connect timeout)"
    assert_cut_at(elapsed, 0.5)


def test_the_total_deadline_also_bounds_the_connect(unaccepting_port: int) -> None:
    url = f"http://127.0.0.1:{unaccepting_port}/api/v1"
    elapsed, err = timed_failure(client(url, connect_timeout=5, total_timeout=0.5).list_models)
    # The connect gets the time left (0.5 s) as its timeout: it and the deadline end together.
    assert str(err) in (
        "timeout: no complete answer within 0.5s (total deadline)",
        "timeout: cannot connect within 0.5s (connect timeout)",
    )
    assert_cut_at(elapsed, 0.5)


def test_read_timeout_has_its_own_message(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="hang"))
    elapsed, err = timed_failure(client(fake.base_url, read_timeout=0.5).list_models)
    assert str(err) == "timeout: no data for 0.5s (read timeout)"
    assert_cut_at(elapsed, 0.5)


def test_a_body_that_stalls_past_the_read_timeout_is_a_timeout(fake: FakePinference) -> None:
    # The head and 100 bytes at once, then nothing for longer than the read timeout:
    # requests reports that as a ConnectionError; it is still a timeout.
    fake.set_fault("list", Fault(mode="drip", drip_part="body", drip_bytes=100, drip_interval=2))
    elapsed, err = timed_failure(
        client(fake.base_url, read_timeout=0.5, total_timeout=5).list_models
    )
    assert err.reason is Reason.TIMEOUT
    assert str(err) == "timeout: no data for 0.5s (read timeout)"
    assert_cut_at(elapsed, 0.5)


def test_the_default_total_is_connect_plus_read() -> None:
    api = PinferenceClient(Settings(), connect_timeout=0.5, read_timeout=2)
    assert api.total_timeout == 2.5


@pytest.fixture
def silent_tls_port() -> Iterator[int]:
    """Accepts TCP connections and never speaks: a TLS handshake waits forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_the_total_deadline_bounds_a_stalled_tls_handshake(silent_tls_port: int) -> None:
    url = f"https://127.0.0.1:{silent_tls_port}/api/v1"
    elapsed, err = timed_failure(client(url, connect_timeout=5, total_timeout=TOTAL).list_models)
    assert err.reason is Reason.TIMEOUT
    assert_cut_at(elapsed, TOTAL)


@pytest.fixture
def dripping_tls_server(pki: Certificates) -> Iterator[int]:
    """A TLS server that completes the handshake, then drips its status line."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.chain, pki.leaf_key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}":
                    if stop.wait(INTERVAL):
                        break
                    tls.sendall(bytes([byte]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_the_total_deadline_holds_over_tls(dripping_tls_server: int, pki: Certificates) -> None:
    url = f"https://127.0.0.1:{dripping_tls_server}/api/v1"
    elapsed, err = timed_failure(client(url, ca_file=str(pki.ca)).list_models)
    assert err.reason is Reason.TIMEOUT, err
    assert_cut_at(elapsed, TOTAL)


def test_a_tls_connection_made_inside_the_request_is_watched(
    dripping_tls_server: int, pki: Certificates
) -> None:
    # http.client connects inside request() when nobody connected first: the TLS socket
    # then reaches the deadline through connect().
    conn = WatchedHTTPSConnection("127.0.0.1", dripping_tls_server, ca_certs=str(pki.ca), timeout=1)
    started = time.monotonic()
    with deadline(TOTAL), pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/api/v1/models")
        conn.getresponse()
    conn.close()
    assert_cut_at(time.monotonic() - started, TOTAL)
