"""The fake Pinference server, over real loopback sockets."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pinference_fake import (
    FakePinference,
    Fault,
    default_catalog,
    generate_catalog,
    load_catalog,
)
from pinference_fake import handler as handler_module
from pinference_fake.cli import main as cli_main
from pinference_fake.server import is_loopback

TIMEOUT = 10
ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-secret-123"


@pytest.fixture
def srv() -> Iterator[FakePinference]:
    with FakePinference() as fake:
        yield fake


def get(fake: FakePinference, path: str, **kwargs: Any) -> requests.Response:
    timeout = kwargs.pop("timeout", TIMEOUT)
    return requests.get(fake.base_url + path, timeout=timeout, **kwargs)


def chat(fake: FakePinference, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    return requests.post(fake.base_url + "/chat/completions", json=body, timeout=TIMEOUT, **kwargs)


def admin(fake: FakePinference, method: str, name: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{fake.url}/_admin/{name}", timeout=TIMEOUT, **kwargs)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def sse_events(response: requests.Response) -> list[Any]:
    """Parse an SSE body into JSON events, with the literal "[DONE]" kept as a string."""
    events: list[Any] = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


# --- models -------------------------------------------------------------------------


def test_list_serves_the_default_catalog(srv: FakePinference) -> None:
    response = get(srv, "/models")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [m["id"] for m in default_catalog()]
    ids = {m["id"] for m in body["data"]}
    assert "deepseek-chat" in ids
    assert any(":" in i for i in ids) and any(i != i.lower() for i in ids)
    assert {"id", "object"} in [set(m) for m in body["data"]]  # a bare model
    assert any(
        "image" in m.get("specs", {}).get("modalities", {}).get("input", []) for m in body["data"]
    )


@pytest.mark.parametrize(
    "model_id",
    [
        "meta-llama/llama-3.1-70b-instruct",
        "Qwen/Qwen3-235B-A22B-Instruct-2507",
        "anthropic/claude-sonnet-4.5",
        "deepseek-chat",
        "myteam/private-model:v2",
    ],
)
def test_get_model_by_id_with_awkward_characters(srv: FakePinference, model_id: str) -> None:
    srv.set_models([*default_catalog(), {"id": "myteam/private-model:v2", "object": "model"}])
    response = get(srv, "/models/" + model_id)
    assert response.status_code == 200
    assert response.json()["id"] == model_id


def test_get_model_accepts_a_percent_encoded_colon(srv: FakePinference) -> None:
    response = get(srv, "/models/qwen/qwen3-coder%3Afree")
    assert response.status_code == 200
    assert response.json()["id"] == "qwen/qwen3-coder:free"


def test_unknown_model_is_an_openai_style_404(srv: FakePinference) -> None:
    response = get(srv, "/models/no/such-model")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model 'no/such-model' does not exist",
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }


def test_only_the_api_prefix_is_served(srv: FakePinference) -> None:
    response = requests.get(srv.url + "/models", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    wrong_method = requests.post(srv.base_url + "/models", timeout=TIMEOUT)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET"


def test_keep_alive_connection_serves_stream_then_json(srv: FakePinference) -> None:
    with requests.Session() as session:
        streamed = session.post(
            srv.base_url + "/chat/completions",
            json={"model": "deepseek-chat", "messages": user("hi"), "stream": True},
            timeout=TIMEOUT,
        )
        assert sse_events(streamed)[-1] == "[DONE]"
        assert session.get(srv.base_url + "/models", timeout=TIMEOUT).json()["object"] == "list"
    ports = {r.client[1] for r in srv.requests}
    assert len(ports) == 1  # both requests on one connection


# --- chat ---------------------------------------------------------------------------


def test_chat_completion_is_deterministic_with_usage(srv: FakePinference) -> None:
    body = {"model": "deepseek-chat", "messages": user("hello there world")}
    first, second = chat(srv, body).json(), chat(srv, body).json()
    assert first["object"] == "chat.completion"
    message = first["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "Hello from deepseek-chat! You said: hello there world",
    }
    assert first["choices"][0]["finish_reason"] == "stop"
    assert first["usage"] == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
    assert second["choices"] == first["choices"] and second["id"] == first["id"]


def test_chat_stream_sends_chunks_usage_and_done(srv: FakePinference) -> None:
    body = {
        "model": "anthropic/claude-sonnet-4.5",
        "messages": user("stream me a reply please"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = chat(srv, body)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    plain = chat(srv, {**body, "stream": False}).json()
    assert text == plain["choices"][0]["message"]["content"]
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) >= 2
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == plain["usage"]


def test_chat_stream_without_include_usage_has_no_usage_chunk(srv: FakePinference) -> None:
    events = sse_events(
        chat(srv, {"model": "deepseek-chat", "messages": user("x"), "stream": True})
    )
    assert events[-1] == "[DONE]"
    assert all(e["choices"] for e in events[:-1])
    assert all("usage" not in e for e in events[:-1])


TOOLS = [
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
]


def test_chat_calls_the_first_tool_when_asked(srv: FakePinference) -> None:
    body = {"model": "openai/gpt-4.1-mini", "messages": user("use the tool"), "tools": TOOLS}
    choice = chat(srv, body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_time", "arguments": "{}"}

    no_tool_word = chat(srv, {**body, "messages": user("what time is it")}).json()
    assert "tool_calls" not in no_tool_word["choices"][0]["message"]


def test_chat_streams_a_tool_call(srv: FakePinference) -> None:
    body = {
        "model": "openai/gpt-4.1-mini",
        "messages": user("call a tool"),
        "tools": TOOLS,
        "stream": True,
    }
    chunks = sse_events(chat(srv, body))[:-1]
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert first["tool_calls"][0]["function"]["name"] == "get_time"
    arguments = "".join(
        tc["function"].get("arguments", "")
        for c in chunks
        for tc in c["choices"][0]["delta"].get("tool_calls", [])
    )
    assert arguments == "{}"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_answers_a_tool_result_with_its_content(srv: FakePinference) -> None:
    messages = [
        *user("use the tool"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12:34 UTC"},
    ]
    body = {"model": "openai/gpt-4.1-mini", "messages": messages, "tools": TOOLS}
    choice = chat(srv, body).json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "12:34 UTC" in choice["message"]["content"]


def test_chat_json_schema_reply_is_valid_for_the_schema(srv: FakePinference) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 18},
            "score": {"type": "number"},
            "active": {"type": "boolean"},
            "colour": {"enum": ["red", "green"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "pet": {"$ref": "#/$defs/Pet"},
            "nickname": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        },
        "required": ["name", "age"],
        "$defs": {"Pet": {"type": "object", "properties": {"legs": {"type": "integer"}}}},
    }
    body = {
        "model": "openai/gpt-4.1-mini",
        "messages": user("describe a person"),
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    }
    content = json.loads(chat(srv, body).json()["choices"][0]["message"]["content"])
    assert set(content) == set(schema["properties"])
    assert isinstance(content["name"], str)
    assert isinstance(content["age"], int) and content["age"] >= 18
    assert isinstance(content["score"], float)
    assert content["active"] is True
    assert content["colour"] == "red"
    assert len(content["tags"]) == 2 and all(isinstance(t, str) for t in content["tags"])
    assert isinstance(content["pet"]["legs"], int)
    assert isinstance(content["nickname"], str)


def test_chat_max_tokens_truncates_with_finish_reason_length(srv: FakePinference) -> None:
    body = {"model": "deepseek-chat", "messages": user("a b c d e f"), "max_tokens": 2}
    choice = chat(srv, body).json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "Hello from"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"{not json", 400, "invalid_request"),
        (b'{"model": "deepseek-chat"}', 400, "invalid_request"),
        (
            b'{"model": "nope/nope", "messages": [{"role": "user", "content": "hi"}]}',
            404,
            "model_not_found",
        ),
    ],
)
def test_chat_rejects_bad_requests(
    srv: FakePinference, payload: bytes, status: int, code: str
) -> None:
    response = requests.post(
        srv.base_url + "/chat/completions",
        data=payload,
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


# --- faults -------------------------------------------------------------------------


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
    srv: FakePinference, status: int, kind: str, code: str
) -> None:
    srv.set_fault("get", Fault(status=status))
    response = get(srv, "/models/deepseek-chat")
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (kind, code)
    assert error["message"]
    assert get(srv, "/models").status_code == 200  # other endpoints unaffected


def test_fault_retry_after_header(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(status=429, retry_after="7"))
    response = get(srv, "/models")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


def test_html_fault_looks_like_a_proxy_page(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(status=502, html=True))
    response = get(srv, "/models")
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<h1>502 Bad Gateway</h1>" in response.text
    with pytest.raises(ValueError):
        response.json()


def test_body_fault_is_sent_verbatim(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(status=500, body="upstream exploded"))
    response = get(srv, "/models")
    assert (response.status_code, response.text) == (500, "upstream exploded")


def test_malformed_fault_is_200_with_invalid_json(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(mode="malformed"))
    response = get(srv, "/models")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_truncated_fault_breaks_the_read(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(mode="truncated"))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(srv, "/models")


def test_wrong_shape_fault(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(mode="wrong_shape"))
    srv.set_fault("get", Fault(mode="wrong_shape"))
    assert get(srv, "/models").json() == {"data": "nope"}
    assert get(srv, "/models/deepseek-chat").json() == [1, 2]


def test_huge_fault_is_large_valid_json(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(mode="huge", huge_bytes=500_000))
    response = get(srv, "/models")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert 490_000 <= len(response.content) <= 500_000
    assert len(response.json()["data"]) > 1000
    srv.set_fault("get", Fault(mode="huge", huge_bytes=300_000))
    single = get(srv, "/models/x")
    assert len(single.content) == 300_000 and single.json()["object"] == "model"


def test_drop_fault_closes_without_a_response(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(mode="drop"))
    with pytest.raises(requests.exceptions.ConnectionError):
        get(srv, "/models")


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


def test_drip_fault_sends_the_head_slowly_then_the_body(srv: FakePinference) -> None:
    srv.set_fault(
        "list",
        Fault(
            mode="drip", body='{"data": []}', drip_bytes=10, drip_interval=0.05, drip_part="head"
        ),
    )
    started = time.monotonic()
    sock, pieces = raw_exchange(srv, "/models")
    sock.close()
    raw = b"".join(p for _, p in pieces)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ") and body == b'{"data": []}'
    assert max(len(p) for _, p in pieces[:-1]) <= 10  # the head came in small pieces
    assert pieces[-1][0] - started >= (len(head) // 10 - 1) * 0.05


def test_drip_fault_set_through_the_admin_route_drips_the_body(srv: FakePinference) -> None:
    spec = {
        "endpoint": "get",
        "mode": "drip",
        "drip_bytes": 4,
        "drip_interval": 0.05,
        "drip_part": "body",
    }
    assert admin(srv, "POST", "fault", json=spec).status_code == 200
    assert admin(srv, "GET", "faults").json()["get"]["drip_bytes"] == 4
    started = time.monotonic()
    response = get(srv, "/models/deepseek-chat")
    elapsed = time.monotonic() - started
    assert response.json()["id"] == "deepseek-chat"
    assert elapsed >= (len(response.content) // 4 - 1) * 0.05
    bad = admin(srv, "POST", "fault", json={"endpoint": "get", "mode": "drip", "drip_part": "x"})
    assert bad.status_code == 400 and "drip_part" in bad.json()["error"]["message"]


def test_reset_fault_resets_the_connection_mid_body(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(mode="reset"))
    sock = socket.create_connection((srv.host, srv.port), timeout=TIMEOUT)
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


def test_nested_fault_is_json_too_deep_to_decode(srv: FakePinference) -> None:
    srv.set_fault("get", Fault(mode="nested", nested_depth=50_000))
    response = get(srv, "/models/deepseek-chat")
    assert response.status_code == 200 and len(response.content) == 100_000
    assert response.content == b"[" * 50_000 + b"]" * 50_000
    with pytest.raises(RecursionError):
        json.loads(response.content)
    assert Fault(mode="nested").nested_depth == 100_000


def test_empty_fault_lists_no_models(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(mode="empty"))
    assert get(srv, "/models").json() == {"object": "list", "data": []}


def test_delay_fault_and_latency_slow_the_answer(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(delay=0.4))
    started = time.monotonic()
    assert get(srv, "/models").status_code == 200
    assert time.monotonic() - started >= 0.4
    srv.clear_faults()
    srv.set_latency("get", 0.3)
    started = time.monotonic()
    assert get(srv, "/models/deepseek-chat").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_hang_fault_makes_the_client_time_out(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(mode="hang"))
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(srv, "/models", timeout=(TIMEOUT, 0.3))
    # The handler notices the client left and frees its thread.
    deadline = time.monotonic() + TIMEOUT
    while srv.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.running and srv.open_connections == 0


def test_fault_times_expires(srv: FakePinference) -> None:
    srv.set_fault("list", Fault(status=503, times=2))
    codes = [get(srv, "/models").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert "list" not in srv.faults


def test_star_fault_applies_to_every_endpoint_and_specific_wins(srv: FakePinference) -> None:
    srv.set_fault("*", Fault(status=500))
    srv.set_fault("get", Fault(status=429))
    assert get(srv, "/models").status_code == 500
    assert chat(srv, {"model": "deepseek-chat", "messages": user("x")}).status_code == 500
    assert get(srv, "/models/deepseek-chat").status_code == 429
    srv.clear_faults("*")
    assert get(srv, "/models").status_code == 200


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
    assert time.monotonic() - started < 1.0
    thread.join(TIMEOUT)
    assert not thread.is_alive() and errors  # the client saw the connection end


# --- keys, teams, recording ---------------------------------------------------------


def test_require_key(srv: FakePinference) -> None:
    srv.require_key = KEY
    missing = get(srv, "/models")
    assert missing.status_code == 401
    assert missing.json() == {
        "error": {
            "message": "Invalid API key",
            "type": "authentication_error",
            "code": "invalid_api_key",
        }
    }
    assert get(srv, "/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = {"Authorization": f"Bearer {KEY}"}
    assert get(srv, "/models", headers=ok).status_code == 200
    assert chat(srv, {"model": "deepseek-chat", "messages": user("x")}).status_code == 401
    srv.require_key = None
    assert get(srv, "/models").status_code == 200


def test_team_private_models_need_key_and_team(srv: FakePinference) -> None:
    private_id = "myteam/private-model:v2"
    srv.add_private_model("team-1", {"id": private_id, "object": "model", "owned_by": "myteam"})

    def ids(headers: dict[str, str]) -> set[str]:
        return {m["id"] for m in get(srv, "/models", headers=headers).json()["data"]}

    assert private_id not in ids({})
    assert private_id not in ids({"X-Prime-Team-ID": "team-1"})
    assert private_id not in ids({"Authorization": "Bearer k"})
    assert private_id not in ids({"Authorization": "Bearer k", "X-Prime-Team-ID": "team-2"})
    team = {"Authorization": "Bearer k", "X-Prime-Team-ID": "team-1"}
    assert private_id in ids(team)
    assert get(srv, "/models/" + private_id).status_code == 404
    assert get(srv, "/models/" + private_id, headers=team).json()["owned_by"] == "myteam"
    body = {"model": private_id, "messages": user("hi")}
    assert chat(srv, body).status_code == 404
    assert chat(srv, body, headers=team).status_code == 200


def test_requests_are_recorded(srv: FakePinference) -> None:
    get(srv, "/models/qwen/qwen3-coder%3Afree?x=1&y=a%20b", headers={"X-Prime-Team-ID": "t9"})
    chat(
        srv,
        {"model": "deepseek-chat", "messages": user("hi")},
        headers={"Authorization": "Bearer k1"},
    )
    admin(srv, "GET", "status")
    records = srv.requests
    assert [r.endpoint for r in records] == ["get", "chat"]  # admin calls are not recorded
    first, second = records
    assert first.method == "GET"
    assert first.path == "/api/v1/models/qwen/qwen3-coder:free"
    assert first.query == {"x": ["1"], "y": ["a b"]}
    assert first.headers["x-prime-team-id"] == "t9"
    assert first.header("X-Prime-Team-ID") == "t9"
    assert first.client[0] == "127.0.0.1"
    assert "authorization" not in first.headers
    assert second.headers["authorization"] == "Bearer k1"
    assert second.json["messages"][0]["content"] == "hi"
    assert srv.requests_for("chat") == [second]
    srv.clear_requests()
    assert srv.requests == []


def test_request_body_is_capped() -> None:
    with FakePinference(max_body_bytes=1000) as fake:
        response = requests.post(
            fake.base_url + "/chat/completions", data=b"x" * 5000, timeout=TIMEOUT
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
        assert get(fake, "/models").status_code == 200


def test_malformed_http_does_not_break_the_server(srv: FakePinference) -> None:
    def exchange(raw: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    assert b'"error"' in exchange(b"THIS IS NOT HTTP\r\n\r\n")
    bad_length = exchange(b"POST /api/v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    assert bad_length.startswith(b"HTTP/1.1 400 ")
    assert b"Invalid Content-Length" in bad_length
    exchange(b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Le")  # cut off mid-header
    assert get(srv, "/models").status_code == 200


def test_verbose_logs_one_line_per_request(capsys: pytest.CaptureFixture[str]) -> None:
    with FakePinference(verbose=True) as fake:
        get(fake, "/models/nope")
    with FakePinference() as quiet:
        get(quiet, "/models")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert '"GET /api/v1/models/nope" 404' in err


# --- admin --------------------------------------------------------------------------


def test_admin_fault_set_and_clear(srv: FakePinference) -> None:
    spec = {"endpoint": "list", "status": 503, "retry_after": "2", "mode": None, "times": None}
    assert admin(srv, "POST", "fault", json=spec).status_code == 200
    response = get(srv, "/models")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "2")
    assert admin(srv, "GET", "faults").json()["list"]["status"] == 503
    assert admin(srv, "DELETE", "fault", params={"endpoint": "list"}).status_code == 200
    assert get(srv, "/models").status_code == 200
    bad = admin(srv, "POST", "fault", json={"endpoint": "list", "mode": "explode"})
    assert bad.status_code == 400 and "mode" in bad.json()["error"]["message"]
    assert admin(srv, "POST", "fault", data=b"{nope").status_code == 400
    assert admin(srv, "GET", "nothing-here").status_code == 404


def test_admin_models_key_and_reset(srv: FakePinference) -> None:
    new = [{"id": "a/one", "object": "model"}, {"id": "b/two", "object": "model"}]
    assert admin(srv, "PUT", "models", json=new).json() == {"models": 2}
    assert [m["id"] for m in get(srv, "/models").json()["data"]] == ["a/one", "b/two"]
    assert admin(srv, "PUT", "models", json=[{"no": "id"}]).status_code == 400

    reply = admin(srv, "POST", "require-key", json={"key": KEY})
    assert reply.json() == {"require_key": True} and KEY not in reply.text
    assert get(srv, "/models").status_code == 401

    admin(srv, "POST", "fault", json={"endpoint": "get", "status": 500})
    assert admin(srv, "POST", "reset").status_code == 200
    assert srv.faults == {} and srv.require_key is None and srv.requests == []
    assert len(get(srv, "/models").json()["data"]) == len(default_catalog())


def test_admin_requests_redact_keys(srv: FakePinference) -> None:
    get(srv, "/models", headers={"Authorization": f"Bearer {KEY}", "X-Prime-Team-ID": "t1"})
    response = admin(srv, "GET", "requests")
    assert KEY not in response.text
    (record,) = response.json()
    assert record["headers"]["authorization"] == "Bearer ***"
    assert record["headers"]["x-prime-team-id"] == "t1"
    assert record["endpoint"] == "list" and record["path"] == "/api/v1/models"
    assert srv.requests[0].headers["authorization"] == f"Bearer {KEY}"  # in-process view


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.168.1.20", False),
        ("::ffff:10.0.0.1", False),
        ("2001:db8::1", False),
        ("not-an-ip", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_admin_refuses_non_loopback_clients(
    srv: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler_module, "is_loopback", lambda host: False)
    response = admin(srv, "POST", "reset")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


# --- catalogs ---------------------------------------------------------------------


def test_generate_catalog_is_deterministic_and_varied() -> None:
    models = generate_catalog(200)
    assert models == generate_catalog(200)
    ids = [m["id"] for m in models]
    assert len(set(ids)) == 200
    assert any(":" in i for i in ids) and any("." in i for i in ids)
    assert any(i != i.lower() for i in ids)
    assert any(set(m) == {"id", "object"} for m in models)
    assert any("image" in m.get("specs", {}).get("modalities", {}).get("input", []) for m in models)
    assert {m.get("serving") for m in models} >= {"hosted", "gateway"}


def test_load_catalog(tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"id": "a/b"}]))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": [{"id": "c/d", "object": "model"}]}))
    assert load_catalog(listed) == [{"id": "a/b"}]
    assert load_catalog(wrapped)[0]["id"] == "c/d"
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_catalog(broken)
    with pytest.raises(ValueError, match="cannot read"):
        load_catalog(tmp_path / "missing.json")


def test_big_generated_catalog_is_served(srv: FakePinference) -> None:
    srv.set_models(generate_catalog(5000))
    assert len(get(srv, "/models").json()["data"]) == 5000
    assert get(srv, "/models/vendor3/model-20").status_code == 200


# --- CLI ----------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    env.pop("PINFERENCE_FAKE_REQUIRE_KEY", None)
    return {**env, **extra}


def test_cli_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pinference_fake", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=False,
    )
    assert result.returncode == 0
    assert "--require-key" in result.stdout and "--generate" in result.stdout


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": "nope"}')
    assert cli_main(["--port", "0", "--models", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pinference-fake: error:") and err.count("\n") == 1
    with pytest.raises(SystemExit) as refused:
        cli_main(["--host", "10.1.2.3", "--port", "0"])
    assert refused.value.code == 2


def test_cli_serves_on_port_zero_and_exits_cleanly_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pinference_fake", "--port", "0", "--generate", "25"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(PINFERENCE_FAKE_REQUIRE_KEY=KEY),
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the fake server printed nothing"
        line = process.stdout.readline().strip()
        prefix = "pinference-fake serving http://127.0.0.1:"
        assert line.startswith(prefix) and line.endswith("/api/v1 (25 models)"), line
        base_url = line.split()[2]
        assert requests.get(base_url + "/models", timeout=TIMEOUT).status_code == 401
        authorised = requests.get(
            base_url + "/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=TIMEOUT
        )
        assert len(authorised.json()["data"]) == 25
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0
        assert "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
