"""The web side: routes, readiness, negotiation, escaping, caps, TLS, basic auth, binding."""

from __future__ import annotations

import gzip
import itertools
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import requests
from pinference_exporter import Exporter, ExporterConfig
from pinference_exporter.config import AccountConfig
from pinference_exporter.webconfig import load_web_config
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from pinference_fake import FakePinference, Fault, generate_catalogue
from tests.exporter.helpers import (
    PW_HASH,
    SECRET,
    make_certificate,
    make_exporter,
    scrape,
    wait_for,
)
from tests.support import free_port as closed_port


def get(exporter: Exporter, path: str, **kwargs: object) -> requests.Response:
    return requests.get(exporter.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_routes_and_readiness(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=503))
    with make_exporter(fake.base_url) as exporter:
        assert get(exporter, "/-/healthy").status_code == 200
        assert get(exporter, "/-/ready").status_code == 503  # no list probe yet
        assert get(exporter, "/nope").status_code == 404
        assert get(exporter, "/metrics/extra").status_code == 404
        assert requests.post(exporter.url + "/-/ready", timeout=10).status_code == 405
        exporter.run_probe_cycle()  # a failed list still makes the exporter ready
        assert get(exporter, "/-/ready").status_code == 200
        assert scrape(exporter).value("pinference_up") == 0


def test_landing_page_shows_the_target_and_the_last_probes_but_no_secret(
    fake: FakePinference,
) -> None:
    fake.require_key = SECRET
    with make_exporter(fake.base_url, api_key=SECRET, telemetry_path="/probe/metrics") as exporter:
        before = get(exporter, "/").text
        assert "not probed yet" in before
        fake.set_fault("get", Fault(status=402))
        exporter.run_probe_cycle()
        page = get(exporter, "/")
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        text = page.text
        assert 'href="/probe/metrics"' in text
        assert fake.base_url in text and SECRET not in text
        assert "payment_required" in text and "11 model(s)" in text
        assert get(exporter, "/probe/metrics").status_code == 200
        assert get(exporter, "/metrics").status_code == 404
    # The key did reach the API: the fake answered 200 to the list.
    assert fake.requests_for("list")[0].header("authorization") == f"Bearer {SECRET}"


def test_user_info_in_the_base_url_is_never_shown() -> None:
    url = f"http://user:hunter2@127.0.0.1:{closed_port()}/api/v1"
    with make_exporter(url) as exporter:
        exporter.run_probe_cycle()
        text = get(exporter, "/").text
        assert "connection_error" in text
        assert "hunter2" not in text and "http://127.0.0.1:" in text
        assert "hunter2" not in repr(exporter)


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


def test_every_reason_is_preset_and_histogram_uses_the_contract_buckets(
    fake: FakePinference,
) -> None:
    with make_exporter(fake.base_url) as exporter:
        s = scrape(exporter)  # before any probe
        assert len(s.samples("pinference_probe_failures_total")) == 2 * 10
        assert all(v.value == 0 for v in s.samples("pinference_probe_failures_total"))
        buckets = [x.labels["le"] for x in s.samples("pinference_probe_duration_seconds_bucket")
                   if x.labels["endpoint"] == "list"]  # fmt: skip
        assert buckets == ["0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0",
                           "+Inf"]  # fmt: skip
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


def test_listen_on_ipv6_loopback(fake: FakePinference) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with make_exporter(fake.base_url, listen_address="[::1]:0") as exporter:
        assert exporter.url.startswith("http://[::1]:")
        assert get(exporter, "/-/healthy").status_code == 200


def test_listen_on_every_interface(fake: FakePinference) -> None:
    with make_exporter(fake.base_url, listen_address=":0") as exporter:
        port = exporter.port
        response = requests.get(f"http://127.0.0.1:{port}/-/healthy", timeout=10)
        assert response.status_code == 200


