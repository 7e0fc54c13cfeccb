"""The example Alertmanager configuration (prometheus/alertmanager.yml) with the real tools.

- amtool checks the file and resolves the route of every alert of the rules;
- a real Alertmanager, fed alerts through its API, shows which ones the inhibit rules
  silence (per exporter and per account);
- the live delivery test runs the whole chain on loopback: the fake API, the exporter,
  Prometheus with the shipped rules (short `for:` and windows) and Alertmanager with the
  shipped config, its receivers pointed at a webhook in this test. A 401 delivers
  PinferenceAuthFailing firing, then resolved after recovery; an outage delivers
  PinferenceAPIDown and not the alerts it inhibits.

Skipped when Alertmanager or Prometheus are not installed (Debian: prometheus-alertmanager,
prometheus), except in CI, where that fails. Every wait polls with a deadline.
"""

from __future__ import annotations

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
    prom_alerts,
    rewrite_config,
    rewrite_rules,
    start_prometheus,
    write_yaml,
)
from tests.alerting.helpers import FILES, JOB, RULES, alert_rules, load_yaml, require_tool, run

pytestmark = pytest.mark.integration

CONFIG = FILES.alertmanager_config
API_KEY = "pinference-alertmanager-test-key"  # the fake requires it; not a real key
WATCHED = "meta-llama/llama-3.1-70b-instruct"
WAIT = 90.0  # seconds, for any one step of the live chain (a busy 2-core machine)
# What PinferenceAPIDown silences for its account (the list, in the shipped file).
API_DOWN_SILENCES = {
    "PinferenceAuthFailing",
    "PinferenceHighLatency",
    "PinferenceServerErrors",
    "PinferenceWatchedModelMissing",
    "PinferenceCatalogEmpty",
    "PinferenceCatalogShrunk",
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
    (api_down,) = [r for r in config["inhibit_rules"]
                   if r["source_matchers"] == ['alertname="PinferenceAPIDown"']]  # fmt: skip
    (target,) = api_down["target_matchers"]
    silenced = set(re.fullmatch(r'alertname=~"(.*)"', target).group(1).split("|"))
    assert silenced == API_DOWN_SILENCES and silenced <= names
    assert api_down["equal"] == ["job", "instance", "account"]
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


def _key(alert: dict[str, Any]) -> tuple[str, str, str, str, str]:
    labels = alert["labels"]
    return (labels["alertname"], labels["job"], labels.get("instance", ""),
            labels.get("account", ""), labels.get("model", ""))  # fmt: skip


def test_inhibition_on_a_real_alertmanager(tmp_path: Path) -> None:
    """The shipped inhibit rules, applied by Alertmanager itself to alerts sent to it."""
    binary = alertmanager_binary()
    with WebhookReceiver() as receiver:
        config = rewrite_alertmanager_config(load_yaml(CONFIG), receiver.url)
        process, url = start_alertmanager(tmp_path, config, binary=binary)
        try:
            sources = [
                _alert("PinferenceExporterDown", instance="down:8795"),
                _alert("PinferenceExporterDown", job="pinference-gone"),  # no target at all
                _alert("PinferenceAPIDown", instance="up:8795", account="team"),
                _alert(
                    "PinferenceInferenceFailing", instance="up:8795", account="default", model="m1"
                ),
            ]
            suppressed = [
                # exporter down: everything of that exporter, any account
                _alert("PinferenceAuthFailing", instance="down:8795", account="default"),
                _alert("PinferenceErrorBudgetBurnFast", instance="down:8795", account="team"),
                _alert("PinferenceProbesStale", instance="down:8795", account="default"),
                # job without any target: everything of that job
                _alert(
                    "PinferenceRateLimited",
                    job="pinference-gone",
                    instance="x:8795",
                    account="default",
                ),
                # API down for team on up:8795: its symptoms
                *[
                    _alert(name, instance="up:8795", account="team", model="m1")
                    for name in sorted(API_DOWN_SILENCES)
                ],
                # inference with m1 fails for default: its slow first token
                _alert(
                    "PinferenceSlowFirstToken", instance="up:8795", account="default", model="m1"
                ),
            ]
            active = [
                # the same symptoms on another account, or another exporter
                _alert("PinferenceAuthFailing", instance="up:8795", account="default"),
                _alert("PinferenceServerErrors", instance="other:8795", account="team"),
                # what API down keeps: billing, quota, the error budget
                _alert("PinferencePaymentRequired", instance="up:8795", account="team"),
                _alert("PinferenceRateLimited", instance="up:8795", account="team"),
                _alert("PinferenceErrorBudgetBurnFast", instance="up:8795", account="team"),
                # exporter down does not reach other exporters
                _alert("PinferenceAPIDown", instance="other:8795", account="default"),
                # another model's slow first token
                _alert(
                    "PinferenceSlowFirstToken", instance="up:8795", account="default", model="m2"
                ),
            ]
            am_post_alerts(url, [*sources, *suppressed, *active])
            expected = {_key(a): "suppressed" for a in suppressed}
            expected |= {_key(a): "active" for a in [*sources, *active]}

            def states() -> dict[tuple[str, str, str, str, str], str] | None:
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


def test_a_401_delivers_auth_failing_then_resolved(chain: Chain) -> None:
    from pinference_fake import Fault

    wait_until(
        lambda: any(r["health"] == "ok" for g in _rule_groups(chain) for r in g["rules"]),
        timeout=WAIT, what="Prometheus to evaluate the rules", alive=chain.processes,
    )  # fmt: skip
    # the key is refused for the watched model: list probes keep working (no API down)
    chain.fake.set_fault("get", Fault(status=401))
    try:
        (firing, *_) = wait_until(
            lambda: delivered(chain, "PinferenceAuthFailing", "firing"),
            timeout=WAIT, what="PinferenceAuthFailing delivered", alive=chain.processes,
        )  # fmt: skip
    finally:
        chain.fake.clear_faults()
    assert firing["_receiver"] == "pinference-page"  # critical: paged
    assert firing["labels"]["endpoint"] == "get"
    assert firing["labels"]["instance"] == chain.target
    assert firing["labels"].get("account", "default") == "default"
    assert "401 Unauthorized or 403 Forbidden" in firing["annotations"]["description"]
    assert firing["annotations"]["runbook_url"].endswith("#pinferenceauthfailing")
    notification = next(
        n for n in chain.receiver.notifications
        if any(a["labels"]["alertname"] == "PinferenceAuthFailing" for a in n["alerts"])
    )  # fmt: skip
    assert set(notification["groupLabels"]) <= {"alertname", "account"}
    assert notification["groupLabels"]["alertname"] == "PinferenceAuthFailing"

    (resolved, *_) = wait_until(
        lambda: delivered(chain, "PinferenceAuthFailing", "resolved"),
        timeout=WAIT, what="PinferenceAuthFailing resolved", alive=chain.processes,
    )  # fmt: skip
    assert resolved["labels"]["endpoint"] == "get" and resolved["_receiver"] == "pinference-page"
    assert not delivered(chain, "PinferenceAPIDown", "firing")


def test_an_outage_delivers_api_down_and_not_what_it_inhibits(chain: Chain) -> None:
    from pinference_fake import Fault

    before = len(chain.receiver.notifications)
    chain.fake.set_fault("list", Fault(status=503))
    chain.fake.set_fault("get", Fault(status=503))
    try:
        (api_down, *_) = wait_until(
            lambda: delivered(chain, "PinferenceAPIDown", "firing"),
            timeout=WAIT, what="PinferenceAPIDown delivered", alive=chain.processes,
        )  # fmt: skip
        assert api_down["_receiver"] == "pinference-page"
        assert api_down["annotations"]["summary"].startswith("Pinference API down for account")
        # PinferenceServerErrors fires in Prometheus and reaches Alertmanager, inhibited
        wait_until(
            lambda: [a for a in prom_alerts(chain.prom_url)
                     if a["labels"]["alertname"] == "PinferenceServerErrors"
                     and a["state"] == "firing"],
            timeout=WAIT, what="PinferenceServerErrors firing in Prometheus",
            alive=chain.processes,
        )  # fmt: skip
        inhibited = wait_until(
            lambda: [a for a in am_alerts(chain.am_url)
                     if a["labels"]["alertname"] == "PinferenceServerErrors"
                     and a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]],
            timeout=WAIT, what="PinferenceServerErrors inhibited in Alertmanager",
            alive=chain.processes,
        )  # fmt: skip
        assert {a["labels"]["endpoint"] for a in inhibited} <= {"list", "get"}
        # A barrier: an alert sent now is delivered after any group that was due before it
        # (same group_wait), so once it arrives a ServerErrors notification would have too.
        marker = _marker_alert()
        am_post_alerts(chain.am_url, [marker])
        wait_until(
            lambda: delivered(chain, marker["labels"]["alertname"], "firing"),
            timeout=WAIT, what="the marker alert delivered", alive=chain.processes,
        )  # fmt: skip
        during = chain.receiver.notifications[before:]
        names = {a["labels"]["alertname"] for n in during for a in n["alerts"]}
        assert "PinferenceAPIDown" in names
        assert not names & API_DOWN_SILENCES, f"inhibited alerts were delivered: {names}"
    finally:
        chain.fake.clear_faults()


def _marker_alert() -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "labels": {"alertname": "PinferenceTestMarker", "job": JOB, "severity": "warning"},
        "annotations": {"summary": "marker"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }


def _rule_groups(chain: Chain) -> list[dict[str, Any]]:
    from harness.prometheus import prom_get

    return list(prom_get(chain.prom_url, "/api/v1/rules")["groups"])
