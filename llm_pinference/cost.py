"""`llm pinference cost`: the usage llm logged for pinference/* responses, priced with the
cached model list (core.models.Pricing.cost_of, the one pricing of a usage).

Imported when the command runs, not for every llm command.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from .core.models import cache_tokens
from .core.settings import Settings
from .messages import MODEL_PREFIX, describe_error, shown, table, warn

if TYPE_CHECKING:
    from .cache import Catalog
    from .core.models import ModelInfo


class LoggedUsage(NamedTuple):
    model: str
    input_tokens: int | None
    output_tokens: int | None
    details: Mapping[str, Any]
    when: datetime.datetime | None


class ModelCost(NamedTuple):
    """The usage llm logged for one model, and its price (None: no price known)."""

    model: str  # llm's model id, pinference/<id>
    responses: int
    input_tokens: int  # all input tokens, cached ones included
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    cost_usd: float | None


class CostReport(NamedTuple):
    models: tuple[ModelCost, ...]  # models with usage, priced or not
    no_usage: dict[str, int]  # model -> responses logged without token counts
    since: datetime.datetime | None = None
    model: str | None = None  # the one model asked for (-m), if any

    @property
    def unpriced(self) -> tuple[ModelCost, ...]:
        return tuple(m for m in self.models if m.cost_usd is None)

    @property
    def total_usd(self) -> float:
        return sum(m.cost_usd or 0.0 for m in self.models)


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


_SELECT = (
    "select model, input_tokens, output_tokens, token_details, datetime_utc from {}"
    " where model like 'pinference/%'"
)


def logged_usage(path: Path, model: str | None = None) -> list[LoggedUsage]:
    """pinference/* responses in llm's logs database: `turns` (llm 0.36 and later) and
    the `responses` rows older versions wrote that have no turn of the same id."""
    uri = path.resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master")}
        queries = [_SELECT.format("turns")] if "turns" in tables else []
        if "responses" in tables:
            older = " and id not in (select id from turns)" if queries else ""
            queries.append(_SELECT.format("responses") + older)
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


def cost_report(
    logged: Iterable[LoggedUsage],
    catalog: Mapping[str, ModelInfo],
    since: datetime.datetime | None = None,
    model: str | None = None,
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
        counts = (entry.input_tokens or 0, *cache_tokens(entry.details), entry.output_tokens or 0)
        info = catalog.get(entry.model.removeprefix(MODEL_PREFIX))
        cost = None
        if info is not None:
            cost = info.pricing.cost_of(
                counts[0], counts[3], cache_read=counts[1], cache_write=counts[2]
            )
        total = sums.setdefault(entry.model, [0, 0, 0, 0, 0])
        for i, value in enumerate((1, *counts)):
            total[i] += value
        previous = costs.get(entry.model, 0.0)
        costs[entry.model] = None if cost is None or previous is None else previous + cost
    models = tuple(ModelCost(m, *totals, costs[m]) for m, totals in sorted(sums.items()))
    return CostReport(models=models, no_usage=no_usage, since=since, model=model)


# Output


def format_usd(amount: float) -> str:
    """A cost: `$12.35`; below a dollar to the millionth, `$0.049135`, `$0.00074`."""
    if amount >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.6f}".rstrip("0").rstrip(".") if amount >= 0.0000005 else "$0"


def cost_lines(report: CostReport) -> list[str]:
    """The text of `llm pinference cost`: one row per model, the total, and which
    responses could not be counted or priced."""
    when = report.since.strftime("%Y-%m-%d %H:%M UTC") if report.since else None
    scope = f"since {when}" if when else "in all of llm's logs"
    if not report.models and not report.no_usage:
        what = f"for model {shown(report.model)}" if report.model else f"for {MODEL_PREFIX}*"
        return [f"No logged responses {what} {scope}."]
    rows: list[Sequence[str]] = [
        ("model", "responses", "input", "cache read", "cache write", "output", "cost")
    ]
    for m in report.models:
        rows.append(
            (
                shown(m.model),
                *(f"{n:,}" for n in m[1:6]),
                format_usd(m.cost_usd) if m.cost_usd is not None else "no price",
            )
        )
    totals = [sum(getattr(m, f) for m in report.models) for f in ModelCost._fields[1:6]]
    rows.append(("total", *(f"{t:,}" for t in totals), format_usd(report.total_usd)))
    lines = [f"Pinference usage {scope}, priced with the cached model list (USD):", table(rows)]
    if report.unpriced:
        count = sum(m.responses for m in report.unpriced)
        names = ", ".join(shown(m.model) for m in report.unpriced)
        lines.append(
            f"{count} response(s) with no price (model not in the list, or no price for it), "
            f"not in the total: {names}"
        )
    if report.no_usage:
        count = sum(report.no_usage.values())
        names = ", ".join(shown(m) for m in report.no_usage)
        lines.append(f"{count} response(s) logged without token usage, not counted: {names}")
    return lines


def _usd(amount: float | None) -> float | None:
    # Sums of per-token prices carry binary noise (2.8000000000000003e-06); twelve decimals
    # of a dollar are far below any price's precision.
    return None if amount is None else round(amount, 12)


def cost_json(report: CostReport) -> dict[str, Any]:
    models = [{**m._asdict(), "cost_usd": _usd(m.cost_usd)} for m in report.models]
    totals = {f: sum(getattr(m, f) for m in report.models) for f in ModelCost._fields[1:6]}
    return {
        "since": report.since.isoformat() if report.since else None,
        "models": models,
        "total": {**totals, "cost_usd": _usd(report.total_usd)},
        "no_price": {
            "responses": sum(m.responses for m in report.unpriced),
            "models": [m.model for m in report.unpriced],
        },
        "no_usage": {"responses": sum(report.no_usage.values()), "models": list(report.no_usage)},
    }


# The command


def run(
    *,
    since: float | None,
    model_id: str | None,
    json_: bool,
    database: Path | None,
    settings: Settings,
    catalog: Catalog,
) -> None:
    """What `llm pinference cost` does (the command's options are in commands.py)."""
    from llm.cli import logs_db_path

    path = database or logs_db_path()
    if not path.exists():
        raise click.ClickException(f"No log database found at {path}")
    if model_id and not model_id.startswith(MODEL_PREFIX):
        model_id = MODEL_PREFIX + model_id
    try:
        logged = logged_usage(path, model_id)
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read the logs database {path}: {exc}") from None
    after = None
    if since is not None:
        after = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=since)
    prices = _price_list(catalog, settings) if logged else {}
    report = cost_report(logged, prices, after, model_id)
    if json_:
        click.echo(json.dumps(cost_json(report), indent=2))
    else:
        click.echo("\n".join(cost_lines(report)))


def _price_list(catalog: Catalog, settings: Settings) -> dict[str, ModelInfo]:
    """The cached list (at any age; fetched once if there is none)."""
    lookup = catalog.get(fetch=False)
    if lookup.entry is None:
        lookup = catalog.get(respect_backoff=False)
    if lookup.error is not None:
        message = describe_error(lookup.error, secrets=(settings.api_key,))
        warn(f"llm-pinference: no model list to price with: {message}")
    return {m.id: m for m in lookup.models}
