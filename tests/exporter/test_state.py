"""The probe state and the collector without HTTP: buckets, caps, snapshots, a long soak."""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest
from pinference_exporter.state import BUCKETS, OTHER_OWNERS, ListedModels, ProbeState
from prometheus_client.parser import text_string_to_metric_families

from llm_pinference.core.models import ModelInfo
from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import make_exporter, promtool_check, scrape, wait_for


def test_bucket_bounds_are_inclusive() -> None:
    state = ProbeState()
    for duration in (0.0, 0.05, 0.0500001, 30.0, 31.0):
        state.record("list", duration, time.time())
    stats = state.snapshot().endpoints["list"]
    assert stats.buckets[0] == 2  # 0 and exactly 0.05 are "le 0.05"
    assert stats.buckets[1] == 1
    assert stats.buckets[len(BUCKETS) - 1] == 1  # exactly 30 is "le 30"
    assert stats.buckets[-1] == 1  # above 30 is +Inf only
    assert stats.probes == 5 and stats.duration_sum == pytest.approx(61.1000001)


def test_unknown_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown reason"):
        ProbeState().record("get", 0.1, time.time(), reason="exploded")


def test_snapshots_do_not_change_afterwards() -> None:
    state = ProbeState()
    state.record("list", 0.1, 1.0, status=500, reason="server_error", error="boom")
    before = state.snapshot()
    state.record("list", 0.1, 2.0, status=200)
    state.set_available("a/b", 1)
    assert before.endpoints["list"].failures["server_error"] == 1
    assert before.endpoints["list"].probes == 1 and before.endpoints["list"].success is False
    assert dict(before.available) == {}
    assert state.snapshot().endpoints["list"].last_error == "boom"  # kept for the page


def test_catalog_caps_owners_and_models_keeping_the_total() -> None:
    models = [ModelInfo(id=f"o{i % 5}/m{i}", owned_by=f"o{i % 5}") for i in range(23)]
    catalog = ListedModels.build(models, max_series=3, finished=0.0)
    assert catalog.total == 23 and catalog.dropped == 20 and len(catalog.info) == 3
    assert [owner for owner, _ in catalog.owners][-1] == OTHER_OWNERS
    assert len(catalog.owners) == 4 and sum(n for _, n in catalog.owners) == 23
    assert [m for m, *_ in catalog.info] == sorted(m.id for m in models)[:3]


def test_scrape_without_http_matches_the_contract(fake: FakePinference) -> None:
    with make_exporter(fake.base_url) as exporter:
        exporter.run_probe_cycle()
        text = exporter.scrape()
        promtool_check(text)
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {
            "pinference_up", "pinference_models", "pinference_catalog_models",
            "pinference_model_info", "pinference_model_series_dropped", "pinference_probes",
            "pinference_probe_failures", "pinference_probe_duration_seconds",
            "pinference_probe_success", "pinference_probe_http_status_code",
            "pinference_last_success_timestamp_seconds",
            "pinference_last_probe_timestamp_seconds", "pinference_probe_interval_seconds",
            "pinference_model_available", "pinference_catalog_changes",
            "pinference_exporter_build_info",
        } <= names  # fmt: skip


def test_soak_background_loop_survives_rotating_faults(
    fake: FakePinference, caplog: pytest.LogCaptureFixture
) -> None:
    faults = itertools.cycle([
        Fault(status=401), Fault(status=429, retry_after="1"), Fault(status=500),
        Fault(html=True, status=502), Fault(mode="malformed"), Fault(mode="truncated"),
        Fault(mode="wrong_shape"), Fault(mode="huge", huge_bytes=300_000), Fault(mode="drop"),
        Fault(mode="empty"), Fault(mode="hang"), Fault(delay=0.5), Fault(status=418),
    ])  # fmt: skip
    watched = ("meta-llama/llama-3.1-70b-instruct",)
    caplog.set_level(logging.DEBUG)
    with make_exporter(
        fake.base_url, probe_interval=0.5, probe_timeout=0.4, probe_models=watched,
        max_response_bytes=100_000,
    ) as exporter:  # fmt: skip
        exporter.prober.start()
        stop = threading.Event()

        def rotate() -> None:
            while not stop.wait(0.1):
                fake.set_fault("*", next(faults))

        rotator = threading.Thread(target=rotate, daemon=True)
        rotator.start()
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            scrape(exporter)  # promtool-checked every time
            time.sleep(0.2)
        stop.set()
        rotator.join(5)
        fake.clear_faults()
        assert exporter.prober.running
        wait_for(lambda: scrape(exporter).value("pinference_up") == 1, what="recovery")
        s = scrape(exporter)
        assert s.value("pinference_probes_total", endpoint="list") >= 5
        assert s.value("pinference_model_available", model=watched[0]) == 1
    assert not [r for r in caplog.records if "crashed" in r.getMessage()]


def test_promtool_check_never_passes_silently_without_promtool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.exporter import helpers as exporter_helpers

    bad = "# TYPE x_total counter\nx_total 1\nx_total 2\n"  # a duplicate: promtool objects
    if exporter_helpers.promtool_path() is not None:
        with pytest.raises(AssertionError, match="promtool check metrics"):
            exporter_helpers.promtool_check(bad)
    monkeypatch.setattr(exporter_helpers, "promtool_path", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="promtool is not installed"):
        exporter_helpers.promtool_check(bad)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="promtool is not installed"):
        exporter_helpers.promtool_check(bad)
