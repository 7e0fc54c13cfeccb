"""Deterministic chat completion replies (plain, tool call, JSON schema) and SSE chunks.

Replies depend only on the model id and the messages, so tests can assert exact text;
``CHAT_RULES`` says how (shown by ``--help`` and ``GET /_admin/``). Token counts are word
counts: cheap, deterministic and good enough for a fake.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_TOOL_WORD = re.compile(r"\btools?\b", re.IGNORECASE)
_MAX_SCHEMA_DEPTH = 12

#: How the fake answers a chat completion: for people driving it by hand.
CHAT_RULES = (
    'Text: "Hello from MODEL! You said: TEXT" (TEXT: the last user message); after a tool '
    'result (role "tool"): "Hello from MODEL! The tool returned: RESULT".',
    'Tool calls: a request with "tools" gets one call (finish_reason "tool_calls", '
    'arguments "{}") when the last message is the user\'s and holds the word "tool" or '
    '"tools", or tool_choice is "required" (both: the first tool), or tool_choice names a '
    'function (that one); tool_choice "none" never calls.',
    'response_format json_schema: a value valid for the schema; json_object: {"reply": TEXT}.',
    "max_tokens (or max_completion_tokens) below the reply's word count cuts it there, "
    'finish_reason "length". Tokens are words.',
)


class ChatRequestError(ValueError):
    """The request body is not a usable chat completion request (answer 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Pacing:
    """How a stream is sent: waits before the first token and between tokens, and the
    stream's two faults (see ``faults.Fault``)."""

    ttft_delay: float = 0.0
    token_interval: float = 0.0
    error: bool = False  # an error event after the first token, then [DONE]
    cut: bool = False  # end after half the tokens, without [DONE]


#: An error event as OpenAI-compatible servers send one in the middle of a stream.
STREAM_ERROR = {
    "error": {
        "message": "The model stopped generating: upstream inference error",
        "type": "server_error",
        "code": "upstream_error",
    }
}


def _no_wait(_seconds: float) -> bool:
    return False


@dataclass(frozen=True)
class _Token:
    """A chunk that carries generated output (text or a tool call): the waits go before it."""

    data: bytes
    index: int
    count: int


_DONE_EVENT = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Reply:
    """What the assistant answers: either text or one tool call."""

    content: str | None
    tool_call: dict[str, Any] | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def requested_model(body: Any) -> str:
    """Return the ``model`` of a chat request or raise ChatRequestError."""
    if not isinstance(body, dict):
        raise ChatRequestError("The request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ChatRequestError("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ChatRequestError("'messages' must be a non-empty array", "messages")
    if not all(isinstance(m, dict) for m in messages):
        raise ChatRequestError("each message must be an object", "messages")
    return model


def content_text(content: Any) -> str:
    """Flatten a message's content (a string or a list of parts) to plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") == "image_url":
                parts.append("[image]")
        return " ".join(parts)
    return ""


def count_tokens(text: str) -> int:
    return len(text.split())


def build_reply(model: str, body: dict[str, Any]) -> Reply:
    """Decide the assistant's answer for a validated request."""
    messages: list[dict[str, Any]] = body["messages"]
    prompt_tokens = sum(count_tokens(content_text(m.get("content"))) for m in messages)
    last = messages[-1]
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    user_text = content_text(last_user.get("content")) if last_user else ""

    tool = _tool_to_call(body, last, user_text)
    if tool is not None:
        name = tool.get("function", {}).get("name", "tool")
        digest = hashlib.sha256(f"{model}\0{name}\0{user_text}".encode()).hexdigest()
        call = {
            "id": f"call_{digest[:24]}",
            "type": "function",
            "function": {"name": name, "arguments": "{}"},
        }
        return Reply(None, call, "tool_calls", prompt_tokens, count_tokens(name) + 1)

    if last.get("role") == "tool":
        text = f"Hello from {model}! The tool returned: {content_text(last.get('content'))}"
    else:
        text = f"Hello from {model}! You said: {user_text}"
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        text = json.dumps(example_for_schema(schema if isinstance(schema, dict) else {}))
        return Reply(text, None, "stop", prompt_tokens, count_tokens(text))
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        text = json.dumps({"reply": text})
        return Reply(text, None, "stop", prompt_tokens, count_tokens(text))

    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    words = text.split(" ")
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(words):
        text = " ".join(words[:limit])
        return Reply(text, None, "length", prompt_tokens, count_tokens(text))
    return Reply(text, None, "stop", prompt_tokens, count_tokens(text))


def _tool_to_call(
    body: dict[str, Any], last: dict[str, Any], user_text: str
) -> dict[str, Any] | None:
    """Pick the tool to call, if this turn should call one (see CHAT_RULES)."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or last.get("role") == "tool":
        return None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        for tool in tools:
            if tool.get("function", {}).get("name") == wanted:
                return tool
    if choice == "required" or (last.get("role") == "user" and _TOOL_WORD.search(user_text)):
        return tools[0]
    return None


def completion(model: str, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_call is not None:
        message["tool_calls"] = [reply.tool_call]
    return {
        "id": _completion_id(model, body),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_pinference_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": reply.usage,
    }


def stream_events(
    model: str,
    body: dict[str, Any],
    reply: Reply,
    pacing: Pacing | None = None,
    wait: Callable[[float], bool] = _no_wait,
) -> Iterator[bytes]:
    """The SSE byte stream: role chunk, content pieces, finish, optional usage, [DONE].

    ``pacing`` spaces the token chunks with ``wait(seconds)`` (which returns True when
    the server stops: the stream then ends where it is) and may break the stream."""
    pace = pacing or Pacing()
    for event in _events(model, body, reply):
        if not isinstance(event, _Token):
            if not (pace.cut and event == _DONE_EVENT):
                yield event
            continue
        if pace.cut and event.index >= max(1, event.count // 2):
            return
        delay = pace.ttft_delay if event.index == 0 else pace.token_interval
        if delay and wait(delay):
            return
        yield event.data
        if pace.error:
            yield _sse(STREAM_ERROR)
            yield _DONE_EVENT
            return


def _events(model: str, body: dict[str, Any], reply: Reply) -> Iterator[bytes | _Token]:
    base = {
        "id": _completion_id(model, body),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_pinference_fake",
    }
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        event: dict[str, Any] = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            event["usage"] = None  # OpenAI sends null usage until the final chunk
        return _sse(event)

    if reply.tool_call is not None:
        call = reply.tool_call
        first = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
            ],
        }
        arguments = call["function"]["arguments"]
        rest = {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}
        yield _Token(chunk(first), 0, 2)
        yield _Token(chunk(rest), 1, 2)
    else:
        yield chunk({"role": "assistant", "content": ""})
        pieces = split_pieces(reply.content or "")
        for index, piece in enumerate(pieces):
            yield _Token(chunk({"content": piece}), index, len(pieces))
    yield chunk({}, reply.finish_reason)
    if include_usage:
        yield _sse({**base, "choices": [], "usage": reply.usage})
    yield _DONE_EVENT


def split_pieces(text: str, pieces: int = 4) -> list[str]:
    """Split text into at most ``pieces`` parts on word boundaries (joined = text)."""
    words = re.findall(r"\S+\s*|\s+", text)
    if not words:
        return []
    size = -(-len(words) // pieces)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def example_for_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A deterministic value valid for a (minimal subset of) JSON Schema."""
    return _example(schema, root if root is not None else schema, "value", 0)


def _example(schema: Any, root: dict[str, Any], name: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    inner = _inner_schema(schema, root)
    if inner is not None:
        return _example(inner, root, name, depth + 1)
    maker = _MAKERS.get(_schema_type(schema))
    return maker(schema, root, name, depth) if maker else None


def _inner_schema(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """The schema to follow instead of this one: a ``$ref`` target or the first option."""
    if isinstance(schema.get("$ref"), str):
        return _resolve(schema["$ref"], root)
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return (usable or options)[0]
    return None


def _schema_type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]: prefer the non-null type
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        return "object"
    if kind is None and "items" in schema:
        return "array"
    return kind if isinstance(kind, str) else None


def _example_object(schema: dict[str, Any], root: dict[str, Any], name: str, depth: int) -> Any:
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    return {key: _example(sub, root, key, depth + 1) for key, sub in props.items()}


def _example_array(schema: dict[str, Any], root: dict[str, Any], name: str, depth: int) -> Any:
    count = schema.get("minItems", 1)
    count = count if isinstance(count, int) and 0 <= count <= 100 else 1
    return [_example(schema.get("items", {}), root, name, depth + 1) for _ in range(count)]


def _example_number(schema: dict[str, Any], integer: bool) -> int | float:
    def bound(key: str) -> float | None:
        value = schema.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None

    low, high = bound("minimum"), bound("maximum")
    if low is None and (x_low := bound("exclusiveMinimum")) is not None:
        low = x_low + 1
    if high is None and (x_high := bound("exclusiveMaximum")) is not None:
        high = x_high - 1
    value = low if low is not None else min(1.0, high) if high is not None else 1.0
    return math.ceil(value) if integer else value


def _example_string(schema: dict[str, Any], name: str) -> str:
    formats = {
        "date": "2025-01-01",
        "date-time": "2025-01-01T00:00:00Z",
        "email": "user@example.com",
        "uri": "https://example.com/",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }
    text = formats.get(schema.get("format", ""), f"example {name}")
    min_length = schema.get("minLength")
    if isinstance(min_length, int) and len(text) < min_length:
        text = text.ljust(min_length, "x")
    max_length = schema.get("maxLength")
    if isinstance(max_length, int) and len(text) > max_length:
        text = text[:max_length]
    return text


_Maker = Callable[[dict[str, Any], dict[str, Any], str, int], Any]
_MAKERS: dict[str | None, _Maker] = {
    "object": _example_object,
    "array": _example_array,
    "string": lambda schema, _root, name, _depth: _example_string(schema, name),
    "number": lambda schema, _root, _name, _depth: _example_number(schema, False),
    "integer": lambda schema, _root, _name, _depth: _example_number(schema, True),
    "boolean": lambda _schema, _root, _name, _depth: True,
    "null": lambda _schema, _root, _name, _depth: None,
}


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    """Resolve a local ``#/...`` reference (pydantic emits ``#/$defs/Name``)."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        if not isinstance(node, dict):
            return None
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node


def _completion_id(model: str, body: dict[str, Any]) -> str:
    raw = json.dumps(body.get("messages"), sort_keys=True, default=str)
    return "chatcmpl-" + hashlib.sha256(f"{model}\0{raw}".encode()).hexdigest()[:24]


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
