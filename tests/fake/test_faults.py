"""The fake's faults on every endpoint: statuses, bodies, broken JSON, broken
connections, slowness, and how long a fault lasts."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from pinference_fake import FakePinference, Fault
from tests.fake.helpers import QUICK, TIMEOUT, admin, chat, get, user


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (401, "authentication_error", "invalid_api_key"),
        (402, "insufficient_quota", "insufficient_funds"),
        (403, "permission_error", "permission_denied"),
        (404, "invalid_request_error", "model_not_found"),
        (429, "rate_limit_error", "rate_limit_exceeded"),
        (500, "server_error", "server_error"),
        (503, "server_error", "service_unavailable"),
    ],
)
def test_status_fault_has_a_fitting_json_error(
    fake: FakePinference, status: int, kind: str, code: str
) -> None:
    fake.set_fault("get", Fault(status=status, retry_after="7"))
    response = get(fake, "/models/deepseek-chat")
    assert response.status_code == status and response.headers["Retry-After"] == "7"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (kind, code)
    assert error["message"]
    assert get(fake, "/models").status_code == 200  # other endpoints unaffected


def test_html_fault_looks_like_a_proxy_page(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=502, html=True))
    response = get(fake, "/models")
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<h1>502 Bad Gateway</h1>" in response.text
    with pytest.raises(ValueError):
        response.json()


def test_body_fault_is_sent_verbatim(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=500, body="upstream exploded"))
    response = get(fake, "/models")
    assert (response.status_code, response.text) == (500, "upstream exploded")


def test_malformed_fault_is_200_with_invalid_json(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="malformed"))
    response = get(fake, "/models")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_truncated_fault_breaks_the_read(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="truncated"))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(fake, "/models")


def test_wrong_shape_fault(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="wrong_shape"))
    fake.set_fault("get", Fault(mode="wrong_shape"))
    assert get(fake, "/models").json() == {"data": "nope"}
    assert get(fake, "/models/deepseek-chat").json() == [1, 2]


def test_huge_fault_is_large_valid_json(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="huge", huge_bytes=500_000))
    response = get(fake, "/models")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert 490_000 <= len(response.content) <= 500_000
    assert len(response.json()["data"]) > 1000
    fake.set_fault("get", Fault(mode="huge", huge_bytes=300_000))
    single = get(fake, "/models/x")
    assert len(single.content) == 300_000 and single.json()["object"] == "model"


def test_drop_fault_closes_without_a_response(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="drop"))
    with pytest.raises(requests.exceptions.ConnectionError):
        get(fake, "/models")


def raw_exchange(
    fake: FakePinference, path: str
) -> tuple[socket.socket, list[tuple[float, bytes]]]:
    """Send one GET on a raw socket; read until the peer closes: (socket, [(time, bytes)])."""
    sock = socket.create_connection((fake.host, fake.port), timeout=TIMEOUT)
    sock.sendall(f"GET /api/v1{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    pieces: list[tuple[float, bytes]] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return sock, pieces
        pieces.append((time.monotonic(), data))


def test_drip_fault_sends_the_head_slowly_then_the_body(fake: FakePinference) -> None:
    fake.set_fault(
        "list",
        Fault(
            mode="drip", body='{"data": []}', drip_bytes=10, drip_interval=0.05, drip_part="head"
        ),
    )
    started = time.monotonic()
    sock, pieces = raw_exchange(fake, "/models")
    sock.close()
    raw = b"".join(p for _, p in pieces)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ") and body == b'{"data": []}'
    assert max(len(p) for _, p in pieces[:-1]) <= 10  # the head came in small pieces
    assert pieces[-1][0] - started >= (len(head) // 10 - 1) * 0.05


def test_drip_fault_set_through_the_admin_route_drips_the_body(fake: FakePinference) -> None:
    spec = {
        "endpoint": "get",
        "mode": "drip",
        "drip_bytes": 4,
        "drip_interval": 0.05,
        "drip_part": "body",
    }
    assert admin(fake, "POST", "fault", json=spec).status_code == 200
    assert fake.faults["get"].drip_bytes == 4
    started = time.monotonic()
    response = get(fake, "/models/deepseek-chat")
    elapsed = time.monotonic() - started
    assert response.json()["id"] == "deepseek-chat"
    assert elapsed >= (len(response.content) // 4 - 1) * 0.05
    bad = admin(fake, "POST", "fault", json={"endpoint": "get", "mode": "drip", "drip_part": "x"})
    assert bad.status_code == 400 and "drip_part" in bad.json()["error"]["message"]


def test_reset_fault_resets_the_connection_mid_body(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="reset"))
    sock = socket.create_connection((fake.host, fake.port), timeout=TIMEOUT)
    sock.sendall(b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    with pytest.raises(ConnectionResetError):  # RST, not an orderly end of stream
        while True:
            data = sock.recv(65536)
            assert data, "the connection ended with FIN, not RST"
            received += data
    sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.startswith(b"Content-Length")
        )
    )
    assert 0 < len(body) < length


def test_nested_fault_is_json_too_deep_to_decode(fake: FakePinference) -> None:
    fake.set_fault("get", Fault(mode="nested", nested_depth=50_000))
    response = get(fake, "/models/deepseek-chat")
    assert response.status_code == 200 and len(response.content) == 100_000
    assert response.content == b"[" * 50_000 + b"]" * 50_000
    with pytest.raises(RecursionError):
        json.loads(response.content)
    assert Fault(mode="nested").nested_depth == 100_000


def test_empty_fault_lists_no_models(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="empty"))
    assert get(fake, "/models").json() == {"object": "list", "data": []}


def test_delay_fault_and_latency_slow_the_answer(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(delay=0.4))
    started = time.monotonic()
    assert get(fake, "/models").status_code == 200
    assert time.monotonic() - started >= 0.4
    fake.clear_faults()
    fake.set_latency("get", 0.3)
    started = time.monotonic()
    assert get(fake, "/models/deepseek-chat").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_hang_fault_makes_the_client_time_out(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="hang"))
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(fake, "/models", timeout=(TIMEOUT, 0.3))
    # The handler notices the client left and frees its thread.
    deadline = time.monotonic() + TIMEOUT
    while fake.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.running and fake.open_connections == 0


def test_fault_times_expires(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=503, times=2))
    codes = [get(fake, "/models").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert "list" not in fake.faults


def test_star_fault_applies_to_every_endpoint_and_specific_wins(fake: FakePinference) -> None:
    fake.set_fault("*", Fault(status=500))
    fake.set_fault("get", Fault(status=429))
    assert get(fake, "/models").status_code == 500
    assert chat(fake, {"model": "deepseek-chat", "messages": user("x")}).status_code == 500
    assert get(fake, "/models/deepseek-chat").status_code == 429
    fake.clear_faults("*")
    assert get(fake, "/models").status_code == 200


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="mode"):
        Fault(mode="explode")
    with pytest.raises(ValueError, match="status"):
        Fault(status=99)
    with pytest.raises(ValueError, match="unknown"):
        Fault.from_dict({"stauts": 500})
    assert Fault.from_dict({"status": 429, "retry_after": 3, "mode": None}) == Fault(
        status=429, retry_after="3"
    )


def test_stop_is_fast_while_a_request_hangs() -> None:
    fake = FakePinference().start()
    fake.set_fault("*", Fault(mode="hang"))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            get(fake, "/models")
        except requests.RequestException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not fake.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < QUICK  # the hang never ends by itself
    thread.join(TIMEOUT)
    assert not thread.is_alive() and errors  # the client saw the connection end
