"""What a fresh probe learns from its TLS connection (the handshake time, the protocol
version, the leaf's expiry and the earliest expiry of the served chain), how the trusted
CA file is loaded and shared, how TLS failures read, and reading certificates.

Expected expiries are read back with `openssl x509 -enddate` (harness.pki), not with the
code under test.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from harness.pki import EC_KEY, Certificates, enddate, openssl
from llm_pinference.core import transport
from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.settings import Settings
from llm_pinference.core.tlsinfo import TLSInfo, not_after, served_chain, tls_info, tls_version_name
from pinference_fake import FakePinference

KEY = "pit_tls_probe_key_0123456789"


def client(base_url: str, **kwargs: Any) -> PinferenceClient:
    kwargs.setdefault("total_timeout", 5.0)
    return PinferenceClient(Settings(api_key=KEY, base_url=base_url), **kwargs)


def failure(call: Any) -> PinferenceError:
    with pytest.raises(PinferenceError) as info:
        call()
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    return info.value


def test_a_fresh_probe_over_https_reads_the_handshake_and_the_served_chain(
    https_fake: FakePinference, pki: Certificates
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


def test_the_chat_probe_over_https(https_fake: FakePinference, pki: Certificates) -> None:
    result = client(https_fake.base_url, ca_file=str(pki.ca)).chat_probe("deepseek-chat")
    assert result.status == 200 and result.ttft is not None and result.usage.output_tokens > 0
    err = failure(lambda: client(https_fake.base_url).chat_probe("deepseek-chat"))
    assert "TLS error" in str(err)


def test_each_fresh_probe_makes_its_own_handshake(
    https_fake: FakePinference, pki: Certificates
) -> None:
    api = client(https_fake.base_url, ca_file=str(pki.ca))
    probes = [api.list_models(fresh=True) for _ in range(3)]
    assert all(p.timing and p.timing.tls > 0 and p.tls for p in probes)
    assert len({r.client for r in https_fake.requests_for("list")}) == 3


def test_the_trusted_ca_file_is_loaded_once_and_again_when_it_changes(
    https_fake: FakePinference, pki: Certificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    https_fake: FakePinference, pki: Certificates
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


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_not_after_reads_utctime_and_generalizedtime(pki: Certificates, tmp_path: Path) -> None:
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


def test_the_served_chain_on_every_python(pki: Certificates) -> None:
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


def test_a_ca_folder_is_shared_too(
    https_fake: FakePinference, pki: Certificates, tmp_path: Path
) -> None:
    folder = tmp_path / "certs"  # OpenSSL's hashed-name layout (what `openssl rehash` makes)
    folder.mkdir()
    subject_hash = openssl("x509", "-hash", "-noout", "-in", str(pki.ca)).strip()
    (folder / f"{subject_hash}.0").write_text(pki.ca.read_text())
    api = client(https_fake.base_url, ca_file=str(folder))
    assert all(api.list_models(fresh=True).models for _ in range(2))
    assert transport._contexts[(None, str(folder))][1].verify_mode == ssl.CERT_REQUIRED


def test_what_the_shared_context_leaves_to_urllib3(pki: Certificates, tmp_path: Path) -> None:
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
