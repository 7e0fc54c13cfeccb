"""The example Alertmanager configuration (prometheus/alertmanager.yml) with the real tools.

- amtool checks the file and resolves the route of every alert of the rules;
- a real Alertmanager, fed alerts through its API, shows which ones the inhibit rules
  silence (per exporter and per account);
- the live delivery test runs the whole chain on loopback: the fake API, the exporter,
  Prometheus with the shipped rules (short `for:` and windows) and Alertmanager with the
  shipped config, its receivers pointed at a webhook in this test. A revoked key delivers
  one page, PinferenceAuthFailing, then its resolution after the fix, and nothing else;
  a provider outage delivers one page, PinferenceAPIDown, then its resolution, and nothing
  else (about 1-2 minutes in all, most of it waiting for the chain to start).

Skipped when Alertmanager or Prometheus are not installed (Debian: prometheus-alertmanager,
prometheus), except in CI, where that fails. Every wait polls with a deadline.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from harness import Process, wait_until
from harness.alertmanager import (
    WebhookReceiver,
    am_alerts,
    am_post_alerts,
    find_alertmanager,
    rewrite_alertmanager_config,
    start_alertmanager,
)
from harness.exporter import start_exporter
from harness.prometheus import (
    rewrite_config,
    rewrite_rules,
    start_prometheus,
    write_yaml,
)
from tests.alerting.helpers import (
    FILES,
    JOB,
    RULES,
    alert_rules,
    load_yaml,
    promtool,
    require_tool,
    run,
)

pytestmark = pytest.mark.integration

CONFIG = FILES.alertmanager_config
API_KEY = "pinference-alertmanager-test-key"  # the fake requires it; not a real key
WATCHED = "meta-llama/llama-3.1-70b-instruct"
WAIT = 90.0  # seconds, for any one step of the live chain (a busy 2-core machine)
# The pages of a list outage (the API, the key, billing) and the symptoms they silence.
OUTAGE_PAGES = {"PinferenceAPIDown", "PinferenceAuthFailing", "PinferencePaymentRequired"}
API_DOWN_SILENCES = {
    "PinferenceHighLatency",
    "PinferenceServerErrors",
    "PinferenceRateLimited",
    "PinferenceWatchedModelMissing",
    "PinferenceCatalogShrunk",
    "PinferenceProbesStale",
    "PinferenceInferenceFailing",
    "PinferenceSlowFirstToken",
}
SEVERITY_RECEIVER = {"critical": "pinference-page", "warning": "pinference-ticket"}


def amtool(*args: str) -> Any:
    return run([require_tool("amtool", "prometheus-alertmanager"), *args], timeout=60)


def alertmanager_binary() -> str:
    binary = find_alertmanager()
    if binary is None:
        require_tool("prometheus-alertmanager", "prometheus-alertmanager")
    assert binary is not None
    return binary


# ------------------------------------------------------------------ amtool


def test_amtool_check_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert " - 4 inhibit rules" in result.stdout and " - 2 receivers" in result.stdout


def test_amtool_rejects_a_broken_copy(tmp_path: Path) -> None:
    """check-config can fail: a route to a receiver that does not exist."""
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(CONFIG.read_text().replace("receiver: pinference-page", "receiver: pager"))
    result = amtool("check-config", str(broken))
    assert result.returncode != 0


@pytest.mark.parametrize("name", sorted({rule["alert"] for rule in alert_rules()}))
def test_every_alert_routes_by_severity(name: str) -> None:
    """Critical alerts page, warnings make a ticket (amtool resolves the routing tree)."""
    (rule,) = [rule for rule in alert_rules() if rule["alert"] == name]
    severity = rule["labels"]["severity"]
    result = amtool(
        "config", "routes", "test", f"--config.file={CONFIG}",
        f"alertname={name}", f"severity={severity}", "account=default", f"job={JOB}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [SEVERITY_RECEIVER[severity]]


def test_grouping_and_inhibit_rules() -> None:
    config = load_yaml(CONFIG)
    assert config["route"]["group_by"] == ["alertname", "account"]
    names = {rule["alert"] for rule in alert_rules()}
    first = 'alertname=~"PinferenceAPIDown'
    (outage,) = [r for r in config["inhibit_rules"] if r["source_matchers"][0].startswith(first)]
    sources, endpoint = outage["source_matchers"]
    assert set(re.fullmatch(r'alertname=~"(.*)"', sources).group(1).split("|")) == OUTAGE_PAGES
    assert endpoint == 'endpoint!="get"'  # a refused get probe is no outage of the list
    (target,) = outage["target_matchers"]
    silenced = set(re.fullmatch(r'alertname=~"(.*)"', target).group(1).split("|"))
    assert silenced == API_DOWN_SILENCES and silenced <= names
    assert outage["equal"] == ["job", "account"]  # the pages carry no instance
    source = ['alertname="PinferenceInferenceFailing"']
    (inference,) = [r for r in config["inhibit_rules"] if r["source_matchers"] == source]
    assert inference["target_matchers"] == ['alertname="PinferenceSlowFirstToken"']
    assert inference["equal"] == ["job", "instance", "account", "model"]
    # every receiver is a placeholder to replace, and says so
    text = CONFIG.read_text()
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            assert ".example.com" in webhook["url"] and webhook["send_resolved"] is True
    assert text.count("# placeholder") == len(config["receivers"])


# ------------------------------------------------------------------ inhibition, on the API


def _alert(name: str, **labels: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "labels": {"alertname": name, "job": JOB, "severity": "warning", **labels},
        "annotations": {"summary": name},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }


def _key(alert: dict[str, Any]) -> tuple[str, ...]:
    labels = alert["labels"]
    return tuple(labels.get(name, "") for name in ("alertname", "job", "instance", "account",
                                                   "endpoint", "model"))  # fmt: skip


# (alert, expected state): what the shipped inhibit rules do to each.
SOURCES = [
    _alert("PinferenceExporterDown", instance="down:8795"),
    _alert("PinferenceExporterDown", job="pinference-gone"),  # no target at all
    _alert("PinferenceAPIDown", account="team"),  # per account, over every exporter
    _alert("PinferenceAuthFailing", account="revoked", endpoint="list"),
    _alert("PinferenceAuthFailing", account="model", endpoint="get"),
    _alert("PinferenceInferenceFailing", instance="up:8795", account="default", model="m1"),
]
SUPPRESSED = [
    # exporter down: everything of that exporter, any account
    _alert("PinferenceServerErrors", instance="down:8795", account="default"),
    _alert("PinferenceProbesStale", instance="down:8795", account="default"),
    # job without any target: everything of that job
    _alert("PinferenceRateLimited", job="pinference-gone", instance="x:8795", account="default"),
    # the API down for team: its symptoms, seen by any exporter
    *[_alert(name, instance="up:8795", account="team", model="m1")
      for name in sorted(API_DOWN_SILENCES)],
    _alert("PinferenceServerErrors", instance="other:8795", account="team"),
    # the key of revoked refused on the list: its symptoms
    _alert("PinferenceHighLatency", instance="up:8795", account="revoked", endpoint="list"),
    # inference with m1 fails for default: its slow first token
    _alert("PinferenceSlowFirstToken", instance="up:8795", account="default", model="m1"),
]
ACTIVE = [
    # the same symptoms on another account
    _alert("PinferenceServerErrors", instance="up:8795", account="default"),
    # what an outage page keeps: billing and the error budget (quiet by their own rules)
    _alert("PinferencePaymentRequired", account="team", endpoint="list"),
    _alert("PinferenceErrorBudgetBurnFast", account="team"),
    # a refused get probe (no access to one model) is no outage of the list
    _alert("PinferenceServerErrors", instance="up:8795", account="model", endpoint="get"),
    # exporter down does not reach other exporters
    _alert("PinferenceCatalogShrunk", instance="other:8795", account="default"),
    # another model's slow first token
    _alert("PinferenceSlowFirstToken", instance="up:8795", account="default", model="m2"),
]


def test_inhibition_on_a_real_alertmanager(tmp_path: Path) -> None:
    """The shipped inhibit rules, applied by Alertmanager itself to alerts sent to it."""
    binary = alertmanager_binary()
    with WebhookReceiver() as receiver:
        config = rewrite_alertmanager_config(load_yaml(CONFIG), receiver.url)
        process, url = start_alertmanager(tmp_path, config, binary=binary)
        try:
            am_post_alerts(url, [_alert(a["labels"].pop("alertname"), **a["labels"])
                                 for a in copy.deepcopy([*SOURCES, *SUPPRESSED, *ACTIVE])])
            expected = {_key(a): "suppressed" for a in SUPPRESSED}
            expected |= {_key(a): "active" for a in [*SOURCES, *ACTIVE]}

            def states() -> dict[tuple[str, ...], str] | None:
                found = {_key(a): a["status"]["state"] for a in am_alerts(url)}
                return found if found == expected else None

            try:
                wait_until(states, timeout=30, what="the inhibition states", alive=[process])
            except AssertionError:
                found = {_key(a): a["status"]["state"] for a in am_alerts(url)}
                wrong = {k: (v, found.get(k)) for k, v in expected.items() if found.get(k) != v}
                raise AssertionError(f"expected vs found: {wrong}") from None
        finally:
            process.stop()


def test_inhibition_as_promql_agrees_with_alertmanager(tmp_path: Path) -> None:
    """tests/alerting/incidents.py applies the inhibit rules as PromQL over ALERTS (promtool has no
    Alertmanager): on the alerts above it keeps exactly those Alertmanager keeps active."""
    from tests.alerting.incidents import notified_expr

    def series(alert: dict[str, Any]) -> str:
        labels = {**alert["labels"], "alertstate": "firing"}
        return "ALERTS{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"

    test = {
        "rule_files": [],
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": series(a), "values": "1x3"}
                             for a in [*SOURCES, *SUPPRESSED, *ACTIVE]],
            "promql_expr_test": [{
                "expr": notified_expr(load_yaml(CONFIG)),
                "eval_time": "2m",
                "exp_samples": [{"labels": series(a), "value": 1} for a in [*SOURCES, *ACTIVE]],
            }],
        }],
    }  # fmt: skip
    path = write_yaml(tmp_path / "inhibition.test.yml", test)
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    # and it can fail: without the outage rule, the symptoms of team are notified
    config = load_yaml(CONFIG)
    rules = config["inhibit_rules"]
    config["inhibit_rules"] = [r for r in rules if "HighLatency" not in str(r["target_matchers"])]
    test["tests"][0]["promql_expr_test"][0]["expr"] = notified_expr(config)
    result = promtool("test", "rules", str(write_yaml(path, test)))
    assert result.returncode != 0 and "PinferenceServerErrors" in result.stdout + result.stderr


# ------------------------------------------------------------------ live delivery


@dataclass
class Chain:
    fake: Any
    receiver: WebhookReceiver
    processes: tuple[Process, ...]
    prom_url: str
    am_url: str
    target: str


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    prometheus_bin = require_tool("prometheus")
    am_bin = alertmanager_binary()
    from pinference_fake import FakePinference

    work = tmp_path_factory.mktemp("alert-chain")
    processes: list[Process] = []
    receiver = WebhookReceiver().start()
    fake = FakePinference(require_key=API_KEY).start()
    try:
        exporter, target = start_exporter(work, FILES.root, fake.base_url, API_KEY,
                                          watched=[WATCHED])  # fmt: skip
        processes.append(exporter)
        am_config = rewrite_alertmanager_config(load_yaml(CONFIG), receiver.url)
        am, am_url = start_alertmanager(work, am_config, binary=am_bin)
        processes.append(am)
        rules_file = write_yaml(work / "pinference.rules.yml", rewrite_rules(load_yaml(RULES)))
        config = rewrite_config(load_yaml(FILES.prometheus_config), target, rules_file,
                                alertmanager=am_url.removeprefix("http://"))  # fmt: skip
        prom, prom_url = start_prometheus(work, config, binary=prometheus_bin)
        processes.append(prom)
        yield Chain(fake, receiver, tuple(processes), prom_url, am_url, target)
    finally:
        for process in reversed(processes):
            process.stop()
        fake.stop()
        receiver.stop()


def delivered(chain: Chain, name: str, status: str) -> list[dict[str, Any]]:
    return chain.receiver.alerts(name, status)


def _barrier(chain: Chain) -> None:
    """An alert sent now is delivered after any group that was due before it (the same
    group_wait): once it arrives, a notification already due would have arrived too."""
    marker = _marker_alert()
    am_post_alerts(chain.am_url, [marker])
    wait_until(
        lambda: [a for a in delivered(chain, marker["labels"]["alertname"], "firing")
                 if a["labels"]["marker"] == marker["labels"]["marker"]],
        timeout=WAIT, what="the marker alert delivered", alive=chain.processes,
    )  # fmt: skip


def _incident(chain: Chain, faults: dict[str, int], page: str) -> list[dict[str, Any]]:
    """Inject `faults` (endpoint: status) until `page` is delivered, fix them, wait for its
    resolution; every alert delivered from the fault to the end (markers left out)."""
    from pinference_fake import Fault

    wait_until(
        lambda: any(r["health"] == "ok" for g in _rule_groups(chain) for r in g["rules"]),
        timeout=WAIT, what="Prometheus to evaluate the rules", alive=chain.processes,
    )  # fmt: skip
    before = len(chain.receiver.notifications)
    for endpoint, status in faults.items():
        chain.fake.set_fault(endpoint, Fault(status=status))
    try:
        wait_until(lambda: delivered(chain, page, "firing"), timeout=WAIT,
                   what=f"{page} delivered", alive=chain.processes)  # fmt: skip
    finally:
        chain.fake.clear_faults()
    wait_until(lambda: delivered(chain, page, "resolved"), timeout=WAIT,
               what=f"{page} resolved", alive=chain.processes)  # fmt: skip
    _barrier(chain)
    return [{**a, "_status": a["status"], "_receiver": n.get("receiver")}
            for n in chain.receiver.notifications[before:] for a in n["alerts"]
            if a["labels"]["alertname"] != "PinferenceTestMarker"]  # fmt: skip


def test_a_revoked_key_pages_once_naming_the_key(chain: Chain) -> None:
    alerts = _incident(chain, {"list": 401, "get": 401}, "PinferenceAuthFailing")
    assert {a["labels"]["alertname"] for a in alerts} == {"PinferenceAuthFailing"}, alerts
    firing = [a for a in alerts if a["_status"] == "firing"]
    assert {a["_receiver"] for a in alerts} == {"pinference-page"}
    assert {a["labels"]["endpoint"] for a in firing} <= {"list", "get"}
    assert "list" in {a["labels"]["endpoint"] for a in firing}
    assert all(a["labels"].get("account", "default") == "default" for a in alerts)
    assert "instance" not in firing[0]["labels"]  # one page whatever exporter saw it
    summary = firing[0]["annotations"]["summary"]
    assert "rejects the API key of account default" in summary and "401" in summary
    assert "key_file" in firing[0]["annotations"]["description"]
    assert firing[0]["annotations"]["runbook_url"].endswith("#pinferenceauthfailing")
    notification = next(
        n for n in chain.receiver.notifications
        if any(a["labels"]["alertname"] == "PinferenceAuthFailing" for a in n["alerts"])
    )  # fmt: skip
    assert set(notification["groupLabels"]) <= {"alertname", "account"}


def test_a_provider_outage_pages_once_as_the_api(chain: Chain) -> None:
    alerts = _incident(chain, {"list": 503, "get": 503}, "PinferenceAPIDown")
    assert {a["labels"]["alertname"] for a in alerts} == {"PinferenceAPIDown"}, alerts
    assert {a["_receiver"] for a in alerts} == {"pinference-page"}
    assert {a["_status"] for a in alerts} == {"firing", "resolved"}
    (firing, *_) = [a for a in alerts if a["_status"] == "firing"]
    assert firing["annotations"]["summary"].startswith("Pinference API down for account")


def _marker_alert() -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "labels": {"alertname": "PinferenceTestMarker", "job": JOB, "severity": "warning",
                   "marker": now.isoformat()},
        "annotations": {"summary": "marker"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }


def _rule_groups(chain: Chain) -> list[dict[str, Any]]:
    from harness.prometheus import prom_get

    return list(prom_get(chain.prom_url, "/api/v1/rules")["groups"])
