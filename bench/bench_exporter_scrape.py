"""What a scrape of the exporter costs next to prometheus_client's own app.

    .venv/bin/python bench/bench_exporter_scrape.py [--quick] [--json] [--models 1000]

The exporter (in this process, after two probe cycles against the fake with a 1000-model
catalogue, so every model_info series and both histograms exist) is the WSGI app it serves;
the floor is prometheus_client's `make_wsgi_app` over the very same families, parsed from
the exporter's scrape and returned as they are by a trivial collector. Both are called
directly (no HTTP), alternating, with Prometheus' headers (text format, gzip), then without
gzip. The exporter's extra cost is its collect(): building the families from the state.
Then over HTTP: scrapes on one kept-alive connection against a new connection each.
Not a test: it prints numbers.
"""

from __future__ import annotations

import http.client
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from common import emit_json, machine_line, parser, ratio
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

PROMETHEUS = {"HTTP_ACCEPT": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
              "HTTP_ACCEPT_ENCODING": "gzip"}  # fmt: skip


class Static:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def timed(app: Callable[..., Any], environ: dict[str, str], rounds: int) -> list[float]:
    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        assert status == "200 OK", status

    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        b"".join(app(dict(environ), start_response))
        took.append(time.perf_counter() - started)
    return took


def over_http(port: int, rounds: int, keep_alive: bool) -> list[float]:
    took, conn = [], http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Accept-Encoding": "gzip"}
    for _ in range(rounds):
        started = time.perf_counter()
        if not keep_alive:
            conn.close()
        conn.request("GET", "/metrics", headers=headers)
        answer = conn.getresponse()
        answer.read()
        took.append(time.perf_counter() - started)
        assert answer.status == 200
    conn.close()
    return took


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--models", type=int, default=1000)
    args = args_parser.parse_args()
    rounds = 50 if args.quick else 300

    from pinference_exporter import AccountConfig, Exporter, ExporterConfig

    from pinference_fake import FakePinference, generate_catalogue

    result: dict[str, Any] = {"models": args.models, "rounds": rounds}
    with FakePinference(models=generate_catalogue(args.models)) as fake:
        config = ExporterConfig(accounts=(AccountConfig(base_url=fake.base_url),),
                                listen_address="127.0.0.1:0", probe_interval=60.0,
                                max_series=max(1000, args.models))  # fmt: skip
        with Exporter(config).start(probe=False) as exporter:
            for _ in range(2):
                exporter.run_probe_cycle()
            floor = CollectorRegistry()
            floor.register(Static(list(text_string_to_metric_families(exporter.scrape()))))
            apps = {"exporter": exporter.app, "floor": make_wsgi_app(floor)}
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""}
            for label, extra in (("gzip", PROMETHEUS), ("plain", {})):
                samples: dict[str, list[float]] = {name: [] for name in apps}
                for _ in range(5):  # alternating, so that load changes hit both alike
                    for name, app in apps.items():
                        samples[name] += timed(app, {**environ, **extra}, rounds // 5)
                medians = {n: statistics.median(s) * 1000 for n, s in samples.items()}
                result[label] = {**medians, "ratio": ratio(medians["exporter"], medians["floor"])}
            for label, keep in (("keep_alive", True), ("new_connection", False)):
                result[label] = statistics.median(over_http(exporter.port, rounds, keep)) * 1000
    if args.json:
        emit_json(result)
        return 0
    print(f"{args.models} models, {rounds} renders each (median ms)")
    for label in ("gzip", "plain"):
        row = result[label]
        print(f"  {label:6} exporter {row['exporter']:6.2f}  prometheus_client floor "
              f"{row['floor']:6.2f}  ratio {row['ratio']:.2f}")  # fmt: skip
    print(f"  HTTP, gzip: one kept-alive connection {result['keep_alive']:.2f}, "
          f"a new connection each {result['new_connection']:.2f}")
    print(machine_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
