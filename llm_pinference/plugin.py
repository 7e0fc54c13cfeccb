"""The llm plugin: every model Pinference lists becomes `pinference/<id>` in llm.

llm imports this module (and runs register_commands) on every command, `llm --help`
included, and runs register_models on every prompt and every `llm.get_model()`: so the
import is cheap (no requests), a warm cache never touches the network, and the hooks never
raise (a raising hook breaks every model of every plugin). The commands, the key lookup and
the cache path are in commands.py, the messages in messages.py; this module imports them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, TypeVar

import llm
import openai
import pydantic
from llm.default_plugins.openai_models import AsyncChat, Chat, SharedOptions

from .commands import build_group, current_settings, open_catalog
from .core.errors import (
    PinferenceError,
    Reason,
    error_body_message,
    parse_retry_after,
    reason_for_status,
)
from .core.settings import ENV_KEY, Settings, resolve_settings
from .messages import (
    DROPPED_ADVICE,
    KEY_ALIAS,
    MODEL_PREFIX,
    NO_KEY_MESSAGE,
    PROMPT_TIMEOUT_ADVICE,
    describe_error,
    failed_fetch_warning,
    shown,
    unexpected,
    warn_once,
)
from .openai_http import http_lib

if TYPE_CHECKING:  # imported when models are registered, not for `llm --help`
    from .cache import Entry, Listing
    from .core.models import ModelInfo

# Images only: llm's vision default also allows PDFs, which the API does not promise.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


# Models


class _PinferenceModel:
    """Shared by the sync and async classes: key lookup, team header, errors, display."""

    needs_key = KEY_ALIAS
    key_env_var = ENV_KEY
    team_id: str | None = None
    headers: dict[str, str] | None
    api_base: str | None
    model_name: str
    vision: bool
    _line = ""
    _options = 0
    _source: Entry | None = None
    _info: ModelInfo | None = None

    def __init__(
        self,
        model_id: str,
        *,
        line: str,
        options: int,
        team_id: str | None = None,
        source: Entry | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_id, **kwargs)  # llm's Chat / AsyncChat
        self._line = line
        self._options = options
        self.team_id = team_id
        self._source = source
        # Immutable (llm only reads it): every model of a kind can share one.
        self.attachment_types = IMAGE_TYPES if self.vision else frozenset()

    @property
    def info(self) -> ModelInfo:
        """The model's metadata, from the cached list on first use (registering models
        never needs it)."""
        if self._info is None:
            from .core.models import ModelInfo, owner_from_id

            found = self._source.model(self.model_name) if self._source is not None else None
            self._info = found or ModelInfo(self.model_name, owner_from_id(self.model_name))
        return self._info

    @property
    def Options(self) -> type[llm.Options]:
        """This model's options class, looked up on first use (`llm models` never needs
        it): shared by every model with the same options."""
        from .registration import names_of

        return options_class(names_of(self._options) & known_options())

    def get_key(self, explicit_key: str | None = None) -> str | None:
        """The one key lookup (commands.current_settings); `model.key`, when a Python
        caller sets it, wins as in llm."""
        if self.key is not None:
            return self.key
        key = current_settings(explicit_key).api_key
        if key:
            return key
        raise llm.NeedsKeyException(NO_KEY_MESSAGE)

    def request_settings(self, key: str | None) -> Settings:
        """This model's account with the key in use now (it may be a --key given only at
        prompt time): the seam decides the headers, the team header included or not."""
        return Settings(api_key=self.get_key(key), team_id=self.team_id, base_url=self.api_base)

    def get_client(self, key: str | None, *, async_: bool = False) -> Any:
        """The openai client llm would build, from the seam's settings and headers, with
        the plugin's timeouts, one retry at most, and the answer guarded (`GuardedClient`)."""
        from .core.client import USER_AGENT  # not at import: llm imports this module for --help

        settings = self.request_settings(key)
        timeout = http_timeout(prompt_timeout())
        kwargs: dict[str, Any] = {
            "api_key": settings.api_key,
            "base_url": settings.base_url,
            "default_headers": {**settings.headers(), "User-Agent": USER_AGENT},
            "timeout": timeout,
            "max_retries": MAX_RETRIES,
        }
        if async_:
            return openai.AsyncOpenAI(**kwargs, http_client=GuardedAsyncClient(timeout=timeout))
        inner = None
        if os.environ.get("LLM_OPENAI_SHOW_RESPONSES"):
            from llm.utils import logging_client  # llm's own debugging aid, kept

            inner = logging_client()
        return openai.OpenAI(**kwargs, http_client=GuardedClient(timeout=timeout, inner=inner))

    def explain(self, exc: openai.APIError, key: str | None) -> None:
        """Rewrite an openai error's message in place to one bounded, redacted line, keeping
        its type so callers' `except openai.RateLimitError` still works."""
        secrets: tuple[str | None, ...] = (key,)
        with contextlib.suppress(Exception):
            secrets += (self.get_key(key),)
        text = prompt_error_message(
            exc, base_url=self.api_base, model_id=self.model_name, secrets=secrets
        )
        exc.args = (text,)
        exc.message = text

    def failure(
        self, exc: BaseException, key: str | None
    ) -> tuple[openai.APIError, BaseException | None]:
        """What to raise for what a prompt raised, and its cause: an openai error (the
        guard's own when openai wrapped it), or what llm's reading of the answer raised as
        an invalid_response; its message rewritten to one redacted line."""
        if isinstance(exc, openai.APIError):
            error = unwrapped(exc)
            cause = error.__cause__
        else:
            error, cause = self.unreadable(exc), exc
        self.explain(error, key)
        return error, cause

    def unreadable(self, exc: BaseException) -> InvalidChatResponse:
        """What llm's reading of an answer raised, as the invalid_response it is."""
        request = http_lib.Request("POST", f"{self.api_base}/chat/completions")
        return InvalidChatResponse(f"the answer could not be read: {type(exc).__name__}", request)

    def __str__(self) -> str:
        return self._line  # what `llm models` shows and `llm models -q` searches


