"""Where a chat answer enters: the openai client's HTTP client, which turns whatever the API
sends back into valid values or a named reason before openai and llm read it.

- sizes: a body is cut at MAX_BODY_BYTES (a stream at MAX_STREAM_BYTES), counted after
  decompression, and refused before it is read when its declared size is larger;
- a non-streamed chat answer must be a chat completion with a usage; a stream must be
  server-sent events of JSON objects ending in `data: [DONE]`, with a token at least
  every read timeout (keep-alive comments and empty events do not count);
- usage: every count becomes a non-negative int within MAX_COUNT, or None (`clean_usage`);
- a read timeout is an `openai.APITimeoutError` that is never retried.

Every verdict is an openai.APIError (InvalidChatResponse: invalid_response), so llm and
Python callers handle it as any other API error. The events are split by the core's one
reader (chatprobe.EventStream), and passed on re-framed: only `data:` events reach openai.

openai 3 (llm 0.36) is built on `httpx2`; openai 1 and 2 (llm 0.26 to 0.3x) on `httpx`.
Both may be installed side by side, so the choice follows what openai's own default client
derives from, not what happens to be importable.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import openai

from .core.errors import parse_retry_after

_CANDIDATES = ("httpx2", "httpx")


def _openai_http_library() -> ModuleType:
    for cls in openai.DefaultHttpxClient.__mro__:
        root = cls.__module__.partition(".")[0]
        if root in _CANDIDATES:
            return importlib.import_module(root)
    raise ImportError("cannot tell which HTTP library the installed openai package uses")


http_lib = _openai_http_library()

MIB = 1024 * 1024
#: A non-streamed answer (or an error body) larger than this is refused: it is read whole.
MAX_BODY_BYTES = 16 * MIB
#: A streamed answer is cut here (the event reader holds at most one event at a time).
MAX_STREAM_BYTES = 64 * MIB
#: A token count above this is not a count (and would overflow llm's log database).
MAX_COUNT = 10**12
#: The header openai sets on every attempt: "0" on the first, then the retry's number.
RETRY_HEADER = "x-stainless-retry-count"
# Three or more line breaks end a line and an event, like two: collapsed before the
# reader, so a flood of blank lines costs no per-line work.
_BLANK_RUN = re.compile(rb"[\r\n]{3,}")


class InvalidChatResponse(openai.APIError):
    """The chat endpoint answered, but not with a usable chat completion (reason
    invalid_response). An openai.APIError, so Python callers' handlers still apply."""

    def __init__(self, detail: str, request: http_lib.Request) -> None:
        super().__init__(detail, request, body=None)


def clean_usage(usage: object, depth: int = 0) -> dict[str, Any] | None:
    """The one place a usage is made safe for llm: a dict of token counts (non-negative ints
    within MAX_COUNT; a whole float or a digit string becomes one), with `*_details` dicts
    of the same (two levels), any other value None; not a dict: None."""
    if not isinstance(usage, dict) or depth > 2:
        return None
    return {
        str(k): clean_usage(v, depth + 1) if str(k).endswith("_details") else _count(v)
        for k, v in usage.items()
    }


def _count(value: object) -> int | None:
    whole_float = isinstance(value, float) and value.is_integer()
    if whole_float or (isinstance(value, str) and value.isascii() and value.isdigit()):
        value = int(value) if len(str(value)) <= 16 else None
    return value if type(value) is int and 0 <= value <= MAX_COUNT else None


def _size(n: int) -> str:
    return f"{n / MIB:.3g} MiB" if n >= MIB else f"{n} bytes"


