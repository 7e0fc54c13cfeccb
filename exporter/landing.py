"""The pages for people: the landing page (/) and the debug log of one probe (/logs?id=N).

The landing page shows, per account, the last outcome of each endpoint and of each watched
model; then the recent probes across accounts, each with a link to its debug log; then the
configuration in force (keys never: where a key came from is named, the key is not). Every
value is escaped: model ids and error messages are the API's text, not ours. Ages are
rounded for people ("3 min ago"); the exact time is in each age's tooltip.
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
SECRET_FIELDS = ("api_key", "password", "token", "secret")  # shown as set or not, never as is


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
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}} .failed{{color:#b00}}</style>
</head><body>
{body}
</body></html>
"""
    return redact(page, secrets)


def landing_page(view: View) -> str:
    config, now = view.config, time.time()
    path = esc(config.telemetry_path)
    accounts = "\n".join(_account_section(account, view.recent, now) for account in view.accounts)
    body = f"""<h1>Pinference exporter</h1>
<p>Version {esc(build.version())}. Probes {len(view.accounts)} account(s) every
{format_duration(config.probe_interval)} (timeout {format_duration(config.timeout)}): GET
/models, then the get probes; chat probes, where an account has them, on their own schedule.
Scrapes read the latest results; they never trigger a probe.</p>
<p><a href="{path}">Metrics</a> &middot; <a href="/-/healthy">/-/healthy</a> &middot;
<a href="/-/ready">/-/ready</a></p>
{accounts}
<h2>Recent probes</h2>
{_recent_table(view.recent.recent(), now)}
<h2>Configuration</h2>
<pre>{esc(shown_config(view))}</pre>"""
    return _page("Pinference exporter", body, view.secrets)


def _account_section(account: AccountView, recent: RecentProbes, now: float) -> str:
    config, snap = account.config, account.snapshot
    if config.probe_models:
        gets = f"{len(config.probe_models)} watched model(s)"
    elif config.sample_size:
        gets = f"a rotating sample of {config.sample_size} listed model(s) per cycle"
    else:
        gets = "no get probes (sample size 0)"
    team = f", team <code>{esc(config.team_id)}</code>" if config.team_id else ""
    rows = []
    for endpoint in ENDPOINTS:
        stats = snap.endpoints[endpoint]
        if stats.success is None:
            result = "not probed yet"
        else:
            result = _result(stats.last_reason, stats.last_error)
        rows.append(
            f"<tr><td>{endpoint}</td><td>{result}</td><td>{stats.status_code or '-'}</td>"
            f"<td>{_ago(stats.last_probe, now)}</td><td>{_ago(stats.last_success, now)}</td>"
            f"<td>{stats.probes}</td><td>{sum(stats.failures.values())}</td></tr>"
        )
    listed = snap.catalog
    if listed is None:
        models = "no successful list yet"
    else:
        models = f"{listed.total} model(s) in the last successful list"
        if listed.dropped:
            models += f" ({listed.dropped} left out of pinference_model_info by the cap)"
    paused = ""
    if snap.paused_until is not None and snap.paused_until > now:
        paused = (f"<p><strong>Rate limited (429): probes paused for another "
                  f"{format_age(snap.paused_until - now)} (Retry-After).</strong></p>")  # fmt: skip
    return f"""<h2>Account <code>{esc(config.name)}</code></h2>
<p><code>{esc(redact_url(config.base_url))}</code>{team}, with {_key_source(config)}; {gets}.</p>
{paused}<table>
<tr><th>endpoint</th><th>last result</th><th>HTTP status</th><th>last probe</th>
<th>last success</th><th>probes</th><th>failures</th></tr>
{"".join(rows)}
</table>
<p>Catalog: {models}. Probe cycles: {snap.cycles}.</p>
{_watched_table(account, recent, now)}{_chat_table(account)}"""


def _watched_table(account: AccountView, recent: RecentProbes, now: float) -> str:
    config, available = account.config, account.snapshot.available
    if not config.probe_models:
        return ""
    rows = []
    for model in config.probe_models:
        last = recent.latest(config.name, model)
        state = {1: "yes", 0: "no"}.get(available.get(model, -1), "unknown")
        if last is None:
            rows.append(
                f"<tr><td><code>{esc(model)}</code></td><td>{state}</td>"
                "<td>not probed yet</td><td>-</td><td>never</td><td></td></tr>"
            )
            continue
        rows.append(
            f"<tr><td><code>{esc(model)}</code></td><td>{state}</td>"
            f"<td>{_result(last.reason, last.error)}</td><td>{last.status or '-'}</td>"
            f"<td>{_ago(last.finished, now)}</td><td>{_log_link(last)}</td></tr>"
        )
    return f"""<h3>Watched models</h3>
<table>
<tr><th>model</th><th>available</th><th>last result</th><th>HTTP status</th>
<th>last probe</th><th></th></tr>
{"".join(rows)}
</table>"""


