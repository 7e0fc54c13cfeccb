"""Helpers shared by the exporter tests: in-process exporters, scrapes, promtool, polling."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from pinference_exporter import AccountConfig, Exporter, ExporterConfig
from prometheus_client.parser import text_string_to_metric_families

from tests.support import in_ci

SECRET = "sk-test-SECRET-0123456789abcdef"
# A bcrypt hash of "pw" (cost 5), the kind htpasswd -B makes for exporter-toolkit configs.
PW_HASH = "$2y$05$ABCDEFGHIJKLMNOPQRSTUut6sgQDytS6EBFaIEIhKhFLSVnzN0zlG"
ROOT = Path(__file__).resolve().parents[2]


def make_exporter(base_url: str, *, api_key: str | None = None, **overrides: Any) -> Exporter:
    """An exporter on 127.0.0.1:PORT (web only: tests drive probe cycles themselves).

    The default timeout is generous so that a busy machine never turns a success into a
    `timeout`; tests about timeouts set their own.
    """
    options: dict[str, Any] = {
        "listen_address": "127.0.0.1:0",
        "probe_interval": 30.0,
        "probe_timeout": 10.0,
    }
    account = {f: overrides.pop(f) for f in ("probe_models", "sample_size") if f in overrides}
    options.update(overrides)
    options.setdefault("accounts", (AccountConfig(base_url=base_url, api_key=api_key, **account),))
    config = ExporterConfig(**options)
    return Exporter(config).start(probe=False)


@dataclass
class Scrape:
    text: str
    families: dict[str, Any]

    def samples(self, name: str) -> list[Any]:
        return [s for f in self.families.values() for s in f.samples if s.name == name]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample with these labels (a subset match), or None."""
        found = [s.value for s in self.samples(name) if _matches(s.labels, labels)]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else None

    def labelsets(self, name: str) -> list[dict[str, str]]:
        return [dict(s.labels) for s in self.samples(name)]


def _matches(have: dict[str, str], want: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


def scrape(exporter: Exporter, **kwargs: Any) -> Scrape:
    """A real HTTP scrape of the telemetry path, parsed and linted with promtool."""
    return scrape_url(exporter.metrics_url, **kwargs)


def scrape_url(url: str, **kwargs: Any) -> Scrape:
    response = requests.get(url, timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    text = response.text
    promtool_check(text)
    return Scrape(text, {f.name: f for f in text_string_to_metric_families(text)})


def bcrypt_hash(password: str, cost: int = 4) -> str:
    """A bcrypt hash as htpasswd -B makes them (cost 4: fast, for tests)."""
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def make_certificate(folder: Path, name: str = "server", days: int = 2) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (usable as its own CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days),
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def promtool_path() -> str | None:
    return shutil.which("promtool")


def promtool_check(text: str) -> None:
    """`promtool check metrics` must find nothing. Without promtool: a failure in CI, and
    elsewhere a skip that says so (never a silent pass)."""
    tool = promtool_path()
    if tool is None:
        reason = "promtool is not installed (apt-get install prometheus): metrics not linted"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    result = subprocess.run(
        [tool, "check", "metrics"],
        check=False,
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, f"promtool check metrics: {result.stdout}{result.stderr}"


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until predicate() is truthy; generous deadlines keep busy machines green."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# --- the real CLI in a subprocess ----------------------------------------------------


class ExporterProcess:
    """`python -m pinference_exporter ...`; stderr is drained by a thread (a full pipe would
    block the exporter) and the port is read from its start-up log line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pinference_exporter", *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.stdout = ""  # read once the process has gone (see kill)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self.port = self._read_port()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def _read_port(self) -> int:
        def port() -> int | None:
            for line in list(self.lines):
                # logfmt or JSON; the first of the comma-separated addresses
                match = re.search(r'listen(?:=|": ")[^\s",]*:(\d+)', line)
                if "starting" in line and match:
                    return int(match[1])
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited early: {self.stderr}")
            return None

        return int(wait_for(port, 30, "the exporter's start-up log line"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10) -> float:
        """Send `sig` and wait; returns how long the process took to exit."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout)
        elapsed = time.monotonic() - started
        self._reader.join(5)
        return elapsed

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.stdout = self.proc.stdout.read()
            self.proc.stdout.close()


@contextlib.contextmanager
def exporter_process(args: list[str], env: dict[str, str] | None = None) -> Iterator[Any]:
    process = ExporterProcess(args, env)
    try:
        yield process
    finally:
        process.kill()
