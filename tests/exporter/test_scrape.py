"""Scrapes are served pre-rendered: the bytes must be what prometheus_client renders afresh
from the same registry, in every format and encoding, before and after every kind of state
change (probes, several accounts, reloads that remove an account or fail), with process_*
read per scrape, and under concurrent scrapes while the state changes.

The process_* families read a fake /proc here, so two renders of the same state are
byte-identical and can be compared whole.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from pinference_exporter import Exporter, ExporterConfig
from pinference_exporter.config import AccountConfig, ConfigError
from pinference_exporter.exposition import MAX_VARIANTS
from pinference_exporter.state import ProbeState
from pinference_exporter.webconfig import load_web_config
from prometheus_client import ProcessCollector, generate_latest, make_wsgi_app
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from llm_pinference.core.models import ModelInfo
from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import SECRET, bcrypt_hash, make_certificate

WATCHED = "meta-llama/llama-3.1-70b-instruct"
PROMETHEUS_2 = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # fmt: skip
ACCEPTS = (
    None,
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    PROMETHEUS_2,
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0;escaping=underscores",
    "text/plain;version=1.0.0;escaping=allow-utf-8",  # Prometheus 3
    "text/html,application/xhtml+xml",  # a browser
)
ENCODINGS = (None, "gzip", "identity", "deflate, gzip;q=0.5")
PID = 4242
PROBES = "pinference_probes_total"

Answer = tuple[str, dict[str, str], bytes]


# --- a /proc to read process_* from, changed at will ---------------------------------


class FakeProc:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / str(PID) / "fd").mkdir(parents=True)
        (root / "stat").write_text("cpu  1 2 3 4\nbtime 1700000000\n")
        (root / str(PID) / "limits").write_text(
            "Limit                     Soft Limit           Hard Limit           Units\n"
            "Max open files            1024                 4096                 files\n"
        )
        for fd in range(3):
            (root / str(PID) / "fd" / str(fd)).touch()
        self.set_cpu(100)

    def set_cpu(self, ticks: int) -> None:
        fields = ["S"] + ["0"] * 43  # what follows "(comm)" in /proc/PID/stat
        fields[11], fields[12] = str(ticks), "7"  # utime, stime
        fields[19], fields[20], fields[21] = "500", "123456789", "2048"  # start, vsize, rss
        (self.root / str(PID) / "stat").write_text(f"{PID} (python3) {' '.join(fields)}\n")

    def collector(self) -> ProcessCollector:
        return ProcessCollector(pid=lambda: PID, proc=str(self.root), registry=None)


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


@pytest.fixture
def other() -> Iterator[FakePinference]:
    """A second API (for an account whose probes fail while the others succeed)."""
    with FakePinference() as server:
        yield server


def accounts_config(fake: FakePinference, other: FakePinference, *names: str) -> ExporterConfig:
    known = {
        "alpha": AccountConfig(name="alpha", base_url=fake.base_url,
                               probe_models=(WATCHED, "no/such-model")),
        "beta": AccountConfig(name="beta", base_url=fake.base_url, api_key=SECRET,
                              sample_size=2),
        "gamma": AccountConfig(name="gamma", base_url=other.base_url, sample_size=1),
    }  # fmt: skip
    return ExporterConfig(accounts=tuple(known[n] for n in names), listen_address="127.0.0.1:0",
                          probe_interval=30.0, probe_timeout=10.0)  # fmt: skip


# --- one request, served or rendered afresh ------------------------------------------


def call(app: Callable[..., Any], accept: str | None, encoding: str | None, query: str = "",
         method: str = "GET") -> Answer:  # fmt: skip
    environ = {"REQUEST_METHOD": method, "PATH_INFO": "/metrics", "QUERY_STRING": query}
    if accept is not None:
        environ["HTTP_ACCEPT"] = accept
    if encoding is not None:
        environ["HTTP_ACCEPT_ENCODING"] = encoding
    answer: list[Any] = []
    body = b"".join(app(environ, lambda status, headers, *exc: answer.extend([status, headers])))
    status, headers = answer
    return status, dict(headers), body


def served(exporter: Exporter, accept: str | None = None, encoding: str | None = None,
           query: str = "") -> Answer:  # fmt: skip
    return call(exporter.app, accept, encoding, query)


def fresh(exporter: Exporter, accept: str | None = None, encoding: str | None = None,
          query: str = "") -> Answer:  # fmt: skip
    """What prometheus_client's own app renders from the exporter's registry, now."""
    return call(make_wsgi_app(exporter.registry), accept, encoding, query)


def content(answer: Answer) -> bytes:
    _, headers, body = answer
    return gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body


def assert_every_variant_fresh(exporter: Exporter) -> bytes:
    """Every format and encoding, served twice (rendered, then from the cache), equals a
    fresh render; returns the text format."""
    for accept in ACCEPTS:
        for encoding in ENCODINGS:
            want = fresh(exporter, accept, encoding)
            for _ in range(2):
                got = served(exporter, accept, encoding)
                assert got[:2] == want[:2], (accept, encoding)
                assert content(got) == content(want), (accept, encoding)
                if got[1].get("Content-Encoding") == "gzip":  # one gzip member, nothing after
                    stream = zlib.decompressobj(31)
                    assert stream.decompress(got[2]) == content(want)
                    assert stream.eof and not stream.unused_data
    text = served(exporter)[2]
    assert text == generate_latest(exporter.registry)
    assert served(exporter, "application/openmetrics-text")[2] == openmetrics.generate_latest(
        exporter.registry
    )
    assert content(served(exporter, PROMETHEUS_2, "gzip")) == openmetrics.generate_latest(
        exporter.registry
    )
    assert exporter.scrape().encode() == text
    return text


def value(text: bytes, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


# --- the tests -------------------------------------------------------------------------


def test_served_bytes_equal_a_fresh_render_through_every_kind_of_change(
    fake: FakePinference, other: FakePinference, proc: FakeProc
) -> None:
    configs = [accounts_config(fake, other, "alpha", "beta", "gamma"),
               accounts_config(fake, other, "alpha", "gamma")]  # fmt: skip
    loads: list[ExporterConfig | ConfigError] = [configs[1], ConfigError("bad: line 1")]

    def loader() -> ExporterConfig:
        loaded = loads.pop(0)
        if isinstance(loaded, ConfigError):
            raise loaded
        return loaded

    exporter = Exporter(configs[0], loader=loader, process=proc.collector())
    seen = [assert_every_variant_fresh(exporter)]  # before any probe

    def changed() -> bytes:
        text = assert_every_variant_fresh(exporter)
        assert text != seen[-1]  # the change shows: the cache was renewed
        seen.append(text)
        return text

    exporter.run_probe_cycle()
    text = changed()
    assert value(text, "pinference_model_available", account="alpha", model=WATCHED) == 1
    exporter.run_probe_cycle()
    assert value(changed(), PROBES, account="beta", endpoint="get") == 4

    other.set_fault("list", Fault(status=503))  # one account fails, the others do not
    fake.set_models([m for m in fake.models if m["id"] != WATCHED])  # a catalog change
    exporter.run_probe_cycle()
    text = changed()
    assert value(text, "pinference_up", account="gamma") == 0
    assert value(text, "pinference_up", account="alpha") == 1
    assert value(text, "pinference_catalog_changes_total", account="beta", change="removed") == 1

    exporter.reload()  # removes beta
    text = changed()
    assert value(text, "pinference_up", account="beta") is None
    assert value(text, PROBES, account="alpha", endpoint="list") == 3

    with pytest.raises(ConfigError):
        exporter.reload()  # fails: nothing changes but the reload status
    text = changed()
    assert value(text, "pinference_exporter_config_last_reload_successful") == 0


def test_process_metrics_are_read_for_each_scrape(
    fake: FakePinference, proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    readings = count_readings(monkeypatch)
    exporter = Exporter(accounts_config(fake, fake, "alpha"), process=proc.collector())
    exporter.run_probe_cycle()
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    for accept in (None, "application/openmetrics-text"):
        for encoding in (None, "gzip"):
            served(exporter, accept, encoding)  # rendered: the state is not read again below
            for ticks in (100, 250, 1000):
                proc.set_cpu(ticks)
                before = readings()
                text = content(served(exporter, accept, encoding))
                assert readings() == before
                assert text == content(fresh(exporter, accept, encoding))
                cpu = floatToGoString((ticks + 7) / ticks_per_second)
                assert f"\nprocess_cpu_seconds_total {cpu}\n".encode() in text, text[-600:]
    assert value(served(exporter)[2], "process_open_fds") == 3


def count_readings(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Counts the exporter's readings of its state (one per render of the probe families);
    patch before the Exporter is made."""
    calls = [0]
    reading = Exporter._reading

    def counted(self: Exporter) -> Any:
        calls[0] += 1
        return reading(self)

    monkeypatch.setattr(Exporter, "_reading", counted)
    return lambda: calls[0]


