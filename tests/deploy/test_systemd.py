"""The systemd unit (deploy/systemd/pinference-exporter.service).

`systemd-analyze verify` checks it (it needs ExecStart's program to exist, so a copy with
the path of this venv's pinference-exporter is verified), `systemd-analyze security`
scores its hardening, and its ExecStart command line is run as systemd would run it
(credentials directory filled in) against the fake API.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pinference_fake import FakePinference
from tests.deploy.helpers import ROOT, require, run, tool_env, wait_until_up
from tests.support import free_port

UNIT = ROOT / "deploy" / "systemd" / "pinference-exporter.service"
INSTALLED_AT = "/opt/pinference-exporter/bin/pinference-exporter"
KEY = "pit_systemd_test_key_93ab"
MAX_EXPOSURE = 2.0  # systemd-analyze security: 0 (locked down) .. 10 (fully exposed)


def _program() -> Path:
    program = Path(sys.executable).parent / "pinference-exporter"
    if not program.exists():
        pytest.skip(f"{program} is not installed (pip install -e '.[test]')")
    return program


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart pointing at a program that exists here."""
    text = UNIT.read_text()
    assert INSTALLED_AT in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_AT, str(_program())))
    return copy


def _analyze() -> str:
    return require("systemd-analyze", "apt-get install systemd")


def test_systemd_analyze_verify_is_clean(unit: Path) -> None:
    result = run([_analyze(), "verify", unit], check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_reports_a_misspelt_setting(unit: Path) -> None:
    unit.write_text(unit.read_text().replace("\nRestart=", "\nRestartt=", 1))
    result = run([_analyze(), "verify", unit], check=False)
    assert "Unknown key 'Restartt'" in result.stderr


def test_hardening_score(unit: Path) -> None:
    threshold = int(MAX_EXPOSURE * 10)
    result = run(
        [_analyze(), "security", "--offline=yes", f"--threshold={threshold}", unit], check=False
    )
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert result.returncode == 0 and float(score[1]) <= MAX_EXPOSURE, score[0]


def _settings() -> dict[str, list[str]]:
    """Every `Key=value` of the unit (keys may repeat), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", UNIT.read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_runs_hardened_with_the_key_as_a_credential() -> None:
    settings = _settings()
    for key, value in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "LoadCredential": "prime_api_key:/etc/pinference-exporter/prime_api_key",
    }.items():
        assert settings.get(key) == [value], key
    (exec_start,) = settings["ExecStart"]
    assert "--api.key-file=${CREDENTIALS_DIRECTORY}/prime_api_key" in exec_start.split()
    assert not [k for k in settings if k.startswith("Environment")]  # no key in the env


@pytest.mark.integration
def test_execstart_command_line_runs_the_exporter(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "prime_api_key").write_text(KEY + "\n")
    (exec_start,) = _settings()["ExecStart"]
    # systemd substitutes ${CREDENTIALS_DIRECTORY}; the port is free_port() here, not 8795
    port = free_port()
    argv = shlex.split(exec_start.replace("${CREDENTIALS_DIRECTORY}", str(credentials)))
    argv = [str(_program()) if a == INSTALLED_AT else a for a in argv]
    argv = [a.replace("=:8795", f"=127.0.0.1:{port}") for a in argv]
    with FakePinference(require_key=KEY) as fake:
        proc = subprocess.Popen(
            argv,
            env=tool_env(PRIME_INFERENCE_URL=fake.base_url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            body = wait_until_up(f"http://127.0.0.1:{port}/metrics", proc)
            # ExecReload: SIGHUP reloads (the key file again), the process lives on.
            loaded = _reload_time(f"http://127.0.0.1:{port}/metrics", proc, after=0.0)
            time.sleep(0.05)
            proc.send_signal(signal.SIGHUP)
            _reload_time(f"http://127.0.0.1:{port}/metrics", proc, after=loaded)
            assert proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(10)
    assert "pinference_models" in body and KEY not in body


def _reload_time(url: str, proc: subprocess.Popen[str], after: float, timeout: float = 20) -> float:
    """The exporter's last successful reload time, once it is later than `after`."""
    pattern = re.compile(
        r"^pinference_exporter_config_last_reload_success_timestamp_seconds (\S+)$", re.M
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            match = pattern.search(urllib.request.urlopen(url, timeout=2).read().decode())
            if match and float(match[1]) > after:
                return float(match[1])
        time.sleep(0.2)
    pytest.fail(f"no reload seen on {url} within {timeout}s (exit status {proc.poll()})")
