"""HTTPS: TLS from flags and from the web config, client certificates, TLS versions, a
slow handshake, keep-alive over one handshake, certificate rotation without restart."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest
import requests
from pinference_exporter import AccountConfig, Exporter, ExporterConfig
from pinference_exporter.config import ConfigError
from pinference_exporter.webconfig import load_web_config

from pinference_fake import FakePinference
from tests.exporter.helpers import PW_HASH, make_certificate, make_exporter, scrape, wait_for

RELOADED = "pinference_exporter_config_last_reload_successful"


def get(exporter: Exporter, path: str, **kwargs: object) -> requests.Response:
    return requests.get(exporter.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_two_scrapes_share_one_tls_connection(
    fake: FakePinference, web_certificate: tuple[Path, Path]
) -> None:
    cert, key = web_certificate
    context = ssl.create_default_context(cafile=str(cert))
    handshakes: list[object] = []
    with make_exporter(fake.base_url, web=load_web_config(None, str(cert), str(key))) as exporter:
        conn = http.client.HTTPSConnection("127.0.0.1", exporter.port, context=context, timeout=10)
        try:
            for path in ("/metrics", "/metrics", "/-/healthy"):
                conn.request("GET", path)
                answer = conn.getresponse()
                body = answer.read()
                assert answer.status == 200 and answer.version == 11 and not answer.will_close
                handshakes.append(conn.sock)
            assert b"pinference_up" in body or body == b"Healthy\n"
        finally:
            conn.close()
    assert len({id(sock) for sock in handshakes}) == 1  # one connection, one handshake


def test_tls_from_flags(fake: FakePinference, web_certificate: tuple[Path, Path]) -> None:
    cert, key = web_certificate
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
    fake: FakePinference, web_certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = web_certificate
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
    fake: FakePinference, web_certificate: tuple[Path, Path]
) -> None:
    cert, key = web_certificate
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
    fake: FakePinference, web_certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = web_certificate
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
