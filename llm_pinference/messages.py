"""What the llm plugin says: error messages with advice, warnings, and the formatting of
models, refresh results and cost reports.

No llm import: cheap to import and to test alone. Every string that came from the API is
shown through `shown()` (control characters and ANSI escapes made visible), and every
error line is redacted, made one line and bounded (`describe_error`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

from .core.errors import InvalidModelId, PinferenceError, Reason
from .core.notices import first_time
from .core.settings import ENV_KEY
from .core.text import format_age, one_line, redact, redact_url, url_secrets
from .core.text import printable as shown  # a string from the API, controls made visible

if TYPE_CHECKING:  # the models module is only needed once models are listed
    from .core.models import ModelInfo

MODEL_PREFIX = "pinference/"
KEY_ALIAS = "pinference"
KEY_HINT = f"run `llm keys set {KEY_ALIAS}` or set {ENV_KEY}"
NO_KEY_MESSAGE = (
    f"No key found - add one using 'llm keys set {KEY_ALIAS}', set the {ENV_KEY} "
    "environment variable, or put api_key in ~/.prime/config.json"
)

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
#: The API's own words in a message are cut here, the whole line at MESSAGE_LIMIT: a
#: server can send anything, and an error must stay one readable line.
DETAIL_LIMIT = 200
MESSAGE_LIMIT = 400
#: Ids `llm pinference refresh` shows per side before "and N more".
REFRESH_IDS_SHOWN = 5
_MODEL_NOT_FOUND = "no such model: list the models with `llm pinference models`"
#: A connection that was made and then closed without an answer is not "cannot reach".
DROPPED_ADVICE = "{url} closed the connection without answering: try again later"
PROMPT_TIMEOUT_ADVICE = (
    "no answer from {url} within {timeout}: try again, or raise LLM_PINFERENCE_TIMEOUT "
    "(seconds) for long generations"
)


def describe_error(
    error: PinferenceError,
    *,
    model_id: str | None = None,
    advice: str | None = None,
    secrets: Iterable[str | None] = (),
) -> str:
    """One line: what failed and what to do, e.g. "Pinference unauthorized (HTTP 401): the
    API key was not accepted: run `llm keys set pinference` or set PRIME_API_KEY".

    `advice` replaces the reason's usual advice (`{url}` is filled in). The line is
    redacted (`secrets`, such as the key, and credentials in the base URL: the API's own
    message may echo them), printable, and bounded: the API's words to DETAIL_LIMIT
    characters, the whole line to MESSAGE_LIMIT."""
    secrets = (*secrets, *url_secrets(error.url))
    if isinstance(error, InvalidModelId):  # refused before any request: the core's words
        return _clean(error.message, secrets, MESSAGE_LIMIT)
    url = redact_url(error.url) if error.url else "the API"
    status = f" (HTTP {error.status})" if error.status is not None else ""
    if advice is not None:
        pass
    elif error.reason is Reason.NOT_FOUND and model_id is not None:
        advice = _MODEL_NOT_FOUND
    elif error.reason is Reason.RATE_LIMITED and error.retry_after is not None:
        advice = f"rate limited: wait {error.retry_after:g}s and try again"
    else:
        advice = _ADVICE.get(error.reason, "")
    advice = advice.format(url=url)
    subject = ""
    if model_id and error.reason is Reason.NOT_FOUND:
        subject = f" for {model_id!r}"
    text = f"Pinference {error.reason.value}{status}{subject}: {advice}"
    detail = _clean(error.api_message or error.message, secrets, DETAIL_LIMIT)
    if detail and detail not in text:
        text += f" ({detail})"
    return _clean(text, secrets, MESSAGE_LIMIT)


def _clean(text: str, secrets: Iterable[str | None], limit: int) -> str:
    # Redact before cutting: a key cut short would no longer match, and its start would show.
    return one_line(shown(" ".join(redact(text, secrets).split())), limit)


def unexpected(what: str, exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """A warning for a failure nobody planned for: one redacted, bounded line."""
    return "llm-pinference: " + _clean(f"{what} ({type(exc).__name__}: {exc})", secrets, 300)


def warn(message: str) -> None:
    """One line on stderr; never raises (a closed stderr must not break a command)."""
    with contextlib.suppress(Exception):
        click.echo(" ".join(message.split()), err=True)


def warn_once(message: str) -> None:
    """`warn`, once per process: llm runs the hooks several times per command."""
    if first_time(message):
        warn(message)


def failed_fetch_warning(
    error: PinferenceError,
    fetched_at: float | None,
    retry_at: float,
    secrets: Iterable[str | None] = (),
) -> str:
    """The hooks' one warning when the list could not be refreshed."""
    now = time.time()
    if fetched_at is not None:
        fallback = f"Using the list cached {format_age(max(0.0, now - fetched_at))} ago"
    else:
        fallback = "No Pinference models until then"
    return (
        "llm-pinference: could not refresh the model list: "
        f"{describe_error(error, secrets=secrets)}. "
        f"{fallback}; next try in {format_age(retry_at - now)} (or run `llm pinference refresh`)."
    )


def unknown_model_hint(model_id: str, has_key: bool, fetched_at: float | None) -> str:
    """Why llm is about to say `Unknown model: pinference/<id>`, and what to do."""
    name = MODEL_PREFIX + shown(model_id)
    if fetched_at is None and not has_key:
        return (
            f"llm-pinference: no Pinference models are listed, so {name} is unknown: "
            f"no key is configured ({KEY_HINT}), or run `llm pinference refresh` to list "
            "the models without one"
        )
    age = format_age(max(0.0, time.time() - fetched_at)) if fetched_at is not None else None
    listed = f"the model list cached {age} ago" if age else "the model list"
    return (
        f"llm-pinference: {name} is not in {listed}: run `llm pinference refresh` if it is "
        "new, or see `llm pinference models` for the ids"
    )


