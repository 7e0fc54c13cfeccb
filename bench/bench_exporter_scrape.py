"""Scrape cost of the exporter's /metrics next to a bare prometheus_client floor.

    .venv/bin/python bench/bench_exporter_scrape.py [--quick] [--json]
        [--models 1000] [--clients 1,4,16] [--requests N] [--rounds N] [--stock-floor]
        [--probe-interval SECONDS]

The exporter (in its own process, with the fake API and a 1000-model catalogue, after two
probe cycles so every model_info series and both histograms exist) is compared with the
FLOOR: prometheus_client's own `start_http_server` (the same wsgiref threading server) in
another process, re-exposing the very same families parsed from the exporter's scrape
through a trivial collector, so it renders and compresses all of them on every scrape. The
exporter serves them pre-rendered (rendered once per state change) and renders only
process_* per scrape. By default nothing probes during the load (the state does not
change); `--probe-interval 1` probes every second meanwhile (the shortest interval the CLI
allows), so renders after changes are part of the figures.

Load: C concurrent clients, each a separate process (so the load generator's GIL does not
distort the figures) with a requests.Session, N scrapes each, sending the headers Prometheus
sends (text format, gzip). Exporter and floor rounds alternate, the order swapping each
round. Every response is checked complete (length, series count, trailing family); the
first and last of each client are parsed with prometheus_client's parser.
Not a test: it prints numbers; exit status 1 only if a response was incomplete.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from common import (
    Child,
    emit_json,
    machine,
    machine_line,
    ms,
    parser,
    percentile,
    ratio,
    table,
)
from prometheus_client.parser import text_string_to_metric_families

# Prometheus 2.x asks for the text format (after OpenMetrics) and gzip.
HEADERS = {"Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "Accept-Encoding": "gzip"}
INFO = b"\npinference_model_info{"
LAST_FAMILY = b"pinference_exporter_build_info{"  # the exporter's last pinference_ family


# --- the two servers, each run as `python bench_exporter_scrape.py --serve ROLE` -----


def serve_exporter(models: int, probe_interval: float) -> None:
    from pinference_exporter import AccountConfig, Exporter, ExporterConfig

    from pinference_fake import FakePinference, generate_catalogue

    fake = FakePinference(models=generate_catalogue(models)).start()
    interval = probe_interval or 60.0
    config = ExporterConfig(accounts=(AccountConfig(base_url=fake.base_url),),
                            listen_address="127.0.0.1:0", probe_interval=interval,
                            probe_timeout=min(10.0, interval / 2),
                            max_series=max(1000, models))  # fmt: skip
    exporter = Exporter(config).start(probe=False)
    for _ in range(2):
        exporter.run_probe_cycle()
    if probe_interval:
        exporter.start()  # probing in the background from now on
    announce(exporter.metrics_url)


class Replay:
    """The floor's collector: yields families parsed once from the exporter's output."""

    def __init__(self, text: str) -> None:
        self.families = list(text_string_to_metric_families(text))

    def collect(self) -> Iterator[Any]:
        return iter(self.families)


def serve_floor(path: str, stock: bool) -> None:
    from wsgiref.simple_server import make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

    class Server(ThreadingWSGIServer):
        # start_http_server's server as it is, but with the exporter's listen backlog:
        # the stock 5 overflows at 16 clients and costs 1 s SYN retries (see README).
        request_queue_size = ThreadingWSGIServer.request_queue_size if stock else 64

    registry = CollectorRegistry()
    registry.register(Replay(Path(path).read_text()))  # type: ignore[arg-type]
    server = make_server("127.0.0.1", 0, make_wsgi_app(registry), Server, _SilentHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    announce(f"http://127.0.0.1:{server.server_port}/metrics")


def announce(url: str) -> None:
    """Tell the parent where we listen, then serve until it closes our stdin."""
    print(json.dumps({"url": url}), flush=True)
    sys.stdin.read()


def start_server(role: str, arg: str, *extra: str) -> tuple[Child, str]:
    argv = [sys.executable, __file__, "--serve", role, "--serve-arg", arg, *extra]
    child = Child(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.proc.stdout is not None
    line = child.proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{role} server failed to start:\n{child.stderr()}")
    return child, json.loads(line)["url"]


# --- the load: one process per client --------------------------------------------------


def client(job: tuple[str, int, float, int]) -> dict[str, Any]:
    """N scrapes on one keep-alive session from `start_at` (wall time, shared by clients)."""
    url, n, start_at, expected_info = job
    session = requests.Session()
    session.headers.update(HEADERS)
    latencies: list[float] = []
    bad: list[str] = []
    bodies: list[str] = []
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(n):
        started = time.perf_counter()
        try:
            response = session.get(url, timeout=30)
            body = response.content
        except requests.RequestException as exc:
            bad.append(f"{type(exc).__name__}: {exc}")
            continue
        latencies.append(time.perf_counter() - started)
        # Cheap completeness checks on every response; the full parse happens below.
        if response.status_code != 200:
            bad.append(f"status {response.status_code}")
        elif body.count(INFO) != expected_info or LAST_FAMILY not in body:
            bad.append(f"incomplete: {body.count(INFO)} model_info series, {len(body)} bytes")
        elif i in (0, n - 1):
            bodies.append(response.text)
    finished = time.time()
    parsed = 0
    for text in bodies:
        families = {f.name: f for f in text_string_to_metric_families(text)}
        if len(families["pinference_model_info"].samples) == expected_info:
            parsed += 1
        else:
            bad.append("parsed model_info count differs")
    session.close()
    return {"latencies": latencies, "bad": bad, "parsed": parsed, "finished": finished}


def run_round(pool: Any, url: str, clients: int, n: int, expected: int) -> dict[str, Any]:
    start_at = time.time() + 0.3  # every client process is waiting by then
    jobs = [(url, n, start_at, expected)] * clients
    results = pool.map(client, jobs, chunksize=1)
    elapsed = max(r["finished"] for r in results) - start_at
    latencies = [x for r in results for x in r["latencies"]]
    return {"latencies": latencies, "elapsed": elapsed,
            "bad": [b for r in results for b in r["bad"]],
            "parsed": sum(r["parsed"] for r in results)}  # fmt: skip


# --- the run -------------------------------------------------------------------------


def measure(args: Any) -> dict[str, Any]:
    concurrency = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        probing = ["--probe-interval", str(args.probe_interval)]
        exp, exp_url = start_server("exporter", str(args.models), *probing)
        floor = None
        try:
            text = requests.get(exp_url, headers=HEADERS, timeout=30).text
            expected = text.count(INFO.decode())
            snapshot = Path(tmp, "scrape.txt")
            snapshot.write_text(text)
            stock = ["--stock-floor"] if args.stock_floor else []
            floor, floor_url = start_server("floor", str(snapshot), *stock)
            floor_text = requests.get(floor_url, headers=HEADERS, timeout=30).text
            same = sorted(_series(text)) == sorted(_series(floor_text))
            urls = {"exporter": exp_url, "floor": floor_url}
            results: dict[str, Any] = {
                "models": args.models, "model_info_series": expected,
                "samples": len(_series(text)), "exposition_bytes": len(text.encode()),
                "floor_same_series": same, "requests_per_client": args.requests,
                "rounds": args.rounds, "probe_interval": args.probe_interval,
                "machine": machine(), "by_clients": {},
            }  # fmt: skip
            context = multiprocessing.get_context("spawn")
            with context.Pool(max(concurrency)) as pool:
                for url in urls.values():  # warm-up: connections, caches, first calls
                    run_round(pool, url, 1, 3, expected)
                for clients in concurrency:
                    results["by_clients"][str(clients)] = _alternate(
                        pool, urls, clients, args, expected
                    )
            return results
        finally:
            for child in (exp, floor):
                if child is not None:
                    child.close()


def _alternate(
    pool: Any, urls: dict[str, str], clients: int, args: Any, expected: int
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
    for r in range(args.rounds):
        order = list(urls) if r % 2 == 0 else list(reversed(urls))
        for name in order:
            runs[name].append(run_round(pool, urls[name], clients, args.requests, expected))
    summary: dict[str, Any] = {}
    for name, rounds in runs.items():
        latencies = [x for r in rounds for x in r["latencies"]]
        summary[name] = {
            "requests": len(latencies),
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "req_per_s": len(latencies) / sum(r["elapsed"] for r in rounds),
            "bad": [b for r in rounds for b in r["bad"]][:5],
            "bad_count": sum(len(r["bad"]) for r in rounds),
            "parsed": sum(r["parsed"] for r in rounds),
        }
    e, f = summary["exporter"], summary["floor"]
    summary["ratio"] = {k: ratio(e[k], f[k]) for k in ("p50", "p99", "req_per_s")}
    return summary


def _series(text: str) -> list[str]:
    """Sample names and labels (not values: process_* values move between scrapes)."""
    return [line.rsplit(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"]


def report(res: dict[str, Any]) -> None:
    print(f"exporter /metrics vs bare prometheus_client floor: {res['models']} models, "
          f"{res['model_info_series']} model_info series, {res['samples']} samples, "
          f"{res['exposition_bytes'] / 1024:.0f} KiB uncompressed (gzip on the wire)")  # fmt: skip
    probing = (f"probing every {res['probe_interval']:g} s" if res["probe_interval"]
               else "no probing")  # fmt: skip
    print(f"floor exposes the same series: {'yes' if res['floor_same_series'] else 'NO'}; "
          f"{res['rounds']} alternated rounds x {res['requests_per_client']} scrapes per "
          f"client; exporter {probing} during the load; latencies in ms")
    rows = []
    for clients, s in res["by_clients"].items():
        for name in ("exporter", "floor"):
            r = s[name]
            rows.append([f"{clients:>2} clients  {name}", r["requests"], ms(r["p50"]),
                         ms(r["p99"]), f"{r['req_per_s']:.1f}",
                         f"{r['requests'] - r['bad_count']}/{r['requests']}",
                         f"{r['parsed']}"])  # fmt: skip
        q = s["ratio"]
        rows.append([f"{clients:>2} clients  exporter/floor", "", f"{q['p50']:.2f}x",
                     f"{q['p99']:.2f}x", f"{q['req_per_s']:.2f}x", "", ""])  # fmt: skip
    print(table(["", "n", "p50", "p99", "req/s", "complete", "parsed"], rows))
    print(machine_line())
    print("note: clients, servers and the OS share these CPUs; read the ratios, not the "
          "absolute figures. wsgiref serves HTTP/1.0, so every scrape is a new connection "
          "for both.")
    for clients, s in res["by_clients"].items():
        for name in ("exporter", "floor"):
            for bad in s[name]["bad"]:
                print(f"INCOMPLETE ({name}, {clients} clients): {bad}")


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--models", type=int, default=1000)
    args_parser.add_argument("--clients", default="1,4,16", help="concurrency levels")
    args_parser.add_argument("--requests", type=int, help="scrapes per client per round")
    args_parser.add_argument("--rounds", type=int, help="alternated rounds per concurrency")
    args_parser.add_argument("--probe-interval", type=float, default=0.0,
                             help="probe in the background meanwhile (seconds; 0: no probing)")
    args_parser.add_argument("--stock-floor", action="store_true",
                             help="floor with start_http_server's own listen backlog (5)")
    args_parser.add_argument("--serve", choices=["exporter", "floor"], help=argparse.SUPPRESS)
    args_parser.add_argument("--serve-arg", help=argparse.SUPPRESS)
    args = args_parser.parse_args()
    if args.serve == "exporter":
        serve_exporter(int(args.serve_arg), args.probe_interval)
        return 0
    if args.serve == "floor":
        serve_floor(args.serve_arg, args.stock_floor)
        return 0
    args.requests = args.requests or (6 if args.quick else 20)
    args.rounds = args.rounds or (2 if args.quick else 3)
    results = measure(args)
    if args.json:
        emit_json(results)
    else:
        report(results)
    bad = any(s[n]["bad_count"] for s in results["by_clients"].values()
              for n in ("exporter", "floor"))  # fmt: skip
    return 1 if bad or not results["floor_same_series"] else 0


if __name__ == "__main__":
    sys.exit(main())
