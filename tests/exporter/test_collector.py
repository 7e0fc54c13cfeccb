"""The collector: the scrape has the labels the contract in docs/metrics.md lists, every
probe is observed once in the histogram, a scrape before any probe says nothing it does
not know, and any value the API sends renders (fuzzed); a family that still cannot render
is left out and counted, never a failed scrape."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pinference_exporter.collector import PinferenceCollector, Reading
from pinference_exporter.state import ChatOutcome, ProbeState
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from llm_pinference.core.models import ModelInfo
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


# --- any stored value renders ----------------------------------------------------------

texts = st.text() | st.sampled_from(["\ud800", "a\udfffb", "x\ny", 'q"\\', ""])
models = st.lists(
    st.builds(ModelInfo, id=texts, owned_by=texts, display_name=st.none() | texts,
              serving=st.none() | texts),
    max_size=6,
)  # fmt: skip
numbers = st.integers() | st.floats() | st.sampled_from([10**400, -(10**400), 2**53 + 1])
outcomes = st.builds(ChatOutcome, output_tokens=numbers, cost_usd=st.none() | numbers,
                     duration=st.floats(0, 100), ttft=st.none() | st.floats(0, 100))  # fmt: skip


def collector_of(state: ProbeState) -> PinferenceCollector:
    return PinferenceCollector(lambda: Reading([("a", state.snapshot())], 30.0, True, 0.0))


def rendered(collector: PinferenceCollector) -> tuple[str, str, float]:
    """(text format, OpenMetrics, render errors counted) of one collect() each."""

    class One:
        def collect(self) -> Any:
            return collector.collect()

    text = generate_latest(One()).decode()  # type: ignore[arg-type]
    openmetrics = generate_openmetrics(One()).decode()  # type: ignore[arg-type]
    families = {f.name: f for f in text_string_to_metric_families(text)}
    errors = families["pinference_exporter_render_errors"].samples[0].value
    return text, openmetrics, errors


@settings(max_examples=100, deadline=None)
@given(listed=models, chats=st.lists(outcomes, max_size=4))
def test_any_api_value_renders_and_parses(
    listed: list[ModelInfo], chats: list[ChatOutcome]
) -> None:
    state = ProbeState()
    state.keep_chat_models(["chat/model"])
    state.record_catalog(listed, 1.0)
    state.record_catalog(listed[::-1], 2.0)  # the same list again: no change
    for outcome in chats:
        state.record_chat("chat/model", outcome)
    text, openmetrics, errors = rendered(collector_of(state))
    assert errors == 0  # sanitised where it entered: nothing had to be left out
    assert openmetrics.endswith("# EOF\n")
    infos = [s for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == "pinference_model_info"]  # fmt: skip
    assert len({tuple(sorted(s.labels.items())) for s in infos}) == len(infos)  # no duplicates


def test_the_reported_values_render(fake: FakePinference) -> None:
    """Issue 23's two scrapes that answered 500, over HTTP and checked by promtool."""
    fake.set_models([{"id": "bad\ud800id", "object": "model", "owned_by": "o\ud800"}])
    with make_exporter(fake.base_url, sample_size=0) as exporter:
        exporter.run_probe_cycle()
        exporter.state.keep_chat_models(["m"])
        exporter.state.record_chat("m", ChatOutcome(duration=1.0, output_tokens=10**400,
                                                    cost_usd=float("inf")))  # fmt: skip
        metrics = scrape(exporter)  # 200, promtool-checked
    assert metrics.value("pinference_catalog_models") == 1
    assert metrics.value("pinference_chat_probe_output_tokens_total", model="m") == 0
    assert metrics.value("pinference_chat_probe_unpriced_total", model="m") == 1
    assert metrics.value("pinference_exporter_render_errors_total") == 0


def test_a_family_that_cannot_render_is_left_out_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = ProbeState()
    state.keep_chat_models(["m"])
    state._chat["m"] = replace(state._chat["m"], output_tokens=10**400)  # past the sanitising
    collector = collector_of(state)
    for _ in range(3):
        text, _, errors = rendered(collector)
    assert "pinference_chat_probe_output_tokens" not in text
    assert "pinference_chat_probes_total" in text and "pinference_up" in text
    assert errors == 5  # the last text render is the fifth collect (each render: two)
    logged = [r for r in caplog.records if "cannot be rendered" in r.getMessage()]
    assert len(logged) == 1