class PinferenceChat(_PinferenceModel, Chat):
    def execute(
        self,
        prompt: llm.Prompt,
        stream: bool,
        response: llm.Response,
        conversation: llm.Conversation | None = None,
        key: str | None = None,
    ) -> Iterator[Any]:
        try:
            yield from super().execute(prompt, stream, response, conversation, key)
        except (openai.APIError, *UNREADABLE) as exc:
            error, cause = self.failure(exc, key)
            if error is exc:
                raise
            raise error from cause


class PinferenceAsyncChat(_PinferenceModel, AsyncChat):
    async def execute(
        self,
        prompt: llm.Prompt,
        stream: bool,
        response: llm.AsyncResponse,
        conversation: llm.AsyncConversation | None = None,
        key: str | None = None,
    ) -> AsyncGenerator[Any, None]:
        try:
            async for event in super().execute(prompt, stream, response, conversation, key):
                yield event
        except (openai.APIError, *UNREADABLE) as exc:
            error, cause = self.failure(exc, key)
            if error is exc:
                raise
            raise error from cause


class ModelFactory:
    """Builds the sync and async llm models of registration records (see registration.py).

    llm's constructors run once per capability set, for a prototype of each class; every
    model is then a copy of its prototype's attributes with its own id, line and options.
    Registering thousands of models on every llm command costs a fraction of calling the
    constructors twice per model, and whatever attributes llm sets are there all the same.
    """

    def __init__(self, settings: Settings, source: Entry | None = None) -> None:
        from .registration import OPTIONS_LIMIT

        self.settings = settings
        self.source = source  # the cached list the records come from: for `model.info`
        self.options_limit = OPTIONS_LIMIT
        self._prototypes: dict[int, tuple[_Prototype, _Prototype]] = {}

    def build(
        self, record: Sequence[Any], *, info: ModelInfo | None = None
    ) -> tuple[PinferenceChat, PinferenceAsyncChat]:
        """The two models of one record; ValueError for a record that is not one."""
        model_id, line, capabilities, options = record
        if not (
            type(model_id) is str
            and model_id
            and type(line) is str
            and type(options) is int
            and 0 <= options < self.options_limit
        ):
            raise ValueError("not a registration record")
        prototypes = self._prototypes.get(capabilities)
        if prototypes is None:
            prototypes = self._prototypes[capabilities] = self._make_prototypes(capabilities)
        llm_id = MODEL_PREFIX + model_id
        sync = _copy(PinferenceChat, prototypes[0], llm_id, model_id, line, options)
        async_ = _copy(PinferenceAsyncChat, prototypes[1], llm_id, model_id, line, options)
        if info is not None:
            sync.__dict__["_info"] = async_.__dict__["_info"] = info
        return sync, async_

    def _make_prototypes(self, capabilities: int) -> tuple[_Prototype, _Prototype]:
        from .registration import CAPABILITIES, SCHEMA, TOOLS, VISION

        if type(capabilities) is not int or capabilities & ~CAPABILITIES:
            raise ValueError("not a registration record")
        kwargs: dict[str, Any] = {
            "model_name": "",
            "api_base": self.settings.base_url,
            "team_id": self.settings.team_id,
            "line": "",
            "options": 0,
            "source": self.source,
            "vision": bool(capabilities & VISION),
            "supports_schema": bool(capabilities & SCHEMA),
            "supports_tools": bool(capabilities & TOOLS),
        }
        return (
            _prototype(PinferenceChat(MODEL_PREFIX, **kwargs)),
            _prototype(PinferenceAsyncChat(MODEL_PREFIX, **kwargs)),
        )


