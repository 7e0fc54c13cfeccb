"""The list probe of every account goes out on a new connection each cycle, and the exporter
exports its phases (blackbox_exporter's names) and, over HTTPS, the served certificate's
expiry and the TLS version; `ca_file` lets an account trust a private CA.

Certificates are made with the openssl command: a CA that expires in 1 day and a leaf it
signed that expires in 3 (so the chain's earliest expiry is the CA's), and an unrelated
self-signed certificate that nobody trusts.
"""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pinference_exporter import Exporter, ExporterConfig
from pinference_exporter.config import AccountConfig, ConfigError, build_config, load_config_file
from pinference_exporter.options import OPTIONS_BY_KEY

from harness.pki import EC_KEY, make_certificates, openssl
from llm_pinference.core.probes import PHASES
from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import make_exporter, scrape
from tests.support import require_openssl


@dataclass(frozen=True)
class Pki:
    ca: Path
    chain: Path  # the leaf, then the CA
    leaf_key: Path
    ca_expiry: float
    stranger: Path  # self-signed for 127.0.0.1, trusted by nobody
    stranger_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require_openssl()
    folder = tmp_path_factory.mktemp("pki")
    made = make_certificates(folder, ca_days=1, leaf_days=3)
    stranger, stranger_key = folder / "stranger.pem", folder / "stranger.key"
    openssl("req", "-x509", *EC_KEY, "-days", "30", "-subj", "/CN=stranger",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(stranger_key), "-out", str(stranger))  # fmt: skip
    enddate = openssl("x509", "-noout", "-enddate", "-in", str(made.ca)).strip().split("=", 1)[1]
    return Pki(made.ca, made.chain, made.leaf_key, float(ssl.cert_time_to_seconds(enddate)),
               stranger, stranger_key)  # fmt: skip


@pytest.fixture
def https_fake(pki: Pki) -> Iterator[FakePinference]:
    with FakePinference(certfile=pki.chain, keyfile=pki.leaf_key) as fake:
        yield fake


def account_exporter(base_url: str, **account: Any) -> Exporter:
    config = ExporterConfig(
        listen_address="127.0.0.1:0", probe_interval=30.0, probe_timeout=10.0,
        accounts=(AccountConfig(base_url=base_url, **account),),
    )  # fmt: skip
    return Exporter(config).start(probe=False)


def client_ports(fake: FakePinference, endpoint: str) -> list[int]:
    return [r.client[1] for r in fake.requests_for(endpoint)]


def phases(scraped: Any, account: str = "default") -> dict[str, float]:
    return {
        s.labels["phase"]: s.value
        for s in scraped.samples("pinference_probe_phase_seconds")
        if s.labels["account"] == account and s.labels["endpoint"] == "list"
    }


# ------------------------------------------------------------------ a new connection


def test_each_list_probe_opens_a_new_connection_and_the_get_probe_reuses_it(
    fake: FakePinference,
) -> None:
    with make_exporter(fake.base_url, sample_size=1) as exporter:
        for _ in range(3):
            exporter.run_probe_cycle()
    lists, gets = client_ports(fake, "list"), client_ports(fake, "get")
    assert len(set(lists)) == 3, lists  # never the previous cycle's kept-alive connection
    assert gets == lists  # the cycle's get probe went out on the list's new connection


def test_a_replaced_certificate_fails_the_next_cycle_as_a_new_client_would(
    https_fake: FakePinference, pki: Pki
) -> None:
    """The server now presents a certificate nobody trusts (or one that expired): a probe
    on the kept-alive connection would not see it for as long as that connection lives."""
    with account_exporter(https_fake.base_url, ca_file=str(pki.ca)) as exporter:
        exporter.run_probe_cycle()
        assert scrape(exporter).value("pinference_up") == 1
        https_fake._ssl_context.load_cert_chain(pki.stranger, pki.stranger_key)  # type: ignore[union-attr]
        exporter.run_probe_cycle()
        after = scrape(exporter)
    assert after.value("pinference_up") == 0
    assert after.value("pinference_probe_failures_total", endpoint="list",
                       reason="connection_error") == 1  # fmt: skip
    assert "certificate verify failed" in (exporter.state.snapshot().endpoints["list"]
                                           .last_error or "")  # fmt: skip


# ------------------------------------------------------------------ phases