# Models


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
    """`$0.075`, `$3`, `$0` (free); "" when the API does not say."""
    if usd_per_mtok is None:
        return ""
    return f"${usd_per_mtok:.4f}".rstrip("0").rstrip(".") if usd_per_mtok else "$0"


def _yes_no(value: bool | None, unknown: str = "unknown") -> str:
    return unknown if value is None else ("yes" if value else "no")


def model_line(model: ModelInfo) -> str:
    """The line `llm models` shows (and `llm models -q` searches)."""
    details = []
    if model.display_name and model.display_name != model.id:
        details.append(shown(model.display_name))
    context = format_context(model.context_window)
    if context:
        details.append(f"{context} context")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"Pinference: {MODEL_PREFIX}{shown(model.id)}{suffix}"


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


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


MODELS_TABLE_HEADER = (
    "id",
    "serving",
    "in $/M",
    "out $/M",
    "cache rd $/M",
    "cache wr $/M",
    "context",
    "max out",
    "reasoning",
)


#: The columns left out first when the table is wider than the terminal (by index of
#: MODELS_TABLE_HEADER): cache prices, reasoning, max output, serving, context, prices.
DROP_ORDER = (5, 4, 8, 7, 1, 6, 3, 2)


def models_table(models: Iterable[ModelInfo], width: int | None = None) -> str:
    """What `prime inference models` shows and more: prices in USD per million tokens
    (input, output, cache read, cache write), context, max output, reasoning; a blank
    where the API does not say. Within `width` columns when it is given: the columns of
    DROP_ORDER are left out, in that order, until the table fits (the id always stays)."""
    rows: list[Sequence[str]] = [MODELS_TABLE_HEADER]
    for m in models:
        p = m.pricing
        rows.append(
            (
                MODEL_PREFIX + shown(m.id),
                shown(m.serving or ""),
                format_price(p.input),
                format_price(p.output),
                format_price(p.cache_read),
                format_price(p.cache_write),
                format_context(m.context_window) or "",
                format_context(m.max_output_tokens) or "",
                _yes_no(m.reasoning, ""),
            )
        )
    widths = {i: max(len(row[i]) for row in rows) for i in range(len(MODELS_TABLE_HEADER))}
    for column in DROP_ORDER:
        if width is None or sum(widths.values()) + 2 * (len(widths) - 1) <= width:
            break
        del widths[column]
    return table([[row[i] for i in widths] for row in rows])


def _per_mtok(price: float | None) -> str:
    return f"{format_price(price)} / M tokens" if price is not None else "-"


def model_details(model: ModelInfo) -> str:
    p = model.pricing
    rows = [
        ("id", shown(model.id)),
        ("llm model id", MODEL_PREFIX + shown(model.id)),
        ("name", shown(model.display_name or "-")),
        ("owned by", shown(model.owned_by)),
        ("serving", shown(model.serving or "-")),
        ("context", f"{model.context_window:,} tokens" if model.context_window else "-"),
        ("max output", f"{model.max_output_tokens:,} tokens" if model.max_output_tokens else "-"),
        ("price input", _per_mtok(p.input)),
        ("price output", _per_mtok(p.output)),
    ]
    if p.cache_read is not None or p.cache_write is not None:
        rows.append(("price cache read", _per_mtok(p.cache_read)))
        rows.append(("price cache write", _per_mtok(p.cache_write)))
    rows += [
        ("input", shown(", ".join(model.input_modalities)) or "-"),
        ("output", shown(", ".join(model.output_modalities)) or "-"),
        ("vision", _yes_no(model.supports_vision)),
        ("tools", _yes_no(model.supports_tools)),
        ("schemas", _yes_no(model.supports_schema)),
        ("reasoning", _yes_no(model.reasoning)),
        ("parameters", shown(", ".join(model.supported_parameters)) or "-"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in rows)


def matches(model: ModelInfo, queries: Iterable[str]) -> bool:
    """Every query (case-insensitive) in the id, display name or owner, like `llm models -q`."""
    haystack = " ".join(filter(None, (model.id, model.display_name, model.owned_by))).lower()
    return all(q.lower() in haystack for q in queries)


# Refresh


def refresh_lines(
    before: Sequence[ModelInfo] | None, after: Sequence[ModelInfo], verbose: bool = False
) -> list[str]:
    """What `llm pinference refresh` prints: per side, the count and the first few ids
    (every id, one per line, with verbose), then the totals (`before` None: no list)."""
    old, new = [m.id for m in before or ()], [m.id for m in after]
    old_ids, new_ids = set(old), set(new)
    added = [i for i in new if i not in old_ids]
    removed = [i for i in old if i not in new_ids]
    lines: list[str] = []
    for label, ids in (("Added", added), ("Removed", removed)):
        if not ids:
            continue
        names = [MODEL_PREFIX + shown(i) for i in ids]
        if verbose:
            lines.append(f"{label} {len(names)}:")
            lines += [f"  {name}" for name in names]
        elif len(names) <= REFRESH_IDS_SHOWN:
            lines.append(f"{label} {len(names)}: {', '.join(names)}")
        else:
            first = ", ".join(names[:REFRESH_IDS_SHOWN])
            more = len(names) - REFRESH_IDS_SHOWN
            lines.append(f"{label} {len(names)}: {first} and {more} more (--verbose lists them)")
    summary = f"{len(added)} added, {len(removed)} removed, {len(new) - len(added)} unchanged"
    if before is None:
        summary += " (no previous list)"
    lines.append(f"{summary}; {len(new)} models in total")
    return lines
