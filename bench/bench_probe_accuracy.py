"""How well the exporter measures API latency, next to Prometheus' blackbox exporter.

    .venv/bin/python bench/bench_probe_accuracy.py [--quick] [--json] [--probes N]

The fake API's list endpoint (GET /api/v1/models, default catalogue) gets an injected
delay of 0, 50 and 500 ms. For each delay, N probes by each prober, alternated (the order
swapping every iteration) so machine noise hits both alike:
- ours: the exporter in this process, one `run_probe_cycle()` at a time (list probe only,
  --probe.sample-size=0); each probe's duration is the delta of
  pinference_probe_duration_seconds_sum{endpoint="list"} between two scrapes of /metrics.
- blackbox: Debian's prometheus-blackbox-exporter with an http module for the same URL,
  asked through /probe?target=...&module=...; probe_duration_seconds and the
  probe_http_duration_seconds phases.
Reported: median, p90 and error (median - injected) per prober. Ours reuses a keep-alive
connection and includes parsing the JSON list; blackbox connects anew for every probe.
Not a test: it prints numbers; exit status 1 only if a probe failed.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from common import (
    Child,
    emit_json,
    free_port,
    machine,
    machine_line,
    median,
    ms,
    parser,
    percentile,
    table,
    wait_http,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter import Exporter, ExporterConfig
from llm_pinference.fake import FakePinference
from llm_pinference.settings import Settings

DELAYS = (0.0, 0.05, 0.5)
BLACKBOX = "prometheus-blackbox-exporter"
MODULE = "pinference_list"
BLACKBOX_CONFIG = f"""\
modules:
  {MODULE}:
    prober: http
    timeout: 5s
    http:
      method: GET
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"""
PHASES = ("resolve", "connect", "processing", "transfer")


def samples(text: str) -> list[Any]:
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


class Ours:
    """The exporter in-process; each probe is one cycle, read back through /metrics."""

    def __init__(self, base_url: str) -> None:
        config = ExporterConfig(settings=Settings(base_url=base_url),
                                listen_address="127.0.0.1:0", probe_interval=60.0,
                                probe_timeout=5.0, sample_size=0)  # fmt: skip
        self.exporter = Exporter(config).start(probe=False)

    def _read(self) -> tuple[float, float, float]:
        """(duration sum, probe count, failure count) of the list endpoint."""
        text = requests.get(self.exporter.metrics_url, timeout=10).text
        found = {"sum": 0.0, "count": 0.0, "failed": 0.0}
        for s in samples(text):
            if s.labels.get("endpoint") != "list":
                continue
            if s.name == "pinference_probe_duration_seconds_sum":
                found["sum"] = s.value
            elif s.name == "pinference_probe_duration_seconds_count":
                found["count"] = s.value
            elif s.name == "pinference_probe_failures_total":
                found["failed"] += s.value
        return found["sum"], found["count"], found["failed"]

    def probe(self) -> dict[str, Any]:
        sum0, count0, failed0 = self._read()
        self.exporter.run_probe_cycle()
        sum1, count1, failed1 = self._read()
        assert count1 - count0 == 1, "one cycle must make exactly one list probe"
        return {"duration": sum1 - sum0, "ok": failed1 == failed0}

    def close(self) -> None:
        self.exporter.stop()


class Blackbox:
    """Debian's blackbox exporter in a child process, one /probe request per probe."""

    def __init__(self, binary: str, target: str, tmp: Path) -> None:
        config = tmp / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.child = Child([binary, f"--config.file={config}",
                            f"--web.listen-address=127.0.0.1:{port}"])  # fmt: skip
        wait_http(self.url + "/-/healthy", proc=self.child.proc)
        self.query = urlencode({"target": target, "module": MODULE})

    def probe(self) -> dict[str, Any]:
        text = requests.get(f"{self.url}/probe?{self.query}", timeout=10).text
        result: dict[str, Any] = {"ok": False, "phases": {}}
        for s in samples(text):
            if s.name == "probe_duration_seconds":
                result["duration"] = s.value
            elif s.name == "probe_success":
                result["ok"] = s.value == 1
            elif s.name == "probe_http_duration_seconds":
                result["phases"][s.labels["phase"]] = s.value
        return result

    def close(self) -> None:
        self.child.close()


def measure(probes: int) -> dict[str, Any]:
    binary = shutil.which(BLACKBOX)
    results: dict[str, Any] = {"probes_per_delay": probes, "blackbox": binary,
                               "machine": machine(), "passes": {}}  # fmt: skip
    results["passes"]["fake"] = measure_pass(probes, binary)
    return results


def measure_pass(probes: int, binary: str | None) -> dict[str, Any]:
    by_delay: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp, FakePinference() as fake:
        ours = Ours(fake.base_url)
        box = Blackbox(binary, fake.base_url + "/models", Path(tmp)) if binary else None
        probers: dict[str, Any] = {"ours": ours, **({"blackbox": box} if box else {})}
        try:
            for delay in DELAYS:
                fake.set_latency("list", delay)
                for prober in probers.values():  # warm-up, not counted
                    prober.probe()
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in probers}
                for i in range(probes):
                    names = list(probers) if i % 2 == 0 else list(reversed(probers))
                    for name in names:
                        runs[name].append(probers[name].probe())
                by_delay[str(delay)] = {name: summarise(run, delay) for name, run in runs.items()}
        finally:
            ours.close()
            if box is not None:
                box.close()
    return by_delay


def summarise(run: list[dict[str, Any]], delay: float) -> dict[str, Any]:
    durations = [r["duration"] for r in run if r.get("duration") is not None]
    summary = {
        "median": median(durations),
        "p90": percentile(durations, 90),
        "min": min(durations, default=float("nan")),
        "error": median(durations) - delay,
        "failed": sum(not r["ok"] for r in run),
    }
    if run and "phases" in run[0]:
        summary["phases"] = {p: median([r["phases"].get(p, 0.0) for r in run]) for p in PHASES}
    return summary


def report(res: dict[str, Any]) -> None:
    print(f"probe latency of GET /models with an injected delay, {res['probes_per_delay']} "
          "alternated probes each; ms")  # fmt: skip
    if not res["blackbox"]:
        print(f"NOTE: {BLACKBOX} is not installed (apt-get install {BLACKBOX}): "
              "only the exporter is measured.")  # fmt: skip
    rows = []
    for label, by_delay in res["passes"].items():
        rows.append([f"-- {label}", "", "", "", "", "", ""])
        rows.extend(rows_for(by_delay))
    headers = ["injected  prober", "median", "p90", "min", "error", "failed",
               "resolve / connect / processing / transfer"]  # fmt: skip
    print(table(headers, rows))
    print("error = median measured - injected delay. " + machine_line())


def rows_for(by_delay: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for delay, by in by_delay.items():
        for name, s in by.items():
            phases = s.get("phases")
            detail = " / ".join(ms(phases[p]) for p in PHASES) if phases else ""
            label = f"{float(delay) * 1000:>5.0f} ms  {name}"
            rows.append([label, ms(s["median"]), ms(s["p90"]), ms(s["min"]),
                         f"{s['error'] * 1000:+.2f}", s["failed"], detail])  # fmt: skip
    return rows


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--probes", type=int, help="probes per delay and prober")
    args = args_parser.parse_args()
    results = measure(args.probes or (5 if args.quick else 15))
    if args.json:
        emit_json(results)
    else:
        report(results)
    failed = any(s["failed"] for by_delay in results["passes"].values()
                 for by in by_delay.values() for s in by.values())  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
