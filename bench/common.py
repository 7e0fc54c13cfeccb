"""Helpers shared by the benchmarks: ports, child processes, /proc, statistics, output.

Standard library only (plus requests in `wait_http`), so every bench stays one command:
`.venv/bin/python bench/bench_X.py [--quick] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The flags every bench takes; a bench adds its own knobs after these."""
    text = (doc or "").strip()
    result = argparse.ArgumentParser(
        description=text.split("\n\n")[0],
        epilog="\n\n".join(text.split("\n\n")[1:]) or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    result.add_argument("--json", action="store_true", help="print the results as JSON only")
    return result


def machine() -> dict[str, Any]:
    """What a reader needs to judge the figures: CPUs and how busy they were."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in load],
            "python": sys.version.split()[0]}  # fmt: skip


def machine_line() -> str:
    info = machine()
    load = " ".join(f"{x:.2f}" for x in info["loadavg"])
    return f"machine: {info['cpus']} CPUs, load average {load} (python {info['python']})"


def emit_json(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2, sort_keys=False, default=str))


# --- ports and processes -------------------------------------------------------------


def free_port() -> int:
    """A loopback port free right now (bound, then released: a small race we accept)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll until `url` answers 200; fail early if `proc` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before {url}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout}s")
        time.sleep(0.05)


class Child:
    """A child process whose stderr goes to a temporary file (a full pipe would block it)."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 stdin: int | None = None, stdout: int | None = None) -> None:  # fmt: skip
        self.log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            list(argv), cwd=ROOT, env=env, stdin=stdin, stdout=stdout, stderr=self.log, text=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM, then SIGKILL after `timeout`; returns seconds until it exited."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return time.monotonic() - started

    def close(self) -> None:
        self.stop()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and Threads of a process, from /proc/PID/status."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "Threads"):
            fields[name] = int(value.split()[0])
    return fields


# --- statistics ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Slope of the least-squares line through (xs, ys); NaN with fewer than 2 points."""
    if len(xs) < 2:
        return math.nan
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


# --- text output ---------------------------------------------------------------------


def ms(seconds: float, digits: int = 2) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])
