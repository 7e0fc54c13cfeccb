"""Soak: does the exporter's memory or thread count grow under fast probing and faults?

    .venv/bin/python bench/bench_exporter_soak.py [--quick] [--json] [--seconds S]

The real CLI (`python -m exporter`, a child process) probes the fake API (in this process)
as 10 accounts, each every second (the shortest interval allowed) with a 500 ms timeout,
watching a few models: about 10 cycles a second in all. Every ~0.5 s a thread switches
the fake to a random fault (401/402/403/404/429 with Retry-After 0/500/503, html,
malformed, truncated, wrong_shape, huge, drop, hang, delay, empty, or none) on list, get
or both, and scrapes /metrics (each scrape must parse). Every second: the exporter's VmRSS
and Threads from /proc, and the fake's connection threads.

Reported: first/last/max RSS and threads, the least-squares RSS slope over the second half
(KiB/min) and the growth it implies over that half; verdict "flat" if that growth is under
2 MiB. The baseline is the exporter's own first half. Also: probes made, failures per
reason, and whether the fake's threads (hang faults!) come back down once faults stop.
Not a test: it prints numbers; exit status 1 if a scrape failed or memory/threads grew.
"""

from __future__ import annotations

import os
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

import requests
from common import (
    Child,
    emit_json,
    least_squares_slope,
    machine,
    machine_line,
    parser,
    proc_status,
    table,
)
from prometheus_client.parser import text_string_to_metric_families

from pinference_fake import FakePinference, Fault, default_catalogue

TOLERANCE_KIB = 2048  # growth over the second half still called flat
ACCOUNTS = 10  # each probed every second: ~10 probe cycles a second in all
MAX_RESPONSE = 64 * 1024  # the exporter's --probe.max-response-bytes: `huge` exceeds it
FAULTS: dict[str, Fault | None] = {
    "401": Fault(status=401), "402": Fault(status=402), "403": Fault(status=403),
    "404": Fault(status=404), "429": Fault(status=429, retry_after="0"),
    "500": Fault(status=500), "503": Fault(status=503),
    "html": Fault(status=502, html=True), "malformed": Fault(mode="malformed"),
    "truncated": Fault(mode="truncated"), "wrong_shape": Fault(mode="wrong_shape"),
    "huge": Fault(mode="huge", huge_bytes=4 * MAX_RESPONSE), "drop": Fault(mode="drop"),
    "hang": Fault(mode="hang"), "delay": Fault(delay=0.2), "slow_ok": Fault(delay=0.02),
    "empty": Fault(mode="empty"), "none": None,
}  # fmt: skip


def fake_threads() -> int:
    """Connection threads of the fake's ThreadingHTTPServer (this process)."""
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def scrape(url: str) -> dict[str, Any]:
    text = requests.get(url, timeout=5).text
    return {f.name: f for f in text_string_to_metric_families(text)}


class Chaos(threading.Thread):
    """Switches faults and scrapes every ~0.5 s until stopped."""

    def __init__(self, fake: FakePinference, metrics_url: str, seed: int) -> None:
        super().__init__(name="chaos", daemon=True)
        self.fake, self.url = fake, metrics_url
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.faults: Counter[str] = Counter()
        self.scrapes = 0
        self.bad_scrapes: list[str] = []

    def run(self) -> None:
        while not self.stopping.wait(self.rng.uniform(0.4, 0.6)):
            name = self.rng.choice(list(FAULTS))
            endpoint = self.rng.choice(["list", "get", "*"])
            self.fake.clear_faults()
            fault = FAULTS[name]
            if fault is not None:
                self.fake.set_fault(endpoint, fault)
            self.faults[name] += 1
            try:
                families = scrape(self.url)
                assert "pinference_probes" in families, "no pinference_probes family"
                self.scrapes += 1
            except Exception as exc:  # counted and reported, not fatal
                self.bad_scrapes.append(f"{type(exc).__name__}: {exc}")
        self.fake.clear_faults()


def soak(seconds: float, seed: int) -> dict[str, Any]:
    models = default_catalogue()
    watched = [m["id"] for m in models[:3]]
    with FakePinference(models=models) as fake, tempfile.TemporaryDirectory() as home:
        config = os.path.join(home, "exporter.yml")
        with open(config, "w", encoding="utf-8") as file:
            file.write("accounts:\n" + "".join(
                f"  - {{name: a{i}, base_url: '{fake.base_url}', models: {watched!r}}}\n"
                for i in range(ACCOUNTS)
            ))  # fmt: skip
        argv = [sys.executable, "-m", "exporter", "--web.listen-address=127.0.0.1:0",
                f"--config.file={config}", "--probe.interval=1s", "--probe.timeout=500ms",
                f"--probe.max-response-bytes={MAX_RESPONSE}"]  # fmt: skip
        # A clean HOME and no PRIME_* variables: never a real key or API.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
        env["HOME"] = home
        with Child(argv, env=env) as child:
            metrics_url = wait_started(child) + "/metrics"
            chaos = Chaos(fake, metrics_url, seed)
            samples: list[tuple[float, int, int, int]] = []  # t, rss KiB, threads, fake's
            started = time.monotonic()
            chaos.start()
            while (now := time.monotonic() - started) < seconds:
                status = proc_status(child.pid)
                samples.append((now, status["VmRSS"], status["Threads"], fake_threads()))
                time.sleep(max(0.0, len(samples) - (time.monotonic() - started)))
            chaos.stopping.set()
            chaos.join(5)
            families = scrape(metrics_url)
            end: dict[str, Any] = {"settle": fake_threads_after(2.0)}  # hangs let go?
            end["exit_s"] = child.stop()
            end["rc"], end["log"] = child.proc.returncode, child.stderr()
        end["after_exit"] = fake_threads_after(2.0)  # exporter gone: connections closed
    return summarise(samples, families, chaos, end, seconds)


