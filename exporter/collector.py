"""Turns a snapshot of the probe state into the metric families of docs/metrics.md."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from llm_pinference import __version__
from llm_pinference.errors import REASONS

from .state import BUCKETS, CHANGES, ENDPOINTS, ProbeState, Snapshot

# Bucket labels as exposed ("0.05", ..., "+Inf"): formatted once, not on every scrape.
_BOUNDS = (*map(floatToGoString, BUCKETS), "+Inf")
# Said once in every HELP text that depends on it: scrapes do not trigger probes.
ON_INTERVAL = "Probed on the exporter's own interval (--probe.interval), not per scrape."


class PinferenceCollector(Collector):
    """Builds fresh families from one consistent snapshot on every collect()."""

    def __init__(self, state: ProbeState, interval: float) -> None:
        self.state = state
        self.interval = interval

    def collect(self) -> Iterator[Metric]:
        snap = self.state.snapshot()
        yield from self._api(snap)
        yield from self._probes(snap)
        yield from self._catalog(snap)
        yield from self._exporter()

    def _api(self, snap: Snapshot) -> Iterator[Metric]:
        listing = snap.endpoints["list"]
        yield GaugeMetricFamily(
            "pinference_up",
            f"1 if the last list probe (GET /models) succeeded, else 0. {ON_INTERVAL}",
            value=1 if listing.success else 0,
        )
        available = GaugeMetricFamily(
            "pinference_model_available",
            "Watched models (--probe.models) only: 1 if GET /models/{id} answered 200, 0 after "
            f"a 404; other failures keep the last value. {ON_INTERVAL}",
            labels=["model"],
        )
        for model, value in sorted(snap.available.items()):
            available.add_metric([model], value)
        yield available

    def _probes(self, snap: Snapshot) -> Iterator[Metric]:
        probes = CounterMetricFamily(
            "pinference_probes",
            "Probes made, per endpoint (list: GET /models, get: GET /models/{id}). " + ON_INTERVAL,
            labels=["endpoint"],
        )
        failures = CounterMetricFamily(
            "pinference_probe_failures",
            f"Failed probes, per endpoint and reason (every reason starts at 0). {ON_INTERVAL}",
            labels=["endpoint", "reason"],
        )
        duration = HistogramMetricFamily(
            "pinference_probe_duration_seconds",
            f"Request latency of each probe, failures included. {ON_INTERVAL}",
            labels=["endpoint"],
        )
        success = GaugeMetricFamily(
            "pinference_probe_success",
            f"1 if the last probe of the endpoint succeeded, else 0. {ON_INTERVAL}",
            labels=["endpoint"],
        )
        status = GaugeMetricFamily(
            "pinference_probe_http_status_code",
            f"HTTP status of the last probe of the endpoint, 0 if no response. {ON_INTERVAL}",
            labels=["endpoint"],
        )
        last_success = GaugeMetricFamily(
            "pinference_last_success_timestamp_seconds",
            "Unix time of the last successful probe of the endpoint.",
            labels=["endpoint"],
        )
        last_probe = GaugeMetricFamily(
            "pinference_last_probe_timestamp_seconds",
            "Unix time the last probe of the endpoint finished.",
            labels=["endpoint"],
        )
        for endpoint in ENDPOINTS:
            stats = snap.endpoints[endpoint]
            probes.add_metric([endpoint], stats.probes)
            for reason in REASONS:
                failures.add_metric([endpoint, reason], stats.failures[reason])
            cumulative, buckets = 0, []
            for bound, count in zip(_BOUNDS, stats.buckets, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            duration.add_metric([endpoint], buckets, stats.duration_sum)
            if stats.success is not None:  # absent before the endpoint's first probe
                success.add_metric([endpoint], 1 if stats.success else 0)
                status.add_metric([endpoint], stats.status_code)
            if stats.last_success is not None:
                last_success.add_metric([endpoint], stats.last_success)
            if stats.last_probe is not None:
                last_probe.add_metric([endpoint], stats.last_probe)
        yield from (probes, failures, duration, success, status, last_success, last_probe)
        yield GaugeMetricFamily(
            "pinference_probe_interval_seconds",
            "The configured probe interval (--probe.interval), to tell stale data.",
            value=self.interval,
        )

    def _catalog(self, snap: Snapshot) -> Iterator[Metric]:
        catalog = snap.catalog
        owners = GaugeMetricFamily(
            "pinference_models",
            "Models in the last successful list, per owner (sum = total; owners beyond "
            f'--models.max-series are summed as owned_by="(other)"). {ON_INTERVAL}',
            labels=["owned_by"],
        )
        info = GaugeMetricFamily(
            "pinference_model_info",
            "One series (value 1) per model in the last successful list, at most "
            f"--models.max-series. {ON_INTERVAL}",
            labels=["model", "owned_by", "display_name", "serving"],
        )
        if catalog is not None:
            for owner, count in catalog.owners:
                owners.add_metric([owner], count)
            for labels in catalog.info:
                info.add_metric(list(labels), 1)
        yield owners
        yield info
        if catalog is not None:  # absent before the first successful list
            yield GaugeMetricFamily(
                "pinference_catalog_models",
                f"Total models in the last successful list. {ON_INTERVAL}",
                value=catalog.total,
            )
        yield GaugeMetricFamily(
            "pinference_model_series_dropped",
            "Models left out of pinference_model_info by --models.max-series in the last list.",
            value=catalog.dropped if catalog else 0,
        )
        changes = CounterMetricFamily(
            "pinference_catalog_changes",
            "Models appearing (added) or disappearing (removed) between successive successful "
            f"lists. {ON_INTERVAL}",
            labels=["change"],
        )
        for change in CHANGES:
            changes.add_metric([change], snap.changes[change])
        yield changes

    def _exporter(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "pinference_exporter_build_info",
            "Build information of the Pinference exporter (value 1).",
            labels=["version"],
        )
        family.add_metric([__version__], 1)
        yield family
