"""`llm pinference ...` commands and the plugin's user-facing error messages.

No llm import here: the plugin passes in its key lookup and cache path, so this module is
cheap to import on every llm command (llm runs register_commands even for `llm --help`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from .errors import PinferenceError, Reason
from .settings import ENV_KEY, Settings
from .text import redact

if TYPE_CHECKING:  # the models module is only needed once models are listed
    from .catalog import Catalog
    from .models import ModelInfo

MODEL_PREFIX = "pinference/"
#: (connect, read) seconds for `llm pinference model`: a user is waiting for one answer.
COMMAND_TIMEOUTS = (3.05, 10.0)
KEY_ALIAS = "pinference"
KEY_HINT = f"run `llm keys set {KEY_ALIAS}` or set {ENV_KEY}"

# What the user should do about each failure. `{url}` is the base URL in use.
_ADVICE: dict[Reason, str] = {
    Reason.UNAUTHORIZED: f"the API key was not accepted: {KEY_HINT}",
    Reason.PAYMENT_REQUIRED: "the account is out of credit: add funds to your Prime "
    "Intellect account (or choose another team with PRIME_TEAM_ID)",
    Reason.FORBIDDEN: "the key is not allowed to do this: use a key with the Inference "
    "permission, and check PRIME_TEAM_ID",
    Reason.NOT_FOUND: "{url} has no such resource: check PRIME_INFERENCE_URL",
    Reason.RATE_LIMITED: "rate limited: wait a little and try again",
    Reason.CLIENT_ERROR: "the request was refused: check the model id and options",
    Reason.SERVER_ERROR: "the service is having trouble: try again later",
    Reason.TIMEOUT: "no answer from {url} in time: check your network or PRIME_INFERENCE_URL",
    Reason.CONNECTION_ERROR: "cannot reach {url}: check your network or PRIME_INFERENCE_URL",
    Reason.INVALID_RESPONSE: "{url} did not answer like the Pinference API: "
    "check PRIME_INFERENCE_URL",
}
_MODEL_NOT_FOUND = "no such model: list the models with `llm pinference models`"


def describe_error(error: PinferenceError, *, model_id: str | None = None) -> str:
    """One line: what failed and what to do, e.g. "Pinference unauthorized (HTTP 401): the
    API key was not accepted: run `llm keys set pinference` or set PRIME_API_KEY"."""
    status = f" (HTTP {error.status})" if error.status is not None else ""
    if error.reason is Reason.NOT_FOUND and model_id is not None:
        advice = _MODEL_NOT_FOUND
    else:
        advice = _ADVICE.get(error.reason, "").format(url=error.url or "the API")
    if error.reason is Reason.RATE_LIMITED and error.retry_after is not None:
        advice = f"rate limited: wait {error.retry_after:g}s and try again"
    detail = error.api_message or error.message
    subject = f" for {model_id!r}" if model_id and error.reason is Reason.NOT_FOUND else ""
    text = f"Pinference {error.reason.value}{status}{subject}: {advice}"
    if detail and detail not in text:
        text += f" ({detail})"
    return " ".join(text.split())


def warn(message: str) -> None:
    """One line on stderr; never raises (a closed stderr must not break a command)."""
    with contextlib.suppress(Exception):
        click.echo(" ".join(message.split()), err=True)


# Formatting


def format_context(tokens: int | None) -> str | None:
    """131072 -> "128k", 200000 -> "200k", 1048576 -> "1M": as people say them."""
    if tokens is None or tokens <= 0:
        return None
    kilo = 1024 if tokens % 1024 == 0 else 1000  # binary sizes are quoted in binary units
    if tokens >= kilo * kilo:
        return f"{tokens / (kilo * kilo):.3g}M"
    if tokens >= kilo:
        return f"{tokens / kilo:.3g}k"
    return str(tokens)


def format_price(usd_per_mtok: float | None) -> str:
    if usd_per_mtok is None:
        return "-"
    return f"${usd_per_mtok:.4f}".rstrip("0").rstrip(".") if usd_per_mtok else "$0"