#: A model's attributes, and the names of those that are mutable containers: copied per
#: model, as one model's must not be every model's (none today: attachment_types is a
#: frozenset; this holds for whatever llm's constructor adds).
_Prototype = tuple[dict[str, Any], tuple[str, ...]]


def _prototype(model: _PinferenceModel) -> _Prototype:
    state = vars(model).copy()
    return state, tuple(k for k, v in state.items() if isinstance(v, (set, list, dict)))


_Model = TypeVar("_Model", "PinferenceChat", "PinferenceAsyncChat")


def _copy(cls: type[_Model], prototype: _Prototype, *own: Any) -> _Model:
    """A model of `cls` with the prototype's attributes and its own (llm_id, model_name,
    line, options)."""
    attributes, containers = prototype
    state = attributes.copy()
    state["model_id"], state["model_name"], state["_line"], state["_options"] = own
    for name in containers:
        state[name] = state[name].copy()
    model = object.__new__(cls)
    model.__dict__ = state
    return model


def build_models(info: ModelInfo, settings: Settings) -> tuple[PinferenceChat, PinferenceAsyncChat]:
    """The two models of one parsed model (what registering its record gives)."""
    from .registration import record

    return ModelFactory(settings).build(record(info), info=info)


# Options: what `-o` accepts, per model (registration.option_names); llm refuses the rest
# before any request


def _validate_logit_bias(cls: type, value: Any) -> Any:
    return SharedOptions.validate_logit_bias(value)


def llm_options() -> type[llm.Options]:
    """llm's own options class with every option its OpenAI chat models know: from
    `build_options_class` (newer llm, with image_detail), else the reasoning models' class
    (llm 0.26: the shared options, json_object and reasoning_effort), else Chat's."""
    from llm.default_plugins import openai_models

    build = getattr(openai_models, "build_options_class", None)
    if build is not None:
        return build(reasoning=True)  # type: ignore[no-any-return]
    return getattr(openai_models, "OptionsForReasoning", Chat.Options)  # type: ignore[no-any-return]