def test_phases_are_exported_and_add_up_to_the_probe_duration(fake: FakePinference) -> None:
    fake.set_latency("list", 0.03)
    with make_exporter(fake.base_url, sample_size=0) as exporter:
        before = scrape(exporter)
        assert before.samples("pinference_probe_phase_seconds") == []  # no list yet
        sums = []
        for _ in range(3):
            exporter.run_probe_cycle()
            scraped = scrape(exporter)
            found = phases(scraped)
            assert list(found) == list(PHASES)
            assert all(value >= 0 for value in found.values())
            assert found["tls"] == 0.0  # http
            assert found["connect"] > 0  # a new connection, every time
            assert found["processing"] >= 0.03  # the API's latency is in processing
            total = scraped.value("pinference_probe_duration_seconds_sum", endpoint="list")
            sums.append((sum(found.values()), total))
    # The duration recorded is the phases' total: each cycle adds exactly their sum.
    previous = 0.0
    for phase_sum, total in sums:
        assert total - previous == pytest.approx(phase_sum, abs=1e-9)
        previous = total


def test_a_failed_list_keeps_the_last_known_phases_and_certificate(
    https_fake: FakePinference, pki: Pki
) -> None:
    with account_exporter(https_fake.base_url, ca_file=str(pki.ca)) as exporter:
        exporter.run_probe_cycle()
        good = scrape(exporter)
        https_fake.set_fault("list", Fault(status=503))
        exporter.run_probe_cycle()
        failed = scrape(exporter)
    assert failed.value("pinference_up") == 0
    assert phases(failed) == phases(good) and phases(good)["tls"] > 0
    expiry = "pinference_tls_cert_expiry_timestamp_seconds"
    assert failed.value(expiry) == good.value(expiry) == pki.ca_expiry


# ------------------------------------------------------------------ TLS


def test_tls_expiry_is_the_earliest_of_the_served_chain_and_the_version_is_exported(
    https_fake: FakePinference, pki: Pki
) -> None:
    with account_exporter(https_fake.base_url, ca_file=str(pki.ca)) as exporter:
        assert scrape(exporter).samples("pinference_tls_version_info") == []
        exporter.run_probe_cycle()
        scraped = scrape(exporter)
    assert scraped.value("pinference_up") == 1
    # The CA runs out 2 days before the leaf: the chain's earliest expiry is the CA's.
    assert scraped.value("pinference_tls_cert_expiry_timestamp_seconds",
                         account="default") == pki.ca_expiry  # fmt: skip
    (version,) = scraped.labelsets("pinference_tls_version_info")
    assert version["version"] in ("TLS 1.2", "TLS 1.3") and version["account"] == "default"
    assert scraped.value("pinference_tls_version_info") == 1
    assert phases(scraped)["tls"] > 0


def test_no_tls_series_over_http(fake: FakePinference) -> None:
    with make_exporter(fake.base_url) as exporter:
        exporter.run_probe_cycle()
        scraped = scrape(exporter)
    assert scraped.samples("pinference_tls_cert_expiry_timestamp_seconds") == []
    assert scraped.samples("pinference_tls_version_info") == []


# ------------------------------------------------------------------ ca_file


def test_without_the_private_ca_the_probe_fails_with_a_tls_error(
    https_fake: FakePinference,
) -> None:
    with account_exporter(https_fake.base_url) as exporter:
        exporter.run_probe_cycle()
        scraped = scrape(exporter)
    assert scraped.value("pinference_up") == 0
    assert scraped.value("pinference_probe_failures_total", endpoint="list",
                         reason="connection_error") == 1  # fmt: skip


def test_ca_file_from_the_flag_and_per_account_in_the_file(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    option = OPTIONS_BY_KEY["api.ca_file"]
    assert option.flag == "--api.ca-file" and option.is_path and option.account_key == "ca_file"
    config = build_config({"api.ca_file": str(pki.ca)})
    assert config.accounts[0].ca_file == str(pki.ca)
    shutil.copy(pki.ca, tmp_path / "private-ca.pem")
    path = tmp_path / "exporter.yml"
    path.write_text("accounts:\n  - name: lab\n    ca_file: private-ca.pem\n  - name: public\n")
    lab, public = build_config(load_config_file(path)).accounts
    assert lab.ca_file == str(tmp_path / "private-ca.pem")  # relative to the file
    assert public.ca_file is None
    path.write_text("api:\n  ca_file: private-ca.pem\n")
    assert build_config(load_config_file(path)).accounts[0].ca_file == lab.ca_file


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot read CA file"), ("", "is empty"),
     ("not a certificate\n", "holds no PEM certificate")],
)  # fmt: skip
def test_a_bad_ca_file_is_refused_with_one_line(
    tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        build_config({"api.ca_file": str(path)})
    assert says in str(info.value) and "\n" not in str(info.value)


def test_the_cli_checks_the_ca_file(tmp_path: Path, pki: Pki) -> None:
    from pinference_exporter.cli import main

    assert main(["--config.check", f"--api.ca-file={pki.ca}"]) == 0
    assert main(["--config.check", f"--api.ca-file={tmp_path / 'missing.pem'}"]) == 2
