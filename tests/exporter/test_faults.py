"""Every fault the fake server can inject becomes the right reason; the exporter recovers.

Each test drives probe cycles itself (`run_probe_cycle()`) and scrapes over real HTTP; the
scrape helper also runs `promtool check metrics` on every output.
"""

from __future__ import annotations

import time

import pytest
from pinference_exporter import Exporter

from llm_pinference.core.errors import REASONS
from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import Scrape, make_exporter, scrape, wait_for
from tests.support import free_port as closed_port

WATCHED = "meta-llama/llama-3.1-70b-instruct"
FAST_TIMEOUT = {"probe_interval": 4.0, "probe_timeout": 1.0}

# (fault, reason, HTTP status the exporter reports, extra exporter options)
FAULTS = {
    "401": (Fault(status=401), "unauthorized", 401, {}),
    "402": (Fault(status=402), "payment_required", 402, {}),
    "403": (Fault(status=403), "forbidden", 403, {}),
    "404": (Fault(status=404), "not_found", 404, {}),
    "429-no-retry-after": (Fault(status=429), "rate_limited", 429, {}),
    "418": (Fault(status=418), "client_error", 418, {}),
    "500": (Fault(status=500), "server_error", 500, {}),
    "503": (Fault(status=503), "server_error", 503, {}),
    "html-502": (Fault(status=502, html=True), "server_error", 502, {}),
    "html-403": (Fault(status=403, html=True), "forbidden", 403, {}),
    "html-200": (Fault(html=True, body="<html>hello</html>"), "invalid_response", 200, {}),
    "malformed": (Fault(mode="malformed"), "invalid_response", 200, {}),
    "wrong_shape": (Fault(mode="wrong_shape"), "invalid_response", 200, {}),
    "huge": (
        Fault(mode="huge", huge_bytes=200_000),
        "invalid_response",
        200,
        {"max_response_bytes": 100_000},
    ),
    # The body ends early: the connection broke mid-response (the core's mapping).
    "truncated": (Fault(mode="truncated"), "connection_error", 0, {}),
    "drop": (Fault(mode="drop"), "connection_error", 0, {}),
    "hang": (Fault(mode="hang"), "timeout", 0, FAST_TIMEOUT),
    "delay": (Fault(delay=3.0), "timeout", 0, FAST_TIMEOUT),  # longer than the timeout
}


def failures(s: Scrape, endpoint: str) -> dict[str, float | None]:
    name = "pinference_probe_failures_total"
    return {r: s.value(name, endpoint=endpoint, reason=r) for r in REASONS}


@pytest.mark.parametrize("name", list(FAULTS))
def test_list_fault_gives_its_reason(fake: FakePinference, name: str) -> None:
    fault, reason, status, options = FAULTS[name]
    with make_exporter(fake.base_url, sample_size=0, **options) as exporter:
        assert exporter.run_probe_cycle()  # a healthy baseline first
        fake.set_fault("list", fault)
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_up") == 0
        assert s.value("pinference_probe_success", endpoint="list") == 0
        assert s.value("pinference_probe_http_status_code", endpoint="list") == status
        assert s.value("pinference_probes_total", endpoint="list") == 2
        expected = dict.fromkeys(REASONS, 0.0) | {reason: 1.0}
        assert failures(s, "list") == expected
        # The catalog keeps describing the last successful list.
        assert s.value("pinference_catalog_models") == len(fake.models)
        assert s.value("pinference_probe_duration_seconds_count", endpoint="list") == 2

        fake.clear_faults()
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_up") == 1
        assert s.value("pinference_probe_http_status_code", endpoint="list") == 200
        assert failures(s, "list") == expected  # recovery counts no failure


@pytest.mark.parametrize("name", [n for n in FAULTS if n != "404"])
def test_get_fault_on_watched_model_keeps_availability(fake: FakePinference, name: str) -> None:
    fault, reason, status, options = FAULTS[name]
    with make_exporter(fake.base_url, probe_models=(WATCHED,), **options) as exporter:
        exporter.run_probe_cycle()
        assert scrape(exporter).value("pinference_model_available", model=WATCHED) == 1
        fake.set_fault("get", fault)
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_up") == 1  # only the get endpoint is failing
        assert s.value("pinference_probe_success", endpoint="get") == 0
        assert s.value("pinference_probe_http_status_code", endpoint="get") == status
        assert failures(s, "get") == dict.fromkeys(REASONS, 0.0) | {reason: 1.0}
        # Not a 404: the API is unwell, the model is not gone (docs/metrics.md).
        assert s.value("pinference_model_available", model=WATCHED) == 1