@functools.cache
def known_options() -> frozenset[str]:
    """The options the installed llm knows (llm 0.26 has no image_detail)."""
    return frozenset(llm_options().model_fields)


@functools.cache
def options_class(names: frozenset[str]) -> type[llm.Options]:
    """One Options class per distinct set of names, shared by every model with that set
    (a class per model made a peer plugin take seconds to register its models). Fields,
    descriptions and validation are llm's own; names llm does not know are left out."""
    every = llm_options()
    fields: dict[str, Any] = {
        name: (field.annotation, field)
        for name, field in every.model_fields.items()
        if name in names
    }
    validators: dict[str, Any] = {}
    if "logit_bias" in names:
        validators["validate_logit_bias"] = pydantic.field_validator("logit_bias")(
            _validate_logit_bias
        )
    return pydantic.create_model(  # type: ignore[no-any-return, call-overload]
        "Options", __base__=llm.Options, __validators__=validators, **fields
    )


# Errors in prompts


def prompt_error_message(
    exc: openai.APIError,
    *,
    base_url: str | None,
    model_id: str | None = None,
    secrets: Iterable[str | None] = (),
) -> str:
    status: int | None = None
    retry_after: float | None = None
    advice: str | None = None
    cause = exc.__cause__
    if isinstance(exc, openai.APITimeoutError):
        reason = Reason.TIMEOUT
        if not isinstance(cause, http_lib.ConnectTimeout):
            advice = PROMPT_TIMEOUT_ADVICE.replace("{timeout}", f"{prompt_timeout():g}s")
    elif isinstance(exc, openai.APIConnectionError):
        reason = Reason.CONNECTION_ERROR
        if isinstance(cause, (http_lib.RemoteProtocolError, http_lib.ReadError)):
            advice = DROPPED_ADVICE
    elif isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        reason = reason_for_status(status)
        retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
    elif isinstance(exc, InvalidChatResponse) or not isinstance(exc.body, dict):
        reason = Reason.INVALID_RESPONSE
    else:  # an error event inside a stream: the service failed mid-answer
        reason = Reason.SERVER_ERROR
    if isinstance(exc, openai.APIConnectionError):
        message = ""  # openai's "Connection error." / "Request timed out.": the advice says it
    else:
        message = f"HTTP {status}" if status is not None else exc.message
    error = PinferenceError(
        reason,
        message,
        status=status,
        api_message=error_body_message(exc.body),
        retry_after=retry_after,
        url=base_url,
    )
    model = model_id if reason is Reason.NOT_FOUND else None
    return describe_error(error, model_id=model, advice=advice, secrets=secrets)


# Prompts on the wire: timeouts, one retry, and a guard on what comes back

TIMEOUT_ENV = "LLM_PINFERENCE_TIMEOUT"
#: Seconds without a byte of the answer (a non-streamed answer sends nothing until it is
#: done): long enough for long generations, short enough that a hung endpoint ends.
DEFAULT_TIMEOUT = 120.0
#: Seconds to connect (at most the timeout): a reachable API connects in well under this.
CONNECT_TIMEOUT = 5.0
#: One retry for connection failures, 5xx and 429 (openai's rules); never for a read
#: timeout, which would double the wait for an endpoint that accepts and never answers.
MAX_RETRIES = 1
MIB = 1024 * 1024
#: A non-streamed answer (or an error body) larger than this is refused: it is read whole.
MAX_BODY_BYTES = 16 * MIB
#: A streamed answer is cut here; one line of it (one event) may not exceed MAX_LINE_BYTES,
#: what the event parser holds in memory at once.
MAX_STREAM_BYTES = 64 * MIB
MAX_LINE_BYTES = 8 * MIB
#: What llm's reading of an answer raises when the answer is not what it expects.
UNREADABLE = (
    AttributeError,
    TypeError,
    KeyError,
    IndexError,
    json.JSONDecodeError,
    RecursionError,
    pydantic.ValidationError,
)


