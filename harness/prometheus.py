"""A real Prometheus for the tests and the demo: config and rules rewrites, start, queries.

The shipped `prometheus/prometheus.yml` and `prometheus/pinference.rules.yml` run as they
are, with only what a loopback run needs changed: the scrape target, 1s intervals, an
Alertmanager when one is given, and in the rules `for:` and range windows shortened so
that an alert shows within seconds.
"""

from __future__ import annotations

import copy
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from .net import free_port
from .process import Process, wait_until
from .project import JOB

STARTUP_TIMEOUT = 30.0
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def rewrite_config(
    shipped: dict[str, Any],
    target: str,
    rules_file: Path,
    *,
    alertmanager: str | None = None,
    interval: str = "1s",
) -> dict[str, Any]:
    """The shipped config with only the target, the intervals, the rule path and the
    Alertmanager (host:port, or none) changed."""
    config = copy.deepcopy(shipped)
    config.setdefault("global", {}).update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(rules_file)]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    if len(jobs) != 1:
        raise ValueError(f"the shipped config must have exactly one job {JOB!r}")
    jobs[0].update(
        scrape_interval=interval, scrape_timeout=interval, static_configs=[{"targets": [target]}]
    )
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def _shorten_window(match: re.Match[str]) -> str:
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return f"[{max(30, seconds // 10)}s]"


def rewrite_rules(shipped: dict[str, Any], for_: str = "2s") -> dict[str, Any]:
    """The shipped rules with every alert's `for:` set to `for_`, its keep_firing_for to 5s
    and every range window a tenth as long (at least 30s), recording rules included: a
    fault shows, and a fix resolves, within seconds whatever ran before it. Names, labels
    and annotations are unchanged."""
    rules = copy.deepcopy(shipped)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = for_
                if "keep_firing_for" in rule:
                    rule["keep_firing_for"] = "5s"
            rule["expr"] = re.sub(r"\[(\d+)([smhdw])\]", _shorten_window, rule["expr"])
    return rules


def write_yaml(path: Path, document: Any) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def start_prometheus(
    work: Path,
    config: dict[str, Any],
    *,
    binary: str | None = None,
    name: str = "prometheus",
    timeout: float = STARTUP_TIMEOUT,
) -> tuple[Process, str]:
    """Prometheus on 127.0.0.1 with `config`, its data under `work`; ready when returned.

    Firing and resolved alerts go to an Alertmanager at once (resend delay 1s)."""
    binary = binary or shutil.which("prometheus")
    if binary is None:
        raise FileNotFoundError("prometheus is not installed")
    config_file = write_yaml(work / f"{name}.yml", config)
    port = free_port()
    process = Process(
        name,
        [
            binary,
            f"--config.file={config_file}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={work / (name + '-data')}",
            "--rules.alert.resend-delay=1s",
            "--log.level=warn",
        ],
        work / f"{name}.log",
        cwd=work,
    )
    return process, until_ready(process, port, f"{name} to be ready", timeout)


def until_ready(process: Process, port: int, what: str, timeout: float) -> str:
    """The URL of a Prometheus-style server on 127.0.0.1:`port` once its /-/ready answers
    200; the process is stopped if it never does."""
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: requests.get(f"{url}/-/ready", timeout=5).status_code == 200,
            timeout=timeout,
            what=what,
            alive=[process],
        )
    except BaseException:
        process.stop()
        raise
    return url


# ------------------------------------------------------------------ HTTP API


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
    """Pending and firing alerts."""
    return list(prom_get(base_url, "/api/v1/alerts")["alerts"])


def _timestamp(text: str) -> float:
    # Prometheus writes RFC 3339 with nanoseconds; Python takes microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def rules_evaluated_since(base_url: str, since: float) -> bool:
    """True once every rule group has finished an evaluation that started after `since`
    (Unix time): whatever the rules see at `since` has then been evaluated."""
    groups = prom_get(base_url, "/api/v1/rules")["groups"]
    if not groups:
        return False
    for group in groups:
        last = group.get("lastEvaluation") or ""
        if last.startswith("0001-") or not last or _timestamp(last) <= since:
            return False
    return True
