"""The fake over HTTPS, and what a fresh probe learns from its TLS connection: the handshake
time, the protocol version, the leaf's expiry and the earliest expiry of the served chain.

Certificates are made here with the openssl command (a throwaway CA that expires in 1 day
and a leaf signed by it that expires in 3, so the chain's earliest expiry is not the
leaf's). Expected expiries are read back with `openssl x509 -enddate`, not with the code
under test.
"""

from __future__ import annotations

import select
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from harness.pki import EC_KEY, make_certificates, openssl
from llm_pinference.core import transport
from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.settings import Settings
from llm_pinference.core.tlsinfo import TLSInfo, not_after, served_chain, tls_info, tls_version_name
from pinference_fake import FakePinference, Fault
from pinference_fake.cli import main as cli_main
from tests.support import require_openssl

KEY = "pit_tls_probe_key_0123456789"
TIMEOUT = 10


@dataclass(frozen=True)
class Pki:
    ca: Path
    leaf: Path
    leaf_key: Path
    chain: Path  # the leaf, then the CA
    ca_expiry: float
    leaf_expiry: float


def enddate(cert: Path) -> float:
    """notAfter as openssl prints it (`notAfter=Jun  3 12:00:00 2026 GMT`)."""
    return float(
        ssl.cert_time_to_seconds(
            openssl("x509", "-noout", "-enddate", "-in", str(cert)).strip().split("=", 1)[1]
        )
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require_openssl()
    made = make_certificates(tmp_path_factory.mktemp("pki"), ca_days=1, leaf_days=3)
    return Pki(made.ca, made.leaf, made.leaf_key, made.chain, enddate(made.ca),
               enddate(made.leaf))  # fmt: skip


@pytest.fixture
def https_fake(pki: Pki) -> Any:
    with FakePinference(certfile=pki.chain, keyfile=pki.leaf_key) as fake:
        yield fake


def client(base_url: str, **kwargs: Any) -> PinferenceClient:
    kwargs.setdefault("total_timeout", 5.0)
    return PinferenceClient(Settings(api_key=KEY, base_url=base_url), **kwargs)


def failure(call: Any) -> PinferenceError:
    with pytest.raises(PinferenceError) as info:
        call()
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    return info.value


def test_a_fresh_probe_over_https_reads_the_handshake_and_the_served_chain(
    https_fake: FakePinference, pki: Pki
) -> None:
    assert https_fake.base_url.startswith("https://127.0.0.1:")
    assert pki.ca_expiry < pki.leaf_expiry  # the CA runs out first
    result = client(https_fake.base_url, ca_file=str(pki.ca)).list_models(fresh=True)
    assert result.models and result.timing is not None and result.tls is not None
    assert result.timing.tls > 0
    assert result.timing.tls < result.timing.total
    assert result.tls.version in ("TLS 1.2", "TLS 1.3")
    assert result.tls.leaf_expiry == pki.leaf_expiry
    assert result.tls.earliest_expiry == pki.ca_expiry
    assert result.tls.chain_length == 2


def test_the_chat_probe_over_https(https_fake: FakePinference, pki: Pki) -> None:
    result = client(https_fake.base_url, ca_file=str(pki.ca)).chat_probe("deepseek-chat")
    assert result.status == 200 and result.ttft is not None and result.output_tokens > 0
    err = failure(lambda: client(https_fake.base_url).chat_probe("deepseek-chat"))
    assert "TLS error" in str(err)


def test_a_leaf_served_alone_is_the_earliest_expiry(pki: Pki) -> None:
    with FakePinference(certfile=pki.leaf, keyfile=pki.leaf_key) as fake:
        tls = client(fake.base_url, ca_file=str(pki.ca)).list_models(fresh=True).tls
    assert tls == TLSInfo(tls.version if tls else None, pki.leaf_expiry, pki.leaf_expiry, 1)


def test_each_fresh_probe_makes_its_own_handshake(https_fake: FakePinference, pki: Pki) -> None:
    api = client(https_fake.base_url, ca_file=str(pki.ca))
    probes = [api.list_models(fresh=True) for _ in range(3)]
    assert all(p.timing and p.timing.tls > 0 and p.tls for p in probes)
    assert len({r.client for r in https_fake.requests_for("list")}) == 3


def test_the_trusted_ca_file_is_loaded_once_and_again_when_it_changes(
    https_fake: FakePinference, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the CA file belongs to no probe's `tls` phase: new connections share one
    context per file; a replaced file (a rotated bundle) is read again, and verification
    follows what it now says."""
    loads: list[str | None] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(kwargs.get("cafile", args[0] if args else None))
        load(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    bundle = tmp_path / "trusted.pem"
    bundle.write_text(pki.ca.read_text())
    api = client(https_fake.base_url, ca_file=str(bundle))
    probes = [api.list_models(fresh=True) for _ in range(3)]
    assert all(p.timing and p.timing.tls > 0 for p in probes)
    assert len({r.client for r in https_fake.requests_for("list")}) == 3  # 3 handshakes
    assert loads == [str(bundle)]

    replacement = tmp_path / "replacement.pem"  # another CA's, which never signed the leaf
    openssl("req", "-x509", *EC_KEY, "-days", "1", "-subj", "/CN=another CA",
            "-keyout", str(tmp_path / "other.key"), "-out", str(replacement))  # fmt: skip
    replacement.replace(bundle)
    err = failure(lambda: api.list_models(fresh=True))
    assert "TLS error" in str(err) and "certificate verify failed" in str(err)
    replacement.write_text(pki.ca.read_text())
    replacement.replace(bundle)
    assert api.list_models(fresh=True).models
    assert loads == [str(bundle)] * 3


def test_an_untrusted_certificate_is_a_connection_error_that_says_tls(
    https_fake: FakePinference,
) -> None:
    err = failure(client(https_fake.base_url).list_models)
    assert err.reason is Reason.CONNECTION_ERROR and err.status is None
    assert "TLS error talking to the API: certificate verify failed" in str(err)
    err = failure(lambda: client(https_fake.base_url).list_models(fresh=True))
    assert "TLS error" in str(err)


def test_a_host_name_the_certificate_does_not_name_is_refused(
    https_fake: FakePinference, pki: Pki
) -> None:
    url = https_fake.base_url.replace("127.0.0.1", "localhost")  # the leaf names the IP only
    err = failure(lambda: client(url, ca_file=str(pki.ca)).list_models(fresh=True))
    assert err.reason is Reason.CONNECTION_ERROR
    assert "TLS error" in str(err) and "certificate verify failed" in str(err)


def test_tls_to_a_plain_http_server_is_a_tls_error(fake: FakePinference) -> None:
    url = fake.base_url.replace("http://", "https://")
    err = failure(lambda: client(url).list_models(fresh=True))
    assert err.reason is Reason.CONNECTION_ERROR
    assert str(err).startswith("connection_error: TLS error talking to the API"), str(err)


def test_faults_and_the_deadline_hold_over_tls(https_fake: FakePinference, pki: Pki) -> None:
    api = client(https_fake.base_url, ca_file=str(pki.ca), total_timeout=1.0)
    https_fake.set_fault("list", Fault(mode="drip", drip_interval=0.2, times=1))
    started = time.monotonic()
    assert failure(lambda: api.list_models(fresh=True)).reason is Reason.TIMEOUT
    assert 0.95 <= time.monotonic() - started <= 1.6
    https_fake.set_fault("get", Fault(mode="reset", times=1))
    assert failure(lambda: api.get_model("deepseek-chat")).reason is Reason.CONNECTION_ERROR
    https_fake.set_fault("get", Fault(mode="hang", times=1))  # hangs, not a dropped connection
    err = failure(
        lambda: client(https_fake.base_url, ca_file=str(pki.ca), read_timeout=0.3).get_model("x")
    )
    assert str(err) == "timeout: no data for 0.3s (read timeout)"
    https_fake.set_fault("list", Fault(status=503, times=1))
    err = failure(lambda: api.list_models(fresh=True))
    assert (err.reason, err.status) == (Reason.SERVER_ERROR, 503)
    assert api.list_models(fresh=True).models


def test_stop_is_quick_with_an_idle_tls_connection(pki: Pki) -> None:
    fake = FakePinference(certfile=pki.chain, keyfile=pki.leaf_key).start()
    session = requests.Session()
    assert session.get(fake.base_url + "/models", verify=str(pki.ca), timeout=TIMEOUT).ok
    assert fake.open_connections == 1  # kept alive, its handler waiting on it
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 1.0
    session.close()


def test_a_key_without_its_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="certfile"):
        FakePinference(keyfile=pki.leaf_key)
    with pytest.raises(ssl.SSLError):
        FakePinference(certfile=pki.leaf, keyfile=pki.ca.with_suffix(".key"))


def test_the_cli_checks_its_tls_files(pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli_main(["--port", "0", "--tls-cert-file", str(pki.leaf)])
    assert stop.value.code == 2
    assert "--tls-cert-file and --tls-key-file go together" in capsys.readouterr().err
    wrong_key = str(pki.ca.with_suffix(".key"))
    for cert, key, says in (
        (str(pki.leaf), wrong_key, "the key does not belong to the certificate"),
        (str(pki.leaf_key), str(pki.leaf_key), "not a PEM certificate and key"),
        (str(pki.leaf.with_name("absent.pem")), str(pki.leaf_key), "No such file"),
    ):
        assert cli_main(["--port", "0", "--tls-cert-file", cert, "--tls-key-file", key]) == 2
        err = capsys.readouterr().err
        assert err.startswith("pinference-fake: error: cannot use the TLS certificate and key")
        assert says in err and err.count("\n") == 1, err


def test_the_cli_serves_https(pki: Pki) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pinference_fake", "--port", "0",
         "--tls-cert-file", str(pki.chain), "--tls-key-file", str(pki.leaf_key)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the fake server printed nothing"
        line = process.stdout.readline().strip()
        assert line.startswith("pinference-fake serving https://127.0.0.1:"), line
        result = client(line.split()[2], ca_file=str(pki.ca)).list_models(fresh=True)
        assert result.tls is not None and result.tls.leaf_expiry == pki.leaf_expiry
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0 and "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)


# --- reading certificates (no connection) --------------------------------------------


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_not_after_reads_utctime_and_generalizedtime(pki: Pki, tmp_path: Path) -> None:
    assert not_after(der(pki.leaf)) == pki.leaf_expiry  # UTCTime (before 2050)
    late, key = tmp_path / "late.pem", tmp_path / "late.key"
    openssl("req", "-x509", *EC_KEY, "-days", "20000", "-subj", "/CN=late",
            "-keyout", str(key), "-out", str(late))  # fmt: skip
    assert time.gmtime(enddate(late)).tm_year > 2050  # GeneralizedTime
    assert not_after(der(late)) == enddate(late)
    for garbage in (b"", b"\x30\x03\x02\x01\x01", der(pki.leaf)[:100], b"\x30\x84" + b"\xff" * 8):
        assert not_after(garbage) is None


def tlv(tag: int, value: bytes) -> bytes:
    assert len(value) < 128
    return bytes([tag, len(value)]) + value


def certificate_expiring(tag: int, when: bytes) -> bytes:
    """Just enough of a DER certificate for notAfter: version, serial, algorithm, issuer,
    validity (the fields that follow do not matter)."""
    validity = tlv(0x30, tlv(tag, when) + tlv(tag, when))
    tbs = tlv(0xA0, tlv(0x02, b"\x02")) + tlv(0x02, b"\x01") + tlv(0x30, b"") + tlv(0x30, b"")
    return tlv(0x30, tlv(0x30, tbs + validity) + tlv(0x30, b""))


@pytest.mark.parametrize(
    ("tag", "when", "expected"),
    [
        (0x17, b"491231235959Z", "2049-12-31 23:59:59"),  # UTCTime: 00-49 are 20xx
        (0x17, b"500101000000Z", "1950-01-01 00:00:00"),  # 50-99 are 19xx
        (0x18, b"20500101000000Z", "2050-01-01 00:00:00"),
        (0x18, b"20991231235959.5Z", "2099-12-31 23:59:59"),  # fractions are dropped
        (0x17, b"491231235959+0100", None),  # RFC 5280: UTC, with Z
        (0x17, b"4912312359Z", None),  # seconds are required
        (0x18, b"20991331000000Z", None),  # month 13
    ],
)
def test_not_after_time_forms(tag: int, when: bytes, expected: str | None) -> None:
    found = not_after(certificate_expiring(tag, when))
    shown = None if found is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(found))
    assert shown == expected


class _Certificate:
    """Stands in for CPython's certificate objects (public_bytes() is PEM)."""

    def __init__(self, path: Path) -> None:
        self.pem = path.read_text()

    def public_bytes(self) -> str:
        return self.pem


def test_the_served_chain_on_every_python(pki: Pki) -> None:
    leaf, ca = der(pki.leaf), der(pki.ca)

    class Modern:  # Python 3.13+: a public method with DER bytes
        def get_unverified_chain(self) -> list[bytes]:
            return [leaf, ca]

    class Older:  # 3.10-3.12: the C object's method, certificate objects
        class _SSLObject:
            def get_unverified_chain(self) -> list[_Certificate]:
                return [_Certificate(pki.leaf), _Certificate(pki.ca)]

        _sslobj = _SSLObject()

        def getpeercert(self, binary_form: bool = False) -> bytes:
            return leaf

    class LeafOnly:  # anything else with getpeercert (an SSLTransport through a proxy)
        def getpeercert(self, binary_form: bool = False) -> bytes:
            assert binary_form
            return leaf

    assert served_chain(Modern()) == served_chain(Older()) == [leaf, ca]
    assert served_chain(LeafOnly()) == [leaf]
    assert served_chain(object()) == []
    assert tls_info(object()) == TLSInfo(None, None, None, 0)
    info = tls_info(Older())
    assert (info.earliest_expiry, info.leaf_expiry) == (pki.ca_expiry, pki.leaf_expiry)


@pytest.mark.parametrize(
    ("name", "shown"),
    [("TLSv1.3", "TLS 1.3"), ("TLSv1.2", "TLS 1.2"), ("TLSv1", "TLS 1.0"), ("SSLv3", "SSLv3"),
     (None, None), ("", None)],
)  # fmt: skip
def test_tls_version_names(name: str | None, shown: str | None) -> None:
    assert tls_version_name(name) == shown


def test_a_ca_file_that_cannot_be_used_is_named(https_fake: FakePinference, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = tmp_path / "missing.pem"
    messages = {
        garbage: "connection_error: TLS error talking to the API: no certificate or crl found",
        missing: f"connection_error: TLS error: the CA bundle to trust cannot be found ({missing})",
    }
    for ca_file, message in messages.items():
        for fresh in (False, True):
            api = client(https_fake.base_url, ca_file=str(ca_file))
            err = failure(lambda: api.list_models(fresh=fresh))  # noqa: B023 (called at once)
            assert err.reason is Reason.CONNECTION_ERROR and str(err) == message
    assert not https_fake.requests_for("list")  # no request went out


def test_a_ca_folder_is_shared_too(https_fake: FakePinference, pki: Pki, tmp_path: Path) -> None:
    folder = tmp_path / "certs"  # OpenSSL's hashed-name layout (what `openssl rehash` makes)
    folder.mkdir()
    subject_hash = openssl("x509", "-hash", "-noout", "-in", str(pki.ca)).strip()
    (folder / f"{subject_hash}.0").write_text(pki.ca.read_text())
    api = client(https_fake.base_url, ca_file=str(folder))
    assert all(api.list_models(fresh=True).models for _ in range(2))
    assert transport._contexts[(None, str(folder))][1].verify_mode == ssl.CERT_REQUIRED


def test_what_the_shared_context_leaves_to_urllib3(pki: Pki, tmp_path: Path) -> None:
    def conn(**kwargs: Any) -> transport.WatchedHTTPSConnection:
        kwargs.setdefault("ca_certs", str(pki.ca))
        return transport.WatchedHTTPSConnection("127.0.0.1", cert_reqs="CERT_REQUIRED", **kwargs)

    context = transport._shared_context(conn())
    assert context is not None and context is transport._shared_context(conn())
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs()[0]["subject"] == ((("commonName", "pinference test CA"),),)
    # Whatever a caller set up itself keeps urllib3's own handling, one setting at a time.
    own = [
        {"ssl_context": ssl.create_default_context()},
        {"ca_cert_data": pki.ca.read_text()},
        {"cert_file": str(pki.leaf), "key_file": str(pki.leaf_key)},
        {"ssl_version": ssl.PROTOCOL_TLS_CLIENT},
        {"ssl_minimum_version": ssl.TLSVersion.TLSv1_3},
        {"ssl_maximum_version": ssl.TLSVersion.TLSv1_2},
        {"assert_fingerprint": "00" * 32},
        {"assert_hostname": "example.org"},
        {"ca_certs": None},
    ]
    for kwargs in own:
        assert transport._shared_context(conn(**kwargs)) is None, kwargs
    unverified = conn()
    unverified.cert_reqs = "CERT_NONE"
    assert transport._shared_context(unverified) is None
    assert transport._shared_context(conn(ca_certs=str(tmp_path / "missing.pem"))) is None
    # One context per CA file, and never more than a handful of files remembered.
    for i in range(12):
        copy = tmp_path / f"ca-{i}.pem"
        copy.write_text(pki.ca.read_text())
        assert transport._shared_context(conn(ca_certs=str(copy))) is not None
        assert len(transport._contexts) <= 8
