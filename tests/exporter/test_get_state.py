"""The get endpoint's state when its models disagree: one watched model missing and another
present, or a rotating sample that meets a failing model now and then. The endpoint's
success and status stay put from cycle to cycle, and the log says what changed, per model."""

from __future__ import annotations

import logging
import time

import pytest
from pinference_exporter.state import ProbeState

from pinference_fake import FakePinference
from tests.exporter.helpers import make_exporter, scrape

MISSING = "nobody/missing-model"


def endpoint_state(exporter: object) -> tuple[float | None, float | None]:
    s = scrape(exporter)  # type: ignore[arg-type]
    return (
        s.value("pinference_probe_success", endpoint="get"),
        s.value("pinference_probe_http_status_code", endpoint="get"),
    )


def get_changes(caplog: pytest.LogCaptureFixture) -> list[tuple[str, object]]:
    """The get probe changes logged at INFO and above: (message, model)."""
    return [
        (r.getMessage(), r.kv.get("model"))  # type: ignore[attr-defined]
        for r in caplog.records
        if r.levelno >= logging.INFO and getattr(r, "kv", {}).get("endpoint") == "get"
    ]


# (missing first?, concurrency): one at a time in either order (the last probe of a cycle
# is the present model's, or the missing one's), or both at once (either finishes last).
@pytest.mark.parametrize(("missing_first", "concurrency"), [(True, 1), (False, 1), (True, 2)])
def test_a_missing_and_a_present_watched_model_hold_the_endpoint_still(
    fake: FakePinference, caplog: pytest.LogCaptureFixture, missing_first: bool, concurrency: int
) -> None:
    present = fake.models[0]["id"]
    models = (MISSING, present) if missing_first else (present, MISSING)
    caplog.set_level(logging.DEBUG, logger="pinference_exporter")
    with make_exporter(fake.base_url, probe_models=models, concurrency=concurrency) as exporter:
        seen = set()
        for _ in range(6):
            exporter.run_probe_cycle()
            seen.add(endpoint_state(exporter))
        assert seen == {(0.0, 404.0)}  # not 200 on one cycle and 404 on the next
        assert scrape(exporter).value("pinference_probes_total", endpoint="get") == 12
        assert get_changes(caplog) == [("probe failed", MISSING)]

        caplog.clear()
        fake.set_models([*fake.models, {"id": MISSING, "object": "model"}])
        for _ in range(3):
            exporter.run_probe_cycle()
            assert endpoint_state(exporter) == (1.0, 200.0)
        assert get_changes(caplog) == [("probe recovered", MISSING)]


def test_the_first_failing_model_other_than_a_404_speaks_for_the_endpoint() -> None:
    state = ProbeState()
    now = time.time()
    state.record("get", 0.1, now, status=404, reason="not_found", model="a")
    state.record("get", 0.1, now, status=403, reason="forbidden", model="c")
    state.record("get", 0.1, now, status=500, reason="server_error", model="b")
    stats = state.snapshot().endpoints["get"]
    # b before c (by id); the 404 of a only when nothing else fails: a missing model is
    # pinference_model_available's to tell.
    assert (stats.success, stats.status_code, stats.last_reason) == (False, 500, "server_error")
    state.record("get", 0.1, now, status=200, model="b")
    assert state.snapshot().endpoints["get"].status_code == 403
    state.record("get", 0.1, now, status=200, model="c")
    assert state.snapshot().endpoints["get"].status_code == 404
    state.keep_get_models(["b", "c"])  # a is no longer listed: forgotten
    stats = state.snapshot().endpoints["get"]
    assert (stats.success, stats.status_code, stats.last_reason) == (True, 200, None)
    assert stats.probes == 5 and stats.failures["not_found"] == 1  # every probe counted


def test_a_rotating_sample_does_not_flap_on_a_model_that_always_fails() -> None:
    listed = ["a", "b", "c", "d", "e"]
    state = ProbeState()
    state.keep_get_models(listed)
    seen, cursor = [], 0
    for cycle in range(10):  # 2 per cycle rotating through 5: c comes round every 2.5 cycles
        for i in range(2):
            model = listed[(cursor + i) % len(listed)]
            failing = model == "c"
            state.record("get", 0.1, float(cycle), status=404 if failing else 200,
                         reason="not_found" if failing else None, model=model)  # fmt: skip
        cursor += 2
        state.keep_get_models(listed)
        stats = state.snapshot().endpoints["get"]
        seen.append((stats.success, stats.status_code))
    first_seen = seen.index((False, 404))  # once c has been probed ...
    assert set(seen[first_seen:]) == {(False, 404)}  # ... it counts until probed again
