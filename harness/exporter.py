"""The exporter as a child process, the way a user runs it."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import requests

from .net import free_port
from .process import Process, wait_until

STARTUP_TIMEOUT = 30.0


def exporter_env(root: Path, base_url: str, api_key: str, home: Path) -> dict[str, str]:
    """The caller's environment without PRIME_* settings, pointed at `base_url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
    env.update(PRIME_INFERENCE_URL=base_url, PRIME_API_KEY=api_key, HOME=str(home))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    return env


def start_exporter(
    work: Path,
    root: Path,
    base_url: str,
    api_key: str,
    *,
    watched: Sequence[str] = (),
    interval: str = "1s",
    timeout: str = "500ms",
) -> tuple[Process, str]:
    """The exporter probing `base_url` on 127.0.0.1:PORT; returns once a list probe has
    succeeded, with the process and its host:port."""
    home = work / "exporter-home"
    home.mkdir(exist_ok=True)
    target = f"127.0.0.1:{free_port()}"
    argv = [
        *(sys.executable, "-m", "pinference_exporter"),
        f"--web.listen-address={target}",
        f"--probe.interval={interval}",
        f"--probe.timeout={timeout}",
        *(f"--probe.models={model}" for model in watched),
    ]
    process = Process(
        "exporter", argv, work / "exporter.log",
        env=exporter_env(root, base_url, api_key, home), cwd=root,
    )  # fmt: skip
    try:
        wait_until(
            lambda: re.search(
                r"^pinference_up(\{[^}]*\})? 1(\.0)?$",
                requests.get(f"http://{target}/metrics", timeout=5).text,
                flags=re.M,
            ),
            timeout=STARTUP_TIMEOUT,
            what="the exporter's first successful list probe",
            alive=[process],
        )
    except BaseException:
        process.stop()
        raise
    return process, target
