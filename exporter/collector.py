"""Turns snapshots of the probe states into the metric families of docs/metrics.md.

Every series about the API carries `account`; the exporter's own (build info, reload
status, probe interval) do not.

A scrape never fails: the state stores only values that render (see state.py), and should
one family still not render (or not build), it is left out, logged once and counted in
pinference_exporter_render_errors_total; the other families are served.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from llm_pinference.core.errors import REASONS

from . import build
from .state import BUCKETS, CHANGES, CHAT_BUCKETS, ENDPOINTS, Histogram, Snapshot

# Bucket labels as exposed ("0.05", ..., "+Inf"), per bounds: formatted once.
_BOUNDS = {b: (*map(floatToGoString, b), "+Inf") for b in (BUCKETS, CHAT_BUCKETS)}
# Said once in every HELP text that depends on it: scrapes do not trigger probes.
ON_INTERVAL = "Probed on the exporter's own interval (--probe.interval), not per scrape."
ON_CHAT_INTERVAL = "Opt-in; probed on --probe.chat.interval, not per scrape."
log = logging.getLogger("pinference_exporter.collector")
Accounts = Sequence[tuple[str, Snapshot]]
G, C, H = GaugeMetricFamily, CounterMetricFamily, HistogramMetricFamily
A, AE, AM = ("account",), ("account", "endpoint"), ("account", "model")
# Each family's kind, labels and HELP text (the contract: docs/metrics.md).
_FAMILIES: dict[str, tuple[type[Metric], tuple[str, ...], str]] = {
    "pinference_up": (G, A, "1 if the last list probe (GET /models) succeeded, else 0. "
                      + ON_INTERVAL),
    "pinference_model_available": (G, AM, "Watched models (--probe.models) only: 1 if GET "
        "/models/{id} answered 200, 0 after a 404; other failures keep the last value. "
        + ON_INTERVAL),
    "pinference_probes": (C, AE, "Probes made, per endpoint (list: GET /models, get: GET "
        "/models/{id}). " + ON_INTERVAL),
    "pinference_probe_failures": (C, (*AE, "reason"), "Failed probes, per endpoint and reason "
        "(every reason starts at 0). " + ON_INTERVAL),
    "pinference_probe_duration_seconds": (H, AE, "Duration of each probe, failures included; "
        "a list probe's is that of a new connection (the sum of its phases). " + ON_INTERVAL),
    "pinference_probe_success": (G, AE, "1 if the last probe of the endpoint succeeded, else "
        "0. " + ON_INTERVAL),
    "pinference_probe_http_status_code": (G, AE, "HTTP status of the last probe of the "
        "endpoint, 0 if no response. " + ON_INTERVAL),
    "pinference_last_success_timestamp_seconds": (G, AE, "Unix time of the last successful "
        "probe of the endpoint."),
    "pinference_last_probe_timestamp_seconds": (G, AE, "Unix time the last probe of the "
        "endpoint finished."),
    "pinference_probe_phase_seconds": (G, (*AE, "phase"), "Seconds of each phase of the last "
        "successful list probe, made on a new connection (blackbox_exporter's phases; they "
        "add up to its duration)."),
    "pinference_tls_cert_expiry_timestamp_seconds": (G, A, "Unix time the first certificate "
        "of the chain the API served expires (HTTPS only; from the last successful list "
        "probe)."),
    "pinference_tls_version_info": (G, (*A, "version"), "The TLS version of the last "
        "successful list probe's connection (value 1)."),
    "pinference_chat_probes": (C, AM, "Chat probes made (a tiny streamed POST "
        "/chat/completions), per model. " + ON_CHAT_INTERVAL),
    "pinference_chat_probe_failures": (C, (*AM, "reason"), "Failed chat probes, per model and "
        "reason (every reason starts at 0)."),
    "pinference_chat_probe_ttft_seconds": (H, AM, "Time to the first token of successful "
        "chat probes."),
    "pinference_chat_probe_duration_seconds": (H, AM, "Time to the end of the stream of "
        "successful chat probes."),
    "pinference_chat_probe_output_tokens": (C, AM, "Output tokens of successful chat probes "
        "(as the API reports them, else counted)."),
    "pinference_chat_probe_cost_usd": (C, AM, "Estimated cost of the chat probes in USD: the "
        "usage the API reports at the model's prices in the last list (unpriced probes add "
        "nothing)."),
    "pinference_chat_probe_unpriced": (C, AM, "Successful chat probes whose cost is unknown "
        "(the model's prices are not listed, or the API reported no usage)."),
    "pinference_models": (G, (*A, "owned_by"), "Models in the last successful list, per owner"
        " (sum = total; owners beyond --models.max-series are summed as "
        f'owned_by="(other)"). {ON_INTERVAL}'),
    "pinference_model_info": (G, (*AM, "owned_by", "display_name", "serving"), "One series "
        "(value 1) per model in the last successful list, at most --models.max-series. "
        + ON_INTERVAL),
    "pinference_catalog_models": (G, A, "Total models in the last successful list. "
        + ON_INTERVAL),
    "pinference_model_series_dropped": (G, A, "Models left out of pinference_model_info by "
        "--models.max-series in the last list."),
    "pinference_catalog_changes": (C, (*A, "change"), "Models appearing (added) or "
        "disappearing (removed) between successive successful lists. " + ON_INTERVAL),
    "pinference_probe_interval_seconds": (G, (), "The configured probe interval "
        "(--probe.interval), to tell stale data."),
    "pinference_exporter_config_last_reload_successful": (G, (), "1 if the last load of the "
        "config, key and web config files succeeded (at start-up, on SIGHUP or POST "
        "/-/reload, or a changed web config), else 0."),
    "pinference_exporter_config_last_reload_success_timestamp_seconds": (G, (), "Unix time of"
        " the last successful load of the config files."),
}  # fmt: skip


@dataclass(frozen=True)
class Reading:
    """What one collect() reads: a snapshot per account (by name), and the exporter's own."""

    accounts: Accounts
    interval: float
    reload_successful: bool
    reload_success_time: float