def test_rendered_once_per_state_change_and_format(
    fake: FakePinference, proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    readings = count_readings(monkeypatch)
    exporter = Exporter(accounts_config(fake, fake, "alpha", "beta"), process=proc.collector())
    for _ in range(2):
        exporter.run_probe_cycle()
        before = readings()
        for _ in range(5):
            for encoding in ENCODINGS:
                served(exporter, None, encoding)
                served(exporter, PROMETHEUS_2, encoding)
        assert readings() - before == 2  # text and OpenMetrics, once each; gzip reuses them
    exporter.state.count_cycle()  # any change of any account renders again
    served(exporter)
    served(exporter)
    assert readings() - before == 3

    # The OpenMetrics version is the client's to choose, and each is a content type: past
    # the cap, a request is rendered whole each time, as without a cache, and still right.
    cached = {choose_encoder(None)[1]}
    expected, before = 0, readings()
    for minor in range(MAX_VARIANTS + 4):
        accept = f"application/openmetrics-text;version=1.{minor}.0"
        content_type = choose_encoder(accept)[1]
        if content_type not in cached and len(cached) < MAX_VARIANTS:
            cached.add(content_type)
            expected += 1
        elif content_type not in cached:
            expected += 2
        for _ in range(2):
            assert served(exporter, accept) == fresh(exporter, accept)
        expected += 2  # the fresh renders
    assert readings() - before == expected


def test_a_probe_is_never_hidden_by_the_cache(fake: FakePinference, proc: FakeProc) -> None:
    exporter = Exporter(accounts_config(fake, fake, "alpha"), process=proc.collector())
    for cycle in range(1, 4):
        exporter.run_probe_cycle()
        for accept in (None, PROMETHEUS_2):
            for encoding in (None, "gzip"):
                text = content(served(exporter, accept, encoding))
                assert value(text, PROBES, account="alpha", endpoint="list") == cycle


def test_name_filter_is_rendered_fresh(fake: FakePinference, proc: FakeProc) -> None:
    exporter = Exporter(accounts_config(fake, fake, "alpha"), process=proc.collector())
    exporter.run_probe_cycle()
    served(exporter)  # cached before the change below
    exporter.run_probe_cycle()
    query = "name[]=pinference_probes_total&name[]=process_open_fds"
    for accept in (None, "application/openmetrics-text"):
        for encoding in (None, "gzip"):
            got = served(exporter, accept, encoding, query)
            assert got[:2] == fresh(exporter, accept, encoding, query)[:2]
            assert content(got) == content(fresh(exporter, accept, encoding, query))
    text = served(exporter, query=query)[2]
    assert value(text, PROBES, account="alpha", endpoint="list") == 2
    assert value(text, "process_open_fds") == 3
    assert value(text, "pinference_up", account="alpha") is None


def test_every_change_of_a_snapshot_changes_the_generation(fake: FakePinference) -> None:
    """Whatever a snapshot shows (what the families are built from), a change of it must
    change the generation, whichever probe outcome or reload caused it."""
    exporter = Exporter(accounts_config(fake, fake, "alpha"))
    state = exporter.state
    previous = (state.generation, state.snapshot())
    steps: list[Callable[[], object]] = [
        exporter.run_probe_cycle,
        exporter.run_probe_cycle,
        lambda: fake.set_fault("*", Fault(status=500)),
        exporter.run_probe_cycle,
        lambda: fake.set_fault("*", Fault(status=429, retry_after="0")),
        exporter.run_probe_cycle,
        fake.clear_faults,
        lambda: fake.set_models(fake.models[:3]),
        exporter.run_probe_cycle,
        lambda: state.record("get", 0.2, time.time(), status=404, reason="not_found"),
        lambda: state.record_catalog([ModelInfo(id="a/b", owned_by="a")], time.time()),
        lambda: state.set_available(WATCHED, 0),
        lambda: state.keep_available(()),
        lambda: state.set_paused_until(time.time() + 60),
        lambda: state.set_paused_until(None),
        state.count_cycle,
    ]
    changes = 0
    for step in steps:
        step()
        now = (state.generation, state.snapshot())
        if now[1] != previous[1]:
            changes += 1
            assert now[0] > previous[0], step
        previous = now
    assert changes >= 10


def test_the_reload_status_and_a_new_config_show_at_once(
    fake: FakePinference, proc: FakeProc
) -> None:
    exporter = Exporter(accounts_config(fake, fake, "alpha"), process=proc.collector())
    assert value(served(exporter)[2], "pinference_exporter_config_last_reload_successful") == 1
    exporter.reload_status.record("a bad web config")  # what the web config watcher reports
    assert value(served(exporter)[2], "pinference_exporter_config_last_reload_successful") == 0
    before = exporter.generation()
    exporter.apply(replace(accounts_config(fake, fake, "alpha"), probe_interval=45.0))
    assert exporter.generation() != before
    assert value(served(exporter)[2], "pinference_probe_interval_seconds") == 45
    assert_every_variant_fresh(exporter)


def test_concurrent_scrapes_during_changes_are_whole_and_end_current(
    fake: FakePinference, proc: FakeProc
) -> None:
    exporter = Exporter(accounts_config(fake, fake, "alpha", "beta"), process=proc.collector())
    exporter.run_probe_cycle()
    state: ProbeState = exporter.state
    stop = threading.Event()
    errors: list[str] = []
    counts = [0]
    variants = [(None, None), (None, "gzip"), (PROMETHEUS_2, None), (PROMETHEUS_2, "gzip")]

    def scraper(accept: str | None, encoding: str | None) -> None:
        last = 0.0
        while not stop.is_set():
            text = content(served(exporter, accept, encoding)).decode()
            parse = text_string_to_metric_families if accept is None else openmetrics_families
            families = {f.name: f for f in parse(text)}
            probes = [s.value for s in families["pinference_probes"].samples
                      if s.labels == {"account": "alpha", "endpoint": "list"}
                      and s.name.endswith("_total")]  # fmt: skip
            if len(families) != expected or len(probes) != 1 or probes[0] < last:
                errors.append(f"{accept} {encoding}: {len(families)} families, {probes}")
                return
            last = probes[0]
            counts[0] += 1

    expected = len(list(text_string_to_metric_families(exporter.scrape())))
    threads = [threading.Thread(target=scraper, args=v) for v in variants * 2]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not errors:
        state.record("list", 0.01, time.time(), status=200)  # a state change per ~ms
        time.sleep(0.001)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors[:3]
    assert counts[0] >= 20  # scrapes overlapped many changes
    assert_every_variant_fresh(exporter)  # and nothing was left stale


def test_over_https_with_basic_auth_and_headers(
    fake: FakePinference, proc: FakeProc, tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        f"basic_auth_users:\n  prom: '{bcrypt_hash('pw')}'\n"
    )
    accounts = accounts_config(fake, fake, "alpha").accounts
    config = ExporterConfig(accounts=accounts, listen_address="127.0.0.1:0",
                            web=load_web_config(str(web)))  # fmt: skip
    with Exporter(config, process=proc.collector()).start(probe=False) as exporter:
        exporter.run_probe_cycle()
        url, auth = exporter.metrics_url, ("prom", "pw")
        headers = {"Accept": PROMETHEUS_2, "Accept-Encoding": "gzip"}
        denied = requests.get(url, headers=headers, verify=str(cert), timeout=10)
        assert denied.status_code == 401 and denied.headers["X-Frame-Options"] == "deny"
        for method in ("GET", "HEAD"):  # twice each: rendered, then cached
            for _ in range(2):
                answer = requests.request(method, url, headers=headers, auth=auth,
                                          verify=str(cert), timeout=10, stream=True)  # fmt: skip
                raw = answer.raw.read(decode_content=False)
                assert answer.status_code == 200
                assert answer.headers["X-Frame-Options"] == "deny"
                assert answer.headers["Content-Encoding"] == "gzip"
                assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
                want = fresh(exporter, PROMETHEUS_2, "gzip")
                assert answer.headers["Content-Type"] == want[1]["Content-Type"]
                if method == "GET":
                    assert gzip.decompress(raw) == content(want)
                    length = len(raw)
                else:
                    assert raw == b"" and int(answer.headers["Content-Length"]) == length