def prompt_timeout(env: Mapping[str, str] | None = None) -> float:
    """LLM_PINFERENCE_TIMEOUT when it is a number of seconds > 0, else DEFAULT_TIMEOUT."""
    value = (os.environ if env is None else env).get(TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        warn_once(
            f"llm-pinference: ignoring {TIMEOUT_ENV}={shown(value)!r}: not a number of "
            f"seconds > 0; using {DEFAULT_TIMEOUT:g}"
        )
        return DEFAULT_TIMEOUT
    return seconds


def http_timeout(seconds: float) -> http_lib.Timeout:
    return http_lib.Timeout(seconds, connect=min(CONNECT_TIMEOUT, seconds))


def _size(n: int) -> str:
    return f"{n / MIB:.3g} MiB" if n >= MIB else f"{n} bytes"


class InvalidChatResponse(openai.APIError):
    """The chat endpoint answered, but not with a usable chat completion (reason
    invalid_response). An openai.APIError, so Python callers' handlers still apply."""

    def __init__(self, detail: str, request: http_lib.Request) -> None:
        super().__init__(detail, request, body=None)


class _Meter:
    """Checks an answer as it arrives: its size, and for an event stream its lines (none
    longer than MAX_LINE_BYTES) and its end (`data: [DONE]` after at least one event)."""

    def __init__(self, request: http_lib.Request, response: http_lib.Response, streaming: bool):
        self.request = request
        self.ok = response.is_success
        self.events = streaming and self.ok
        self.content_type = response.headers.get("content-type", "none")
        self.limit = MAX_STREAM_BYTES if self.events else MAX_BODY_BYTES  # errors: bodies
        self.size = 0
        self.line_size = 0
        self.line_head = b""  # the first bytes of the current line: enough to classify it
        self.data_lines = 0
        self.done = False

    def error(self, detail: str) -> InvalidChatResponse:
        return InvalidChatResponse(detail, self.request)

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            what = "streamed answer" if self.events else "answer"
            raise self.error(f"the {what} passed {_size(self.limit)} and was cut")
        if not self.events:
            return
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            self.line_size += len(piece)
            if self.line_size > MAX_LINE_BYTES:
                raise self.error(f"an event of the stream passed {_size(MAX_LINE_BYTES)}")
            if len(self.line_head) < 16:
                self.line_head += piece[: 16 - len(self.line_head)]
            if end < 0:
                return
            self._end_line()
            start = end + 1

    def _end_line(self) -> None:
        head, self.line_head, self.line_size = self.line_head, b"", 0
        if head.startswith(b"data:"):
            # What openai's stream parser stops at: data that starts with [DONE].
            if head[5:].lstrip(b" ").startswith(b"[DONE]"):
                self.done = True
                if not self.data_lines:
                    raise self.error("the event stream ended without a single event")
            else:
                self.data_lines += 1

    def finish(self) -> None:
        if not self.events or self.done:
            return
        self._end_line()  # a last line without a newline
        if self.done:
            return
        if not self.data_lines:
            raise self.error(
                f"the answer is not an event stream (Content-Type: {self.content_type})"
            )
        raise self.error("the event stream ended before `data: [DONE]`")

    def translate(self, exc: Exception) -> Exception:
        """A transport failure while the answer arrives, as the openai error it means."""
        if isinstance(exc, http_lib.ReadTimeout):
            return openai.APITimeoutError(request=self.request)
        if isinstance(exc, http_lib.DecodingError):
            return self.error("the answer could not be decoded")
        return self.error("the connection closed before the answer was complete")


class _GuardedStream(http_lib.SyncByteStream):
    def __init__(self, response: http_lib.Response, meter: _Meter) -> None:
        self.response = response
        self.meter = meter

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.response.iter_bytes():
                self.meter.feed(chunk)
                yield chunk
        except (http_lib.TransportError, http_lib.DecodingError) as exc:
            raise self.meter.translate(exc) from exc
        self.meter.finish()

    def close(self) -> None:
        self.response.close()


class _GuardedAsyncStream(http_lib.AsyncByteStream):
    def __init__(self, response: http_lib.Response, meter: _Meter) -> None:
        self.response = response
        self.meter = meter

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_bytes():
                self.meter.feed(chunk)
                yield chunk
        except (http_lib.TransportError, http_lib.DecodingError) as exc:
            raise self.meter.translate(exc) from exc
        self.meter.finish()

    async def aclose(self) -> None:
        await self.response.aclose()


def _guarded(
    request: http_lib.Request, response: http_lib.Response, streaming: bool, *, async_: bool
) -> http_lib.Response:
    """The response with its body read through a _Meter. The body is passed on decoded
    (so the caps hold for what is kept in memory, compressed or not)."""
    meter = _Meter(request, response, streaming)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > meter.limit:
        raise meter.error(
            f"the answer is {int(declared) // MIB} MiB, more than {meter.limit // MIB} MiB"
        )
    drop = {"content-encoding", "content-length", "transfer-encoding"}
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in drop]
    stream: http_lib.SyncByteStream | http_lib.AsyncByteStream = (
        _GuardedAsyncStream(response, meter) if async_ else _GuardedStream(response, meter)
    )
    return http_lib.Response(
        response.status_code,
        headers=headers,
        stream=stream,
        request=request,
        extensions=response.extensions,
    )