class PinferenceCollector(Collector):
    """Builds fresh families from one consistent reading on every collect()."""

    def __init__(self, read: Callable[[], Reading]) -> None:
        self.read = read
        self._lock = threading.Lock()
        self._errors = 0
        self._logged: set[str] = set()  # the families whose failure was logged

    def collect(self) -> Iterator[Metric]:
        reading = self.read()
        accounts = sorted(reading.accounts, key=lambda item: item[0])
        parts = [
            ("api", lambda: _api(accounts)),
            ("probes", lambda: _probes(accounts)),
            ("connection", lambda: _connection(accounts)),
            ("chat", lambda: _chat(accounts)),
            ("catalog", lambda: _catalog(accounts)),
            ("exporter", lambda: _exporter(reading)),
        ]
        for part, make in parts:
            try:
                families = list(make())
            except Exception as exc:  # a scrape must not fail: counted, logged
                self._failed(f"({part})", exc)
                continue
            for family in families:
                try:
                    _check_renders(family)
                except Exception as exc:
                    self._failed(family.name, exc)
                    continue
                yield family
        yield CounterMetricFamily(
            "pinference_exporter_render_errors",
            "Metric families left out of a scrape because they could not be rendered (a bug:"
            " the reason is logged once per family).",
            value=self._errors,
        )

    def _failed(self, name: str, exc: Exception) -> None:
        with self._lock:
            self._errors += 1
            first = name not in self._logged
            self._logged.add(name)
        if first:
            err = f"{type(exc).__name__}: {exc}"
            log.error("metric family left out: it cannot be rendered",
                      extra={"kv": {"family": name, "err": err}})  # fmt: skip


def _api(accounts: Accounts) -> Iterator[Metric]:
    up, available = _families("pinference_up", "pinference_model_available")
    for account, snap in accounts:
        up.add_metric([account], 1 if snap.endpoints["list"].success else 0)
        for model, value in sorted(snap.available.items()):
            available.add_metric([account, model], value)
    yield from (up, available)


def _probes(accounts: Accounts) -> Iterator[Metric]:
    families = _families(
        "pinference_probes", "pinference_probe_failures", "pinference_probe_duration_seconds",
        "pinference_probe_success", "pinference_probe_http_status_code",
        "pinference_last_success_timestamp_seconds", "pinference_last_probe_timestamp_seconds",
    )  # fmt: skip
    probes, failures, duration, success, status, last_success, last_probe = families
    for account, snap in accounts:
        for endpoint in ENDPOINTS:
            stats = snap.endpoints[endpoint]
            labels = [account, endpoint]
            probes.add_metric(labels, stats.probes)
            for reason in REASONS:
                failures.add_metric([*labels, reason], stats.failures[reason])
            duration.add_metric(labels, *_cumulative(stats.duration))
            if stats.success is not None:  # absent before the endpoint's first probe
                success.add_metric(labels, 1 if stats.success else 0)
                status.add_metric(labels, stats.status_code)
            if stats.last_success is not None:
                last_success.add_metric(labels, stats.last_success)
            if stats.last_probe is not None:
                last_probe.add_metric(labels, stats.last_probe)
    yield from families


