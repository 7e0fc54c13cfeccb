"""The llm plugin: every model Pinference lists becomes `pinference/<id>` in llm.

llm imports this module (and runs register_commands) on every command, `llm --help`
included, and runs register_models on every prompt and every `llm.get_model()`: so the
import is cheap (no requests), a warm cache never touches the network, and the hooks never
raise (a raising hook breaks every model of every plugin). The commands, the key lookup and
the cache path are in commands.py, the messages in messages.py; this module imports them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import llm
import openai
from llm.default_plugins.openai_models import AsyncChat, Chat

from .commands import build_group, current_settings, open_catalog
from .errors import (
    PinferenceError,
    Reason,
    error_body_message,
    parse_retry_after,
    reason_for_status,
)
from .messages import (
    KEY_ALIAS,
    MODEL_PREFIX,
    NO_KEY_MESSAGE,
    describe_error,
    failed_fetch_warning,
    model_line,
    warn_once,
)
from .settings import ENV_KEY, Settings, resolve_settings
from .text import redact

if TYPE_CHECKING:  # imported when models are registered, not for `llm --help`
    from .catalog import Lookup
    from .models import ModelInfo

# Images only: llm's vision default also allows PDFs, which the API does not promise.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


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
        """llm's client, built from the seam's settings and headers."""
        settings = self.request_settings(key)
        kwargs: dict[str, Any] = {
            "api_key": settings.api_key,
            "base_url": settings.base_url,
            "default_headers": settings.headers(),
        }
        if os.environ.get("LLM_OPENAI_SHOW_RESPONSES") and not async_:
            from llm.utils import logging_client  # llm's own debugging aid, kept

            kwargs["http_client"] = logging_client()
        return openai.AsyncOpenAI(**kwargs) if async_ else openai.OpenAI(**kwargs)

    def explain(self, exc: openai.APIError, key: str | None) -> None:
        """Rewrite an openai error's message in place to one actionable line, keeping its
        type so callers' `except openai.RateLimitError` still works."""
        text = prompt_error_message(exc, base_url=self.api_base, model_id=self.info.id)
        with contextlib.suppress(Exception):
            text = redact(text, (self.get_key(key),))
        exc.args = (text,)
        exc.message = text

    def __str__(self) -> str:
        return model_line(self.info)  # what `llm models` shows and `llm models -q` searches


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
    classes are shared, never built per model. Headers are built per request."""
    return {
        "model_id": MODEL_PREFIX + info.id,
        "model_name": info.id,
        "api_base": settings.base_url,
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
    warn_once(
        failed_fetch_warning(
            lookup.error,
            now=time.time(),
            fetched_at=lookup.fetched_at if lookup.source == "stale" else None,
            retry_at=lookup.retry_at,
        )
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
        cli.add_command(build_group())
    except Exception as exc:
        warn_once(f"llm-pinference: cannot add the `llm pinference` commands ({exc})")
