"""The llm plugin: every model Pinference lists becomes `pinference/<id>` in llm.

This is the one module that imports llm. llm imports it (and runs register_commands) on
every command, `llm --help` included, and runs register_models on every prompt and every
`llm.get_model()`: so the import is cheap (no requests), a warm cache never touches the
network, and the hooks never raise (a raising hook breaks every model of every plugin).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import llm
import openai
from llm.default_plugins.openai_models import AsyncChat, Chat

from .commands import KEY_ALIAS, MODEL_PREFIX, Hooks, build_group, describe_error, format_context
from .commands import warn as _echo_warning
from .errors import (
    PinferenceError,
    Reason,
    error_body_message,
    parse_retry_after,
    reason_for_status,
)
from .notices import first_time
from .settings import ENV_KEY, TEAM_HEADER, Settings, load_prime_config, resolve_settings
from .text import format_age, redact

if TYPE_CHECKING:  # imported when models are registered, not for `llm --help`
    from .catalog import Catalog, Lookup
    from .models import ModelInfo

# Images only: llm's vision default also allows PDFs, which the API does not promise.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
NO_KEY_MESSAGE = (
    f"No key found - add one using 'llm keys set {KEY_ALIAS}', set the {ENV_KEY} "
    "environment variable, or put api_key in ~/.prime/config.json"
)


def warn_once(message: str) -> None:
    if first_time(message):
        _echo_warning(message)


# Key and settings: one lookup for listing, prompting and commands


def prime_config_key(config: Mapping[str, object] | None = None) -> str | None:
    # The config file alone (env={}): llm's own lookup has already covered PRIME_API_KEY.
    return resolve_settings(env={}, config=config).api_key


def find_key(
    explicit_key: str | None = None, config: Mapping[str, object] | None = None
) -> str | None:
    """`--key`, then `llm keys set pinference`, then PRIME_API_KEY, then ~/.prime/config.json."""
    key = llm.get_key(explicit_key=explicit_key, key_alias=KEY_ALIAS, env_var=ENV_KEY)
    return key or prime_config_key(config)


def current_settings(explicit_key: str | None = None) -> Settings:
    """Team and base URL as the Prime tools resolve them; the key as llm resolves it."""
    config = load_prime_config()
    base = resolve_settings(config=config)
    key = find_key(explicit_key, config)
    return Settings(api_key=key, team_id=base.team_id, base_url=base.base_url)


def open_catalog(settings: Settings) -> Catalog:
    from .catalog import CACHE_FILENAME, Catalog

    return Catalog(llm.user_dir() / CACHE_FILENAME, settings)


# Models


class _PinferenceModel:
    """Shared by the sync and async classes: key lookup, team header, errors, display."""

    needs_key = KEY_ALIAS
    key_env_var = ENV_KEY
    info: ModelInfo
    team_id: str | None = None
    headers: dict[str, str] | None
    api_base: str | None
    vision: bool

    def __init__(self, info: ModelInfo, *, team_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # llm's Chat / AsyncChat
        self.info = info
        self.team_id = team_id
        if self.vision:
            self.attachment_types = set(IMAGE_TYPES)

    def get_key(self, explicit_key: str | None = None) -> str | None:
        try:
            return super().get_key(explicit_key)  # type: ignore[misc]
        except llm.NeedsKeyException:
            # llm knows --key, keys.json and the env var; the Prime CLI's config comes last.
            key = prime_config_key()
            if key:
                return key
            raise llm.NeedsKeyException(NO_KEY_MESSAGE) from None

    def get_client(self, key: str | None, *, async_: bool = False) -> Any:
        if self.team_id and TEAM_HEADER not in (self.headers or {}):
            # No key was known when the model was registered, but one is given now (--key):
            # the team applies to it. Without a key get_key raises before any request.
            self.headers = {**(self.headers or {}), TEAM_HEADER: self.team_id}
        return super().get_client(key, async_=async_)  # type: ignore[misc]

    def explain(self, exc: openai.APIError, key: str | None) -> None:
        """Rewrite an openai error's message in place to one actionable line, keeping its
        type so callers' `except openai.RateLimitError` still works."""
        text = prompt_error_message(exc, base_url=self.api_base, model_id=self.info.id)
        with contextlib.suppress(Exception):
            text = redact(text, (self.get_key(key),))
        exc.args = (text,)
        exc.message = text

    def __str__(self) -> str:
        # `llm models` shows this line, and `llm models -q` searches it.
        info, details = self.info, []
        if info.display_name and info.display_name != info.id:
            details.append(info.display_name)
        context = format_context(info.context_window)
        if context:
            details.append(f"{context} context")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"Pinference: {MODEL_PREFIX}{self.info.id}{suffix}"


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
        except openai.APIError as exc:
            self.explain(exc, key)
            raise


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
        except openai.APIError as exc:
            self.explain(exc, key)
            raise


