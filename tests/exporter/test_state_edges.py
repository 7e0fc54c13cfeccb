"""Edges of the exporter's probe state, seen where users see it: the scrape and the landing
page (found by `make mutation`). Timestamps move with each probe, the catalogue change
counters accumulate, the series caps hold exactly, the page counts cycles and shows a pause.
"""

from __future__ import annotations

import time

import requests

from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import make_exporter, scrape

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