def test_watched_model_404_sets_available_to_0_and_back(fake: FakePinference) -> None:
    missing = "nobody/missing-model"
    with make_exporter(fake.base_url, probe_models=(WATCHED, missing)) as exporter:
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_model_available", model=WATCHED) == 1
        assert s.value("pinference_model_available", model=missing) == 0
        assert s.value("pinference_probe_failures_total", endpoint="get", reason="not_found") == 1

        fake.set_fault("get", Fault(status=404))  # now the watched one disappears too
        exporter.run_probe_cycle()
        assert scrape(exporter).value("pinference_model_available", model=WATCHED) == 0

        fake.clear_faults()
        fake.set_models([*fake.models, {"id": missing, "object": "model"}])
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_model_available", model=WATCHED) == 1
        assert s.value("pinference_model_available", model=missing) == 1


def test_connection_refused_is_connection_error() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/api/v1"
    with make_exporter(base_url, probe_models=(WATCHED,)) as exporter:
        exporter.run_probe_cycle()
        s = scrape(exporter)
        for endpoint in ("list", "get"):
            assert (
                s.value(
                    "pinference_probe_failures_total", endpoint=endpoint, reason="connection_error"
                )
                == 1
            )
            assert s.value("pinference_probe_http_status_code", endpoint=endpoint) == 0
        assert s.value("pinference_up") == 0
        assert s.value("pinference_catalog_models") is None  # no successful list yet
        assert s.value("pinference_last_success_timestamp_seconds", endpoint="list") is None
        assert s.value("pinference_last_probe_timestamp_seconds", endpoint="list") > 0
        assert s.labelsets("pinference_model_available") == []  # unknown, not 0


# How late a timed-out probe may end: the probe timeout plus this. Measured on a 2-core
# machine (hang on list or get, 1s timeout): 60 runs beside other test suites (load 2.4-3)
# overshot by 2.5 ms median, 12 ms worst; 40 runs with both cores also kept busy by two
# spinning processes, 4.6 ms median, 43 ms worst. 0.3s is 7 times that worst case and
# still tells 1x the timeout (1.0s) from 2x (2.0s) and from 1.5x (1.5s).
TIMEOUT_SLACK = 0.3


# Servers that never finish: silent, or sending one byte every 0.3s (each byte well inside
# the read timeout) of the status line and headers, or of a small body.
SLOW_SERVERS = {
    "hang": Fault(mode="hang"),
    "drip-head": Fault(mode="drip", drip_part="head", drip_interval=0.3),
    "drip-body": Fault(mode="drip", drip_part="body", drip_interval=0.3),
}


@pytest.mark.parametrize("slow", list(SLOW_SERVERS))
@pytest.mark.parametrize("endpoint", ["list", "get"])
def test_a_timed_out_probe_ends_at_the_timeout(
    fake: FakePinference, endpoint: str, slow: str
) -> None:
    fake.set_fault(endpoint, SLOW_SERVERS[slow])
    with make_exporter(fake.base_url, probe_models=(WATCHED,), **FAST_TIMEOUT) as exporter:
        exporter.run_probe_cycle()
        s = scrape(exporter)
        took = s.value("pinference_probe_duration_seconds_sum", endpoint=endpoint)
        assert 1.0 <= took < 1.0 + TIMEOUT_SLACK, took  # the 1s budget, not the hang
        assert s.value("pinference_probe_failures_total", endpoint=endpoint, reason="timeout") == 1
        assert s.value("pinference_probe_duration_seconds_bucket", endpoint=endpoint, le="0.5") == 0
        assert s.value("pinference_probe_duration_seconds_bucket", endpoint=endpoint, le="2.5") == 1


def test_an_answer_later_than_the_timeout_is_a_timeout(fake: FakePinference) -> None:
    """An answer at 1.4x the timeout: a success if the read timeout were any longer."""
    fake.set_fault("list", Fault(delay=1.4))
    with make_exporter(fake.base_url, sample_size=0, **FAST_TIMEOUT) as exporter:
        started = time.monotonic()
        exporter.run_probe_cycle()
        took = time.monotonic() - started
        s = scrape(exporter)
    assert s.value("pinference_probe_failures_total", endpoint="list", reason="timeout") == 1
    assert s.value("pinference_up") == 0
    assert 1.0 <= took < 1.0 + TIMEOUT_SLACK, took


def test_empty_list_is_a_success_with_zero_models(fake: FakePinference) -> None:
    with make_exporter(fake.base_url) as exporter:
        exporter.run_probe_cycle()
        fake.set_fault("list", Fault(mode="empty"))
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_up") == 1
        assert s.value("pinference_catalog_models") == 0
        assert s.labelsets("pinference_models") == []
        assert s.labelsets("pinference_model_info") == []
        assert s.value("pinference_catalog_changes_total", change="removed") == len(fake.models)
        assert sum(failures(s, "list").values()) == 0