def _chat_table(account: AccountView) -> str:
    config, chat = account.config, account.snapshot.chat
    if not config.chat_models:
        return ""
    rows = []
    for model in config.chat_models:
        stats = chat.get(model)
        if stats is None:  # not yet in the state (a reload in progress)
            continue
        failed = ", ".join(f"{reason} {n}" for reason, n in stats.failures.items() if n)
        rows.append(
            f"<tr><td><code>{esc(model)}</code></td><td>{stats.probes}</td>"
            f"<td>{esc(failed) or 'none'}</td><td>{stats.output_tokens}</td>"
            f"<td>${stats.cost_usd:.6f}{' (+ unpriced)' if stats.unpriced else ''}</td></tr>"
        )
    schedule = (
        f"every {format_duration(config.chat_interval)}, at most {config.chat_max_per_hour} "
        f"an hour, {config.chat_max_tokens} token(s) each"
    )
    return f"""
<h3>Chat probes</h3>
<p>Billed inference: {schedule}.</p>
<table>
<tr><th>model</th><th>probes</th><th>failures</th><th>output tokens</th><th>cost</th></tr>
{"".join(rows)}
</table>"""


def _recent_table(records: list[ProbeRecord], now: float) -> str:
    if not records:
        return "<p>No probe has finished yet.</p>"
    rows = [
        f"<tr><td>{_ago(r.finished, now)}</td><td><code>{esc(r.account)}</code></td>"
        f"<td>{r.endpoint}</td><td>{_model(r)}</td><td>{_result(r.reason, None)}</td>"
        f"<td>{r.status or '-'}</td><td>{r.duration:.3f}s</td><td>{_log_link(r)}</td></tr>"
        for r in records
    ]
    return f"""<table>
<tr><th>finished</th><th>account</th><th>endpoint</th><th>model</th><th>result</th>
<th>HTTP status</th><th>duration</th><th></th></tr>
{"".join(rows)}
</table>"""


def probe_log_page(record: ProbeRecord | None, secrets: tuple[str, ...]) -> str | None:
    """The debug log of one probe, or None when it is no longer kept."""
    if record is None:
        return None
    r = record
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r.finished))
    lines = [
        f"Probe {r.id}: account {r.account}, endpoint {r.endpoint}",
        f"Finished {stamp} ({format_age(time.time() - r.finished)} ago) in {r.duration:.3f}s",
        "",
        f"GET {r.url}",
        *(f"{name}: {value}" for name, value in r.headers),
        "",
        f"Status: {r.status}" if r.status else "Status: no response",
        "Result: success" if r.reason is None else f"Result: failed ({r.reason})",
    ]
    if r.error:
        lines.append(f"Error: {r.error}")
    if r.phases is not None:
        lines.append("Phases (a new connection): " + ", ".join(
            f"{name} {seconds:.4f}s" for name, seconds in r.phases.items()
        ))  # fmt: skip
    body = f"""<h1>Probe {r.id}</h1>
<pre>{esc(chr(10).join(lines))}</pre>
<p><a href="/">Back</a></p>"""
    return _page(f"Probe {r.id}", body, secrets)


def shown_config(view: View) -> str:
    """The configuration in force as YAML, keys replaced by where they came from."""
    config = view.config
    top: dict[str, Any] = {
        f.name: _plain(getattr(config, f.name))
        for f in fields(config)
        if f.name not in ("settings", "accounts", "web", "probe_models", "sample_size")
    }
    top["probe_timeout"] = config.timeout
    top["web"] = _shown_web(view.web)
    top["accounts"] = [_shown_account(account.config) for account in view.accounts]
    return yaml.safe_dump(top, sort_keys=False, allow_unicode=False, width=1000)


def _shown_account(account: AccountConfig) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for f in fields(account):
        value = getattr(account, f.name)
        if f.name.endswith(SECRET_FIELDS):
            value = REDACTED if value else None
        elif f.name == "base_url":
            value = redact_url(value)
        shown[f.name] = _plain(value)
    return shown


def _shown_web(web: WebConfig | None) -> dict[str, Any]:
    if web is None:
        return {"tls": False, "basic_auth_users": []}
    source = web.source
    return {
        "config_file": source.path,
        "tls": web.ssl_context is not None,
        "tls_cert_file": source.cert_file,
        "basic_auth_users": sorted(web.users),  # names; the hashes stay out
        "headers": [name for name, _ in web.headers],
    }


def _plain(value: object) -> object:
    """A value yaml.safe_dump takes (tuples as lists)."""
    return list(map(_plain, value)) if isinstance(value, tuple) else value


def _key_source(config: AccountConfig) -> str:
    if not config.api_key:
        return "no key"
    if config.key_file:
        return f"the key from <code>{esc(config.key_file)}</code>"
    return "a key"


def _result(reason: str | None, error: str | None) -> str:
    if reason is None:
        return "ok"
    detail = f": {esc(error)}" if error else ""
    return f'<span class="failed">{esc(reason)}{detail}</span>'


def _model(record: ProbeRecord) -> str:
    return f"<code>{esc(record.model)}</code>" if record.model else ""


def _log_link(record: ProbeRecord) -> str:
    return f'<a href="/logs?id={record.id}">debug log</a>'


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
    return f'<span title="{stamp}">{format_age(now - when)} ago</span>'
