"""How well the exporter measures API latency, next to Prometheus' blackbox exporter, per
phase.

    .venv/bin/python bench/bench_probe_accuracy.py [--quick] [--json] [--probes N]

The fake API's list endpoint (GET /api/v1/models, default catalogue) gets an injected
delay of 0, 50 and 500 ms, served over http and over https (a throwaway CA and a leaf
made with the openssl command; those passes are left out without it). Over https twice:
both probers trusting the one test CA, then both trusting a bundle of certifi's ~150
authorities plus the test CA, which is what a probe of the real API loads (requests
verifies with certifi's bundle by default). For each delay, N probes by each prober,
alternated (the order swapping every iteration) so machine noise hits both alike:
- ours: the exporter in this process, one `run_probe_cycle()` at a time (list probe only,
  sample size 0), which opens a new connection for every list probe, as blackbox does;
  each probe's duration is the delta of pinference_probe_duration_seconds_sum
  {endpoint="list"} between two scrapes of /metrics, its phases the
  pinference_probe_phase_seconds gauges.
- blackbox: Debian's prometheus-blackbox-exporter with an http module for the same URL
  (trusting the same CA over https), asked through /probe?target=...&module=...;
  probe_duration_seconds and the probe_http_duration_seconds phases.
Reported: median, p90 and error (median - injected) per prober, and the median of each
phase (resolve, connect, tls, processing, transfer). Both connect anew for every probe;
ours' duration is the sum of its phases (its client's own setup is in `resolve`, as
blackbox's is), blackbox's probe_duration_seconds is the whole /probe request.
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
from pinference_exporter import Exporter, ExporterConfig  # the installed name of exporter/
from pinference_exporter.config import AccountConfig
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # harness/ (not in the wheel)
from harness.pki import have_openssl, make_certificates
from llm_pinference.core.probes import PHASES
from pinference_fake import FakePinference

DELAYS = (0.0, 0.05, 0.5)
BLACKBOX = "prometheus-blackbox-exporter"
MODULE = "pinference_list"
BLACKBOX_CONFIG = """\
modules:
  {module}:
    prober: http
    timeout: 5s
    http:
      method: GET
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false{tls}
"""


def samples(text: str) -> list[Any]:
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def make_pki(folder: Path) -> tuple[Path, Path, Path, Path] | None:
    """(CA, leaf + CA chain, leaf key, certifi's bundle + CA) for 127.0.0.1, or None
    without openssl."""
    if not have_openssl():
        return None
    made = make_certificates(folder, ca_name="bench CA", ca_days=2, leaf_days=2)
    import certifi  # requests' own dependency

    bundle = folder / "bundle.pem"
    bundle.write_text(Path(certifi.where()).read_text() + made.ca.read_text())
    return made.ca, made.chain, made.leaf_key, bundle


class Ours:
    """The exporter in-process; each probe is one cycle, read back through /metrics."""

    def __init__(self, base_url: str, ca_file: str | None) -> None:
        account = AccountConfig(base_url=base_url, sample_size=0, ca_file=ca_file)
        config = ExporterConfig(listen_address="127.0.0.1:0", probe_interval=60.0,
                                probe_timeout=5.0, accounts=(account,))  # fmt: skip
        self.exporter = Exporter(config).start(probe=False)

    def _read(self) -> dict[str, Any]:
        """Duration sum, probe and failure counts of the list endpoint, and its phases."""
        text = requests.get(self.exporter.metrics_url, timeout=10).text
        found: dict[str, Any] = {"sum": 0.0, "count": 0.0, "failed": 0.0, "phases": {}}
        for s in samples(text):
            if s.labels.get("endpoint") != "list":
                continue
            if s.name == "pinference_probe_duration_seconds_sum":
                found["sum"] = s.value
            elif s.name == "pinference_probe_duration_seconds_count":
                found["count"] = s.value
            elif s.name == "pinference_probe_failures_total":
                found["failed"] += s.value
            elif s.name == "pinference_probe_phase_seconds":
                found["phases"][s.labels["phase"]] = s.value
        return found

    def probe(self) -> dict[str, Any]:
        before = self._read()
        self.exporter.run_probe_cycle()
        after = self._read()
        assert after["count"] - before["count"] == 1, "one cycle must make one list probe"
        return {"duration": after["sum"] - before["sum"], "phases": after["phases"],
                "ok": after["failed"] == before["failed"]}  # fmt: skip

    def close(self) -> None:
        self.exporter.stop()


class Blackbox:
    """Debian's blackbox exporter in a child process, one /probe request per probe."""

    def __init__(self, binary: str, target: str, tmp: Path, ca_file: str | None) -> None:
        config = tmp / "blackbox.yml"
        tls = f"\n      tls_config:\n        ca_file: {ca_file}" if ca_file else ""
        config.write_text(BLACKBOX_CONFIG.format(module=MODULE, tls=tls))
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
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        results["passes"]["http"] = measure_pass(probes, binary, Path(tmp), None)
        pki = make_pki(Path(tmp))
        if pki is not None:
            ca, chain, key, bundle = pki
            results["passes"]["https, 1 CA"] = measure_pass(probes, binary, Path(tmp),
                                                            (chain, key, ca))  # fmt: skip
            results["passes"]["https, certifi bundle"] = measure_pass(
                probes, binary, Path(tmp), (chain, key, bundle)
            )
    return results


def measure_pass(
    probes: int, binary: str | None, tmp: Path, tls_files: tuple[Path, Path, Path] | None
) -> dict[str, Any]:
    """One pass; `tls_files`: (the server's chain, its key, the CA file the probers trust)."""
    by_delay: dict[str, Any] = {}
    tls = {"certfile": tls_files[0], "keyfile": tls_files[1]} if tls_files else {}
    ca_file = str(tls_files[2]) if tls_files else None
    with FakePinference(**tls) as fake:  # type: ignore[arg-type]
        ours = Ours(fake.base_url, ca_file)
        box = Blackbox(binary, fake.base_url + "/models", tmp, ca_file) if binary else None
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
    return {
        "median": median(durations),
        "p90": percentile(durations, 90),
        "min": min(durations, default=float("nan")),
        "error": median(durations) - delay,
        "failed": sum(not r["ok"] for r in run),
        "phases": {p: median([r["phases"].get(p, 0.0) for r in run]) for p in PHASES},
    }


def report(res: dict[str, Any]) -> None:
    print(f"probe latency of GET /models with an injected delay, {res['probes_per_delay']} "
          "alternated probes each, a new connection per probe; ms")  # fmt: skip
    if not res["blackbox"]:
        print(f"NOTE: {BLACKBOX} is not installed (apt-get install {BLACKBOX}): "
              "only the exporter is measured.")  # fmt: skip
    if len(res["passes"]) == 1:
        print("NOTE: the openssl command is not installed: no https pass.")
    rows = []
    for label, by_delay in res["passes"].items():
        rows.append([f"-- {label}", "", "", "", "", "", ""])
        rows.extend(rows_for(by_delay))
    headers = ["injected  prober", "median", "p90", "min", "error", "failed",
               " / ".join(PHASES) + " (medians)"]  # fmt: skip
    print(table(headers, rows))
    print("error = median measured - injected delay. " + machine_line())


def rows_for(by_delay: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for delay, by in by_delay.items():
        for name, s in by.items():
            detail = " / ".join(ms(s["phases"][p]) for p in PHASES)
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
