"""`llm pinference models | model | refresh | cost`, and llm's side of the credentials seam.

The key lookup (`--key`, then `llm keys set pinference`, then the Prime settings) and the
cache path in llm's directory live here, shared with the hooks: plugin.py imports this
module, never the other way round. llm is already imported when this runs (llm imports the
plugin), so importing it costs nothing; `requests` is imported only by the commands that
make a request.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click
import llm

from .core.errors import PinferenceError
from .core.settings import ENV_KEY, Settings, credentials
from .core.text import DURATION_UNITS
from .messages import (
    KEY_ALIAS,
    MODEL_PREFIX,
    CostReport,
    ModelCost,
    cost_json,
    cost_lines,
    describe_error,
    matches,
    model_details,
    model_json,
    models_table,
    refresh_lines,
    warn,
)

if TYPE_CHECKING:  # imported when a command runs, not for `llm --help`
    import re

    from .cache import Catalog
    from .core.models import ModelInfo

#: `llm pinference model`: a user is waiting for one answer. Seconds to connect, to wait
#: for each read, and for the whole exchange however slowly the server sends.
MODEL_CONNECT_TIMEOUT = 3.05
MODEL_READ_TIMEOUT = 10.0
MODEL_TOTAL_TIMEOUT = 10.0


# Credentials and cache: one lookup for listing, prompting and the commands


def current_settings(
    explicit_key: str | None = None, config: Mapping[str, object] | None = None
) -> Settings:
    """Key, team and base URL. The key: `--key`, then `llm keys set pinference`, then
    PRIME_API_KEY, then ~/.prime/config.json (the first two are llm's, the rest the seam's)."""
    key = llm.get_key(explicit_key=explicit_key, key_alias=KEY_ALIAS, env_var=ENV_KEY)
    return credentials(key, config=config)


def open_catalog(settings: Settings) -> Catalog:
    """The account's cache, storing the registration records beside every list it writes
    (the hooks read only those)."""
    from .cache import CACHE_FILENAME, Catalog
    from .registration import RECORDS

    return Catalog(llm.user_dir() / CACHE_FILENAME, settings, records=RECORDS)


# Commands


def _fail(error: PinferenceError, settings: Settings, **kwargs: Any) -> click.ClickException:
    return click.ClickException(describe_error(error, secrets=(settings.api_key,), **kwargs))


_key_option = click.option(
    "--key", help=f"API key to use (else: llm keys, {ENV_KEY}, ~/.prime/config.json)"
)


def build_group() -> click.Group:
    """The `llm pinference` group, added to llm's CLI by the plugin's register_commands."""
    group = click.Group(
        name="pinference",
        help="Commands for the llm-pinference plugin (Prime Intellect inference)",
    )
    for command in (models_command, model_command, refresh_command, cost_command):
        group.add_command(command)
    return group


@click.command(name="models")
@click.option("json_", "--json", is_flag=True, help="Output as JSON")
@click.option("queries", "-q", "--query", multiple=True, help="Only models matching all of these")
@_key_option
def models_command(json_: bool, queries: tuple[str, ...], key: str | None) -> None:
    """List the models.

    Shows id, serving, prices in USD per million tokens (input, output, cache read, cache
    write), context, max output and reasoning; blank where the API does not say. Works
    without a key (the list is public) and caches what it fetched.
    """
    settings = current_settings(key)
    # An explicit command fetches even during the back-off: the user is asking.
    lookup = open_catalog(settings).get(respect_backoff=False)
    if lookup.error is not None:
        if not lookup.models:
            raise _fail(lookup.error, settings)
        message = describe_error(lookup.error, secrets=(settings.api_key,))
        warn(f"llm-pinference: showing the cached list: {message}")
    models = [m for m in lookup.models if matches(m, queries)]
    if json_:
        click.echo(json.dumps([model_json(m) for m in models], indent=2))
    elif not models:
        click.echo("No models found" + (" matching the query" if queries else ""), err=True)
    else:
        click.echo(models_table(models))


@click.command(name="model")
@click.argument("model_id")
@click.option("json_", "--json", is_flag=True, help="Output as JSON")
@_key_option
def model_command(model_id: str, json_: bool, key: str | None) -> None:
    """Show one model's details.

    MODEL_ID may carry the `pinference/` prefix. Asks the API (GET /models/{id}), at most
    10 s in all; an id that would leave /models/ is refused without a request.
    """
    from .core.client import PinferenceClient

    if model_id.startswith(MODEL_PREFIX):
        model_id = model_id[len(MODEL_PREFIX) :]
    if not model_id.strip():
        raise click.ClickException("the model id must not be empty")
    settings = current_settings(key)
    try:
        with PinferenceClient(
            settings,
            connect_timeout=MODEL_CONNECT_TIMEOUT,
            read_timeout=MODEL_READ_TIMEOUT,
            total_timeout=MODEL_TOTAL_TIMEOUT,
        ) as client:
            model = client.get_model(model_id)
    except PinferenceError as exc:
        raise _fail(exc, settings, model_id=model_id) from None
    click.echo(json.dumps(model_json(model), indent=2) if json_ else model_details(model))


@click.command(name="refresh")
@click.option("-v", "--verbose", is_flag=True, help="List every added and removed model")
@_key_option
def refresh_command(verbose: bool, key: str | None) -> None:
    """Fetch the model list now and report what changed.

    Prints how many models were added, removed and unchanged, with the first few ids of
    each change (all of them with --verbose). Ignores the cache's age and any back-off
    after a failure.
    """
    settings = current_settings(key)
    try:
        result = open_catalog(settings).refresh()
    except PinferenceError as exc:
        raise _fail(exc, settings) from None
    lines = refresh_lines(
        result.added,
        result.removed,
        unchanged=result.unchanged,
        total=len(result.after),
        had_cache=result.had_cache,
        verbose=verbose,
    )
    click.echo("\n".join(lines))
    if not result.saved:
        warn("llm-pinference: could not write the model cache file")


# Cost: the usage llm logged for pinference/* responses, priced with the cached list


class LoggedUsage(NamedTuple):
    model: str
    input_tokens: int | None
    output_tokens: int | None
    details: Mapping[str, Any]
    when: datetime.datetime | None


@functools.cache
def _duration() -> re.Pattern[str]:
    import re  # compiled on first use: this module is imported on every llm command

    return re.compile(
        "".join(rf"(?:(?P<{unit}>\d+(?:\.\d+)?){unit})?" for unit, _ in DURATION_UNITS)
    )


def parse_duration(text: str) -> float:
    """`90m`, `24h`, `7d`, `2w`, `1h30m` (Prometheus' units) -> seconds; ValueError if not."""
    match = _duration().fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 90m, 24h, 7d, 2w, 1h30m)")
    scales = dict(DURATION_UNITS)
    return sum(float(value) * scales[unit] for unit, value in match.groupdict().items() if value)


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _when(value: object) -> datetime.datetime | None:
    """llm's datetime_utc (ISO, with or without an offset: older llm wrote naive UTC)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def _details(value: object) -> Mapping[str, Any]:
    try:
        details = json.loads(value) if isinstance(value, str) else None
    except (ValueError, RecursionError):
        return {}
    return details if isinstance(details, dict) else {}


_TURNS = (
    "select model, input_tokens, output_tokens, token_details, datetime_utc"
    " from turns where model like 'pinference/%'"
)
_RESPONSES = (
    "select model, input_tokens, output_tokens, token_details, datetime_utc"
    " from responses where model like 'pinference/%'"
)
_OLDER_RESPONSES = (
    "select model, input_tokens, output_tokens, token_details, datetime_utc"
    " from responses where model like 'pinference/%' and id not in (select id from turns)"
)


def logged_usage(path: Path, model: str | None = None) -> list[LoggedUsage]:
    """pinference/* responses in llm's logs database: `turns` (llm 0.36 and later) and
    the `responses` rows older versions wrote that have no turn of the same id."""
    import sqlite3

    uri = path.resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master")}
        queries = []
        if "turns" in tables:
            queries.append(_TURNS)
        if "responses" in tables:
            queries.append(_OLDER_RESPONSES if "turns" in tables else _RESPONSES)
        rows = [row for query in queries for row in db.execute(query)]
    return [
        LoggedUsage(
            model=row[0],
            input_tokens=_tokens(row[1]),
            output_tokens=_tokens(row[2]),
            details=_details(row[3]),
            when=_when(row[4]),
        )
        for row in rows
        # LIKE ignores case; model ids do not.
        if isinstance(row[0], str)
        and row[0].startswith(MODEL_PREFIX)
        and (model is None or row[0] == model)
    ]


def _tokens(value: object) -> int | None:
    """A token count from a logs column: a non-negative integer, else unknown (the logs
    database is anyone's file: a hand edit or another tool may have written anything)."""
    return value if type(value) is int and value >= 0 else None


def _count(details: Mapping[str, Any], *paths: tuple[str, ...]) -> int:
    """The first non-negative integer found at one of the paths in the usage details."""
    for path in paths:
        value: Any = details
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0


def cache_tokens(details: Mapping[str, Any]) -> tuple[int, int]:
    """(read, write) cache tokens in a usage's details: OpenAI's and OpenRouter's
    prompt_tokens_details (cached_tokens, cache_write_tokens), or Anthropic-style names."""
    read = _count(details, ("prompt_tokens_details", "cached_tokens"), ("cache_read_input_tokens",))
    write = _count(
        details,
        ("prompt_tokens_details", "cache_write_tokens"),
        ("prompt_tokens_details", "cache_creation_tokens"),
        ("cache_creation_input_tokens",),
    )
    return read, write


def price_usd(info: ModelInfo | None, usage: ModelCost) -> float | None:
    """What the tokens cost at the model's prices (`Pricing.cost_of`), None if a needed
    price is unknown."""
    if info is None:
        return None
    return info.pricing.cost_of(
        usage.input_tokens,
        usage.output_tokens,
        cache_read=usage.cache_read_tokens,
        cache_write=usage.cache_write_tokens,
    )


def cost_report(
    logged: Iterable[LoggedUsage],
    catalog: Mapping[str, ModelInfo],
    since: datetime.datetime | None = None,
) -> CostReport:
    """Sum the logged usage per model and price each response's tokens."""
    sums: dict[str, list[int]] = {}
    costs: dict[str, float | None] = {}
    no_usage: dict[str, int] = {}
    for entry in logged:
        if since is not None and (entry.when is None or entry.when < since):
            continue
        if entry.input_tokens is None and entry.output_tokens is None:
            no_usage[entry.model] = no_usage.get(entry.model, 0) + 1
            continue
        read, write = cache_tokens(entry.details)
        usage = ModelCost(
            entry.model, 1, entry.input_tokens or 0, read, write, entry.output_tokens or 0, None
        )
        info = catalog.get(entry.model.removeprefix(MODEL_PREFIX))
        cost = price_usd(info, usage)
        total = sums.setdefault(entry.model, [0, 0, 0, 0, 0])
        for i, value in enumerate(usage[1:6]):
            total[i] += value
        previous = costs.get(entry.model, 0.0)
        costs[entry.model] = None if cost is None or previous is None else previous + cost
    models = tuple(
        ModelCost(model, *totals, costs[model]) for model, totals in sorted(sums.items())
    )
    return CostReport(models=models, no_usage=no_usage, since=since)


@click.command(name="cost")
@click.option(
    "--since",
    metavar="DURATION",
    callback=_since,
    help="Only responses from the last DURATION: 90m, 24h, 7d, 2w, 1h30m",
)
@click.option("model_id", "-m", "--model", metavar="ID", help="Only this model")
@click.option("json_", "--json", is_flag=True, help="Output as JSON")
@click.option(
    "database",
    "-d",
    "--database",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Path to the logs database (default: `llm logs path`)",
)
@_key_option
def cost_command(
    since: float | None,
    model_id: str | None,
    json_: bool,
    database: Path | None,
    key: str | None,
) -> None:
    """What your logged Pinference prompts cost.

    Sums the token usage llm logged for pinference/* responses, per model and in total,
    and prices it with the cached model list: input, output, and cache read/write tokens
    where the usage reports them. Says which responses had no usage or no price.
    """
    from llm.cli import logs_db_path

    path = database or logs_db_path()
    if not path.exists():
        raise click.ClickException(f"No log database found at {path}")
    if model_id and not model_id.startswith(MODEL_PREFIX):
        model_id = MODEL_PREFIX + model_id
    import sqlite3

    try:
        logged = logged_usage(path, model_id)
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read the logs database {path}: {exc}") from None
    after = None
    if since is not None:
        after = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=since)
    catalog = _price_list(current_settings(key)) if logged else {}
    report = cost_report(logged, catalog, after)
    if json_:
        click.echo(json.dumps(cost_json(report), indent=2))
    else:
        click.echo("\n".join(cost_lines(report)))


def _price_list(settings: Settings) -> dict[str, ModelInfo]:
    """The cached list (at any age; fetched once if there is none)."""
    catalog = open_catalog(settings)
    entry = catalog.cached()
    if entry is not None and entry.has_list:
        return {m.id: m for m in entry.models}
    lookup = catalog.get(respect_backoff=False)
    if lookup.error is not None:
        message = describe_error(lookup.error, secrets=(settings.api_key,))
        warn(f"llm-pinference: no model list to price with: {message}")
    return {m.id: m for m in lookup.models}
