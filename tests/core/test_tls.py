"""What a fresh probe learns from its TLS connection (the handshake time, the protocol
version, the leaf's expiry and the earliest expiry of the served chain), how the trusted
CA file is loaded and shared, and how TLS failures read.

Expected expiries are read back with `openssl x509 -enddate` (harness.pki), not with the
code under test.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from harness.pki import EC_KEY, Certificates, openssl
from llm_pinference.core import transport
from llm_pinference.core.errors import Reason
from llm_pinference.core.tlsinfo import TLSInfo, tls_info, tls_version_name
from pinference_fake import FakePinference
from tests.support import client, failure


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


def test_without_the_served_chain_the_leaf_is_read(pki: Certificates) -> None:
    class ProxiedTLS:  # urllib3's TLS-in-TLS socket: no CPython SSL object under it
        def getpeercert(self) -> dict[str, str]:
            return {
                "notAfter": time.strftime("%b %d %H:%M:%S %Y GMT", time.gmtime(pki.leaf_expiry))
            }

        def version(self) -> str:
            return "TLSv1.3"

    expiry = pki.leaf_expiry
    assert tls_info(ProxiedTLS()) == TLSInfo("TLS 1.3", expiry, expiry, 1)


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


def test_a_ca_folder_is_trusted_and_shared_too(
    https_fake: FakePinference, pki: Certificates, tmp_path: Path
) -> None:
    folder = tmp_path / "certs"  # OpenSSL's hashed-name layout (what `openssl rehash` makes)
    folder.mkdir()
    subject_hash = openssl("x509", "-hash", "-noout", "-in", str(pki.ca)).strip()
    (folder / f"{subject_hash}.0").write_text(pki.ca.read_text())
    transport._context.cache_clear()
    api = client(https_fake.base_url, ca_file=str(folder))
    assert all(api.list_models(fresh=True).models for _ in range(2))
    assert transport._context.cache_info().misses == 1
