"""The llm plugin: every model Pinference lists becomes `pinference/<id>` in llm.

llm imports this module (and runs register_commands) on every command, `llm --help`
included, and runs register_models on every prompt and every `llm.get_model()`: so the
import is cheap (no requests), a warm cache never touches the network, and the hooks never
raise (a raising hook breaks every model of every plugin).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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
from .core.settings import ENV_KEY, Settings, load_prime_config, resolve_settings
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
    unknown_model_hint,
    warn_once,
)
from .openai_http import (
    GuardedAsyncClient,
    GuardedClient,
    InvalidChatResponse,
    http_lib,
    unwrapped,
)

if TYPE_CHECKING:  # imported when models are registered, not for `llm --help`
    from .cache import Lookup

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

    def __init__(
        self, model_id: str, *, line: str, options: int, team_id: str | None, **kwargs: Any
    ) -> None:
        super().__init__(model_id, **kwargs)  # llm's Chat / AsyncChat
        self._line = line
        self._options = options
        self.team_id = team_id
        # Immutable (llm only reads it): every model of a kind can share one.
        self.attachment_types = IMAGE_TYPES if self.vision else frozenset()

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
        prompt time): the seam decides the headers, the team header included or not. A key
        an HTTP header cannot carry is refused here, in one line."""
        try:  # the core refuses a key no header can carry, naming where it came from
            api_key = self.get_key(key)
        except PinferenceError as exc:
            raise llm.ModelError(describe_error(exc)) from None
        return Settings(api_key=api_key, team_id=self.team_id, base_url=self.api_base)

    def get_client(self, key: str | None, *, async_: bool = False) -> Any:
        """The openai client llm would build, from the seam's settings and headers, with
        the plugin's timeouts, one retry at most, and the answer guarded (`GuardedClient`)."""
        from .core.client import USER_AGENT  # not at import: llm imports this module for --help

        settings = self.request_settings(key)
        seconds = prompt_timeout()
        timeout = http_lib.Timeout(seconds, connect=min(CONNECT_TIMEOUT, seconds))
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

    def failure(self, exc: BaseException, key: str | None) -> openai.APIError:
        """What to raise for what a prompt raised: an openai error (the guard's own when
        openai wrapped it), or what llm's reading of the answer raised as the
        invalid_response it is; its message rewritten in place to one bounded, redacted
        line, keeping its type so callers' `except openai.RateLimitError` still works."""
        if isinstance(exc, openai.APIError):
            error = unwrapped(exc)
        else:
            request = http_lib.Request("POST", f"{self.api_base}/chat/completions")
            error = InvalidChatResponse(
                f"the answer could not be read: {type(exc).__name__}", request
            )
            error.__cause__ = exc
        secrets: tuple[str | None, ...] = (key,)
        with contextlib.suppress(Exception):
            secrets += (self.get_key(key),)
        text = prompt_error_message(
            error, base_url=self.api_base, model_id=self.model_name, secrets=secrets
        )
        error.args = (text,)
        error.message = text
        return error

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
            error = self.failure(exc, key)
            if error is exc:
                raise
            raise error from error.__cause__


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
            error = self.failure(exc, key)
            if error is exc:
                raise
            raise error from error.__cause__


def model_builder(
    settings: Settings,
) -> Callable[[Sequence[Any]], tuple[PinferenceChat, PinferenceAsyncChat]]:
    """What builds the sync and async llm models of a registration record (see
    registration.py) by llm's own constructors; it raises ValueError for a record that is
    not one. Registering thousands of models on every llm command: what is the same for
    every model is looked up once, here."""
    from .registration import CAPABILITIES, OPTIONS_LIMIT, SCHEMA, TOOLS, VISION

    shared = {"api_base": settings.base_url, "team_id": settings.team_id}
    kinds = [
        {
            **shared,
            "vision": bool(bits & VISION),
            "supports_schema": bool(bits & SCHEMA),
            "supports_tools": bool(bits & TOOLS),
        }
        for bits in range(CAPABILITIES + 1)
    ]

    def build(record: Sequence[Any]) -> tuple[PinferenceChat, PinferenceAsyncChat]:
        model_id, line, capabilities, options = record
        if not (
            type(model_id) is str
            and model_id
            and type(line) is str
            and type(options) is int
            and 0 <= options < OPTIONS_LIMIT
            and type(capabilities) is int
            and 0 <= capabilities <= CAPABILITIES
        ):
            raise ValueError("not a registration record")
        kind, llm_id = kinds[capabilities], MODEL_PREFIX + model_id
        return (
            PinferenceChat(llm_id, model_name=model_id, line=line, options=options, **kind),
            PinferenceAsyncChat(llm_id, model_name=model_id, line=line, options=options, **kind),
        )

    return build


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
def option_fields() -> dict[str, tuple[Any, Any]]:
    """Every option a model may offer: llm's own fields, and `max_completion_tokens` (llm's
    max_tokens under the name the model takes: llm sends options by their names)."""
    fields: dict[str, tuple[Any, Any]] = {
        name: (field.annotation, field) for name, field in llm_options().model_fields.items()
    }
    if "max_tokens" in fields:
        annotation, field = fields["max_tokens"]
        fields["max_completion_tokens"] = (
            annotation,
            pydantic.Field(None, description=f"{field.description} (the model's name for it)"),
        )
    return fields


