"""Helpers shared by the Prometheus, alerting and dashboard tests.

Paths of the shipped files; promtool and process handling (free loopback port, start and
stop with cleanup, waits with a deadline); Prometheus HTTP queries; reading the metric
contract, the rules and the dashboard; substituting Grafana template variables and
listing the metric names a PromQL expression reads.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import yaml
from support import in_ci

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "prometheus"
PROM_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "pinference.rules.yml"
RULES_TEST = PROMETHEUS_DIR / "pinference.rules.test.yml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "pinference.json"
GRAFANA_ALERTING = ROOT / "grafana" / "provisioning" / "alerting" / "pinference.yml"
GRAFANA_DATASOURCE = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARD_PROVIDER = ROOT / "grafana" / "provisioning" / "dashboards" / "pinference.yml"
GENERATOR = ROOT / "grafana" / "generate_alerting.py"
METRICS_DOC = ROOT / "docs" / "metrics.md"
ALERTS_DOC = ROOT / "docs" / "alerts.md"
README = ROOT / "README.md"

JOB = "pinference"
# Series Prometheus makes itself, which the dashboard and the rules may read.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})
# Plausible values for the dashboard's template variables and Grafana's built-ins.
TEMPLATE_VALUES = {
    "datasource": "prometheus",
    "job": JOB,
    "instance": ".+",
    "model": ".+",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}

T = TypeVar("T")


# ------------------------------------------------------------------ tools and processes


def require_tool(name: str) -> str:
    """Path of an executable; skip the test (fail in CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH (Debian: apt-get install prometheus)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(argv: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def promtool(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run([require_tool("promtool"), *args], timeout=timeout)


class Process:
    """A child process whose output goes to a log file; stop() always reaps it."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; this process only."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self._log.close()

    def check_alive(self) -> None:
        if not self.running:
            raise AssertionError(
                f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}"
            )


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    alive: list[Process] | tuple[Process, ...] = (),
) -> T:
    """Call `check` until it returns something truthy, at most `timeout` seconds.

    Exceptions from `check` count as "not yet"; the last one is reported at the deadline.
    A process in `alive` that exits ends the wait at once, with its log.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for process in alive:
            process.check_alive()
        try:
            result = check()
        except (requests.RequestException, AssertionError, KeyError, ValueError) as exc:
            last_error, result = exc, None
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f": last error: {last_error!r}" if last_error else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)


# ------------------------------------------------------------------ config and rules rewrite
# Shared by the integration test and the demo (scripts/demo.py).


def rewrite_config(shipped: dict[str, Any], target: str, rules_file: Path) -> dict[str, Any]:
    """The shipped config with only the target, the intervals and the rule path changed."""
    config = copy.deepcopy(shipped)
    config.setdefault("global", {}).update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules_file)]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    assert len(jobs) == 1, f"the shipped config must have one job {JOB!r}"
    job = jobs[0]
    job.update(scrape_interval="1s", scrape_timeout="1s", static_configs=[{"targets": [target]}])
    config.pop("alerting", None)  # no Alertmanager here; /api/v1/alerts is enough
    return config


def shorten_window(match: re.Match[str]) -> str:
    seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return f"[{max(30, seconds // 10)}s]"


def rewrite_rules(shipped: dict[str, Any], for_: str = "2s") -> dict[str, Any]:
    """The shipped rules with `for:` set to `for_` and range windows a tenth as long
    (at least 30s), so that a fault shows within seconds whatever ran before it."""
    rules = copy.deepcopy(shipped)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = for_
            rule["expr"] = re.sub(r"\[(\d+)([smhd])\]", shorten_window, rule["expr"])
    return rules


# ------------------------------------------------------------------ Prometheus HTTP API


def prom_get(base_url: str, path: str, params: dict[str, str] | None = None) -> Any:
    """GET a Prometheus API path; returns `data`, raises ValueError on an API error."""
    response = requests.get(f"{base_url}{path}", params=params, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        raise ValueError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def prom_query(base_url: str, expr: str) -> list[dict[str, Any]]:
    """Instant query; the result as a list of {metric, value} (a scalar becomes one item)."""
    data = prom_get(base_url, "/api/v1/query", {"query": expr})
    if data["resultType"] in ("scalar", "string"):
        return [{"metric": {}, "value": data["result"]}]
    return list(data["result"])


def prom_values(base_url: str, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Instant query as {sorted label items: float value}."""
    return {
        tuple(sorted(item["metric"].items())): float(item["value"][1])
        for item in prom_query(base_url, expr)
    }


def prom_alerts(base_url: str) -> list[dict[str, Any]]:
    return list(prom_get(base_url, "/api/v1/alerts")["alerts"])


# ------------------------------------------------------------------ project files


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    """Every alerting rule of a Prometheus rules file, in file order."""
    doc = load_yaml(path)
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, raw PromQL) for every panel target, annotation and variable query."""
    queries: list[tuple[str, str]] = []
    for panel in iter_panels(dashboard["panels"]):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                where = f"panel {panel['id']} {panel.get('title')!r} ref {target.get('refId')}"
                queries.append((where, target["expr"]))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            queries.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", text, flags=re.S)
        if match:  # label_values(selector, label): the selector is PromQL
            queries.append((f"variable {variable['name']!r}", match.group(1)))
        elif text.strip():
            queries.append((f"variable {variable['name']!r}", text))
    return queries


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace Grafana variables ($x, ${x}, ${x:fmt}, [[x]]); unknown ones raise KeyError."""
    table = TEMPLATE_VALUES if values is None else values

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in table:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return table[name]

    return _VARIABLE.sub(replace, expr)


def contract_metrics() -> dict[str, str]:
    """{metric name: type} from the table in docs/metrics.md."""
    metrics: dict[str, str] = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*([^|]+?)\s*\|", line)
        if match:
            metrics[match.group(1)] = match.group(2)
    return metrics


def contract_series_names() -> set[str]:
    """Names a query may use: contract metrics (histograms with their _bucket/_sum/_count)."""
    names: set[str] = set()
    for name, kind in contract_metrics().items():
        names.add(name)
        if kind.startswith("histogram"):
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


_PROMQL_WORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)


def metric_names(expr: str) -> set[str]:
    """Metric names read by a PromQL expression (functions, keywords and labels excluded)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        word = match.group()
        if word.lower() in _PROMQL_WORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def check_exprs_with_promtool(exprs: list[tuple[str, str]], workdir: Path) -> list[str]:
    """Parse PromQL expressions with promtool (one recording rule each, one run).

    Returns a list of problems (empty when all parse). When the batch fails, each
    expression is checked alone so that the message names the bad ones.
    """

    def write(items: list[tuple[str, str]], path: Path) -> Path:
        rules = [{"record": f"check:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(items)]
        path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
        return path

    batch = promtool("check", "rules", str(write(exprs, workdir / "exprs.rules.yml")))
    if batch.returncode == 0:
        return []
    problems = []
    for i, item in enumerate(exprs):
        single = promtool("check", "rules", str(write([item], workdir / f"expr_{i}.rules.yml")))
        if single.returncode != 0:
            problems.append(f"{item[0]}: {item[1]!r}: {single.stdout}{single.stderr}".strip())
    return problems or [f"promtool failed on the batch: {batch.stdout}{batch.stderr}"]