def wait_started(child: Child, timeout: float = 30.0) -> str:
    """The exporter's URL, from its start-up log line (it listens on port 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"starting.*listen=[^\s]*:(\d+)", child.stderr())
        if match:
            return f"http://127.0.0.1:{match[1]}"
        if child.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the exporter did not start:\n{child.stderr()}")


def fake_threads_after(seconds: float) -> int:
    """The fake's connection threads once they have had `seconds` to finish."""
    deadline = time.monotonic() + seconds
    while fake_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    return fake_threads()


def summarise(
    samples: list[tuple[float, int, int, int]],
    families: dict[str, Any],
    chaos: Chaos,
    end: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    times, rss, threads, fake = (list(column) for column in zip(*samples, strict=True))
    half = len(samples) // 2
    slope = least_squares_slope(times[half:], rss[half:])  # KiB per second
    growth = slope * (times[-1] - times[half])
    probes: Counter[str] = Counter()
    for s in families["pinference_probes"].samples:  # summed over the accounts
        probes[s.labels["endpoint"]] += int(s.value)
    reasons: Counter[str] = Counter()
    for s in families["pinference_probe_failures"].samples:
        reasons[s.labels["reason"]] += int(s.value)
    thread_growth = max(threads[half:]) - max(threads[:half])
    return {
        "seconds": seconds, "machine": machine(), "samples": len(samples),
        "rss_kib": {"first": rss[0], "last": rss[-1], "max": max(rss)},
        "threads": {"first": threads[0], "last": threads[-1], "max": max(threads),
                    "second_half_growth": thread_growth},
        "rss_slope_kib_per_min": slope * 60, "rss_growth_second_half_kib": growth,
        "flat": growth < TOLERANCE_KIB and thread_growth <= 0,
        "probes": dict(probes), "probes_per_s": sum(probes.values()) / seconds,
        "failures": dict(reasons.most_common()),
        "faults_switched": sum(chaos.faults.values()), "faults": dict(chaos.faults),
        "scrapes": chaos.scrapes, "bad_scrapes": chaos.bad_scrapes[:5],
        "fake_threads": {"max_during": max(fake), "after_faults_cleared": end["settle"],
                         "after_exporter_exit": end["after_exit"]},
        "exit": {"seconds": end["exit_s"], "status": end["rc"]},
        "tracebacks": end["log"].count("Traceback"), "crash_lines": end["log"].count("crashed"),
    }  # fmt: skip


def report(res: dict[str, Any]) -> None:
    rss, threads = res["rss_kib"], res["threads"]
    print(f"exporter soak: {res['seconds']:.0f} s, {ACCOUNTS} accounts probed every 1 s "
          f"(timeout 500 ms), a new "
          f"fault every ~0.5 s ({res['faults_switched']} switches), {res['samples']} samples")
    print(table(["", "first", "last", "max"], [
        ["RSS (MiB)", *(f"{rss[k] / 1024:.1f}" for k in ("first", "last", "max"))],
        ["threads", threads["first"], threads["last"], threads["max"]],
    ]))  # fmt: skip
    print(f"RSS slope over the second half: {res['rss_slope_kib_per_min']:+.0f} KiB/min "
          f"({res['rss_growth_second_half_kib']:+.0f} KiB over that half); thread growth "
          f"second half vs first: {threads['second_half_growth']:+d}")
    probes = res["probes"]
    print(f"probes: {sum(probes.values())} ({probes.get('list', 0)} list, {probes.get('get', 0)}"
          f" get; {res['probes_per_s']:.1f}/s); failures by reason: "
          + (", ".join(f"{k}={v}" for k, v in res["failures"].items() if v) or "none"))
    print(f"scrapes: {res['scrapes']} parsed, {len(res['bad_scrapes'])} failed; exporter exit "
          f"on SIGTERM: status {res['exit']['status']} in {res['exit']['seconds']:.2f} s; "
          f"tracebacks in its log: {res['tracebacks']}")
    fake = res["fake_threads"]
    print(f"fake's connection threads: max {fake['max_during']} during the soak, "
          f"{fake['after_faults_cleared']} 2 s after the faults stopped, "
          f"{fake['after_exporter_exit']} after the exporter exited")
    for bad in res["bad_scrapes"]:
        print(f"FAILED SCRAPE: {bad}")
    if fake["after_exporter_exit"]:
        print("WARNING: the fake keeps connection threads after its client has gone")
    verdict = "flat" if res["flat"] else "GROWING"
    print(f"verdict: {verdict} (tolerance {TOLERANCE_KIB / 1024:.0f} MiB over the second half, "
          "no thread growth)")
    print(machine_line())


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--seconds", type=float, help="soak length (default 60, quick 15)")
    args_parser.add_argument("--seed", type=int, default=1, help="fault sequence seed")
    args = args_parser.parse_args()
    results = soak(args.seconds or (15.0 if args.quick else 60.0), args.seed)
    if args.json:
        emit_json(results)
    else:
        report(results)
    return 0 if results["flat"] and not results["bad_scrapes"] else 1


if __name__ == "__main__":
    sys.exit(main())
