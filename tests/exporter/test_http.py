"""HTTP details: HEAD on every GET route, the lifecycle endpoint, headers from the web config,
several listen addresses, basic auth timing, the web config re-read when it changes
(certificate and password rotation), and the build info."""

from __future__ import annotations

import platform
import shutil
import socket
import ssl
import statistics
import subprocess
import time
from pathlib import Path

import pytest
import requests
from pinference_exporter import AccountConfig, Exporter, ExporterConfig
from pinference_exporter.config import ConfigError
from pinference_exporter.web import ListenError
from pinference_exporter.webconfig import BasicAuth, hash_checker, load_web_config

from pinference_fake import FakePinference
from tests.exporter.helpers import (
    ROOT,
    bcrypt_hash,
    make_certificate,
    make_exporter,
    scrape,
    wait_for,
)

RELOADED = "pinference_exporter_config_last_reload_successful"


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
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: "):
            Exporter(config).start(probe=False)


@pytest.mark.skipif(hash_checker() is None, reason="needs bcrypt")
def test_unknown_users_take_as_long_as_wrong_passwords() -> None:
    """Otherwise timing tells which user names exist (0.5 ms against 50 ms before)."""
    import base64

    users = {"prom": bcrypt_hash("right", cost=10), "other": bcrypt_hash("x", cost=4)}
    checker = hash_checker()
    assert checker is not None
    auth = BasicAuth(users, checker)

    def timed(user: str) -> float:
        header = "Basic " + base64.b64encode(f"{user}:wrong".encode()).decode()
        started = time.perf_counter()
        assert not auth.allows(header)
        return time.perf_counter() - started

    wrong, unknown = [], []
    for _ in range(5):  # alternated, so that load changes hit both alike
        wrong.append(timed("prom"))
        unknown.append(timed("nobody"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2.0, (wrong, unknown)


def _served_certificate(port: int) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_a_rotated_certificate_is_served_without_restart(
    fake: FakePinference, tmp_path: Path
) -> None:
    old_cert, old_key = make_certificate(tmp_path, "old")
    new_cert, new_key = make_certificate(tmp_path, "new")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(old_cert, live / "cert.pem")
    shutil.copy(old_key, live / "key.pem")
    web = live / "web.yml"
    web.write_text("tls_server_config: {cert_file: cert.pem, key_file: key.pem}\n")
    with make_exporter(fake.base_url, web=load_web_config(str(web))) as exporter:
        assert _served_certificate(exporter.port) == _der(old_cert)
        shutil.copy(new_cert, live / "cert.pem")
        shutil.copy(new_key, live / "key.pem")
        wait_for(lambda: _served_certificate(exporter.port) == _der(new_cert), what="new cert")
        s = scrape(exporter, verify=str(new_cert))
        assert s.value(RELOADED) == 1

        (live / "key.pem").write_text("not a key\n")  # a broken rotation keeps the old pair
        assert _served_certificate(exporter.port) == _der(new_cert)
        assert scrape(exporter, verify=str(new_cert)).value(RELOADED) == 0
        web.write_text("{}\n")  # dropping TLS would need a restart: refused, still HTTPS
        assert _served_certificate(exporter.port) == _der(new_cert)
        shutil.copy(new_key, live / "key.pem")
        web.write_text("tls_server_config: {cert_file: cert.pem, key_file: key.pem}\n")
        assert _served_certificate(exporter.port) == _der(new_cert)
        assert scrape(exporter, verify=str(new_cert)).value(RELOADED) == 1


def test_a_reload_cannot_switch_between_http_and_https(
    fake: FakePinference, tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path)
    with make_exporter(fake.base_url) as exporter:
        https = ExporterConfig(accounts=(AccountConfig(base_url=fake.base_url),),
                               web=load_web_config(None, str(cert), str(key)))  # fmt: skip
        with pytest.raises(ConfigError, match="switching from HTTP to HTTPS needs a restart"):
            exporter.apply(https)
        assert exporter.url.startswith("http://")


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
