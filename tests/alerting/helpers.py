"""Helpers of the Prometheus, alerting and dashboard tests.

Processes, waits, the config rewrites and the Prometheus API live in
`harness` (shared with the demo). Here: the shipped files' paths, the
pytest side of missing tools (skip, or fail in CI), promtool, and reading the metric
contract, the rules and the dashboard: substituting Grafana template variables and
listing the metric names a PromQL expression reads.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import Process, ProjectFiles, in_ci, wait_until
from harness.project import JOB
from harness.prometheus import (
    prom_alerts,
    prom_get,
    prom_query,
    prom_values,
    rewrite_config,
    rewrite_rules,
    rules_evaluated_since,
)

__all__ = [
    "JOB",
    "Process",
    "prom_alerts",
    "prom_get",
    "prom_query",
    "prom_values",
    "rewrite_config",
    "rewrite_rules",
    "rules_evaluated_since",
    "wait_until",
]

ROOT = Path(__file__).resolve().parents[2]
FILES = ProjectFiles(ROOT)
PROMETHEUS_DIR = FILES.prometheus_dir
PROM_CONFIG = FILES.prometheus_config
RULES = FILES.rules
RULES_TEST = PROMETHEUS_DIR / "pinference.rules.test.yml"
DASHBOARD = FILES.dashboard
GRAFANA_ALERTING = FILES.grafana_alerting
GRAFANA_DATASOURCE = FILES.grafana_datasource
GRAFANA_DASHBOARD_PROVIDER = FILES.grafana_dashboard_provider
GENERATOR = FILES.generator
METRICS_DOC = FILES.metrics_doc
ALERTS_DOC = FILES.alerts_doc
README = FILES.readme

# Series Prometheus makes itself, which the dashboard and the rules may read.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})
# Plausible values for the dashboard's template variables and Grafana's built-ins.
TEMPLATE_VALUES = {
    "datasource": "prometheus",
    "job": JOB,
    "instance": ".+",
    "account": ".*",
    "model": ".+",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}


# ------------------------------------------------------------------ tools


def require_tool(name: str, package: str = "prometheus") -> str:
    """Path of an executable; skip the test (fail in CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH (Debian: apt-get install {package})"
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
        expr = (annotation.get("target") or {}).get("expr") or annotation.get("expr")
        if expr:
            queries.append((f"annotation {annotation['name']!r}", expr))
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


def is_exporter_level(name: str) -> bool:
    """Series about the exporter itself, which carry no `account` label (Prometheus' `up`,
    pinference_exporter_*, the probe interval): every other pinference series has one."""
    return name == "up" or name.startswith("pinference_exporter_") or name in {
        "pinference_probe_interval_seconds",
    }


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
    text = re.sub(r"\boffset\s+-?[\w$]+", " ", text)  # a duration or a Grafana variable
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