def check_completion(response: http_lib.Response) -> None:
    """A non-streamed chat answer must be a chat completion llm can read, or it is an
    invalid_response now (not an AttributeError deep inside llm, nor an empty answer)."""
    if not response.is_success or not response.request.url.path.endswith("/chat/completions"):
        return
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        raise InvalidChatResponse("the answer is not JSON", response.request) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if (
        not isinstance(choices, list)
        or not choices
        or not isinstance(choices[0], dict)
        or not isinstance(choices[0].get("message"), dict)
    ):
        raise InvalidChatResponse("the answer is not a chat completion", response.request)
    if not isinstance(data.get("usage"), dict):
        raise InvalidChatResponse("the answer has no token usage", response.request)


#: The header openai sets on every attempt: "0" on the first, then the retry's number.
RETRY_HEADER = "x-stainless-retry-count"


class _Verdicts:
    """What a guarded client remembers between openai's attempts at one request.

    openai 3 passes an openai error raised by the HTTP client's `send` on as it is; older
    releases (1.58, the oldest the plugin admits, for one) retry whatever `send` raises and
    then wrap it in APIConnectionError. A verdict (a read timeout, an unusable answer) is
    never retried, whatever the version: the retry is refused here before a request is
    sent, and `unwrapped` gives the callers the verdict itself."""

    def __init__(self) -> None:
        self.final: openai.APIError | None = None

    def before(self, request: http_lib.Request) -> None:
        if request.headers.get(RETRY_HEADER, "0") == "0":
            self.final = None
        elif self.final is not None:
            raise self.final

    def final_error(self, error: openai.APIError) -> openai.APIError:
        self.final = error
        return error


def unwrapped(exc: openai.APIError) -> openai.APIError:
    """The guard's own error when openai 1.x wrapped it in APIConnectionError."""
    cause = exc.__cause__
    if type(exc) is openai.APIConnectionError and isinstance(cause, openai.APIError):
        return cause
    return exc


