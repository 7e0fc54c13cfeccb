"""The fake serving HTTPS: its certificate chain, faults and stop over TLS, a bad pair."""

from __future__ import annotations

import ssl
import time

import pytest
import requests

from harness.pki import Certificates
from llm_pinference.core.errors import Reason
from llm_pinference.core.tlsinfo import TLSInfo
from pinference_fake import FakePinference, Fault
from tests.fake.helpers import QUICK, TIMEOUT
from tests.support import client, failure


def test_a_leaf_served_alone_is_the_earliest_expiry(pki: Certificates) -> None:
    with FakePinference(certfile=pki.leaf, keyfile=pki.leaf_key) as fake:
        tls = client(fake.base_url, ca_file=str(pki.ca)).list_models(fresh=True).tls
    assert tls == TLSInfo(tls.version if tls else None, pki.leaf_expiry, pki.leaf_expiry, 1)


def test_faults_and_the_deadline_hold_over_tls(
    https_fake: FakePinference, pki: Certificates
) -> None:
    api = client(https_fake.base_url, ca_file=str(pki.ca), total_timeout=1.0)
    https_fake.set_fault("list", Fault(mode="drip", drip_interval=0.2, times=1))
    started = time.monotonic()
    assert failure(lambda: api.list_models(fresh=True)).reason is Reason.TIMEOUT
    assert 0.95 <= time.monotonic() - started < QUICK  # the drip alone lasts minutes
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


def test_stop_is_quick_with_an_idle_tls_connection(pki: Certificates) -> None:
    fake = FakePinference(certfile=pki.chain, keyfile=pki.leaf_key).start()
    session = requests.Session()
    assert session.get(fake.base_url + "/models", verify=str(pki.ca), timeout=TIMEOUT).ok
    assert fake.open_connections == 1  # kept alive, its handler waiting on it
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < QUICK  # an idle connection is kept for 120 s
    session.close()


def test_a_key_without_its_certificate_is_refused(pki: Certificates) -> None:
    with pytest.raises(ValueError, match="certfile"):
        FakePinference(keyfile=pki.leaf_key)
    with pytest.raises(ssl.SSLError):
        FakePinference(certfile=pki.leaf, keyfile=pki.ca.with_suffix(".key"))
