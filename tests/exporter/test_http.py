"""The HTTP server: HTTP/1.1 with keep-alive, the Server header, routes and readiness, HEAD
on every GET route, the lifecycle endpoint, headers from the web config, listen addresses."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest
import requests
from pinference_exporter import AccountConfig, Exporter, ExporterConfig
from pinference_exporter.config import ConfigError
from pinference_exporter.webconfig import load_web_config

from llm_pinference import __version__
from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import bcrypt_hash, make_exporter, scrape

RELOADED = "pinference_exporter_config_last_reload_successful"


def get(exporter: Exporter, path: str, **kwargs: object) -> requests.Response:
    return requests.get(exporter.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_requests_share_one_connection_over_http_1_1(fake: FakePinference) -> None:
    with make_exporter(fake.base_url) as exporter:
        exporter.run_probe_cycle()
        conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
        sockets = []
        try:
            for method, path, status in [("GET", "/metrics", 200), ("HEAD", "/metrics", 200),
                                         ("GET", "/nope", 404), ("GET", "/", 200),
                                         ("GET", "/metrics", 200)]:  # fmt: skip
                conn.request(method, path, headers={"Accept-Encoding": "gzip"})
                answer = conn.getresponse()
                body = answer.read()
                assert (answer.status, answer.version) == (status, 11), (method, path)
                assert not answer.will_close, (method, path)
                assert method == "GET" or body == b""
                assert answer.getheader("Server") == f"pinference-exporter/{__version__}"
                sockets.append(conn.sock)
            assert len({id(s) for s in sockets}) == 1  # never reconnected

            conn.request("GET", "/-/healthy", headers={"Connection": "close"})
            answer = conn.getresponse()
            assert answer.read() == b"Healthy\n" and answer.getheader("Connection") == "close"
            assert answer.will_close
        finally:
            conn.close()


def test_a_request_with_a_body_closes_its_connection(fake: FakePinference) -> None:
    """The app may leave a body unread: what follows it must not be taken for a request."""
    with make_exporter(fake.base_url) as exporter:
        conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
        try:
            conn.request("POST", "/-/ready", body=b"GET /-/healthy HTTP/1.1\r\n\r\n")
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 405 and answer.will_close
        finally:
            conn.close()


def test_server_header_names_no_runtime(fake: FakePinference) -> None:
    with make_exporter(fake.base_url) as exporter:
        for answer in (get(exporter, "/-/healthy"), get(exporter, "/nope")):
            assert answer.headers["Server"] == f"pinference-exporter/{__version__}"
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=10) as conn:
            # a header over http.server's limit: answered by http.server itself
            conn.sendall(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n")
            head = conn.makefile("rb").read().decode("latin-1")
        assert head.startswith("HTTP/1.1 431")
        assert f"\r\nServer: pinference-exporter/{__version__}\r\n" in head


def raw_request(port: int, method: str, path: str, headers: str = "") -> tuple[str, dict[str, str],
                                                                             bytes]:  # fmt: skip
    """(status line, headers, body) read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"{method} {path} HTTP/1.0\r\nHost: x\r\n{headers}\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, fields, body


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/", ""), ("/metrics", ""), ("/metrics", "Accept-Encoding: gzip\r\n"),
     ("/metrics", "Accept: application/openmetrics-text\r\n"), ("/-/healthy", ""),
     ("/-/ready", ""), ("/nope", "")],
)  # fmt: skip
def test_head_answers_like_get_without_a_body(
    fake: FakePinference, path: str, headers: str
) -> None:
    with make_exporter(fake.base_url) as exporter:
        get_status, get_headers, get_body = raw_request(exporter.port, "GET", path, headers)
        status, head_headers, body = raw_request(exporter.port, "HEAD", path, headers)
    assert status == get_status and body == b""
    assert int(head_headers["content-length"]) > 0
    if path != "/metrics":  # the metrics' process_* values move between two requests
        assert head_headers["content-length"] == str(len(get_body))
    for name in ("content-type", "content-encoding"):
        assert head_headers.get(name) == get_headers.get(name)


def test_only_get_and_head_on_the_get_routes(fake: FakePinference) -> None:
    with make_exporter(fake.base_url) as exporter:
        for path in ("/", "/metrics", "/-/healthy", "/-/ready"):
            answer = requests.post(exporter.url + path, timeout=10)
            assert answer.status_code == 405 and answer.headers["Allow"] == "GET, HEAD"


def test_reload_endpoint(fake: FakePinference) -> None:
    loads: list[int] = []
    config = ExporterConfig(accounts=(AccountConfig(base_url=fake.base_url),),
                            listen_address="127.0.0.1:0", enable_lifecycle=True)  # fmt: skip

    def loader() -> ExporterConfig:
        loads.append(1)
        if len(loads) == 2:
            raise ConfigError("exporter.yml: probe.interval: 'x' is not a duration")
        return config

    exporter = Exporter(config, loader=loader).start(probe=False)
    with exporter:
        url = exporter.url + "/-/reload"
        assert requests.get(url, timeout=10).status_code == 405
        assert requests.get(url, timeout=10).headers["Allow"] == "POST, PUT"
        assert requests.post(url, timeout=10).text == "Reloaded\n" and len(loads) == 1
        failed = requests.put(url, timeout=10)
        assert failed.status_code == 500 and len(loads) == 2
        assert failed.text == (
            "failed to reload config: exporter.yml: probe.interval: 'x' is not a duration\n"
        )
        assert scrape(exporter).value(RELOADED) == 0
        assert exporter.config is config  # kept
        assert requests.post(url, timeout=10).status_code == 200
        assert scrape(exporter).value(RELOADED) == 1
    off = make_exporter(fake.base_url)
    with off:
        assert requests.post(off.url + "/-/reload", timeout=10).status_code == 403


def test_web_config_headers_are_on_every_response(fake: FakePinference, tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n    Content-Security-Policy: default-src 'none'\n"
        f"basic_auth_users:\n  prom: '{bcrypt_hash('pw')}'\n"
    )
    with make_exporter(fake.base_url, web=load_web_config(str(web))) as exporter:
        answers = [
            requests.get(exporter.url + "/metrics", timeout=10),  # 401
            requests.get(exporter.url + "/metrics", auth=("prom", "pw"), timeout=10),
            requests.get(exporter.url + "/nope", auth=("prom", "pw"), timeout=10),
            requests.head(exporter.url + "/", auth=("prom", "pw"), timeout=10),
        ]
    assert [a.status_code for a in answers] == [401, 200, 404, 200]
    for answer in answers:
        assert answer.headers["X-Frame-Options"] == "deny"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Content-Security-Policy"] == "default-src 'none'"


def test_every_listen_address_serves_and_a_busy_one_fails_the_start(
    fake: FakePinference,
) -> None:
    with make_exporter(fake.base_url, listen_address=("127.0.0.1:0", "127.0.0.2:0")) as exporter:
        assert [u.rsplit(":", 1)[0] for u in exporter.urls] == ["http://127.0.0.1",
                                                                "http://127.0.0.2"]  # fmt: skip
        for url in exporter.urls:
            assert requests.get(url + "/-/healthy", timeout=10).status_code == 200
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = ExporterConfig(accounts=(AccountConfig(base_url=fake.base_url),),
                                listen_address=("127.0.0.1:0", f"127.0.0.1:{port}"))  # fmt: skip
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: "):
            Exporter(config).start(probe=False)


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
