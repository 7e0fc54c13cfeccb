"""Edges of the collector (found by `make mutation`): the scrape has the labels the contract
in docs/metrics.md lists, every probe is observed once in the histogram, and a scrape
before any probe says nothing it does not know."""

from __future__ import annotations

import re

from pinference_fake import FakePinference
from tests.exporter.helpers import ROOT, make_exporter, scrape

# The account label is documented apart from the table (it is on every API-facing series).
APART = {"account"}


def contract_labels() -> dict[str, set[str]]:
    """{metric: label names} from the table of docs/metrics.md (values in parentheses and
    the histogram's `le` left out)."""
    labels = {}
    for line in (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8").splitlines():
        row = re.match(r"\| `(pinference_\w+)` \|[^|]+\|([^|]*)\|", line)
        if row:
            names = re.sub(r"\([^)]*\)", "", row[2])
            labels[row[1]] = set(re.findall(r"`(\w+)`", names)) - APART
    return labels


def test_every_family_has_the_labels_of_the_contract(fake: FakePinference) -> None:
    watched = fake.models[0]["id"]
    with make_exporter(fake.base_url, probe_models=(watched,)) as exporter:
        exporter.run_probe_cycle()
        metrics = scrape(exporter)
    contract = contract_labels()
    assert len(contract) >= 16
    seen: dict[str, set[str] | None] = {}
    for family in metrics.families.values():
        if not family.name.startswith("pinference_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        # A family with no series yet (no chat probe, no TLS here) shows no labels to check.
        labels = {k for s in family.samples for k in s.labels} - {"le"} - APART
        seen[name] = labels if family.samples else None
    assert set(seen) == set(contract)
    assert {n: v for n, v in seen.items() if v is not None} == {
        n: contract[n] for n, v in seen.items() if v is not None
    }


def test_each_probe_is_observed_once_in_the_histogram(fake: FakePinference) -> None:
    with make_exporter(fake.base_url, sample_size=0) as exporter:
        for _ in range(3):
            exporter.run_probe_cycle()
        metrics = scrape(exporter)
    name = "pinference_probe_duration_seconds"
    assert metrics.value("pinference_probes_total", endpoint="list") == 3
    assert metrics.value(f"{name}_count", endpoint="list") == 3
    assert 0 < (metrics.value(f"{name}_sum", endpoint="list") or 0) < 3 * 10
    buckets = [s.value for s in metrics.samples(f"{name}_bucket") if s.labels["endpoint"] == "list"]
    assert buckets == sorted(buckets) and buckets[-1] == 3  # cumulative, +Inf = count
    assert metrics.value("pinference_probe_success", endpoint="list") == 1
    assert {s.value for s in metrics.samples("pinference_model_info")} == {1}


def test_a_scrape_before_any_probe_says_only_what_it_knows(fake: FakePinference) -> None:
    with make_exporter(fake.base_url) as exporter:
        metrics = scrape(exporter)
    assert metrics.value("pinference_up") == 0
    assert metrics.value("pinference_model_series_dropped") == 0
    assert metrics.samples("pinference_catalog_models") == []
    assert metrics.samples("pinference_probe_success") == []
    assert metrics.samples("pinference_last_probe_timestamp_seconds") == []
    assert metrics.value("pinference_probes_total", endpoint="list") == 0