# --- TLS and basic auth ---------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (also usable as its own CA)."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_tls_from_flags(fake: FakePinference, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    web = load_web_config(None, str(cert), str(key))
    with make_exporter(fake.base_url, web=web) as exporter:
        assert exporter.url.startswith("https://")
        assert get(exporter, "/-/healthy", verify=str(cert)).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            get(exporter, "/-/healthy")  # not trusted without the CA
        plain = exporter.url.replace("https://", "http://")
        with pytest.raises(requests.exceptions.ConnectionError) as refused:
            requests.get(plain + "/-/healthy", timeout=10)
        assert refused.type is requests.exceptions.ConnectionError  # dropped, not an SSLError
        assert get(exporter, "/-/healthy", verify=str(cert)).status_code == 200  # still serving


def test_tls_client_certificates_and_basic_auth_from_web_config(
    fake: FakePinference, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    config = tmp_path / "web.yml"
    config.write_text(
        "tls_server_config:\n"
        f"  cert_file: {cert}\n  key_file: {key}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {cert}\n  min_version: TLS12\n"
        f"basic_auth_users:\n  prom: '{PW_HASH}'\n"
    )
    web = load_web_config(str(config))
    with make_exporter(fake.base_url, web=web) as exporter:
        with pytest.raises(requests.exceptions.SSLError):
            get(exporter, "/-/healthy", verify=str(cert))  # no client certificate
        client = {"verify": str(cert), "cert": (str(cert), str(key))}
        assert get(exporter, "/-/healthy", **client).status_code == 401
        denied = get(exporter, "/metrics", auth=("prom", "wrong"), **client)
        assert denied.status_code == 401 and "Basic" in denied.headers["WWW-Authenticate"]
        assert get(exporter, "/metrics", auth=("prom", "pw"), **client).status_code == 200
        assert get(exporter, "/metrics", auth=("prom", "pw"), **client).status_code == 200


def test_slow_tls_client_does_not_block_others(
    fake: FakePinference, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    with make_exporter(fake.base_url, web=load_web_config(None, str(cert), str(key))) as exporter:
        idle = socket.create_connection(("127.0.0.1", exporter.port))  # never says hello
        try:
            result: list[int] = []
            thread = threading.Thread(
                target=lambda: result.append(
                    get(exporter, "/-/healthy", verify=str(cert)).status_code
                )
            )
            thread.start()
            thread.join(5)
            assert result == [200]
        finally:
            idle.close()


def _handshake(port: int, cafile: Path, **versions: ssl.TLSVersion) -> str:
    """Connect with a client limited to `minimum`/`maximum`; the version negotiated."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(cafile))
    for bound, version in versions.items():
        setattr(context, f"{bound}_version", version)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return str(tls.version())


def test_tls_min_and_max_versions_are_applied(
    fake: FakePinference, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    tls12, tls13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    web = tmp_path / "web.yml"
    tls = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    web.write_text(tls + "  min_version: TLS13\n")
    with make_exporter(fake.base_url, web=load_web_config(str(web))) as exporter:
        assert _handshake(exporter.port, cert) == "TLSv1.3"
        with pytest.raises(ssl.SSLError):  # a client that stops at TLS 1.2 is refused
            _handshake(exporter.port, cert, maximum=tls12)
    web.write_text(tls + "  max_version: TLS12\n")
    with make_exporter(fake.base_url, web=load_web_config(str(web))) as exporter:
        assert _handshake(exporter.port, cert) == "TLSv1.2"
        with pytest.raises(ssl.SSLError):
            _handshake(exporter.port, cert, minimum=tls13)
    web.write_text(tls)  # the defaults: TLS 1.2 to 1.3
    with make_exporter(fake.base_url, web=load_web_config(str(web))) as exporter:
        assert _handshake(exporter.port, cert, maximum=tls12) == "TLSv1.2"
        assert _handshake(exporter.port, cert) == "TLSv1.3"