def _connection(accounts: Accounts) -> Iterator[Metric]:
    phases, expiry, version = _families(
        "pinference_probe_phase_seconds", "pinference_tls_cert_expiry_timestamp_seconds",
        "pinference_tls_version_info",
    )  # fmt: skip
    for account, snap in accounts:
        if snap.connection is None:  # absent before the first successful list
            continue
        for phase, seconds in snap.connection.phases.items():
            phases.add_metric([account, "list", phase], seconds)
        tls = snap.connection.tls
        if tls is not None and tls.earliest_expiry is not None:
            expiry.add_metric([account], tls.earliest_expiry)
        if tls is not None and tls.version:
            version.add_metric([account, tls.version], 1)
    yield from (phases, expiry, version)


def _chat(accounts: Accounts) -> Iterator[Metric]:
    families = _families(
        "pinference_chat_probes", "pinference_chat_probe_failures",
        "pinference_chat_probe_ttft_seconds", "pinference_chat_probe_duration_seconds",
        "pinference_chat_probe_output_tokens", "pinference_chat_probe_cost_usd",
        "pinference_chat_probe_unpriced",
    )  # fmt: skip
    probes, failures, ttft, duration, tokens, cost, unpriced = families
    for account, snap in accounts:
        for model, stats in sorted(snap.chat.items()):
            labels = [account, model]
            probes.add_metric(labels, stats.probes)
            for reason in REASONS:
                failures.add_metric([*labels, reason], stats.failures[reason])
            ttft.add_metric(labels, *_cumulative(stats.ttft))
            duration.add_metric(labels, *_cumulative(stats.duration))
            tokens.add_metric(labels, stats.output_tokens)
            cost.add_metric(labels, stats.cost_usd)
            unpriced.add_metric(labels, stats.unpriced)
    yield from families


def _catalog(accounts: Accounts) -> Iterator[Metric]:
    families = _families(
        "pinference_models", "pinference_model_info", "pinference_catalog_models",
        "pinference_model_series_dropped", "pinference_catalog_changes",
    )  # fmt: skip
    owners, info, total, dropped, changes = families
    for account, snap in accounts:
        listed = snap.catalog
        if listed is not None:  # pinference_catalog_models: absent before the first list
            for owner, count in listed.owners:
                owners.add_metric([account, owner], count)
            for labels in listed.info:
                info.add_metric([account, *labels], 1)
            total.add_metric([account], listed.total)
        dropped.add_metric([account], listed.dropped if listed else 0)
        for change in CHANGES:
            changes.add_metric([account, change], snap.changes[change])
    yield from families


def _exporter(reading: Reading) -> Iterator[Metric]:
    revision = build.revision()
    family = GaugeMetricFamily(
        "pinference_exporter_build_info",
        "Build information of the Pinference exporter (value 1; revision when known).",
        labels=["version", *(["revision"] if revision else []), "pythonversion"],
    )
    values = [build.version(), revision, build.python_version()]
    family.add_metric([v for v in values if v], 1)
    yield family
    families = _families(
        "pinference_probe_interval_seconds", "pinference_exporter_config_last_reload_successful",
        "pinference_exporter_config_last_reload_success_timestamp_seconds",
    )  # fmt: skip
    values = (reading.interval, 1 if reading.reload_successful else 0, reading.reload_success_time)
    for family, value in zip(families, values, strict=True):
        family.add_metric([], value)
    yield from families


def _families(*names: str) -> list[Metric]:
    """Fresh, empty families, as _FAMILIES declares them."""
    return [kind(name, doc, labels=labels) for name in names
            for kind, labels, doc in [_FAMILIES[name]]]  # fmt: skip


def _check_renders(family: Metric) -> None:
    """Raise what rendering the family would (a number no float holds, text no UTF-8 can
    encode), without rendering it."""
    for text in (family.name, family.documentation):
        text.encode()
    for sample in family.samples:
        float(sample.value)
        for name, value in sample.labels.items():
            name.encode()
            value.encode()


def _cumulative(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    """(buckets as exposed, cumulative; sum) of a histogram."""
    bounds = _BOUNDS[histogram.bounds]
    return list(zip(bounds, itertools.accumulate(histogram.counts), strict=True)), histogram.total
