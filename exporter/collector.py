"""Turns snapshots of the probe states into the metric families of docs/metrics.md.

Every series about the API carries `account`; the exporter's own (build info, reload
status, probe interval) do not.

A scrape never fails: the state stores only values that render (see state.py), and should
one family still not render (or not build), it is left out, logged once and counted in
pinference_exporter_render_errors_total; the other families are served.
"""

from __future__ import annotations

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

# Bucket labels as exposed ("0.05", ..., "+Inf"): formatted once, not on every scrape.
_BOUNDS = (*map(floatToGoString, BUCKETS), "+Inf")
_CHAT_BOUNDS = (*map(floatToGoString, CHAT_BUCKETS), "+Inf")
# Said once in every HELP text that depends on it: scrapes do not trigger probes.
ON_INTERVAL = "Probed on the exporter's own interval (--probe.interval), not per scrape."
ON_CHAT_INTERVAL = "Opt-in; probed on --probe.chat.interval, not per scrape."
log = logging.getLogger("pinference_exporter.collector")


@dataclass(frozen=True)
class Reading:
    """What one collect() reads: a snapshot per account (by name), and the exporter's own."""

    accounts: Sequence[tuple[str, Snapshot]]
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
            ("api", lambda: self._api(accounts)),
            ("probes", lambda: self._probes(accounts, reading.interval)),
            ("connection", lambda: self._connection(accounts)),
            ("chat", lambda: self._chat(accounts)),
            ("catalog", lambda: self._catalog(accounts)),
            ("exporter", lambda: self._exporter(reading)),
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

    def _api(self, accounts: list[tuple[str, Snapshot]]) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "pinference_up",
            f"1 if the last list probe (GET /models) succeeded, else 0. {ON_INTERVAL}",
            labels=["account"],
        )
        available = GaugeMetricFamily(
            "pinference_model_available",
            "Watched models (--probe.models) only: 1 if GET /models/{id} answered 200, 0 after "
            f"a 404; other failures keep the last value. {ON_INTERVAL}",
            labels=["account", "model"],
        )
        for account, snap in accounts:
            up.add_metric([account], 1 if snap.endpoints["list"].success else 0)
            for model, value in sorted(snap.available.items()):
                available.add_metric([account, model], value)
        yield up
        yield available

    def _probes(self, accounts: list[tuple[str, Snapshot]], interval: float) -> Iterator[Metric]:
        probes = CounterMetricFamily(
            "pinference_probes",
            "Probes made, per endpoint (list: GET /models, get: GET /models/{id}). " + ON_INTERVAL,
            labels=["account", "endpoint"],
        )
        failures = CounterMetricFamily(
            "pinference_probe_failures",
            f"Failed probes, per endpoint and reason (every reason starts at 0). {ON_INTERVAL}",
            labels=["account", "endpoint", "reason"],
        )
        duration = HistogramMetricFamily(
            "pinference_probe_duration_seconds",
            "Duration of each probe, failures included; a list probe's is that of a new "
            f"connection (the sum of its phases). {ON_INTERVAL}",
            labels=["account", "endpoint"],
        )
        success = GaugeMetricFamily(
            "pinference_probe_success",
            f"1 if the last probe of the endpoint succeeded, else 0. {ON_INTERVAL}",
            labels=["account", "endpoint"],
        )
        status = GaugeMetricFamily(
            "pinference_probe_http_status_code",
            f"HTTP status of the last probe of the endpoint, 0 if no response. {ON_INTERVAL}",
            labels=["account", "endpoint"],
        )
        last_success = GaugeMetricFamily(
            "pinference_last_success_timestamp_seconds",
            "Unix time of the last successful probe of the endpoint.",
            labels=["account", "endpoint"],
        )
        last_probe = GaugeMetricFamily(
            "pinference_last_probe_timestamp_seconds",
            "Unix time the last probe of the endpoint finished.",
            labels=["account", "endpoint"],
        )
        for account, snap in accounts:
            for endpoint in ENDPOINTS:
                stats = snap.endpoints[endpoint]
                labels = [account, endpoint]
                probes.add_metric(labels, stats.probes)
                for reason in REASONS:
                    failures.add_metric([*labels, reason], stats.failures[reason])
                cumulative, buckets = 0, []
                for bound, count in zip(_BOUNDS, stats.buckets, strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative))
                duration.add_metric(labels, buckets, stats.duration_sum)
                if stats.success is not None:  # absent before the endpoint's first probe
                    success.add_metric(labels, 1 if stats.success else 0)
                    status.add_metric(labels, stats.status_code)
                if stats.last_success is not None:
                    last_success.add_metric(labels, stats.last_success)
                if stats.last_probe is not None:
                    last_probe.add_metric(labels, stats.last_probe)
        yield from (probes, failures, duration, success, status, last_success, last_probe)
        yield GaugeMetricFamily(
            "pinference_probe_interval_seconds",
            "The configured probe interval (--probe.interval), to tell stale data.",
            value=interval,
        )

    def _connection(self, accounts: list[tuple[str, Snapshot]]) -> Iterator[Metric]:
        phases = GaugeMetricFamily(
            "pinference_probe_phase_seconds",
            "Seconds of each phase of the last successful list probe, made on a new connection"
            " (blackbox_exporter's phases; they add up to its duration).",
            labels=["account", "endpoint", "phase"],
        )
        expiry = GaugeMetricFamily(
            "pinference_tls_cert_expiry_timestamp_seconds",
            "Unix time the first certificate of the chain the API served expires (HTTPS "
            "only; from the last successful list probe).",
            labels=["account"],
        )
        version = GaugeMetricFamily(
            "pinference_tls_version_info",
            "The TLS version of the last successful list probe's connection (value 1).",
            labels=["account", "version"],
        )
        for account, snap in accounts:
            connection = snap.connection
            if connection is None:  # absent before the first successful list
                continue
            for phase, seconds in connection.phases.items():
                phases.add_metric([account, "list", phase], seconds)
            tls = connection.tls
            if tls is not None and tls.earliest_expiry is not None:
                expiry.add_metric([account], tls.earliest_expiry)
            if tls is not None and tls.version:
                version.add_metric([account, tls.version], 1)
        yield from (phases, expiry, version)

    def _chat(self, accounts: list[tuple[str, Snapshot]]) -> Iterator[Metric]:
        probes = CounterMetricFamily(
            "pinference_chat_probes",
            "Chat probes made (a tiny streamed POST /chat/completions), per model. "
            + ON_CHAT_INTERVAL,
            labels=["account", "model"],
        )
        failures = CounterMetricFamily(
            "pinference_chat_probe_failures",
            "Failed chat probes, per model and reason (every reason starts at 0).",
            labels=["account", "model", "reason"],
        )
        ttft = HistogramMetricFamily(
            "pinference_chat_probe_ttft_seconds",
            "Time to the first token of successful chat probes.",
            labels=["account", "model"],
        )
        duration = HistogramMetricFamily(
            "pinference_chat_probe_duration_seconds",
            "Time to the end of the stream of successful chat probes.",
            labels=["account", "model"],
        )
        tokens = CounterMetricFamily(
            "pinference_chat_probe_output_tokens",
            "Output tokens of successful chat probes (as the API reports them, else counted).",
            labels=["account", "model"],
        )
        cost = CounterMetricFamily(
            "pinference_chat_probe_cost_usd",
            "Estimated cost of the chat probes in USD: the usage the API reports at the "
            "model's prices in the last list (unpriced probes add nothing).",
            labels=["account", "model"],
        )
        unpriced = CounterMetricFamily(
            "pinference_chat_probe_unpriced",
            "Successful chat probes whose cost is unknown (the model's prices are not "
            "listed, or the API reported no usage).",
            labels=["account", "model"],
        )
        for account, snap in accounts:
            for model, stats in sorted(snap.chat.items()):
                labels = [account, model]
                probes.add_metric(labels, stats.probes)
                for reason in REASONS:
                    failures.add_metric([*labels, reason], stats.failures[reason])
                ttft.add_metric(labels, *_cumulative(stats.ttft, _CHAT_BOUNDS))
                duration.add_metric(labels, *_cumulative(stats.duration, _CHAT_BOUNDS))
                tokens.add_metric(labels, stats.output_tokens)
                cost.add_metric(labels, stats.cost_usd)
                unpriced.add_metric(labels, stats.unpriced)
        yield from (probes, failures, ttft, duration, tokens, cost, unpriced)

    def _catalog(self, accounts: list[tuple[str, Snapshot]]) -> Iterator[Metric]:
        owners = GaugeMetricFamily(
            "pinference_models",
            "Models in the last successful list, per owner (sum = total; owners beyond "
            f'--models.max-series are summed as owned_by="(other)"). {ON_INTERVAL}',
            labels=["account", "owned_by"],
        )
        info = GaugeMetricFamily(
            "pinference_model_info",
            "One series (value 1) per model in the last successful list, at most "
            f"--models.max-series. {ON_INTERVAL}",
            labels=["account", "model", "owned_by", "display_name", "serving"],
        )
        total = GaugeMetricFamily(
            "pinference_catalog_models",
            f"Total models in the last successful list. {ON_INTERVAL}",
            labels=["account"],
        )
        dropped = GaugeMetricFamily(
            "pinference_model_series_dropped",
            "Models left out of pinference_model_info by --models.max-series in the last list.",
            labels=["account"],
        )
        changes = CounterMetricFamily(
            "pinference_catalog_changes",
            "Models appearing (added) or disappearing (removed) between successive successful "
            f"lists. {ON_INTERVAL}",
            labels=["account", "change"],
        )
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
        yield from (owners, info, total, dropped, changes)

    def _exporter(self, reading: Reading) -> Iterator[Metric]:
        revision = build.revision()
        names = ["version", *(["revision"] if revision else []), "pythonversion"]
        family = GaugeMetricFamily(
            "pinference_exporter_build_info",
            "Build information of the Pinference exporter (value 1; revision when known).",
            labels=names,
        )
        values = [build.version(), revision, build.python_version()]
        family.add_metric([v for v in values if v], 1)
        yield family
        yield GaugeMetricFamily(
            "pinference_exporter_config_last_reload_successful",
            "1 if the last load of the config, key and web config files succeeded (at start-up,"
            " on SIGHUP or POST /-/reload, or a changed web config), else 0.",
            value=1 if reading.reload_successful else 0,
        )
        yield GaugeMetricFamily(
            "pinference_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the config files.",
            value=reading.reload_success_time,
        )


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


def _cumulative(
    histogram: Histogram, bounds: tuple[str, ...]
) -> tuple[list[tuple[str, float]], float]:
    """(buckets as exposed, cumulative; sum) of a histogram."""
    buckets, total = [], 0
    for bound, count in zip(bounds, histogram.counts, strict=True):
        total += count
        buckets.append((bound, total))
    return buckets, histogram.total
