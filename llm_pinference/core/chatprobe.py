"""The inference probe without the network: the request it sends, the reading of the
event stream that answers it, what it returns, and what it cost.

The probe (`PinferenceClient.chat_probe`) sends a tiny fixed prompt as a streamed chat
completion and reads the server-sent events as they arrive: the first token's arrival is
the time to first token, `data: [DONE]` the end. A stream that ends before `[DONE]`, holds
an event that is not JSON, or carries an `error` object is not a working inference
(`StreamError`, which the client reports as invalid_response).

Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import error_body_message
from .models import Pricing, cache_tokens, token_count
from .text import JSONError, load_json

#: The probe's prompt: short, cheap, and answered the same way by any chat model.
CHAT_PROBE_PROMPT = "Reply with the single word: ok"
CHAT_PROBE_MAX_TOKENS = 8
_DONE = b"[DONE]"
# Generated text in a delta: the answer, a reasoning model's thoughts, a tool call.
_TOKEN_FIELDS = ("content", "reasoning_content", "reasoning", "tool_calls")


def chat_request(model_id: str, max_tokens: int) -> dict[str, Any]:
    """The streamed chat completion the probe sends (usage asked for in the stream)."""
    return {
        "model": model_id,
        "messages": [{"role": "user", "content": CHAT_PROBE_PROMPT}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@dataclass(frozen=True)
class TokenUsage:
    """Tokens of one completion. From the usage the API reported; without one,
    `output_tokens` counts the chunks that carried text and `estimated` is True (the
    prompt's count is then unknown: None). Cache reads and writes are part of the prompt's
    tokens (0 when not said)."""

    prompt_tokens: int | None
    output_tokens: int
    estimated: bool
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class ChatProbeResult:
    """One successful inference probe. Times are seconds from the start of the request."""

    model: str
    status: int
    ttft: float | None  # the first token's arrival; None if the stream held no token
    duration: float  # until `data: [DONE]`
    usage: TokenUsage
    finish_reason: str | None


class StreamError(ValueError):
    """The event stream is not a working completion; `api_message` is the API's own word
    when it sent an error event."""

    def __init__(self, message: str, api_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.api_message = api_message


class EventStream:
    """Splits server-sent events: `feed()` bytes as they come, get the `data` of each
    complete event (multi-line data joined with newlines; comments and other fields
    dropped). Lines may end with CRLF, LF or CR, split anywhere between reads."""

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = (self._pending + chunk).splitlines(keepends=True)
        # The last line waits unless it ended with LF: a CR may be half of a CRLF.
        self._pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        return [event for line in lines for event in self._line(line.rstrip(b"\r\n"))]

    def end(self) -> list[bytes]:
        """The data of an event the stream ended in (without its blank line)."""
        pending, self._pending = self._pending.rstrip(b"\r"), b""
        return [*(self._line(pending) if pending else []), *self._line(b"")]

    def _line(self, line: bytes) -> list[bytes]:
        if not line:
            events, self._data = ([b"\n".join(self._data)] if self._data else []), []
            return events
        name, _, value = line.partition(b":")
        if name == b"data":
            self._data.append(value[1:] if value.startswith(b" ") else value)
        return []


class ChatStream:
    """Reads the events of a streamed chat completion (`feed()` each event's data with the
    time it arrived), then `result()`."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.first_token: float | None = None
        self.done: float | None = None
        self.events = 0
        self.text_chunks = 0
        self.usage: Mapping[str, Any] | None = None
        self.finish_reason: str | None = None

    def feed(self, data: bytes, now: float) -> None:
        """Take one event; raises StreamError for an error event or one that is not a
        JSON object. Events after `[DONE]` are ignored."""
        if self.done is not None:
            return
        self.events += 1
        if data.strip() == _DONE:
            self.done = now
            return
        try:
            event = load_json(data)
        except JSONError as exc:
            raise StreamError(f"a stream event is {exc}") from None
        if not isinstance(event, dict):
            raise StreamError("a stream event is not a JSON object")
        if event.get("error") is not None:
            raise StreamError("the stream carried an error", error_body_message(event))
        usage = event.get("usage")
        if isinstance(usage, Mapping):
            self.usage = usage
        choices = event.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            raise StreamError("a stream event's `choices` is not a list")
        for choice in choices:
            self._choice(choice, now)

    def _choice(self, choice: object, now: float) -> None:
        if not isinstance(choice, Mapping):
            raise StreamError("a stream event's choice is not an object")
        delta = choice.get("delta")
        if isinstance(delta, Mapping) and any(delta.get(f) for f in _TOKEN_FIELDS):
            self.text_chunks += 1
            if self.first_token is None:
                self.first_token = now
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self.finish_reason = reason

    def result(self, model: str, status: int) -> ChatProbeResult:
        """What the stream showed; StreamError if it ended before `[DONE]`."""
        if self.done is None:
            raise StreamError("the stream ended before `data: [DONE]`")
        return ChatProbeResult(
            model=model,
            status=status,
            ttft=None if self.first_token is None else self.first_token - self.started,
            duration=self.done - self.started,
            usage=token_usage(self.usage, self.text_chunks),
            finish_reason=self.finish_reason,
        )


def token_usage(usage: Mapping[str, Any] | None, text_chunks: int) -> TokenUsage:
    """The counts from an OpenAI-style `usage` object, or estimated from the chunks."""
    output = token_count(usage.get("completion_tokens")) if usage is not None else None
    if usage is None or output is None:
        return TokenUsage(None, text_chunks, estimated=True)
    read, write = cache_tokens(usage)
    return TokenUsage(token_count(usage.get("prompt_tokens")), output, False, read, write)


def estimate_cost(usage: TokenUsage, pricing: Pricing) -> float | None:
    """USD for these tokens at these prices (`Pricing.cost_of`); None without the
    prompt's count."""
    if usage.prompt_tokens is None:
        return None
    return pricing.cost_of(
        usage.prompt_tokens,
        usage.output_tokens,
        cache_read=usage.cache_read_tokens,
        cache_write=usage.cache_write_tokens,
    )
