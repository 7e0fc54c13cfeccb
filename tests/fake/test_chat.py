"""The fake's chat completions: deterministic text, streams, tool calls, JSON schema
replies, max_tokens, bad requests, and where a stream's waits go."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from pinference_fake import FakePinference
from pinference_fake.chat import Pacing, build_reply, stream_events
from tests.fake.helpers import MODEL, STREAM, TIMEOUT, chat, sse_events, user


def test_chat_completion_is_deterministic_with_usage(fake: FakePinference) -> None:
    body = {"model": "deepseek-chat", "messages": user("hello there world")}
    first, second = chat(fake, body).json(), chat(fake, body).json()
    assert first["object"] == "chat.completion"
    message = first["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "Hello from deepseek-chat! You said: hello there world",
    }
    assert first["choices"][0]["finish_reason"] == "stop"
    assert first["usage"] == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
    assert second["choices"] == first["choices"] and second["id"] == first["id"]


def test_chat_stream_sends_chunks_usage_and_done(fake: FakePinference) -> None:
    body = {
        "model": "anthropic/claude-sonnet-4.5",
        "messages": user("stream me a reply please"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = chat(fake, body)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    plain = chat(fake, {**body, "stream": False}).json()
    assert text == plain["choices"][0]["message"]["content"]
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) >= 2
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == plain["usage"]


def test_chat_stream_without_include_usage_has_no_usage_chunk(fake: FakePinference) -> None:
    events = sse_events(
        chat(fake, {"model": "deepseek-chat", "messages": user("x"), "stream": True})
    )
    assert events[-1] == "[DONE]"
    assert all(e["choices"] for e in events[:-1])
    assert all("usage" not in e for e in events[:-1])


TOOLS = [
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
]


def test_chat_calls_the_first_tool_when_asked(fake: FakePinference) -> None:
    body = {"model": "openai/gpt-4.1-mini", "messages": user("use the tool"), "tools": TOOLS}
    choice = chat(fake, body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_time", "arguments": "{}"}

    no_tool_word = chat(fake, {**body, "messages": user("what time is it")}).json()
    assert "tool_calls" not in no_tool_word["choices"][0]["message"]


def test_chat_streams_a_tool_call(fake: FakePinference) -> None:
    body = {
        "model": "openai/gpt-4.1-mini",
        "messages": user("call a tool"),
        "tools": TOOLS,
        "stream": True,
    }
    chunks = sse_events(chat(fake, body))[:-1]
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


def test_chat_answers_a_tool_result_with_its_content(fake: FakePinference) -> None:
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
    choice = chat(fake, body).json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "12:34 UTC" in choice["message"]["content"]


def test_chat_json_schema_reply_is_valid_for_the_schema(fake: FakePinference) -> None:
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
    content = json.loads(chat(fake, body).json()["choices"][0]["message"]["content"])
    assert set(content) == set(schema["properties"])
    assert isinstance(content["name"], str)
    assert isinstance(content["age"], int) and content["age"] >= 18
    assert isinstance(content["score"], float)
    assert content["active"] is True
    assert content["colour"] == "red"
    assert len(content["tags"]) == 2 and all(isinstance(t, str) for t in content["tags"])
    assert isinstance(content["pet"]["legs"], int)
    assert isinstance(content["nickname"], str)


def test_chat_max_tokens_truncates_with_finish_reason_length(fake: FakePinference) -> None:
    body = {"model": "deepseek-chat", "messages": user("a b c d e f"), "max_tokens": 2}
    choice = chat(fake, body).json()["choices"][0]
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
    fake: FakePinference, payload: bytes, status: int, code: str
) -> None:
    response = requests.post(
        fake.base_url + "/chat/completions",
        data=payload,
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("content", "waits"),
    [
        ("please say hello to everyone here", [1.0, 2.0, 2.0, 2.0]),  # text in 4 chunks
        ("call a tool", [1.0, 2.0]),  # a tool call in 2 chunks
    ],
)
def test_the_waits_go_before_each_token_chunk(content: str, waits: list[float]) -> None:
    body: dict[str, Any] = {**STREAM, "messages": [{"role": "user", "content": content}]}
    body["tools"] = [{"type": "function", "function": {"name": "lookup"}}]
    seen: list[tuple[float, int]] = []
    sent: list[bytes] = []

    def wait(seconds: float) -> bool:
        seen.append((seconds, len(sent)))
        return False

    pacing = Pacing(ttft_delay=1.0, token_interval=2.0)
    for piece in stream_events(MODEL, body, build_reply(MODEL, body), pacing, wait):
        sent.append(piece)
    assert [s for s, _ in seen] == waits
    deltas = [
        json.loads(p[6:])["choices"][0]["delta"] if b'"choices":[{' in p else {} for p in sent
    ]
    tokens = [i for i, d in enumerate(deltas) if d.get("content") or d.get("tool_calls")]
    assert [at for _, at in seen] == tokens  # each wait right before a token chunk
