"""Whatever a chat endpoint answers (bodies, usage values, event-stream framing, encodings),
llm gets valid values or one named line: fuzzed through the real plugin, openai and llm
against a loopback server, the answer logged to llm's own database."""

from __future__ import annotations

import gzip
import json
from typing import Any

import openai
import pytest
import sqlite_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm.migrations import migrate

from llm_pinference.core.errors import Reason
from llm_pinference.openai_http import MAX_COUNT
from tests.plugin.helpers import KEY, ChatServer

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REASONS = tuple(r.value for r in Reason)

counts = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["12", "0", "1" * 40, "-3", "1e5", "٣"]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
)
usages = st.one_of(
    st.none(),
    counts,
    st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens", "cost", "x"]),
        st.one_of(counts, st.dictionaries(st.sampled_from(["cached_tokens", "y"]), counts)),
    ),
)


def completion(usage: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": "hi"}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [choice], "usage": usage}  # fmt: skip


def event(delta: Any = None, usage: Any = None, with_usage: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
    }
    data["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]
    if with_usage:
        data["usage"] = usage
    return data


def ask(server: ChatServer, stream: bool) -> None:
    """Prompt through llm; the outcome must be valid values (logged by llm) or one line
    naming a reason."""
    try:
        response = server.model().prompt("hi", stream=stream, key=KEY)
        text = response.text()
    except openai.APIError as exc:
        line = str(exc)
        assert "\n" not in line and len(line) <= 400, line
        assert line.startswith(tuple(f"Pinference {r}" for r in REASONS)), line
        return
    assert isinstance(text, str)
    usage = response.usage()
    for value in (usage.input, usage.output):
        assert value is None or (type(value) is int and 0 <= value <= MAX_COUNT), usage
    db = sqlite_utils.Database(memory=True)
    migrate(db)
    response.log_to_db(db)  # what `llm` does next: no OverflowError, no odd type


@pytest.fixture
def server(chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch) -> ChatServer:
    monkeypatch.setenv("LLM_PINFERENCE_TIMEOUT", "5")
    return chat_server


@FUZZ
@given(usage=usages, gzipped=st.booleans())
def test_any_usage_in_an_answer(server: ChatServer, usage: Any, gzipped: bool) -> None:
    body = json.dumps(completion(usage)).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    server.reply = lambda: (200, headers, [body])
    ask(server, stream=False)


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_any_bytes_as_an_answer(server: ChatServer, body: Any) -> None:
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    server.reply = lambda: (200, {"Content-Type": "application/json"}, [raw])
    ask(server, stream=False)
    server.reply = lambda: (200, {"Content-Type": "text/event-stream"}, [raw])
    ask(server, stream=True)


events = st.one_of(
    st.text(max_size=8).map(lambda t: json.dumps(event({"content": t}))),
    usages.map(lambda u: json.dumps(event(usage=u, with_usage=True))),
    st.just(json.dumps({"error": {"message": "overloaded", "type": "server_error"}})),
    st.just("[DONE]"),
    st.text(max_size=20),  # not JSON, or not an object
    st.just(json.dumps(event({}))),  # no token
)


@FUZZ
@given(
    items=st.lists(
        st.one_of(
            events.map(lambda e: ("data", e)),
            st.text(max_size=10).map(lambda c: ("comment", c)),
            st.sampled_from(["id: 1", "event: x", "retry: 5", "data"]).map(lambda f: ("raw", f)),
        ),
        max_size=12,
    ),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=20),
    done=st.booleans(),
)
def test_any_event_stream(
    server: ChatServer, items: list[tuple[str, str]], newline: str, cuts: list[int], done: bool
) -> None:
    lines = []
    for kind, raw in items:
        text = raw.replace("\r", " ").replace("\n", " ")
        lines.append({"data": f"data: {text}", "comment": f":{text}", "raw": text}[kind])
        lines.append("")
    if done:
        lines += ["data: [DONE]", ""]
    body = newline.join(lines).encode("utf-8", "surrogatepass")
    chunks, start = [], 0
    for cut in cuts:  # split anywhere, CRLF pairs included
        chunks.append(body[start : start + cut])
        start += cut
    chunks.append(body[start:])
    server.reply = lambda: (200, {"Content-Type": "text/event-stream"}, chunks)
    ask(server, stream=True)
