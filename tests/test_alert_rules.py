"""The Prometheus alerting rules, their promtool unit tests and the example scrape config.

promtool (Debian package `prometheus`) checks and unit-tests the shipped files; these tests
are skipped only when promtool is not installed, and fail in CI (CI=true) if it is missing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from promhelpers import (
    ALERTS_DOC,
    JOB,
    PROM_CONFIG,
    README,
    RULES,
    RULES_TEST,
    alert_rules,
    load_yaml,
    promtool,
)

EXPECTED_ALERTS = {
    "PinferenceExporterDown",
    "PinferenceAPIDown",
    "PinferenceAuthFailing",
    "PinferencePaymentRequired",
    "PinferenceRateLimited",
    "PinferenceServerErrors",
    "PinferenceWatchedModelMissing",
    "PinferenceHighLatency",
    "PinferenceCatalogEmpty",
    "PinferenceCatalogShrunk",
    "PinferenceProbesStale",
}
RUNBOOK_BASE = "https://github.com/llm-pinference/llm-pinference/blob/main/"
RULES_BY_NAME = {rule["alert"]: rule for rule in alert_rules()}


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub generates for the headings of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


# ------------------------------------------------------------------ promtool


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES_BY_NAME)} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config() -> None:
    result = promtool("check", "config", str(PROM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    # the config loads the rules file, so the rules are checked through it too
    assert "pinference.rules.yml" in result.stdout


def test_unit_tests_detect_a_broken_rule(tmp_path: Path) -> None:
    """The promtool tests are not vacuous: loosening or breaking a rule makes them fail."""
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    text = RULES.read_text(encoding="utf-8")
    mutations = [
        ('reason=~"unauthorized|forbidden"', 'reason="unauthorized"'),  # 403 ignored
        (") > 0.2\n        for: 10m", ") > 0.01\n        for: 10m"),  # threshold lost
        ("+ 60)", "+ 0)"),  # stale threshold too tight
        ("and\n          pinference_catalog_models", "or\n          pinference_catalog_models"),
    ]
    for old, new in mutations:
        assert old in text, old
        (tmp_path / RULES.name).write_text(text.replace(old, new, 1), encoding="utf-8")
        result = promtool("test", "rules", str(tmp_path / RULES_TEST.name))
        assert result.returncode != 0, f"unit tests still pass with {old!r} -> {new!r}"


# ------------------------------------------------------------------ scrape config


def test_scrape_config_targets_the_exporter() -> None:
    config = load_yaml(PROM_CONFIG)
    assert config["rule_files"] == ["pinference.rules.yml"]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    assert len(jobs) == 1
    assert jobs[0]["scrape_interval"] == "15s"
    assert jobs[0]["static_configs"][0]["targets"] == ["localhost:8795"]


# ------------------------------------------------------------------ rule content


def test_every_expected_alert_is_defined_once() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED_ALERTS
    groups = load_yaml(RULES)["groups"]
    assert [group["name"] for group in groups] == ["pinference"]


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_rule_metadata(name: str) -> None:
    rule = RULES_BY_NAME[name]
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert isinstance(annotations.get(key), str), f"{name}: no {key}"
        assert annotations[key].strip(), f"{name}: empty {key}"
    assert "{{" in annotations["description"], f"{name}: description has no templated value"
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}docs/alerts.md#{name.lower()}"
    assert re.fullmatch(r"\d+[smh]", rule["for"]), f"{name}: for: {rule.get('for')!r}"
    assert f'job="{JOB}"' in rule["expr"], f"{name}: expression not limited to the job"


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_runbook_anchor_exists(name: str) -> None:
    """Each runbook_url points at a heading of docs/alerts.md (README.md has none yet)."""
    url = RULES_BY_NAME[name]["annotations"]["runbook_url"]
    path, _, anchor = url.removeprefix(RUNBOOK_BASE).partition("#")
    document = ALERTS_DOC if path == "docs/alerts.md" else README
    assert document.exists(), url
    text = document.read_text(encoding="utf-8")
    assert anchor in github_anchors(text), f"no heading for #{anchor} in {path}"
    assert f"### {name}\n" in text


def test_github_anchor_slugging() -> None:
    assert github_anchors("### PinferenceAPIDown\n## Two words, here!\n") == {
        "pinferenceapidown",
        "two-words-here",
    }


def test_aggregations_keep_job_and_instance() -> None:
    for name, rule in RULES_BY_NAME.items():
        for clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", rule["expr"]):
            labels = {label.strip() for label in clause.split(",")}
            assert {"job", "instance"} <= labels, f"{name}: drops job/instance in ({clause})"


def test_severities_are_what_operators_expect() -> None:
    critical = {name for name, r in RULES_BY_NAME.items() if r["labels"]["severity"] == "critical"}
    assert critical == {
        "PinferenceAPIDown",
        "PinferenceAuthFailing",
        "PinferencePaymentRequired",
        "PinferenceCatalogEmpty",
    }


# ------------------------------------------------------------------ the unit tests' coverage


def _rule_tests() -> list[dict[str, Any]]:
    return [case for test in load_yaml(RULES_TEST)["tests"] for case in test["alert_rule_test"]]


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_unit_tests_cover_firing_and_silence(name: str) -> None:
    cases = [case for case in _rule_tests() if case["alertname"] == name]
    firing = [case for case in cases if case.get("exp_alerts")]
    silent = [case for case in cases if not case.get("exp_alerts")]
    assert firing, f"{name}: no test where it fires"
    assert len(silent) >= 2, f"{name}: needs a healthy case and a too-short/other-reason case"
    for case in firing:
        for alert in case["exp_alerts"]:
            assert alert["exp_labels"]["severity"] == RULES_BY_NAME[name]["labels"]["severity"]
            assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}
            assert {"job"} <= set(alert["exp_labels"])


def test_rules_test_file_loads_the_shipped_rules() -> None:
    doc = load_yaml(RULES_TEST)
    assert doc["rule_files"] == ["pinference.rules.yml"]
    healthy = [t for t in doc["tests"] if t["name"] == "healthy exporter never alerts"]
    assert len(healthy) == 1
    checked = {case["alertname"] for case in healthy[0]["alert_rule_test"]}
    assert checked == EXPECTED_ALERTS
    assert all(not case.get("exp_alerts") for case in healthy[0]["alert_rule_test"])
