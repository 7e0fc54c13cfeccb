"""The pages for people: the landing page (/) and the debug log of one probe (/logs?id=N).

The landing page shows, per account, the last outcome of each endpoint and watched model,
the recent probes with links to their debug logs, and the configuration in force (where a
key came from, never the key). Every value is escaped: model ids and error messages are the
API's text. Ages are rounded for people ("3 min ago"); the exact time is in the tooltip.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, fields
from typing import Any

import yaml

from llm_pinference.core.text import format_age, format_duration, redact, redact_url

from . import build
from .config import AccountConfig, ExporterConfig
from .recent import REDACTED, ProbeRecord, RecentProbes
from .state import ENDPOINTS, Snapshot
from .webconfig import WebConfig

esc = html.escape
STYLE = """body{font-family:sans-serif} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left} .failed{color:#b00}"""


@dataclass(frozen=True)
class AccountView:
    config: AccountConfig
    snapshot: Snapshot


@dataclass(frozen=True)
class View:
    """What a page reads: the config and every account's state, taken together."""

    config: ExporterConfig
    accounts: tuple[AccountView, ...]
    ready: bool  # every account has finished a list probe (once true, stays true)
    recent: RecentProbes
    web: WebConfig | None
    secrets: tuple[str, ...]  # what no page may show, whatever put it there


def _page(title: str, body: str, secrets: tuple[str, ...]) -> str:
    return redact(
        f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title><style>{STYLE}</style></head>
<body>
{body}
</body></html>
""",
        secrets,
    )


def _table(head: str, rows: list[list[Any]]) -> str:
    """`head`: the column names, `|`-separated; cells are HTML already."""
    cells = ["".join(f"<th>{h}</th>" for h in head.split("|")),
             *("".join(f"<td>{c}</td>" for c in row) for row in rows)]  # fmt: skip
    return "<table>\n" + "\n".join(f"<tr>{c}</tr>" for c in cells) + "\n</table>"


def landing_page(view: View) -> str:
    config, now = view.config, time.time()
    records = view.recent.recent()
    recent = _table("finished|account|endpoint|model|result|HTTP status|duration|", [
        [_ago(r.finished, now), _code(r.account), r.endpoint, _code(r.model),
         _result(r.reason, None), r.status or "-", f"{r.duration:.3f}s", _log_link(r)]
        for r in records
    ]) if records else "<p>No probe has finished yet.</p>"  # fmt: skip
    body = f"""<h1>Pinference exporter</h1>
<p>Version {esc(build.version())}. Probes {len(view.accounts)} account(s) every
{format_duration(config.probe_interval)} (timeout {format_duration(config.timeout)}); scrapes
read the latest results, they never trigger a probe.</p>
<p><a href="{esc(config.telemetry_path)}">Metrics</a> &middot; <a href="/-/healthy">/-/healthy</a>
&middot; <a href="/-/ready">/-/ready</a></p>
{"".join(_account(account, view.recent, now) for account in view.accounts)}
<h2>Recent probes</h2>
{recent}
<h2>Configuration</h2>
<pre>{esc(shown_config(view))}</pre>"""
    return _page("Pinference exporter", body, view.secrets)


def _account(account: AccountView, recent: RecentProbes, now: float) -> str:
    config, snap = account.config, account.snapshot
    rows = []
    for endpoint in ENDPOINTS:
        stats = snap.endpoints[endpoint]
        result = "not probed yet" if stats.success is None else _result(
            stats.last_reason, stats.last_error)  # fmt: skip
        rows.append(
            [
                endpoint,
                result,
                stats.status_code or "-",
                _ago(stats.last_probe, now),
                _ago(stats.last_success, now),
                stats.probes,
                sum(stats.failures.values()),
            ]
        )
    endpoints = _table("endpoint|last result|HTTP status|last probe|last success|probes|"
                       "failures", rows)  # fmt: skip
    if config.api_key:
        key = f"the key from {_code(config.key_file)}" if config.key_file else "a key"
    else:
        key = "no key"
    team = f", team {_code(config.team_id)}" if config.team_id else ""
    listed = snap.catalog
    models = "no successful list yet" if listed is None else (
        f"{listed.total} model(s) in the last successful list"
        + (f" ({listed.dropped} left out of pinference_model_info by the cap)"
           if listed.dropped else ""))  # fmt: skip
    paused = ""
    if snap.paused_until is not None and snap.paused_until > now:
        paused = (f"<p><strong>Rate limited (429): probes paused for another "
                  f"{format_age(snap.paused_until - now)} (Retry-After).</strong></p>")  # fmt: skip
    section = f"""<h2>Account {_code(config.name)}</h2>
<p>{_code(redact_url(config.base_url))}{team}, with {key}.</p>
{paused}{endpoints}
<p>Catalog: {models}. Probe cycles: {snap.cycles}.</p>"""
    if config.probe_models:
        rows = []
        for model in config.probe_models:
            state = {1: "yes", 0: "no"}.get(snap.available.get(model, -1), "unknown")
            last = recent.latest(config.name, model)
            if last is None:
                rows.append([_code(model), state, "not probed yet", "-", "never", ""])
                continue
            result = _result(last.reason, last.error)
            ago, link = _ago(last.finished, now), _log_link(last)
            rows.append([_code(model), state, result, last.status or "-", ago, link])
        section += "\n<h3>Watched models</h3>\n" + _table(
            "model|available|last result|HTTP status|last probe|", rows
        )
    if config.chat_models:
        rows = []
        for model in config.chat_models:
            if (stats := snap.chat.get(model)) is None:  # not yet in the state (a reload)
                continue
            failed = ", ".join(f"{reason} {n}" for reason, n in stats.failures.items() if n)
            unpriced = " (+ unpriced)" if stats.unpriced else ""
            rows.append([_code(model), stats.probes, esc(failed) or "none",
                         stats.output_tokens, f"${stats.cost_usd:.6f}{unpriced}"])  # fmt: skip
        section += (
            f"\n<h3>Chat probes</h3>\n<p>Billed inference: every "
            f"{format_duration(config.chat_interval)}, at most {config.chat_max_per_hour} an "
            f"hour, {config.chat_max_tokens} token(s) each.</p>\n"
            + _table("model|probes|failures|output tokens|cost", rows)
        )
    return section


def probe_log_page(r: ProbeRecord, secrets: tuple[str, ...]) -> str:
    """The debug log of one probe."""
    lines = [
        f"Probe {r.id}: account {r.account}, endpoint {r.endpoint}",
        f"Finished {_stamp(r.finished)} ({format_age(time.time() - r.finished)} ago) in "
        f"{r.duration:.3f}s",
        "",
        f"GET {r.url}",
        *(f"{name}: {value}" for name, value in r.headers),
        "",
        f"Status: {r.status or 'no response'}",
        "Result: success" if r.reason is None else f"Result: failed ({r.reason})",
    ]
    if r.error:
        lines.append(f"Error: {r.error}")
    if r.phases is not None:
        lines.append("Phases (a new connection): "
                     + ", ".join(f"{name} {s:.4f}s" for name, s in r.phases.items()))  # fmt: skip
    body = f'<h1>Probe {r.id}</h1>\n<pre>{esc(chr(10).join(lines))}</pre>\n<a href="/">Back</a>'
    return _page(f"Probe {r.id}", body, secrets)


def shown_config(view: View) -> str:
    """The configuration in force as YAML, keys replaced by whether one is set."""
    config, web = view.config, view.web
    top = {f.name: getattr(config, f.name) for f in fields(config)
           if f.name not in ("accounts", "web")}  # fmt: skip
    top["probe_timeout"] = config.timeout
    top["web"] = {
        "config_file": web and web.source[0],
        "tls": bool(web and web.ssl_context),
        "tls_cert_file": web and web.source[1],
        "basic_auth_users": sorted(web.auth.users) if web and web.auth else [],  # not the hashes
        "headers": [name for name, _ in web.headers] if web else [],
    }
    top["accounts"] = [
        {**{f.name: getattr(a.config, f.name) for f in fields(a.config)},
         "api_key": REDACTED if a.config.api_key else None,
         "base_url": redact_url(a.config.base_url)}
        for a in view.accounts
    ]  # fmt: skip
    return yaml.dump(top, Dumper=_Dumper, sort_keys=False, allow_unicode=False, width=1000)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(tuple, _Dumper.represent_list)


def _code(text: str | None) -> str:
    return f"<code>{esc(text)}</code>" if text else ""


def _result(reason: str | None, error: str | None) -> str:
    if reason is None:
        return "ok"
    return f'<span class="failed">{esc(reason)}{f": {esc(error)}" if error else ""}</span>'


def _log_link(record: ProbeRecord) -> str:
    return f'<a href="/logs?id={record.id}">debug log</a>'


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "never"
    return f'<span title="{_stamp(when)}">{format_age(now - when)} ago</span>'