def model_kwargs(info: ModelInfo, settings: Settings) -> dict[str, Any]:
    """Constructor arguments from the metadata; an unknown capability counts as absent.
    `reasoning` selects llm's cached Options class with reasoning_effort: the Options
    classes are shared, never built per model."""
    team = settings.team_id if settings.api_key else None
    return {
        "model_id": MODEL_PREFIX + info.id,
        "model_name": info.id,
        "api_base": settings.base_url,
        "headers": {TEAM_HEADER: team} if team else None,
        "team_id": settings.team_id,
        "vision": info.supports_vision is True,
        "reasoning": info.reasoning is True,
        "supports_schema": info.supports_schema is True,
        "supports_tools": info.supports_tools is True,
    }


def build_models(info: ModelInfo, settings: Settings) -> tuple[PinferenceChat, PinferenceAsyncChat]:
    kwargs = model_kwargs(info, settings)
    return PinferenceChat(info, **kwargs), PinferenceAsyncChat(info, **kwargs)


# Errors in prompts


def prompt_error_message(
    exc: openai.APIError, *, base_url: str | None, model_id: str | None = None
) -> str:
    status: int | None = None
    retry_after: float | None = None
    if isinstance(exc, openai.APITimeoutError):
        reason = Reason.TIMEOUT
    elif isinstance(exc, openai.APIConnectionError):
        reason = Reason.CONNECTION_ERROR
    elif isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        reason = reason_for_status(status)
        retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
    else:
        reason = Reason.INVALID_RESPONSE
    error = PinferenceError(
        reason,
        f"HTTP {status}" if status is not None else exc.message,
        status=status,
        api_message=error_body_message(exc.body),
        retry_after=retry_after,
        url=base_url,
    )
    return describe_error(error, model_id=model_id if reason is Reason.NOT_FOUND else None)


# Hooks


def _warn_failed_fetch(lookup: Lookup) -> None:
    assert lookup.error is not None
    now = time.time()
    if lookup.source == "stale" and lookup.fetched_at is not None:
        fallback = f"Using the list cached {format_age(max(0.0, now - lookup.fetched_at))} ago"
    else:
        fallback = "No Pinference models until then"
    retry = f"in {format_age(lookup.retry_at - now)}" if lookup.retry_at else "later"
    warn_once(
        f"llm-pinference: could not refresh the model list: {describe_error(lookup.error)}. "
        f"{fallback}; next try {retry} (or run `llm pinference refresh`)."
    )


def _safe_settings() -> Settings:
    try:
        return current_settings()
    except Exception as exc:  # e.g. a corrupt keys.json: list without a key
        warn_once(f"llm-pinference: cannot look up the API key ({type(exc).__name__})")
        try:
            base = resolve_settings()
        except Exception:
            base = Settings()
        return Settings(team_id=base.team_id, base_url=base.base_url)


@llm.hookimpl
def register_models(register: Callable[..., None]) -> None:
    settings = Settings()
    try:
        settings = _safe_settings()
        lookup = open_catalog(settings).get()
        if lookup.error is not None:
            _warn_failed_fetch(lookup)
        failed = 0
        for info in lookup.models:
            try:
                register(*build_models(info, settings))
            except Exception:  # one odd model must not hide the others
                failed += 1
        if failed:
            warn_once(f"llm-pinference: skipped {failed} model(s) that could not be registered")
    except Exception as exc:  # never break llm for every other plugin
        detail = redact(f"{type(exc).__name__}: {exc}", (settings.api_key,))
        warn_once(f"llm-pinference: cannot list Pinference models ({' '.join(detail.split())})")


@llm.hookimpl
def register_commands(cli: Any) -> None:
    try:
        cli.add_command(build_group(Hooks(settings=current_settings, catalog=open_catalog)))
    except Exception as exc:
        warn_once(f"llm-pinference: cannot add the `llm pinference` commands ({exc})")