def _flag(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def model_json(model: ModelInfo) -> dict[str, Any]:
    pricing = model.pricing
    return {
        "id": model.id,
        "llm_model_id": MODEL_PREFIX + model.id,
        "display_name": model.display_name,
        "owned_by": model.owned_by,
        "serving": model.serving,
        "created": model.created,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "pricing_usd_per_mtok": {
            "input": pricing.input,
            "output": pricing.output,
            "cache_read": pricing.cache_read,
            "cache_write": pricing.cache_write,
        },
        "input_modalities": list(model.input_modalities),
        "output_modalities": list(model.output_modalities),
        "supported_parameters": list(model.supported_parameters),
        "supports_vision": model.supports_vision,
        "supports_tools": model.supports_tools,
        "supports_schema": model.supports_schema,
        "supports_reasoning": model.reasoning,
    }


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def matches(model: ModelInfo, queries: Iterable[str]) -> bool:
    """Every query (case-insensitive) in the id, display name or owner, like `llm models -q`."""
    haystack = " ".join(filter(None, (model.id, model.display_name, model.owned_by))).lower()
    return all(q.lower() in haystack for q in queries)


def model_details(model: ModelInfo) -> str:
    p = model.pricing
    rows = [
        ("id", model.id),
        ("llm model id", MODEL_PREFIX + model.id),
        ("name", model.display_name or "-"),
        ("owned by", model.owned_by),
        ("serving", model.serving or "-"),
        ("context", f"{model.context_window:,} tokens" if model.context_window else "-"),
        ("max output", f"{model.max_output_tokens:,} tokens" if model.max_output_tokens else "-"),
        ("price input", f"{format_price(p.input)} / M tokens"),
        ("price output", f"{format_price(p.output)} / M tokens"),
    ]
    if p.cache_read is not None or p.cache_write is not None:
        rows.append(("price cache read", f"{format_price(p.cache_read)} / M tokens"))
        rows.append(("price cache write", f"{format_price(p.cache_write)} / M tokens"))
    rows += [
        ("input", ", ".join(model.input_modalities) or "-"),
        ("output", ", ".join(model.output_modalities) or "-"),
        ("vision", _flag(model.supports_vision)),
        ("tools", _flag(model.supports_tools)),
        ("schemas", _flag(model.supports_schema)),
        ("reasoning", _flag(model.reasoning)),
        ("parameters", ", ".join(model.supported_parameters) or "-"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in rows)


# Commands


class Hooks(NamedTuple):
    """What the commands need from the plugin (which owns llm's key lookup and user dir)."""

    settings: Callable[[str | None], Settings]  # explicit --key -> resolved settings
    catalog: Callable[[Settings], Catalog]


def _fail(error: PinferenceError, settings: Settings, **kwargs: Any) -> click.ClickException:
    return click.ClickException(redact(describe_error(error, **kwargs), (settings.api_key,)))


_key_option = click.option(
    "--key", help=f"API key to use (else: llm keys, {ENV_KEY}, ~/.prime/config.json)"
)


def build_group(hooks: Hooks) -> click.Group:
    @click.group(name="pinference")
    def group() -> None:
        "Commands for the llm-pinference plugin (Prime Intellect inference)"

    group.add_command(_models_command(hooks))
    group.add_command(_model_command(hooks))
    group.add_command(_refresh_command(hooks))
    return group


def _models_command(hooks: Hooks) -> click.Command:
    @click.command(name="models")
    @click.option("json_", "--json", is_flag=True, help="Output as JSON")
    @click.option(
        "queries", "-q", "--query", multiple=True, help="Only models matching all of these"
    )
    @_key_option
    def models_command(json_: bool, queries: tuple[str, ...], key: str | None) -> None:
        """List the models.

        Shows id, name, context and prices in USD per million tokens (input/output).
        """
        settings = hooks.settings(key)
        # An explicit command fetches even during the back-off: the user is asking.
        lookup = hooks.catalog(settings).get(respect_backoff=False)
        if lookup.error is not None:
            if not lookup.models:
                raise _fail(lookup.error, settings)
            warn(f"llm-pinference: showing the cached list: {describe_error(lookup.error)}")
        models = [m for m in lookup.models if matches(m, queries)]
        if json_:
            click.echo(json.dumps([model_json(m) for m in models], indent=2))
        elif not models:
            click.echo("No models found" + (" matching the query" if queries else ""), err=True)
        else:
            click.echo(models_table(models))

    return models_command


def models_table(models: list[ModelInfo]) -> str:
    rows = [["id", "name", "context", "input $/M", "output $/M"]]
    rows += [
        [
            MODEL_PREFIX + m.id,
            m.display_name or "",
            format_context(m.context_window) or "-",
            format_price(m.pricing.input),
            format_price(m.pricing.output),
        ]
        for m in models
    ]
    return table(rows)


def _model_command(hooks: Hooks) -> click.Command:
    @click.command(name="model")
    @click.argument("model_id")
    @click.option("json_", "--json", is_flag=True, help="Output as JSON")
    @_key_option
    def model_command(model_id: str, json_: bool, key: str | None) -> None:
        """Show one model's details.

        MODEL_ID may carry the `pinference/` prefix. Asks the API (GET /models/{id}).
        """
        from .client import PinferenceClient

        if model_id.startswith(MODEL_PREFIX):
            model_id = model_id[len(MODEL_PREFIX) :]
        if not model_id.strip():
            raise click.ClickException("the model id must not be empty")
        settings = hooks.settings(key)
        try:
            connect, read = COMMAND_TIMEOUTS
            with PinferenceClient(settings, connect_timeout=connect, read_timeout=read) as client:
                model = client.get_model(model_id)
        except PinferenceError as exc:
            raise _fail(exc, settings, model_id=model_id) from None
        click.echo(json.dumps(model_json(model), indent=2) if json_ else model_details(model))

    return model_command


def _refresh_command(hooks: Hooks) -> click.Command:
    @click.command(name="refresh")
    @_key_option
    def refresh_command(key: str | None) -> None:
        """Fetch the model list now and report what changed.

        Ignores the cache's age and any back-off after a failure.
        """
        settings = hooks.settings(key)
        try:
            result = hooks.catalog(settings).refresh()
        except PinferenceError as exc:
            raise _fail(exc, settings) from None
        added, removed = result.added, result.removed
        if added:
            click.echo(f"Added {len(added)}: " + ", ".join(MODEL_PREFIX + m for m in added))
        if removed:
            click.echo(f"Removed {len(removed)}: " + ", ".join(MODEL_PREFIX + m for m in removed))
        summary = f"{len(added)} added, {len(removed)} removed, {result.unchanged} unchanged"
        if not result.had_cache:
            summary += " (no previous list)"
        click.echo(f"{summary}; {len(result.after)} models in total")
        if not result.saved:
            warn("llm-pinference: could not write the model cache file")

    return refresh_command
