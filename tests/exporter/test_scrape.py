"""What a scrape of the telemetry path serves: prometheus_client's exposition (formats,
gzip, the name[] filter), the contract's families before any probe, escaped label values,
the series cap, the build info; and a scrape never waits for a probe."""

from __future__ import annotations

import gzip
import platform
import shutil
import subprocess
import time

import pytest
import requests
from pinference_exporter import Exporter
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from pinference_fake import FakePinference, Fault, generate_catalogue
from tests.exporter.helpers import ROOT, make_exporter, scrape, wait_for


def get(exporter: Exporter, path: str, **kwargs: object) -> requests.Response:
    return requests.get(exporter.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_metrics_negotiate_gzip_and_openmetrics(fake: FakePinference) -> None:
    with make_exporter(fake.base_url) as exporter:
        exporter.run_probe_cycle()
        zipped = requests.get(
            exporter.metrics_url, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10
        )
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert b'pinference_up{account="default"} 1.0' in gzip.decompress(zipped.raw.read())
        om = get(exporter, "/metrics", headers={"Accept": "application/openmetrics-text"})
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        families = {f.name: f for f in openmetrics_families(om.text)}
        assert families["pinference_probes"].type == "counter"
        assert families["pinference_probe_duration_seconds"].type == "histogram"
        assert families["pinference_exporter_build_info"].samples[0].value == 1
        # the same text as prometheus_client's own, but for what moves between two calls
        # (the process' CPU and memory, the garbage collector's counts)
        moving = ("process_", "python_gc_")

        def steady(text: str) -> list[str]:
            return [line for line in text.splitlines() if not any(m in line for m in moving)]

        assert steady(exporter.scrape()) == steady(generate_latest(exporter.registry).decode())
        only = get(exporter, "/metrics?name[]=pinference_up&name[]=process_open_fds").text
        names = {f.name for f in text_string_to_metric_families(only)}
        assert names == {"pinference_up", "process_open_fds"}


def test_every_reason_is_preset_and_histogram_uses_the_contract_buckets(
    fake: FakePinference,
) -> None:
    with make_exporter(fake.base_url) as exporter:
        s = scrape(exporter)  # before any probe
        assert len(s.samples("pinference_probe_failures_total")) == 2 * 10
        assert all(v.value == 0 for v in s.samples("pinference_probe_failures_total"))
        buckets = [x.labels["le"] for x in s.samples("pinference_probe_duration_seconds_bucket")
                   if x.labels["endpoint"] == "list"]  # fmt: skip
        assert buckets == ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5",
                           "5.0", "10.0", "30.0", "+Inf"]  # fmt: skip
        assert s.value("pinference_up") == 0
        assert s.value("pinference_probe_success", endpoint="list") is None
        assert s.value("pinference_catalog_models") is None
        assert s.value("pinference_probe_interval_seconds") == 30
        version = s.labelsets("pinference_exporter_build_info")[0]["version"]
        assert version and s.value("pinference_exporter_build_info") == 1
        assert "exporter's own interval" in s.families["pinference_up"].documentation


def test_label_values_are_escaped(fake: FakePinference) -> None:
    odd = 'we"ird\\id\nnext/ü-模型:beta'
    fake.set_models([{"id": odd, "object": "model", "owned_by": 'o"w\\n', "display_name": "a\nb"}])
    with make_exporter(fake.base_url, probe_models=(odd,)) as exporter:
        exporter.run_probe_cycle()
        s = scrape(exporter)
        (info,) = s.labelsets("pinference_model_info")
        assert info == {"account": "default", "model": odd, "owned_by": 'o"w\\n',
                        "display_name": "a\nb", "serving": ""}  # fmt: skip
        assert s.value("pinference_model_available", model=odd) == 1  # the GET found it
        assert s.value("pinference_models", owned_by='o"w\\n') == 1


def test_model_series_are_capped_with_the_dropped_count(fake: FakePinference) -> None:
    fake.set_models(generate_catalogue(50))  # 50 models from 17 owners
    with make_exporter(fake.base_url, max_series=10, sample_size=0) as exporter:
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert len(s.samples("pinference_model_info")) == 10
        assert s.value("pinference_model_series_dropped") == 40
        assert s.value("pinference_catalog_models") == 50
        owners = s.samples("pinference_models")
        assert len(owners) == 11 and s.value("pinference_models", owned_by="(other)") > 0
        assert sum(o.value for o in owners) == 50


def test_a_scrape_never_waits_for_a_probe(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(mode="hang"))
    with make_exporter(fake.base_url, probe_interval=20.0, probe_timeout=10.0) as exporter:
        exporter.prober.start()
        wait_for(lambda: fake.requests_for("list"), what="the hanging list probe")
        started = time.monotonic()
        s = scrape(exporter)
        assert time.monotonic() - started < 2.0
        assert s.value("pinference_probes_total", endpoint="list") == 0  # still in flight
        assert get(exporter, "/-/ready").status_code == 503


def test_build_info(fake: FakePinference) -> None:
    with make_exporter(fake.base_url) as exporter:
        (labels,) = scrape(exporter).labelsets("pinference_exporter_build_info")
    from llm_pinference import __version__

    assert labels["version"] == __version__
    assert labels["pythonversion"] == platform.python_version()
    git = shutil.which("git")
    head = subprocess.run([git, "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, timeout=10, check=False) if git else None  # fmt: skip
    if head is None or head.returncode != 0:
        pytest.skip("not a git checkout: the revision is unknown")
    assert labels["revision"] == head.stdout.strip()
