"""The probe state: buckets, caps, snapshots, timestamps and change counters as a scrape
and the landing page show them, and a long soak under rotating faults."""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest
import requests
from pinference_exporter.state import BUCKETS, OTHER_OWNERS, ListedModels, ProbeState
from prometheus_client.parser import text_string_to_metric_families

from llm_pinference.core.models import ModelInfo
from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import make_exporter, promtool_check, scrape, wait_for


def test_bucket_bounds_are_inclusive() -> None:
    state = ProbeState()
    for duration in (0.0, 0.005, 0.0050001, 30.0, 31.0):
        state.record("list", duration, time.time())
    stats = state.snapshot().endpoints["list"]
    counts = stats.duration.counts
    assert counts[0] == 2  # 0 and exactly 0.005 are "le 0.005"
    assert counts[1] == 1
    assert counts[len(BUCKETS) - 1] == 1  # exactly 30 is "le 30"
    assert counts[-1] == 1  # above 30 is +Inf only
    assert stats.probes == 5 and stats.duration.total == pytest.approx(61.0100001)


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


LIST = {"endpoint": "list"}


def model(model_id: str, **fields: str) -> dict[str, str]:
    owner = model_id.split("/", maxsplit=1)[0]
    return {"id": model_id, "object": "model", "owned_by": owner, **fields}


def test_timestamps_and_status_follow_each_probe(fake: FakePinference) -> None:
    with make_exporter(fake.base_url, sample_size=0) as exporter:
        before = time.time()
        exporter.run_probe_cycle()
        first = scrape(exporter)
        success = first.value("pinference_last_success_timestamp_seconds", **LIST)
        assert success is not None and before <= success <= time.time()
        assert first.value("pinference_last_probe_timestamp_seconds", **LIST) == success
        assert first.value("pinference_probe_http_status_code", **LIST) == 200

        fake.set_fault("list", Fault(status=500))
        exporter.run_probe_cycle()
        failed = scrape(exporter)
        probed = failed.value("pinference_last_probe_timestamp_seconds", **LIST)
        assert probed is not None and probed > success
        assert failed.value("pinference_last_success_timestamp_seconds", **LIST) == success
        assert failed.value("pinference_probe_http_status_code", **LIST) == 500
        assert failed.value("pinference_probe_success", **LIST) == 0

        fake.clear_faults()
        exporter.run_probe_cycle()
        again = scrape(exporter)
        recovered = again.value("pinference_last_success_timestamp_seconds", **LIST)
        assert recovered is not None and recovered > probed
        assert again.value("pinference_probe_http_status_code", **LIST) == 200
        assert again.value("pinference_probe_success", **LIST) == 1


def test_catalogue_changes_accumulate_after_the_first_list(fake: FakePinference) -> None:
    fake.set_models([model("a/1"), model("a/2"), model("b/1")])
    with make_exporter(fake.base_url, sample_size=0) as exporter:

        def changes() -> tuple[float | None, float | None]:
            metrics = scrape(exporter)
            return (
                metrics.value("pinference_catalog_changes_total", change="added"),
                metrics.value("pinference_catalog_changes_total", change="removed"),
            )

        assert changes() == (0, 0)  # before any list
        exporter.run_probe_cycle()
        assert changes() == (0, 0)  # the first list is the baseline
        fake.set_models([model("a/1"), model("b/1"), model("c/1"), model("c/2")])
        exporter.run_probe_cycle()
        assert changes() == (2, 1)
        fake.set_models([model("a/1"), model("b/1"), model("c/1"), model("c/2"), model("d/1")])
        exporter.run_probe_cycle()
        assert changes() == (3, 1)  # counters: they add up


def test_series_caps_hold_exactly(fake: FakePinference) -> None:
    """As many owners as the cap: no "(other)" series, nothing dropped; fields the API
    leaves out are empty labels."""
    fake.set_models([model("a/1"), model("b/1")])
    with make_exporter(fake.base_url, sample_size=0, max_series=2) as exporter:
        exporter.run_probe_cycle()
        metrics = scrape(exporter)
        owners = {s["owned_by"] for s in metrics.labelsets("pinference_models")}
        assert owners == {"a", "b"}
        assert metrics.value("pinference_model_series_dropped") == 0
        info = metrics.labelsets("pinference_model_info")
        assert {(i["model"], i["display_name"], i["serving"]) for i in info} == {
            ("a/1", "", ""),
            ("b/1", "", ""),
        }


def test_the_landing_page_counts_cycles_and_shows_a_pause(fake: FakePinference) -> None:
    with make_exporter(fake.base_url, sample_size=0) as exporter:
        for _ in range(3):
            exporter.run_probe_cycle()
        page = requests.get(exporter.url, timeout=10).text
        assert "Probe cycles: 3." in page and "Rate limited" not in page
        fake.set_fault("list", Fault(status=429, retry_after="120"))
        exporter.run_probe_cycle()
        page = requests.get(exporter.url, timeout=10).text
        assert "Probe cycles: 4." in page
        assert "Rate limited (429): probes paused for another" in page