class _Answer:
    """One answer as it arrives (decoded): `feed()` each chunk, pass on what it returns,
    then what `end()` returns. Raises the verdict as an openai error."""

    def __init__(self, request: http_lib.Request, response: http_lib.Response, stream: bool):
        self.request = request
        ok = response.is_success and request.url.path.endswith("/chat/completions")
        self.events = ok and stream  # a chat stream
        self.completion = ok and not stream  # a non-streamed chat answer: checked whole
        self.content_type = response.headers.get("content-type", "none")
        self.limit = MAX_STREAM_BYTES if self.events else MAX_BODY_BYTES
        self.size = 0
        self.body = bytearray()
        timeouts = request.extensions.get("timeout") or {}
        self.patience = timeouts.get("read")  # seconds without a token
        if self.events:
            from .core.chatprobe import ChatStream, EventStream

            self.last_token = time.monotonic()
            self.reader = EventStream()
            self.chat = ChatStream(self.last_token)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            size = _size(int(declared))
            raise self.invalid(f"the answer is {size}, more than {_size(self.limit)}")

    def invalid(self, detail: str) -> InvalidChatResponse:
        return InvalidChatResponse(detail, self.request)

    def feed(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self.limit:
            what = "streamed answer" if self.events else "answer"
            raise self.invalid(f"the {what} passed {_size(self.limit)} and was cut")
        if self.completion:
            self.body += chunk
            return b""
        if not self.events:
            return chunk
        tokens = self.chat.text_chunks
        events = self.reader.feed(_BLANK_RUN.sub(b"\n\n", chunk))
        out = b"".join(self._event(data) for data in events)
        now = time.monotonic()
        if self.chat.text_chunks != tokens:
            self.last_token = now
        elif self.patience is not None and now - self.last_token > self.patience:
            raise openai.APITimeoutError(request=self.request)
        return out

    def _event(self, data: bytes) -> bytes:
        from .core.chatprobe import StreamError

        if self.chat.done is not None:
            return b""  # openai stops at [DONE]: so does what it is given
        try:
            self.chat.feed(data, time.monotonic())
        except StreamError as exc:
            if exc.api_message is None:
                raise self.invalid(exc.message) from None
            # An error event: openai raises it as the API's error (a server_error).
        if self.chat.done is not None:
            if self.chat.events == 1:
                raise self.invalid("the event stream ended without a single event")
        else:
            event = json.loads(data)  # a JSON object: the chat stream checked it
            if "usage" in event:
                event["usage"] = clean_usage(event["usage"])
                data = json.dumps(event).encode()
        return b"data: " + data.replace(b"\n", b"\ndata: ") + b"\n\n"

    def end(self) -> bytes:
        if self.events:
            out = b"".join(self._event(data) for data in self.reader.end())
            if self.chat.done is None:
                if not self.chat.events:
                    raise self.invalid(
                        f"the answer is not an event stream (Content-Type: {self.content_type})"
                    )
                raise self.invalid("the event stream ended before `data: [DONE]`")
            return out
        return self._completion() if self.completion else b""

    def _completion(self) -> bytes:
        """A non-streamed chat answer must be a chat completion llm can read, or it is an
        invalid_response now (not an AttributeError deep inside llm, nor an empty answer)."""
        try:
            data = json.loads(self.body)
        except (ValueError, RecursionError):
            raise self.invalid("the answer is not JSON") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if (
            not isinstance(choices, list)
            or not choices
            or not isinstance(choices[0], dict)
            or not isinstance(choices[0].get("message"), dict)
        ):
            raise self.invalid("the answer is not a chat completion")
        data["usage"] = clean_usage(data.get("usage"))
        if data["usage"] is None:
            raise self.invalid("the answer has no token usage")
        return json.dumps(data).encode()

    def failed(self, exc: Exception) -> openai.APIError:
        """A transport failure while the answer arrives, as the openai error it means."""
        if isinstance(exc, http_lib.ReadTimeout):
            return openai.APITimeoutError(request=self.request)
        if isinstance(exc, http_lib.DecodingError):
            return self.invalid("the answer could not be decoded")
        return self.invalid("the connection closed before the answer was complete")


_BROKEN = (http_lib.TransportError, http_lib.DecodingError)


class _Body(http_lib.SyncByteStream, http_lib.AsyncByteStream):
    """The answer's body, read (decoded) through an _Answer, by a sync or an async client."""

    def __init__(self, response: http_lib.Response, answer: _Answer) -> None:
        self.response, self.answer = response, answer

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.response.iter_bytes():
                yield self.answer.feed(chunk)
        except _BROKEN as exc:
            raise self.answer.failed(exc) from exc
        yield self.answer.end()

    def close(self) -> None:
        self.response.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_bytes():
                yield self.answer.feed(chunk)
        except _BROKEN as exc:
            raise self.answer.failed(exc) from exc
        yield self.answer.end()

    async def aclose(self) -> None:
        await self.response.aclose()


class _Verdicts:
    """Between openai's attempts at one request: a verdict (a read timeout, an unusable
    answer) is final. openai 3 passes the openai errors `send` raises on; openai 1.x retries
    whatever `send` raises, so its retry of a verdict is refused here, unsent, and
    `unwrapped` gives callers the verdict rather than openai's wrapper of it."""

    _final: openai.APIError | None = None

    def _before(self, request: http_lib.Request) -> None:
        if request.headers.get(RETRY_HEADER, "0") == "0":
            self._final = None
        elif self._final is not None:
            raise self._final

    def _timed_out(self, request: http_lib.Request) -> openai.APITimeoutError:
        """A read timeout: a verdict, never retried."""
        self._final = openai.APITimeoutError(request=request)
        return self._final

    def _wrap(
        self, request: http_lib.Request, raw: http_lib.Response, stream: bool
    ) -> http_lib.Response:
        """The response, its body read (decoded) through an _Answer, and a Retry-After
        openai can read: whole seconds, or none (openai 1.x raised on a date past 9999)."""
        drop = {"content-encoding", "content-length", "transfer-encoding", "retry-after"}
        headers = [(k, v) for k, v in raw.headers.multi_items() if k.lower() not in drop]
        seconds = parse_retry_after(raw.headers.get("retry-after"))
        if seconds is not None:
            headers.append(("retry-after", str(math.ceil(min(seconds, MAX_COUNT)))))
        return http_lib.Response(
            raw.status_code,
            headers=headers,
            stream=_Body(raw, _Answer(request, raw, stream)),
            request=request,
            extensions=raw.extensions,
        )


def unwrapped(exc: openai.APIError) -> openai.APIError:
    """The guard's own error when openai 1.x wrapped it in APIConnectionError."""
    cause = exc.__cause__
    if type(exc) is openai.APIConnectionError and isinstance(cause, openai.APIError):
        return cause
    return exc


class GuardedClient(openai.DefaultHttpxClient, _Verdicts):
    """openai's default HTTP client with each answer read through an _Answer. `inner`,
    when given, sends the requests (llm's logging client)."""

    def __init__(self, *, inner: http_lib.Client | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._inner = inner

    def send(self, request: http_lib.Request, *, stream: bool = False, **kwargs: Any) -> Any:
        self._before(request)
        # Credentials go to the configured origin only: httpx would carry the team header
        # (it strips only Authorization) to wherever a redirect points.
        kwargs["follow_redirects"] = False
        sender = self._inner.send if self._inner is not None else super().send
        try:
            raw = sender(request, stream=True, **kwargs)
        except http_lib.ReadTimeout as exc:
            raise self._timed_out(request) from exc
        try:
            response = self._wrap(request, raw, stream)
            if not stream:
                response.read()
        except openai.APIError as exc:
            raw.close()
            self._final = exc
            raise
        return response

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        super().close()


class GuardedAsyncClient(openai.DefaultAsyncHttpxClient, _Verdicts):
    """GuardedClient for the async models."""

    async def send(self, request: http_lib.Request, *, stream: bool = False, **kwargs: Any) -> Any:
        self._before(request)
        kwargs["follow_redirects"] = False  # as GuardedClient.send
        try:
            raw = await super().send(request, stream=True, **kwargs)
        except http_lib.ReadTimeout as exc:
            raise self._timed_out(request) from exc
        try:
            response = self._wrap(request, raw, stream)
            if not stream:
                await response.aread()
        except openai.APIError as exc:
            await raw.aclose()
            self._final = exc
            raise
        return response
