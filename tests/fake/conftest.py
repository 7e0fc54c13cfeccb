"""Fixtures of the fake server's tests: the pinference-fake command as a child process."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fake.helpers import TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
Serve = Callable[..., tuple[subprocess.Popen[str], str]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start `python -m pinference_fake ARGS` (extra environment as keywords); returns the
    process and the base URL it prints once it serves. Every process is reaped at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
        environ = {k: v for k, v in os.environ.items() if k != "PINFERENCE_FAKE_REQUIRE_KEY"}
        process = subprocess.Popen(
            [sys.executable, "-m", "pinference_fake", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**environ, "PYTHONPATH": str(ROOT), **env},
        )  # fmt: skip
        started.append(process)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the fake server printed nothing"
        line = process.stdout.readline().strip()
        assert line.startswith("pinference-fake serving "), line
        return process, line.split()[2]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=TIMEOUT)
