"""Faults: how an endpoint misbehaves, and the broken responses each fault mode sends."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .responses import Response, dumps

#: Every fault mode and what it does: the table ``Fault``, ``--help`` and ``GET /_admin/`` read.
FAULT_MODES = {
    "malformed": "200 with JSON cut off mid-string",
    "truncated": "the normal answer, half sent under the full Content-Length, then close",
    "wrong_shape": "200 with valid JSON of the wrong shape",
    "huge": "200 with valid JSON of huge_bytes bytes (default 20 MiB)",
    "nested": "200 with JSON arrays nested nested_depth deep (default 100000)",
    "empty": "200 with an empty list (list) or an empty body",
    "drop": "close the connection without an answer",
    "hang": "never answer (until the client leaves or the server stops)",
    "reset": "promise the whole body, send half, reset the connection (RST)",
    "drip": "send drip_bytes every drip_interval s, of drip_part: head, body or all",
    "stream_error": "streamed chat: an error event after the first token, then [DONE]",
    "stream_cut": "streamed chat: the stream ends after half the tokens, before [DONE]",
}
#: Modes that change how a response is sent, not what it is.
SENDING_MODES = frozenset({"drip", "reset", "stream_error", "stream_cut"})
#: What a "drip" fault sends slowly: the status line and headers, the body, or both.
DRIP_PARTS = frozenset({"head", "body", "all"})
DEFAULT_HUGE_BYTES = 20 * 1024 * 1024
DEFAULT_NESTED_DEPTH = 100_000
_WRITE_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fault:
    """How to misbehave for one endpoint ("list", "get", "chat" or "*").

    Precedence: ``mode`` (see FAULT_MODES) > ``body`` > ``html`` (a proxy's error page) >
    ``status``; drip, reset and the stream modes change only how the answer is sent, so
    ``body``, ``html`` and ``status`` still choose it. A fault answers before
    authentication, like a gateway in front of the API. ``delay`` is added to the
    endpoint's latency; ``times`` counts the requests it lasts (None: until cleared).
    Streamed chat completions also take ``ttft_delay`` (a wait before the first token)
    and ``token_interval`` (a wait between tokens).
    """

    status: int | None = None
    body: str | bytes | None = None
    html: bool = False
    retry_after: str | None = None
    delay: float = 0.0
    mode: str | None = None
    times: int | None = None
    huge_bytes: int = DEFAULT_HUGE_BYTES
    nested_depth: int = DEFAULT_NESTED_DEPTH
    drip_bytes: int = 1
    drip_interval: float = 0.5
    drip_part: str = "all"
    ttft_delay: float = 0.0
    token_interval: float = 0.0

    def __post_init__(self) -> None:
        if self.status is not None and (not _is_int(self.status) or not 200 <= self.status <= 599):
            raise ValueError("status must be an integer from 200 to 599")
        if self.body is not None and not isinstance(self.body, (str, bytes)):
            raise ValueError("body must be a string")
        if not isinstance(self.html, bool):
            raise ValueError("html must be a boolean")
        if self.retry_after is not None and not isinstance(self.retry_after, str):
            raise ValueError("retry_after must be a string")
        if not is_number(self.delay) or self.delay < 0:
            raise ValueError("delay must be a number >= 0")
        if self.mode is not None and self.mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {sorted(FAULT_MODES)}")
        if self.times is not None and (not _is_int(self.times) or self.times < 1):
            raise ValueError("times must be an integer >= 1 or null")
        for name in ("huge_bytes", "nested_depth", "drip_bytes"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1")
        for name in ("drip_interval", "ttft_delay", "token_interval"):
            if not is_number(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a number >= 0")
        if self.drip_part not in DRIP_PARTS:
            raise ValueError(f"drip_part must be one of {sorted(DRIP_PARTS)}")

    @property
    def shapes_the_body(self) -> bool:
        """True for the modes that replace the response (not the ones that send it oddly)."""
        return self.mode is not None and self.mode not in SENDING_MODES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a Fault from JSON (the admin route); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        values = {k: v for k, v in data.items() if v is not None}
        if isinstance(values.get("retry_after"), int):
            values["retry_after"] = str(values["retry_after"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if isinstance(self.body, bytes):
            data["body"] = self.body.decode("utf-8", "replace")
        return data


_WRONG_SHAPES = {
    "list": b'{"data": "nope"}',
    "get": b"[1, 2]",
    "chat": b'{"choices": "nope"}',
}
_MALFORMED = b'{"object": "list", "data": [{"id": "meta-llama/llama-3.1-70b-instr'


def huge_body(endpoint: str | None, size: int) -> tuple[Iterator[bytes], int]:
    """A valid JSON document of about ``size`` bytes, produced in chunks, and its length."""
    if endpoint == "list":
        prefix, suffix = b'{"object":"list","data":[', b"]}"
        template = (
            '{"id":"huge/model-%08d","object":"model","owned_by":"huge",'
            '"display_name":"Huge model %08d","padding":"' + "x" * 160 + '"}'
        )
        item_len = len(template % (0, 0))
        count = max(1, (size - len(prefix) - len(suffix) + 1) // (item_len + 1))
        length = len(prefix) + len(suffix) + count * item_len + count - 1

        def items() -> Iterator[bytes]:
            yield prefix
            batch = max(1, _WRITE_CHUNK // (item_len + 1))
            for start in range(0, count, batch):
                stop = min(count, start + batch)
                yield ",".join(template % (i, i) for i in range(start, stop)).encode()
                if stop < count:
                    yield b","
            yield suffix

        return items(), length

    if endpoint == "chat":
        head, _, tail = dumps(
            {
                "id": "chatcmpl-huge",
                "object": "chat.completion",
                "created": 0,
                "model": "huge",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "\0"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).partition(b"\\u0000")
    else:
        head, _, tail = dumps({"id": "huge/model", "object": "model", "padding": "\0"}).partition(
            b"\\u0000"
        )
    pad = max(0, size - len(head) - len(tail))

    def padded() -> Iterator[bytes]:
        yield head
        block = b"x" * _WRITE_CHUNK
        for start in range(0, pad, _WRITE_CHUNK):
            yield block[: min(_WRITE_CHUNK, pad - start)]
        yield tail

    return padded(), len(head) + pad + len(tail)


def mode_response(fault: Fault, endpoint: str | None, normal: Callable[[], Response]) -> Response:
    """A 200 (unless ``fault.status`` says otherwise) that breaks the client's parser."""
    if fault.mode == "truncated":
        response = normal()
        response.truncate = True
        return response
    if fault.mode == "huge":
        chunks, length = huge_body(endpoint, fault.huge_bytes)
        return Response(200, chunks, length=length)
    if fault.mode == "empty":
        return Response(200, b'{"object":"list","data":[]}' if endpoint == "list" else b"")
    if fault.mode == "wrong_shape":
        return Response(200, _WRONG_SHAPES.get(endpoint or "", b'{"unexpected":true}'))
    if fault.mode == "nested":
        return Response(200, b"[" * fault.nested_depth + b"]" * fault.nested_depth)
    return Response(200, _MALFORMED)


def model_hint(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
