"""The pinference-fake command: its help, its usage errors, serving until SIGTERM, HTTPS."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from harness.pki import Certificates
from pinference_fake.admin import ADMIN_ROUTES
from pinference_fake.cli import main as cli_main
from pinference_fake.faults import FAULT_MODES
from pinference_fake.routing import API_ROUTES
from tests.fake.conftest import Serve
from tests.fake.helpers import KEY, TIMEOUT


def test_the_help_lists_every_route_fault_mode_and_the_chat_rules() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pinference_fake", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # wrapped lines joined
    assert "--require-key" in text and "--generate" in text
    for _, method, path, _ in API_ROUTES:
        assert f"{method} /api/v1{path}: " in text
    for method, name in ADMIN_ROUTES:
        assert f"{method} /_admin/{name}: " in text
    for mode in FAULT_MODES:
        assert f" {mode}: " in text
    assert "drip_interval=0.5" in text  # the fault fields, with their defaults
    assert 'Tool calls: a request with "tools" gets one call' in text
    assert 'holds the word "tool" or "tools"' in text


def test_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": "nope"}')
    assert cli_main(["--port", "0", "--models", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pinference-fake: error:") and err.count("\n") == 1
    with pytest.raises(SystemExit) as refused:
        cli_main(["--host", "10.1.2.3", "--port", "0"])
    assert refused.value.code == 2


def test_it_serves_on_port_zero_and_exits_cleanly_on_sigterm(serve: Serve) -> None:
    process, base_url = serve("--generate", "25", PINFERENCE_FAKE_REQUIRE_KEY=KEY)
    assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/api/v1")
    assert requests.get(base_url + "/models", timeout=TIMEOUT).status_code == 401
    authorised = requests.get(
        base_url + "/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=TIMEOUT
    )
    assert len(authorised.json()["data"]) == 25
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0 and "Traceback" not in stderr


def test_it_checks_its_tls_files(pki: Certificates, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli_main(["--port", "0", "--tls-cert-file", str(pki.leaf)])
    assert stop.value.code == 2
    assert "--tls-cert-file and --tls-key-file go together" in capsys.readouterr().err
    wrong_key = str(pki.ca_key)
    for cert, key, says in (
        (str(pki.leaf), wrong_key, "the key does not belong to the certificate"),
        (str(pki.leaf_key), str(pki.leaf_key), "not a PEM certificate and key"),
        (str(pki.leaf.with_name("absent.pem")), str(pki.leaf_key), "No such file"),
    ):
        assert cli_main(["--port", "0", "--tls-cert-file", cert, "--tls-key-file", key]) == 2
        err = capsys.readouterr().err
        assert err.startswith("pinference-fake: error: cannot use the TLS certificate and key")
        assert says in err and err.count("\n") == 1, err


def test_it_serves_https(serve: Serve, pki: Certificates) -> None:
    process, base_url = serve("--tls-cert-file", str(pki.chain), "--tls-key-file",
                              str(pki.leaf_key))  # fmt: skip
    assert base_url.startswith("https://127.0.0.1:")
    models = requests.get(base_url + "/models", verify=str(pki.ca), timeout=TIMEOUT)
    assert models.json()["data"]
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0 and "Traceback" not in stderr