class GuardedClient(openai.DefaultHttpxClient):
    """openai's default HTTP client, with each answer checked as it arrives (sizes, the
    stream's end, the completion's shape) and read timeouts raised as openai errors, never
    retried. `inner`, when given, sends the requests (llm's logging client)."""

    def __init__(self, *, inner: http_lib.Client | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._inner = inner
        self._verdicts = _Verdicts()

    def send(self, request: http_lib.Request, *, stream: bool = False, **kwargs: Any) -> Any:
        self._verdicts.before(request)
        sender = self._inner.send if self._inner is not None else super().send
        try:
            raw = sender(request, stream=True, **kwargs)
        except http_lib.ReadTimeout as exc:
            raise self._verdicts.final_error(openai.APITimeoutError(request=request)) from exc
        try:
            response = _guarded(request, raw, stream, async_=False)
            if not stream:
                response.read()
                check_completion(response)
        except openai.APIError as exc:
            raw.close()
            self._verdicts.final = exc
            raise
        except BaseException:
            raw.close()
            raise
        return response

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        super().close()


class GuardedAsyncClient(openai.DefaultAsyncHttpxClient):
    """GuardedClient for the async models."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._verdicts = _Verdicts()

    async def send(self, request: http_lib.Request, *, stream: bool = False, **kwargs: Any) -> Any:
        self._verdicts.before(request)
        try:
            raw = await super().send(request, stream=True, **kwargs)
        except http_lib.ReadTimeout as exc:
            raise self._verdicts.final_error(openai.APITimeoutError(request=request)) from exc
        try:
            response = _guarded(request, raw, stream, async_=True)
            if not stream:
                await response.aread()
                check_completion(response)
        except openai.APIError as exc:
            await raw.aclose()
            self._verdicts.final = exc
            raise
        except BaseException:
            await raw.aclose()
            raise
        return response


# Hooks


def _warn_failed_fetch(listing: Listing, secrets: Iterable[str | None]) -> None:
    from .cache import Source

    assert listing.error is not None
    warn_once(
        failed_fetch_warning(
            listing.error,
            now=time.time(),
            fetched_at=listing.fetched_at if listing.source is Source.STALE else None,
            retry_at=listing.retry_at,
            secrets=secrets,
        )
    )


def _safe_settings() -> Settings:
    try:
        return current_settings()
    except Exception as exc:  # e.g. a corrupt keys.json: the Prime settings alone
        warn_once(f"llm-pinference: cannot look up the API key ({type(exc).__name__})")
        try:
            return resolve_settings()
        except Exception:
            return Settings()


@llm.hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Register the cached list; fetch it (at most once per TTL, with a back-off after a
    failure) only when a key is known: a user who never configured Pinference pays
    nothing and sees nothing. The cache holds each model's registration record, so no
    API object is parsed here."""
    settings = Settings()
    try:
        with _no_garbage_collection():
            settings = _safe_settings()
            _register_listed(register, settings)
    except Exception as exc:  # never break llm for every other plugin
        warn_once(unexpected("cannot list Pinference models", exc, (settings.api_key,)))


@contextlib.contextmanager
def _no_garbage_collection() -> Iterator[None]:
    """Reading the cache and building the models makes tens of thousands of objects, none
    of them garbage: every few hundred, the cyclic collector would walk the young ones, and
    now and then the whole heap (llm's included). Off for the hook, it made registration
    of 5000 models about three times faster."""
    import gc

    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _register_listed(register: Callable[..., None], settings: Settings) -> None:
    # Not configured: no request from every llm command. A list cached by `llm pinference
    # models` or `refresh` (which work without a key) is used, at any age, without a word.
    listing = open_catalog(settings).listing(fetch=bool(settings.api_key))
    if listing.error is not None:
        _warn_failed_fetch(listing, (settings.api_key,))
    factory = ModelFactory(settings, listing.entry)
    failed = 0
    for record in listing.records:
        try:
            register(*factory.build(record))
        except Exception:  # one odd model must not hide the others
            failed += 1
    if failed:
        warn_once(f"llm-pinference: skipped {failed} model(s) that could not be registered")


@llm.hookimpl
def register_commands(cli: Any) -> None:
    try:
        cli.add_command(build_group())
    except Exception as exc:
        warn_once(unexpected("cannot add the `llm pinference` commands", exc))
