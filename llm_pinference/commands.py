"""`llm pinference models | model | refresh | cost`, and llm's side of the credentials seam.

The key lookup (`--key`, then `llm keys set pinference`, then the Prime settings) and the
cache path in llm's directory live here, shared with the hooks: plugin.py imports this
module, never the other way round. llm is already imported when this runs (llm imports the
plugin), so importing it costs nothing; `requests` is imported only by the commands that
make a request.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import llm

from .core.errors import PinferenceError
from .core.settings import ENV_KEY, Settings, credentials
from .messages import (
    KEY_ALIAS,
    MODEL_PREFIX,
    describe_error,
    matches,
    model_details,
    model_json,
    models_table,
    refresh_lines,
    warn,
)

if TYPE_CHECKING:  # imported when a command runs, not for `llm --help`
    from .cache import Catalog

#: `llm pinference model`: a user is waiting for one answer. Seconds to connect, to wait
#: for each read, and for the whole exchange however slowly the server sends.
MODEL_CONNECT_TIMEOUT = 3.05
MODEL_READ_TIMEOUT = 10.0
MODEL_TOTAL_TIMEOUT = 10.0
#: The width of a table whose output is not a terminal (piped): every column.
UNLIMITED = 1_000_000


# Credentials and cache: one lookup for listing, prompting and the commands


def current_settings(
    explicit_key: str | None = None, config: Mapping[str, object] | None = None
) -> Settings:
    """Key, team and base URL. The key: `--key`, then `llm keys set pinference`, then
    PRIME_API_KEY, then ~/.prime/config.json (the first two are llm's, the rest the seam's)."""
    key = llm.get_key(explicit_key=explicit_key, key_alias=KEY_ALIAS, env_var=ENV_KEY)
    return credentials(key, config=config)


def open_catalog(settings: Settings) -> Catalog:
    """The account's model-list cache, in llm's directory."""
    from .cache import CACHE_FILENAME, Catalog

    return Catalog(llm.user_dir() / CACHE_FILENAME, settings)


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
    write), context, max output and reasoning; blank where the API does not say. Columns
    that do not fit the terminal are left out, cache prices first (--json has them all).
    Works without a key (the list is public) and caches what it fetched.

    serving: how the API says the model is served, `hosted` (on Prime Intellect's own
    machines) or `gateway` (passed on to another provider).
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
        click.echo(models_table(models, shutil.get_terminal_size((UNLIMITED, 24)).columns))


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
        before, after, saved = open_catalog(settings).refresh()
    except PinferenceError as exc:
        raise _fail(exc, settings) from None
    click.echo("\n".join(refresh_lines(before, after, verbose)))
    if not saved:
        warn("llm-pinference: could not write the model cache file")


@click.command(name="cost")
@click.option(
    "--since",
    metavar="DURATION",
    callback=lambda ctx, param, value: _since(value),
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
    from . import cost

    settings = current_settings(key)
    cost.run(
        since=since,
        model_id=model_id,
        json_=json_,
        database=database,
        settings=settings,
        catalog=open_catalog(settings),
    )


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    from .core.text import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