@functools.cache
def known_options() -> frozenset[str]:
    """The options the installed llm knows (llm 0.26 has no image_detail)."""
    return frozenset(option_fields())


@functools.cache
def options_class(names: frozenset[str]) -> type[llm.Options]:
    """One Options class per distinct set of names, shared by every model with that set
    (a class per model made a peer plugin take seconds to register its models). Fields
    and validation are llm's own; names llm does not know are left out."""
    fields = {name: field for name, field in option_fields().items() if name in names}
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
    try:
        seconds = float(value or DEFAULT_TIMEOUT)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds) and seconds > 0:
        return seconds
    warn_once(
        f"llm-pinference: ignoring {TIMEOUT_ENV}={shown(value)!r}: not a number of "
        f"seconds > 0; using {DEFAULT_TIMEOUT:g}"
    )
    return DEFAULT_TIMEOUT


# Hooks


def _safe_settings() -> Settings:
    try:
        return current_settings()
    except Exception as exc:  # a key no header can carry, a corrupt keys.json: as if none
        why = describe_error(exc) if isinstance(exc, PinferenceError) else type(exc).__name__
        warn_once(f"llm-pinference: cannot look up the API key ({why})")
        try:  # the Prime settings alone; with a key no header carries, without it
            env, config = dict(os.environ), load_prime_config()
            if isinstance(exc, PinferenceError):
                env.pop(ENV_KEY, None)
                config = {k: v for k, v in config.items() if k != "api_key"}
            return resolve_settings(env=env, config=config)
        except Exception:
            return Settings()


@llm.hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Register the cached list; fetch it (at most once per TTL, with a back-off after a
    failure) only when a key is known: a user who never configured Pinference pays
    nothing and sees nothing, unless they ask for a pinference/ model (then a hint). The
    cache holds each model's registration record, so no API object is parsed here."""
    settings = Settings()
    try:
        settings = _safe_settings()
        _register_listed(register, settings)
    except Exception as exc:  # never break llm for every other plugin
        warn_once(unexpected("cannot list Pinference models", exc, (settings.api_key,)))


def _register_listed(register: Callable[..., None], settings: Settings) -> None:
    # Not configured: no request from every llm command. A list cached by `llm pinference
    # models` or `refresh` (which work without a key) is used, at any age, without a word.
    lookup: Lookup = open_catalog(settings).get(fetch=bool(settings.api_key))
    if lookup.error is not None and lookup.retry_at is not None:
        secrets = (settings.api_key,)
        warn_once(failed_fetch_warning(lookup.error, lookup.fetched_at, lookup.retry_at, secrets))
    build = model_builder(settings)
    failed = 0
    for record in lookup.records:
        try:
            register(*build(record))
        except Exception:  # one odd model must not hide the others
            failed += 1
    if failed:
        warn_once(f"llm-pinference: skipped {failed} model(s) that could not be registered")
    wanted = requested_model(sys.argv)
    if wanted is not None and all(record[0] != wanted for record in lookup.records):
        warn_once(unknown_model_hint(wanted, bool(settings.api_key), lookup.fetched_at))


def requested_model(argv: Sequence[str]) -> str | None:
    """The pinference/ model id a command line asks for with -m/--model, if any: llm says
    only "Unknown model" when it is not listed, so the plugin says why."""
    for i, arg in enumerate(argv):
        if arg in ("-m", "--model") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--model="):
            value = arg.partition("=")[2]
        elif arg.startswith("-m") and not arg.startswith("--"):
            value = arg[2:]
        else:
            continue
        if value.startswith(MODEL_PREFIX):
            return value[len(MODEL_PREFIX) :]
    return None


@llm.hookimpl
def register_commands(cli: Any) -> None:
    try:
        cli.add_command(build_group())
    except Exception as exc:
        warn_once(unexpected("cannot add the `llm pinference` commands", exc))
