"""Edges of the transport (found by `make mutation`): what each kind of connection failure
says, a sub-second total deadline, a proxy, and a session the caller shares."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from harness import free_port
from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.settings import Settings
from llm_pinference.core.transport import describe_failure
from pinference_fake import FakePinference, Fault


def failure(base_url: str, **kwargs: float) -> PinferenceError:
    api = PinferenceClient(Settings(base_url=base_url), **kwargs)
    with pytest.raises(PinferenceError) as info:
        api.list_models()
    return info.value


def test_tls_spoken_to_a_plain_http_port_is_a_tls_error(fake: FakePinference) -> None:
    err = failure(fake.base_url.replace("http://", "https://"), total_timeout=5)
    assert err.reason is Reason.CONNECTION_ERROR
    assert "TLS error talking to the API" in str(err)


@pytest.mark.parametrize("url", ["api.test/v1", "ftp://api.test/v1", "http:///v1"])
def test_a_base_url_that_is_no_http_url_says_where_to_look(url: str) -> None:
    err = failure(url)
    assert err.reason is Reason.CONNECTION_ERROR
    assert str(err) == "connection_error: invalid base URL (check PRIME_INFERENCE_URL)"


def test_a_body_that_cannot_be_decoded_is_an_invalid_response() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    body = b"this is not gzip"
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        err = failure(f"http://127.0.0.1:{listener.getsockname()[1]}/api/v1", total_timeout=5)
    finally:
        thread.join(5)
        listener.close()
    assert err.reason is Reason.INVALID_RESPONSE
    assert str(err) == "invalid_response: the response body cannot be decoded"


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


def wrapped(reason: Exception) -> requests.ConnectionError:
    """How requests reports a failed connection: its error, around urllib3's, around why."""
    return requests.ConnectionError(MaxRetryError(None, "/api/v1/models", reason=reason))  # type: ignore[arg-type]


def test_an_unresolved_host_name_is_said_so() -> None:
    gaierror = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    reason = NameResolutionError("api.test", None, gaierror)  # type: ignore[arg-type]
    assert describe_failure(wrapped(reason)) == (
        Reason.CONNECTION_ERROR,
        "cannot connect to the API (host name not resolved)",
    )


def test_refused_is_said_only_when_refused() -> None:
    unreachable = NewConnectionError(None, "Failed to establish a new connection: unreachable")  # type: ignore[arg-type]
    unreachable.__cause__ = OSError(101, "Network is unreachable")
    assert describe_failure(wrapped(unreachable)) == (
        Reason.CONNECTION_ERROR,
        "cannot connect to the API",
    )
    refused = NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert describe_failure(wrapped(refused))[1] == "cannot connect to the API (connection refused)"


def test_a_missing_ca_bundle_is_named_and_other_os_errors_are_not() -> None:
    said = "TLS error: the CA bundle to trust cannot be found"
    bundle = "Could not find a suitable TLS CA certificate bundle"
    assert describe_failure(OSError(f"{bundle}, invalid path: /etc/x.pem")) == (
        Reason.CONNECTION_ERROR,
        f"{said} (/etc/x.pem)",
    )
    assert describe_failure(OSError(bundle)) == (Reason.CONNECTION_ERROR, said)
    lost = "connection closed before the response was complete"
    assert describe_failure(OSError("Broken pipe")) == (Reason.CONNECTION_ERROR, lost)
    # requests' own errors are OSErrors too: not taken for a missing bundle by their words
    assert describe_failure(requests.ConnectionError(bundle))[1] == lost


def test_an_unexpected_failure_is_named_by_its_kind() -> None:
    assert describe_failure(RuntimeError("pool exploded")) == (
        Reason.CONNECTION_ERROR,
        "request failed (RuntimeError)",
    )


def test_a_sub_second_total_deadline_is_kept(fake: FakePinference) -> None:
    """`--probe.timeout=500ms` gives the client a total under a second."""
    fake.set_fault("list", Fault(mode="drip", drip_part="all", drip_interval=0.1))
    started = time.monotonic()
    err = failure(fake.base_url, connect_timeout=1, read_timeout=1, total_timeout=0.3)
    elapsed = time.monotonic() - started
    assert err.reason is Reason.TIMEOUT
    assert 0.25 <= elapsed <= 0.8, elapsed


def test_a_session_given_to_the_client_still_serves_its_owner(fake: FakePinference) -> None:
    session = requests.Session()
    api = PinferenceClient(Settings(base_url=fake.base_url), session=session)
    assert api.list_models().models
    answer = session.get(f"{fake.base_url}/models", timeout=5)  # outside any deadline
    assert answer.status_code == 200 and answer.json()["data"]