def test_rate_limit_honours_retry_after_and_counts_nothing_while_paused(
    fake: FakePinference,
) -> None:
    fake.set_fault("list", Fault(status=429, retry_after="1", times=1))
    with make_exporter(fake.base_url, probe_interval=0.5, probe_timeout=0.4) as exporter:
        assert exporter.run_probe_cycle()  # the 429
        assert exporter.prober.pause_remaining() > 0.5
        assert "Rate limited (429)" in _landing(exporter)
        requests_before = len(fake.requests)
        assert not exporter.run_probe_cycle()  # paused: skipped
        s = scrape(exporter)
        assert len(fake.requests) == requests_before  # nothing sent while paused
        assert s.value("pinference_probes_total", endpoint="list") == 1
        assert (
            s.value("pinference_probe_failures_total", endpoint="list", reason="rate_limited") == 1
        )
        assert s.value("pinference_probes_total", endpoint="get") == 0  # gets skipped too

        exporter.prober.start()  # the background loop resumes once Retry-After has passed
        wait_for(
            lambda: scrape(exporter).value("pinference_up") == 1, 15, "probing after Retry-After"
        )
        assert "Rate limited (429)" not in _landing(exporter)


def test_retry_after_is_capped_at_ten_intervals(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=429, retry_after="86400"))
    with make_exporter(fake.base_url, probe_interval=0.5, probe_timeout=0.4) as exporter:
        exporter.run_probe_cycle()
        assert 4.0 < exporter.prober.pause_remaining() <= 5.0


def test_429_on_a_get_skips_the_rest_of_the_cycle(fake: FakePinference) -> None:
    models = [f"openai/gpt-{i}" for i in range(6)]
    fake.set_models([{"id": m, "object": "model"} for m in models])
    fake.set_fault("get", Fault(status=429, retry_after="30"))
    with make_exporter(fake.base_url, probe_models=tuple(models), concurrency=1) as exporter:
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_probes_total", endpoint="get") == 1
        assert len(fake.requests_for("get")) == 1


def test_catalog_changes_are_counted_between_successful_lists(fake: FakePinference) -> None:
    first = [{"id": f"a/m{i}", "object": "model"} for i in range(4)]
    fake.set_models(first)
    with make_exporter(fake.base_url, sample_size=0) as exporter:
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_catalog_changes_total", change="added") == 0  # baseline
        fake.set_models([*first[1:], {"id": "b/new1", "object": "model"},
                         {"id": "b/new2", "object": "model"}])  # fmt: skip
        fake.set_fault("list", Fault(status=500, times=1))
        exporter.run_probe_cycle()  # a failure in between changes nothing
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_catalog_changes_total", change="added") == 2
        assert s.value("pinference_catalog_changes_total", change="removed") == 1
        assert s.value("pinference_models", owned_by="b") == 2
        assert s.value("pinference_catalog_models") == 5


def test_survives_every_fault_in_turn(fake: FakePinference) -> None:
    """All faults on every endpoint, one after another: the exporter keeps going."""
    with make_exporter(fake.base_url, probe_models=(WATCHED,), **FAST_TIMEOUT) as exporter:
        for fault, _, _, _ in FAULTS.values():
            fake.set_fault("*", fault)
            exporter.prober._pause_deadline = 0.0  # 429 pauses are tested elsewhere
            exporter.run_probe_cycle()
            scrape(exporter)
        fake.clear_faults()
        exporter.prober._pause_deadline = 0.0
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_up") == 1
        assert s.value("pinference_probes_total", endpoint="list") == len(FAULTS) + 1
        assert s.value("pinference_model_available", model=WATCHED) == 1


def _landing(exporter: Exporter) -> str:
    import requests

    return requests.get(exporter.url + "/", timeout=10).text


def test_the_next_cycle_starts_on_time_after_a_timed_out_probe(fake: FakePinference) -> None:
    """Cycles start every interval from the previous start, not from its end: a probe that
    runs into its timeout does not push the schedule back."""
    fake.set_fault("list", Fault(mode="hang"))
    config = {"probe_interval": 1.0, "probe_timeout": 0.8, "sample_size": 0, "jitter": 0.0}
    with make_exporter(fake.base_url, **config) as exporter:
        exporter.prober.start()
        wait_for(lambda: len(fake.requests_for("list")) >= 4, what="four cycles")
    starts = [r.time for r in fake.requests_for("list")][:4]
    # Never sooner than the schedule (lateness only moves a start later), and three cycles
    # counted from each start take ~3 s, where counted from each end they take >= 5.4 s.
    assert all(t >= starts[0] + k * 1.0 - 0.05 for k, t in enumerate(starts)), starts
    assert starts[3] - starts[0] < 3 * 1.8, starts


def test_listed_ids_that_would_leave_models_are_never_requested(fake: FakePinference) -> None:
    """A listed id with a dot segment stays in the catalog metrics but is never sampled."""
    hostile = ["..", "a/../../admin", "%2e%2e/users"]
    fake.set_models([{"id": i, "object": "model"} for i in [*hostile, "ok/model"]])
    with make_exporter(fake.base_url, sample_size=4) as exporter:
        exporter.run_probe_cycle()
        exporter.run_probe_cycle()
        s = scrape(exporter)
    gets = [r.raw_path for r in fake.requests if r.endpoint != "list"]
    assert gets == ["/api/v1/models/ok/model"] * 2, gets
    assert s.value("pinference_catalog_models") == 4
    assert s.value("pinference_probe_failures_total", endpoint="get", reason="client_error") == 0
