"""The probe schedule as the exporter runs it: the rotating sample, bounded concurrency of
the get probes, cycles that never overlap, and jitter."""

from __future__ import annotations

import itertools
import time

from pinference_exporter import ExporterConfig
from pinference_exporter.config import AccountConfig

from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import make_exporter, scrape, wait_for


def test_rotating_sample_exercises_get_without_availability_series(fake: FakePinference) -> None:
    ids = {m["id"] for m in fake.models}
    with make_exporter(fake.base_url, sample_size=3) as exporter:
        for _ in range(4):  # 4 x 3 >= 11 models: the rotation covers the whole catalog
            exporter.run_probe_cycle()
        s = scrape(exporter)
        assert s.value("pinference_probes_total", endpoint="get") == 12
        assert s.labelsets("pinference_model_available") == []
    probed = {r.path.removeprefix("/api/v1/models/") for r in fake.requests_for("get")}
    assert probed == ids


def test_get_probes_run_with_bounded_concurrency(fake: FakePinference) -> None:
    models = tuple(m["id"] for m in fake.models[:4])
    fake.set_fault("get", Fault(delay=1.0))

    def cycle_time(concurrency: int) -> float:
        with make_exporter(fake.base_url, probe_models=models, concurrency=concurrency) as exp:
            started = time.monotonic()
            exp.run_probe_cycle()
            elapsed = time.monotonic() - started
            assert scrape(exp).value("pinference_probes_total", endpoint="get") == 4
            return elapsed

    assert cycle_time(2) >= 1.95  # 4 gets, 2 at a time: two rounds of 1s
    assert cycle_time(4) < 3.5  # in parallel (one at a time would take 4s)


def test_background_loop_never_overlaps_itself(fake: FakePinference) -> None:
    models = tuple(m["id"] for m in fake.models[:3])
    fake.set_fault("get", Fault(delay=0.2))
    # Each cycle (list + 3 sequential 0.2s gets) outlasts the 0.3s interval.
    with make_exporter(
        fake.base_url, probe_models=models, concurrency=1, probe_interval=0.3, probe_timeout=0.25
    ) as exporter:
        exporter.prober.start()
        wait_for(lambda: len(fake.requests_for("list")) >= 4, what="four cycles")
        exporter.stop()
    endpoints = [r.endpoint for r in fake.requests]
    cycles = len(endpoints) // 4
    assert endpoints[: cycles * 4] == ["list", "get", "get", "get"] * cycles


def test_jitter_delays_each_cycle_by_up_to_a_share_of_the_interval(
    fake: FakePinference,
) -> None:
    from pinference_exporter.prober import Prober
    from pinference_exporter.state import ProbeState

    calls: list[tuple[float, float]] = []

    class Highest:  # always the longest jitter allowed
        def uniform(self, low: float, high: float) -> float:
            calls.append((low, high))
            return high

    account = AccountConfig(base_url=fake.base_url, sample_size=0)
    config = ExporterConfig(probe_interval=0.5, probe_timeout=0.4, jitter=0.5)
    prober = Prober(config, account, ProbeState(), rng=Highest())  # type: ignore[arg-type]
    prober.start()
    try:
        wait_for(lambda: len(fake.requests_for("list")) >= 3, what="three cycles")
    finally:
        prober.stop()
    assert calls[0] == (0, 0.25)  # up to 50% of 0.5s here; 10% (DEFAULT_JITTER) by default
    times = [r.time for r in fake.requests_for("list")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.7 for gap in gaps), gaps  # 0.5s + 0.25s of jitter: never sooner
    assert ExporterConfig().jitter == 0.1
