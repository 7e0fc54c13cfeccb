"""The shipped scrape config, alert rules and dashboard against a real Prometheus.

On 127.0.0.1 only: the fake Pinference server (in this process), the exporter (a
subprocess probing the fake every second) and Prometheus (Debian's `prometheus`), which
runs a copy of the shipped prometheus/prometheus.yml and prometheus/pinference.rules.yml,
rewritten programmatically: the target and intervals of the config; the `for:` durations
and range windows of the rules, so that alerts can be seen within seconds.

Checks: the target is up; every dashboard query and every alert expression evaluates
without error; the dashboard queries show what the fake serves (the error budget row, the
connection phases and the chat probe's panels included); a healthy exporter raises no
alert over two full rule evaluations; a 401 and a 403 from the API raise
PinferenceAuthFailing and turn the "Auth OK" panel to REJECTED (and back after recovery);
a 404 of the watched model raises PinferenceWatchedModelMissing.
Skipped only when `prometheus` is not installed (a failure in CI).
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from llm_pinference.core.probes import PHASES
from tests.alerting.helpers import (
    JOB,
    PROM_CONFIG,
    ROOT,
    RULES,
    Process,
    alert_rules,
    dashboard_queries,
    iter_panels,
    load_dashboard,
    load_yaml,
    prom_alerts,
    prom_get,
    prom_query,
    prom_values,
    require_tool,
    rewrite_config,
    rewrite_rules,
    rules_evaluated_since,
    substitute,
    wait_until,
)
from tests.support import free_port

pytestmark = pytest.mark.integration

WATCHED = "meta-llama/llama-3.1-70b-instruct"
CHAT_MODEL = "deepseek-chat"
API_KEY = "pinference-integration-test-key"  # the fake requires it; not a real key
TEST_FOR = "2s"  # every rule's `for:` in the copy Prometheus runs
STARTUP_TIMEOUT = 30.0
DATA_TIMEOUT = 60.0
ALERT_TIMEOUT = 60.0


# ------------------------------------------------------------------ the stack


@dataclass
class Stack:
    fake: Any
    exporter: Process
    prometheus: Process
    exporter_url: str
    prom_url: str
    target: str

    @property
    def processes(self) -> tuple[Process, ...]:
        return (self.exporter, self.prometheus)

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        return prom_values(self.prom_url, expr)


def _exporter_env(fake_base_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
    env.update(PRIME_INFERENCE_URL=fake_base_url, PRIME_API_KEY=API_KEY, HOME=str(home))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = require_tool("prometheus")
    from pinference_fake import FakePinference

    tmp = tmp_path_factory.mktemp("prometheus-stack")
    (tmp / "home").mkdir()
    fake = FakePinference(require_key=API_KEY).start()
    processes: list[Process] = []
    try:
        exporter_port = free_port()
        target = f"127.0.0.1:{exporter_port}"
        exporter = Process(
            "exporter",
            [
                sys.executable, "-m", "pinference_exporter",
                f"--web.listen-address={target}",
                "--probe.interval=1s",
                "--probe.timeout=500ms",  # must be shorter than the interval
                f"--probe.models={WATCHED}",
                f"--probe.chat.models={CHAT_MODEL}",  # the first at once, then every minute
                "--probe.chat.interval=1m",
            ],
            tmp / "exporter.log",
            env=_exporter_env(fake.base_url, tmp / "home"),
            cwd=ROOT,
        )  # fmt: skip
        processes.append(exporter)
        exporter_url = f"http://{target}"
        wait_until(
            lambda: re.search(
                r'^pinference_up\{account="default"\} 1(\.0)?$',
                requests.get(f"{exporter_url}/metrics", timeout=5).text,
                flags=re.M,
            ),
            timeout=STARTUP_TIMEOUT, what="the exporter's first successful list probe",
            alive=[exporter],
        )  # fmt: skip

        rules_file = tmp / "pinference.rules.yml"
        rules_file.write_text(
            yaml.safe_dump(rewrite_rules(load_yaml(RULES), TEST_FOR), sort_keys=False)
        )
        config_file = tmp / "prometheus.yml"
        config = rewrite_config(load_yaml(PROM_CONFIG), target, rules_file)
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        prom_port = free_port()
        prometheus = Process(
            "prometheus",
            [
                prometheus_bin,
                f"--config.file={config_file}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                "--log.level=warn",
            ],
            tmp / "prometheus.log",
            cwd=tmp,
        )
        processes.append(prometheus)
        prom_url = f"http://127.0.0.1:{prom_port}"
        wait_until(
            lambda: requests.get(f"{prom_url}/-/ready", timeout=5).status_code == 200,
            timeout=STARTUP_TIMEOUT, what="Prometheus to be ready", alive=[prometheus],
        )  # fmt: skip
        yield Stack(fake, exporter, prometheus, exporter_url, prom_url, target)
    finally:
        for process in reversed(processes):
            process.stop()
        fake.stop()


def wait_for_data(stack: Stack, expr: str, what: str) -> dict[tuple[tuple[str, str], ...], float]:
    return wait_until(
        lambda: stack.query(expr), timeout=DATA_TIMEOUT, what=what, alive=stack.processes
    )


def panel_exprs(title: str) -> dict[str, str]:
    """{refId: substituted PromQL} of the dashboard panel with this title."""
    (panel,) = [p for p in iter_panels(load_dashboard()["panels"]) if p.get("title") == title]
    return {t["refId"]: substitute(t["expr"]) for t in panel["targets"]}


def only_value(values: dict[Any, float]) -> float:
    assert len(values) == 1, values
    return next(iter(values.values()))


def active_alerts(stack: Stack, name: str | None = None) -> list[dict[str, Any]]:
    alerts = prom_alerts(stack.prom_url)
    return [a for a in alerts if name is None or a["labels"]["alertname"] == name]


# ------------------------------------------------------------------ rewrite (no processes)


def test_rewrites_keep_the_shipped_content(tmp_path: Path) -> None:
    shipped = load_yaml(PROM_CONFIG)
    config = rewrite_config(shipped, "127.0.0.1:1234", tmp_path / "r.yml")
    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:1234"]}]
    assert job["metrics_path"] == shipped["scrape_configs"][0]["metrics_path"]
    assert config["global"]["evaluation_interval"] == "1s"
    assert shipped["scrape_configs"][0]["static_configs"][0]["targets"] == ["localhost:8795"]

    rules = rewrite_rules(load_yaml(RULES), TEST_FOR)
    rewritten = {r.get("alert") or r["record"]: r for g in rules["groups"] for r in g["rules"]}
    for original in alert_rules():
        copy_ = rewritten[original["alert"]]
        assert copy_["for"] == TEST_FOR
        assert copy_["labels"] == original["labels"]
        assert copy_["annotations"] == original["annotations"]
        assert copy_["expr"].replace(" ", "") != "" and "[5m]" not in copy_["expr"]
    assert rewritten["PinferenceAuthFailing"]["keep_firing_for"] == "5s"
    assert "[60s]" in rewritten["PinferenceServerErrors"]["expr"]
    assert "[360s]" in rewritten["PinferenceCatalogShrunk"]["expr"]
    # recording rules keep their names (the dashboard reads them) with shorter windows
    assert "[25920s]" in rewritten["account:pinference_list_errors:ratio_rate3d"]["expr"]
    assert rewritten["pinference:slo_objective:ratio"]["expr"] == "vector(0.995)"


# ------------------------------------------------------------------ with Prometheus


def test_exporter_target_is_up(stack: Stack) -> None:
    values = wait_for_data(stack, f'up{{job="{JOB}"}} == 1', "the exporter target to be up")
    assert values == {(("__name__", "up"), ("instance", stack.target), ("job", JOB)): 1.0}


def test_prometheus_loaded_every_rule(stack: Stack) -> None:
    def loaded() -> list[dict[str, Any]]:
        data = prom_get(stack.prom_url, "/api/v1/rules", {"type": "alert"})
        rules = [rule for group in data["groups"] for rule in group["rules"]]
        # health is "unknown" until a rule's first evaluation
        return rules if rules and all(r["health"] == "ok" for r in rules) else []

    rules = wait_until(loaded, timeout=STARTUP_TIMEOUT, what="the rules to be evaluated")
    assert sorted(r["name"] for r in rules) == sorted(r["alert"] for r in alert_rules())
    assert {r["duration"] for r in rules} == {2.0}


def test_every_dashboard_query_evaluates(stack: Stack) -> None:
    wait_for_data(stack, f'up{{job="{JOB}"}} == 1', "the exporter target to be up")
    queries = dashboard_queries(load_dashboard())
    assert len(queries) >= 25
    errors = []
    for where, expr in queries:
        try:
            prom_query(stack.prom_url, substitute(expr))
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
    assert not errors, "\n".join(errors)


def test_every_alert_expression_evaluates(stack: Stack) -> None:
    errors = []
    for rule in alert_rules():  # the shipped expressions, not the shortened copies
        try:
            prom_query(stack.prom_url, rule["expr"])
        except ValueError as exc:
            errors.append(f"{rule['alert']}: {exc}")
    assert not errors, "\n".join(errors)


def test_dashboard_shows_what_the_fake_serves(stack: Stack) -> None:
    catalogue = {model["id"] for model in stack.fake.models}
    assert WATCHED in catalogue

    def check() -> bool:
        problems = []

        def expect(title: str, condition: bool, detail: object) -> None:
            if not condition:
                problems.append(f"{title}: {detail}")

        for title in ("API up now", "Exporter up", "Auth OK"):
            values = stack.query(panel_exprs(title)["A"])
            expect(title, list(values.values()) == [1.0], values)
        values = stack.query(panel_exprs("Models listed now")["A"])
        expect("Models listed now", list(values.values()) == [float(len(catalogue))], values)
        values = stack.query(panel_exprs("Catalog")["A"])
        models = {dict(labels)["model"] for labels in values}
        expect("Catalog", models == catalogue, sorted(models ^ catalogue))
        values = stack.query(panel_exprs("Watched models over time")["A"])
        expect("Watched models over time", {dict(k)["model"]: v for k, v in values.items()}
               == {WATCHED: 1.0}, values)  # fmt: skip
        for ref, expr in panel_exprs("Probe latency percentiles").items():
            values = stack.query(expr)
            endpoints = {dict(k)["endpoint"] for k, v in values.items() if math.isfinite(v)}
            expect(f"latency {ref}", endpoints == {"list", "get"}, values)
        values = stack.query(panel_exprs("Connection phases (last successful list probe)")["A"])
        phases = {dict(k)["phase"] for k, v in values.items() if v >= 0}
        expect("Connection phases", phases == set(PHASES), values)
        # the chat probe: made at start-up, priced from the list
        values = stack.query(f'pinference_chat_probes_total{{job="{JOB}", model="{CHAT_MODEL}"}}')
        expect("chat probes", list(values.values()) and min(values.values()) >= 1, values)
        values = stack.query(panel_exprs("Unpriced chat probes (24h)")["A"])
        expect("Unpriced chat probes (24h)", list(values.values()) == [0.0], values)
        values = stack.query(panel_exprs("Chat probe spend (30d)")["A"])
        expect("Chat probe spend (30d)", len(values) == 1 and only_value(values) >= 0, values)
        values = stack.query(panel_exprs("Render errors")["A"])
        expect("Render errors", list(values.values()) == [0.0], values)
        values = stack.query(panel_exprs("Last successful list")["A"])
        expect("Last successful list", 0 <= only_value(values) < 30, values)
        values = stack.query(panel_exprs("Config reload")["A"])
        expect("Config reload", list(values.values()) == [1.0], values)
        values = stack.query(panel_exprs("Config loaded")["A"])
        expect("Config loaded", 0 <= only_value(values) < 600, values)
        values = stack.query(panel_exprs("Probe interval")["A"])
        expect("Probe interval", list(values.values()) == [1.0], values)
        values = stack.query(panel_exprs("Exporter version")["A"])
        expect("Exporter version", all(dict(k).get("version") for k in values) and values, values)
        # the error budget row, from the recording rules Prometheus runs
        values = stack.query(panel_exprs("Objective")["A"])
        expect("Objective", list(values.values()) == [0.995], values)
        for title in ("Availability (30d)", "Error budget remaining (30d)"):
            values = stack.query(panel_exprs(title)["A"])
            expect(title, list(values.values()) == [1.0], values)
        for ref, expr in panel_exprs("Error budget burn rate").items():
            values = stack.query(expr)
            expect(f"burn rate {ref}", list(values.values()) == [0.0], values)
        if problems:
            raise AssertionError("; ".join(problems))
        return True

    wait_until(check, timeout=DATA_TIMEOUT, what="the dashboard's data", alive=stack.processes)


def test_healthy_exporter_raises_no_alert(stack: Stack) -> None:
    wait_for_data(stack, f'rate(pinference_probes_total{{job="{JOB}"}}[30s]) > 0', "probes")
    # Every rule group evaluated twice with that data: a false positive would be at least
    # pending now (every `for:` is 2s here, and pending shows at the first evaluation).
    for _ in range(2):
        since = time.time()
        wait_until(
            lambda since=since: rules_evaluated_since(stack.prom_url, since),
            timeout=ALERT_TIMEOUT, what="the rule groups to be evaluated", alive=stack.processes,
        )  # fmt: skip
        alerts = active_alerts(stack)
        assert not alerts, [(a["labels"], a["state"]) for a in alerts]


@pytest.mark.parametrize("status", [401, 403])
def test_auth_rejection_raises_the_alert_and_shows_on_the_panel(stack: Stack, status: int) -> None:
    """The "Auth OK" panel, evaluated by Prometheus, says REJECTED (0) under a 401 and a
    403, and OK again after recovery; PinferenceAuthFailing fires for each endpoint."""
    from pinference_fake import Fault

    auth_ok = panel_exprs("Auth OK")["A"]
    wait_until(
        lambda: list(stack.query(auth_ok).values()) == [1.0],
        timeout=DATA_TIMEOUT, what="the Auth OK panel to show OK first", alive=stack.processes,
    )  # fmt: skip
    stack.fake.set_fault("list", Fault(status=status))
    stack.fake.set_fault("get", Fault(status=status))
    try:
        wait_until(
            lambda: list(stack.query(auth_ok).values()) == [0.0],
            timeout=DATA_TIMEOUT, what=f"the Auth OK panel to show REJECTED under {status}",
            alive=stack.processes,
        )  # fmt: skip
        alerts = wait_until(
            lambda: (found := [a for a in active_alerts(stack, "PinferenceAuthFailing")
                               if a["state"] in ("pending", "firing")])
            and {a["labels"]["endpoint"] for a in found} == {"list", "get"} and found,
            timeout=ALERT_TIMEOUT, what="PinferenceAuthFailing", alive=stack.processes,
        )  # fmt: skip
        for alert in alerts:
            assert alert["labels"]["job"] == JOB
            assert "instance" not in alert["labels"]  # per account, over every exporter
            assert alert["labels"].get("account", "default") == "default"
            assert alert["labels"]["severity"] == "critical"
            assert f"refused with {status}" in alert["annotations"]["description"]
            assert alert["annotations"]["runbook_url"].endswith("#pinferenceauthfailing")
        assert not active_alerts(stack, "PinferenceRateLimited")
        assert not active_alerts(stack, "PinferenceServerErrors")
    finally:
        stack.fake.clear_faults()
    wait_until(
        lambda: list(stack.query(auth_ok).values()) == [1.0],
        timeout=DATA_TIMEOUT, what="the Auth OK panel to recover", alive=stack.processes,
    )  # fmt: skip


def test_missing_watched_model_raises_its_alert(stack: Stack) -> None:
    from pinference_fake import Fault

    wait_for_data(stack, f'pinference_up{{job="{JOB}"}} == 1', "a healthy exporter first")
    stack.fake.set_fault("get", Fault(status=404))
    try:
        (alert,) = wait_until(
            lambda: active_alerts(stack, "PinferenceWatchedModelMissing"),
            timeout=ALERT_TIMEOUT, what="PinferenceWatchedModelMissing", alive=stack.processes,
        )  # fmt: skip
        assert alert["labels"]["model"] == WATCHED
        # an exporter without account labels probes the one account called default
        account = alert["labels"].get("account", "default")
        assert alert["annotations"]["summary"] == (
            f"Watched model {WATCHED} is missing for account {account}"
        )
    finally:
        stack.fake.clear_faults()
