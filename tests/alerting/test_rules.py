"""The Prometheus alerting and recording rules, their promtool unit tests and the example
scrape config.

promtool (Debian package `prometheus`) checks and unit-tests the shipped files; these tests
are skipped only when promtool is not installed, and fail in CI (CI=true) if it is missing.
The unit tests are in prometheus/tests/*.test.yml, one file per theme.
"""

from __future__ import annotations

import copy
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.alerting.helpers import (
    ALERTS_DOC,
    FILES,
    GENERATOR,
    GRAFANA_ALERTING,
    JOB,
    PROM_CONFIG,
    RULES,
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
    "PinferenceErrorBudgetBurnFast",
    "PinferenceErrorBudgetBurnSlow",
    "PinferenceTLSCertExpiringSoon",
    "PinferenceInferenceFailing",
    "PinferenceSlowFirstToken",
}
# Alerts about the exporter itself: no account label.
EXPORTER_ALERTS = {"PinferenceExporterDown"}
OBJECTIVE = "pinference:slo_objective:ratio"
SLO_WINDOWS = ["5m", "30m", "1h", "6h", "3d"]
# Long windows are judged against at least a full window of probes (seconds per window).
FLOORED = {"1h": 3600, "6h": 21600, "3d": 259200}
RULES_BY_NAME = {rule["alert"]: rule for rule in alert_rules()}
RULES_TESTS = FILES.rules_tests


def all_rules(path: Path = RULES) -> list[dict[str, Any]]:
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def records() -> dict[str, dict[str, Any]]:
    return {rule["record"]: rule for rule in all_rules() if "record" in rule}


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub generates for the headings of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


@pytest.fixture(scope="module")
def generator() -> Any:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("generate_alerting", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ promtool


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert {path.name for path in RULES_TESTS} >= {"healthy.test.yml", "slo.test.yml"}
    result = promtool("test", "rules", *map(str, RULES_TESTS), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULES_TESTS)


def test_promtool_check_config() -> None:
    result = promtool("check", "config", str(PROM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    # the config loads the rules file, so the rules are checked through it too
    assert "pinference.rules.yml" in result.stdout


def test_unit_test_files_load_the_shipped_rules() -> None:
    for path in RULES_TESTS:
        assert load_yaml(path)["rule_files"] == ["../pinference.rules.yml"], path.name


# ------------------------------------------------------------------ the tests can fail

# (rule, text in that rule, replacement, all occurrences?, (test file, group) that must fail)
# Every threshold is doubled and halved, so a test sits just above and just below it.
FAILURES = (
    "failures.test.yml",
    "failure shares by reason, just above and just below each threshold",
)
LATENCY = ("latency.test.yml", "probe latency percentiles, just above and just below 2s")
SHRINK = ("models.test.yml", "catalog shrinking, just above and just below each threshold")
STALE = ("stale.test.yml", "stale probes and successes, just above and just below each threshold")
OUTAGE = ("slo.test.yml", "a full outage pages within 5 minutes and resolves after recovery")
SUSTAINED = ("slo.test.yml", "a sustained 1% error rate tickets but never pages")
BLIP = ("slo.test.yml", "a 2-minute blip does nothing")
PAGES = ("slo.test.yml", "each page threshold, just above and just below")
TLS = ("tls.test.yml", "certificate expiry, just above and just below 14 days")
INFERENCE = (
    "inference.test.yml",
    "chat probes failing while the list works, just above and just below half",
)
TTFT = ("inference.test.yml", "time to first token, just above and just below 5s")
REFUSED = ("failures.test.yml", "the last probe refused for 5 minutes, a blip and flapping")


def incident(name: str) -> tuple[str, str]:
    return ("incidents.test.yml", name)


REVOKED = incident("unauthorized on every probe of account default for 15 minutes, then fixed")
FORBIDDEN = incident("forbidden on every probe of account default for 15 minutes, then fixed")
OUTAGE_5XX = incident("server_error on every probe of account default for 15 minutes, then fixed")
FRESH = incident("fresh install: one failed probe of each kind pages nothing")
OLD_BLIP = incident("a 2-minute blip after 6 hours of history pages and tickets nothing")
TIMEOUTS = incident("timeout on every probe of account default for 15 minutes, then fixed")
PAGED = "unless on (job, account)\n          account:pinference_list_outage:paged1h"
MUTATIONS: list[tuple[str, str, str, bool, tuple[str, str]]] = [
    ("PinferenceExporterDown", "for: 5m", "for: 10m", False,
     ("availability.test.yml", "exporter down, blip and healthy target")),
    ("PinferenceExporterDown", "for: 5m", "for: 2m30s", False,
     ("availability.test.yml", "exporter down, blip and healthy target")),
    ("PinferenceAPIDown", "for: 5m", "for: 10m", False,
     ("availability.test.yml", "list probes failing per account, blip and healthy")),
    ("PinferenceAPIDown", "for: 5m", "for: 2m30s", False,
     ("availability.test.yml", "list probes failing per account, blip and healthy")),
    ("PinferenceAPIDown", "keep_firing_for: 2m", "keep_firing_for: 30s", False,
     ("availability.test.yml", "list probes failing per account, blip and healthy")),
    ("PinferenceAPIDown", "max by (job, account) (pinference_up",
     "min by (job, account) (pinference_up", False,
     ("availability.test.yml", "list probes failing per account, blip and healthy")),
    ("PinferenceAPIDown", ">= 401 <= 403", ">= 401 <= 402", False, FORBIDDEN),
    ("PinferenceAuthFailing", "== 403", "== 404", False, REFUSED),
    ("PinferenceAuthFailing", "== 401", "== 400", False, REVOKED),
    ("PinferenceAuthFailing", "for: 5m", "for: 4m", False, REFUSED),
    ("PinferenceAuthFailing", "keep_firing_for: 2m", "keep_firing_for: 1m", False, REFUSED),
    ("PinferenceAuthFailing", "keep_firing_for: 2m", "keep_firing_for: 3m", False, REFUSED),
    ("PinferencePaymentRequired", "== 402", "== 429", False, REFUSED),
    ("PinferencePaymentRequired", "for: 5m", "for: 4m", False, REFUSED),
    ("account:pinference_list_outage:paged1h", "[1h]", "[5m]", False, OUTAGE_5XX),
    ("PinferenceRateLimited", ") > 0.2", ") > 0.4", False, FAILURES),
    ("PinferenceRateLimited", ") > 0.2", ") > 0.1", False, FAILURES),
    ("PinferenceServerErrors", ") > 0.2", ") > 0.4", False, FAILURES),
    ("PinferenceServerErrors", ") > 0.2", ") > 0.1", False, FAILURES),
    ("PinferenceServerErrors", "for: 10m", "for: 5m", False, FAILURES),
    ("PinferenceServerErrors", PAGED, "", False, OUTAGE_5XX),
    ("PinferenceHighLatency", PAGED, "", False, TIMEOUTS),
    ("PinferenceHighLatency", "for: 10m", "for: 5m", False, LATENCY),
    ("PinferenceWatchedModelMissing", "for: 5m", "for: 10m", False,
     ("models.test.yml", "watched model 404 per account, blip and available")),
    ("PinferenceHighLatency", ") > 2", ") > 4", False, LATENCY),
    ("PinferenceHighLatency", ") > 2", ") > 1", False, LATENCY),
    ("PinferenceHighLatency", "histogram_quantile(0.95,", "histogram_quantile(0.5,", False,
     LATENCY),
    ("PinferenceCatalogEmpty", 'pinference_up{job="pinference"} == 1',
     'pinference_up{job="pinference"} >= 0', False, ("models.test.yml", "empty catalog")),
    ("PinferenceCatalogShrunk", "< 0.5 *", "< 1 *", False, SHRINK),
    ("PinferenceCatalogShrunk", "< 0.5 *", "< 0.25 *", False, SHRINK),
    ("PinferenceCatalogShrunk", ">= 3", ">= 6", False, SHRINK),
    ("PinferenceCatalogShrunk", ">= 3", ">= 1.5", False, SHRINK),
    ("PinferenceCatalogShrunk", "[1h]", "[2h]", True, SHRINK),
    ("PinferenceProbesStale", "(3 *", "(6 *", False, STALE),
    ("PinferenceProbesStale", "(3 *", "(1.5 *", False, STALE),
    ("PinferenceProbesStale", "+ 60)", "+ 120)", False, STALE),
    ("PinferenceProbesStale", "+ 60)", "+ 30)", False, STALE),
    ("PinferenceProbesStale", "(10 *", "(20 *", False, STALE),
    ("PinferenceProbesStale", "(10 *", "(5 *", False, STALE),
    ("PinferenceProbesStale", ", 1800)", ", 3600)", False, STALE),
    ("PinferenceProbesStale", ", 1800)", ", 900)", False, STALE),
    ("PinferenceErrorBudgetBurnFast", "> 14.4", "> 28.8", True, OUTAGE),
    ("PinferenceErrorBudgetBurnFast", "> 14.4", "> 7.2", True, PAGES),
    ("PinferenceErrorBudgetBurnFast", "> 6\n", "> 12\n", True, PAGES),
    ("PinferenceErrorBudgetBurnFast", "> 6\n", "> 3\n", True, PAGES),
    ("PinferenceErrorBudgetBurnFast", "ratio_rate5m", "ratio_rate1h", False, OUTAGE),
    ("PinferenceErrorBudgetBurnFast", "ratio_rate30m", "ratio_rate6h", False, OUTAGE),
    ("PinferenceErrorBudgetBurnSlow", "> 1\n", "> 2\n", True, SUSTAINED),
    ("PinferenceErrorBudgetBurnSlow", "> 1\n", "> 0.5\n", True, SUSTAINED),
    ("PinferenceErrorBudgetBurnFast", "for: 2m", "for: 0s", False, REVOKED),
    ("PinferenceErrorBudgetBurnFast", PAGED, "", False, OUTAGE_5XX),
    ("PinferenceErrorBudgetBurnSlow", "ratio_rate3d", "ratio_rate6h", False, BLIP),
    ("account:pinference_list_errors:ratio_rate1h", "3600 *", "1 *", True, FRESH),
    ("account:pinference_list_errors:ratio_rate3d", "259200 *", "1 *", True, OLD_BLIP),
    ("account:pinference_list_errors:ratio_rate3d", "259200 *", "1 *", True, SUSTAINED),
    ("PinferenceTLSCertExpiringSoon", "< 14 * 86400", "< 28 * 86400", False, TLS),
    ("PinferenceTLSCertExpiringSoon", "< 14 * 86400", "< 7 * 86400", False, TLS),
    ("PinferenceTLSCertExpiringSoon", "for: 10m", "for: 20m", False, TLS),
    ("PinferenceTLSCertExpiringSoon", "for: 10m", "for: 5m", False, TLS),
    ("PinferenceTLSCertExpiringSoon", "[1h]", "[1m]", False, TLS),
    ("PinferenceInferenceFailing", ") > 0.5", ") > 1", False, INFERENCE),
    ("PinferenceInferenceFailing", ") > 0.5", ") > 0.25", False, INFERENCE),
    ("PinferenceInferenceFailing", "for: 10m", "for: 20m", False, INFERENCE),
    ("PinferenceInferenceFailing", "for: 10m", "for: 5m", False, INFERENCE),
    ("PinferenceInferenceFailing", "[15m]", "[30m]", True, INFERENCE),
    ("PinferenceInferenceFailing", 'pinference_up{job="pinference"} == 1',
     'pinference_up{job="pinference"} >= 0', False, INFERENCE),
    ("PinferenceSlowFirstToken", ") > 5", ") > 10", False, TTFT),
    ("PinferenceSlowFirstToken", ") > 5", ") > 2.5", False, TTFT),
    ("PinferenceSlowFirstToken", "histogram_quantile(0.5,", "histogram_quantile(0.9,", False,
     TTFT),
    ("PinferenceSlowFirstToken", "for: 10m", "for: 20m", False, TTFT),
    ("PinferenceSlowFirstToken", "for: 10m", "for: 5m", False, TTFT),
    (OBJECTIVE, "vector(0.995)", "vector(0.99)", False, SUSTAINED),
    (OBJECTIVE, "vector(0.995)", "vector(0.9975)", False, PAGES),
]  # fmt: skip


def rule_block(text: str, name: str) -> tuple[int, int]:
    """Start and end offsets of one rule (`- alert: name` or `- record: name`) in the file."""
    start = re.search(rf"^\s*- (?:alert|record): {re.escape(name)}\s*$", text, flags=re.M)
    assert start, name
    following = re.compile(r"^\s*- (?:alert|record): ", flags=re.M).search(text, start.end())
    return start.start(), following.start() if following else len(text)


def mutate(text: str, rule: str, old: str, new: str, every: bool) -> str:
    start, end = rule_block(text, rule)
    block = text[start:end]
    count = block.count(old)
    assert count >= 1 and (every or count == 1), f"{rule}: {old!r} found {count} times"
    return text[:start] + block.replace(old, new) + text[end:]


def one_group(test_file: str, group: str, rules_file: Path, out: Path) -> Path:
    """A copy of one test group of a promtool test file, run against `rules_file`."""
    doc = load_yaml(FILES.prometheus_dir / "tests" / test_file)
    doc["rule_files"] = [str(rules_file)]
    doc["tests"] = [test for test in doc["tests"] if test["name"] == group]
    assert len(doc["tests"]) == 1, f"{test_file}: no group {group!r}"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def test_every_mutation_is_real() -> None:
    """Each mutation below applies to the shipped rules (so the list stays in step)."""
    text = RULES.read_text()
    for rule, old, new, every, _ in MUTATIONS:
        assert mutate(text, rule, old, new, every) != text


def test_every_threshold_is_pinned_from_both_sides(tmp_path: Path) -> None:
    """Doubling or halving any threshold, changing a `for:`, a window or the objective
    fails a unit test: each case sits just above or just below what it guards."""
    text = RULES.read_text()

    def survives(index: int) -> str | None:
        rule, old, new, every, (test_file, group) = MUTATIONS[index]
        work = tmp_path / str(index)
        work.mkdir()
        rules_file = work / "rules.yml"
        rules_file.write_text(mutate(text, rule, old, new, every))
        group_file = one_group(test_file, group, rules_file, work / test_file)
        result = promtool("test", "rules", str(group_file), timeout=120)
        if result.returncode != 0 and "FAILED" in result.stdout + result.stderr:
            return None
        return f"{rule}: {old!r} -> {new!r} survives {test_file} / {group}"

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        survivors = [s for s in pool.map(survives, range(len(MUTATIONS))) if s]
    assert not survivors, "\n".join(survivors)
    assert time.monotonic() - started < 240


def test_a_group_alone_passes_unmutated(tmp_path: Path) -> None:
    """A group taken out of its file passes on the shipped rules: a mutation is killed by
    what it breaks, not by the extraction (groups are independent: their own series)."""
    path = one_group(*FAILURES, RULES, tmp_path / FAILURES[0])
    result = promtool("test", "rules", str(path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


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
    assert [group["name"] for group in groups] == ["pinference", "pinference-slo"]


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_rule_metadata(name: str, generator: Any) -> None:
    rule = RULES_BY_NAME[name]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert isinstance(annotations.get(key), str), f"{name}: no {key}"
        assert annotations[key].strip(), f"{name}: empty {key}"
    assert "{{" in annotations["description"], f"{name}: description has no templated value"
    assert annotations["runbook_url"] == f"{generator.runbook_base()}#{name.lower()}"
    assert re.fullmatch(r"\d+[smh]", rule["for"]), f"{name}: for: {rule.get('for')!r}"
    assert f'job="{JOB}"' in rule["expr"], f"{name}: expression not limited to the job"


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_alert_texts_say_what_fails_where(name: str) -> None:
    """Summaries name the account (not only the exporter's address) and the endpoint;
    descriptions say what to check first."""
    annotations = RULES_BY_NAME[name]["annotations"]
    summary, description = annotations["summary"], annotations["description"]
    if name in EXPORTER_ALERTS:
        assert "$labels.instance" in summary
    else:
        # an exporter without the label probes the one account named default
        assert 'account {{ or $labels.account "default" }}' in summary, summary
        assert "$labels.account" in description and "{{ $labels.account }}" not in description
    keeps_endpoint = "endpoint" in RULES_BY_NAME[name]["expr"] or name in {
        "PinferenceWatchedModelMissing"  # model is the endpoint's argument
    }
    if keeps_endpoint and name != "PinferenceWatchedModelMissing":
        assert "$labels.endpoint" in summary or "GET /models" in summary, summary
    if name == "PinferenceWatchedModelMissing":
        assert "$labels.model" in summary
    assert "check first" in description.lower(), f"{name}: no first step"


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_runbook_anchor_exists(name: str, generator: Any) -> None:
    """Each runbook_url points at a heading of docs/alerts.md."""
    url = RULES_BY_NAME[name]["annotations"]["runbook_url"]
    base, _, anchor = url.partition("#")
    assert base == generator.runbook_base() and base.endswith("/docs/alerts.md")
    text = ALERTS_DOC.read_text(encoding="utf-8")
    assert anchor in github_anchors(text), f"no heading for #{anchor} in docs/alerts.md"
    assert f"### {name}\n" in text


def test_the_alert_table_lists_every_alert() -> None:
    text = ALERTS_DOC.read_text(encoding="utf-8")
    table = {m for m in re.findall(r"^\| `(Pinference\w+)` \|", text, flags=re.M)}
    assert table == EXPECTED_ALERTS


def test_github_anchor_slugging() -> None:
    assert github_anchors("### PinferenceAPIDown\n## Two words, here!\n") == {
        "pinferenceapidown",
        "two-words-here",
    }


# Joins with a series of the exporter itself (no account label) go on job and instance.
EXPORTER_LEVEL_JOINS = {
    ("PinferenceProbesStale", "job, instance"),
    ("account:pinference_list_probes:min_rate", "job, instance"),
}
# An account's slowest exporter: the one aggregation across exporters by design.
ACROSS_EXPORTER_CLAUSES = {("account:pinference_list_probes:min_rate", "job, account")}
# Joins with the per-account record of an outage that paged (no instance label).
PAGED_JOINS = {
    (name, "job, account")
    for name in ("PinferenceRateLimited", "PinferenceServerErrors", "PinferenceHighLatency")
}
# Per account over every exporter of the job: the pages that read the current state (a
# restarted or rescheduled exporter neither resolves nor re-pages them) and the error
# budget, whose record must not restart with each new instance label.
ACROSS_EXPORTERS = {
    "PinferenceAPIDown",
    "PinferenceAuthFailing",
    "PinferencePaymentRequired",
    "PinferenceErrorBudgetBurnFast",
    "PinferenceErrorBudgetBurnSlow",
    "account:pinference_list_outage:paged1h",
    *(f"account:pinference_list_errors:ratio_rate{window}" for window in SLO_WINDOWS),
}


def test_aggregations_keep_job_instance_and_account() -> None:
    for name, rule in [*RULES_BY_NAME.items(), *records().items()]:
        for clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", rule["expr"]):
            labels = {label.strip() for label in clause.split(",")}
            if name in ACROSS_EXPORTERS:
                assert "instance" not in labels and {"job", "account"} <= labels, (name, clause)
                continue
            if (name, clause.strip()) in ACROSS_EXPORTER_CLAUSES:
                continue
            if (name, clause.strip()) in PAGED_JOINS:
                assert "account:pinference_list_outage:paged1h" in rule["expr"], name
                continue
            assert {"job", "instance"} <= labels, f"{name}: drops job/instance in ({clause})"
            if (name, clause.strip()) not in EXPORTER_LEVEL_JOINS:
                assert "account" in labels, f"{name}: drops account in ({clause})"


def test_severities_are_what_operators_expect() -> None:
    critical = {name for name, r in RULES_BY_NAME.items() if r["labels"]["severity"] == "critical"}
    assert critical == {
        "PinferenceAPIDown",
        "PinferenceAuthFailing",
        "PinferencePaymentRequired",
        "PinferenceCatalogEmpty",
        "PinferenceErrorBudgetBurnFast",
        "PinferenceInferenceFailing",
    }


# ------------------------------------------------------------------ the objective


MIN_RATE = "account:pinference_list_probes:min_rate"


def test_the_objective_is_one_setting_in_one_place() -> None:
    recorded = records()
    (objective,) = [r for r in all_rules() if r.get("record") == OBJECTIVE]
    match = re.fullmatch(r"vector\((0\.\d+)\)", objective["expr"])
    assert match, objective["expr"]
    value = match.group(1)
    assert float(value) == 0.995  # the documented default: 99.5% over 30 days
    text = RULES.read_text()
    assert text.count(value) == 1, "the objective's value is written more than once"
    for window in SLO_WINDOWS:
        record = recorded[f"account:pinference_list_errors:ratio_rate{window}"]
        assert record["expr"].count(f"[{window}]") == 2
        assert record["expr"].count('endpoint="list"') == 2
        assert record["expr"].count("sum by (job, account)") == 2
        floor = FLOORED.get(window)
        floored = f"> {floor} * {MIN_RATE}" in record["expr"]
        assert floored is (floor is not None), window
        if floor:  # at least the probes a full window holds at the account's own interval
            assert f"or {floor} * {MIN_RATE}" in record["expr"]
    for name in ("PinferenceErrorBudgetBurnFast", "PinferenceErrorBudgetBurnSlow"):
        expr = RULES_BY_NAME[name]["expr"]
        assert expr.count(f"scalar(1 - {OBJECTIVE})") == expr.count("ratio_rate")
        assert "pinference_probe" not in expr, f"{name} must read the recorded ratios"


def test_burn_alerts_follow_the_workbook() -> None:
    pairs = {}
    for name in ("PinferenceErrorBudgetBurnFast", "PinferenceErrorBudgetBurnSlow"):
        found = re.findall(r"ratio_rate(\w+)\{[^}]*\} / scalar\([^)]*\) > ([\d.]+)",
                           RULES_BY_NAME[name]["expr"])  # fmt: skip
        pairs[name] = [(window, float(factor)) for window, factor in found]
    assert pairs["PinferenceErrorBudgetBurnFast"] == [
        ("1h", 14.4), ("5m", 14.4), ("6h", 6.0), ("30m", 6.0),
    ]  # fmt: skip
    assert pairs["PinferenceErrorBudgetBurnSlow"] == [("3d", 1.0), ("6h", 1.0)]
    assert RULES_BY_NAME["PinferenceErrorBudgetBurnFast"]["labels"]["severity"] == "critical"
    assert RULES_BY_NAME["PinferenceErrorBudgetBurnSlow"]["labels"]["severity"] == "warning"


# ------------------------------------------------------------------ the unit tests' coverage


def _rule_tests() -> list[dict[str, Any]]:
    return [
        case
        for path in RULES_TESTS
        for test in load_yaml(path)["tests"]
        for case in test.get("alert_rule_test") or []
    ]


def _silence_checks() -> str:
    """The text of every promql_expr_test that expects no sample (ALERTS over time)."""
    exprs = [
        case["expr"]
        for path in RULES_TESTS
        for test in load_yaml(path)["tests"]
        for case in test.get("promql_expr_test") or []
        if "ALERTS" in case["expr"] and not case.get("exp_samples")
    ]
    return "\n".join(exprs)


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_unit_tests_cover_firing_and_silence(name: str) -> None:
    cases = [case for case in _rule_tests() if case["alertname"] == name]
    firing = [case for case in cases if case.get("exp_alerts")]
    silent = [case for case in cases if not case.get("exp_alerts")]
    assert firing, f"{name}: no test where it fires"
    assert len(silent) >= 2, f"{name}: needs a healthy case and a too-short/other-reason case"
    accounts = set()
    for case in firing:
        for alert in case["exp_alerts"]:
            assert alert["exp_labels"]["severity"] == RULES_BY_NAME[name]["labels"]["severity"]
            assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}
            assert {"job"} <= set(alert["exp_labels"])
            accounts.add(alert["exp_labels"].get("account"))
    if name not in EXPORTER_ALERTS:
        assert accounts - {None}, f"{name}: no test with an account label"


def test_a_healthy_day_fires_nothing_at_all() -> None:
    (healthy,) = [t for t in load_yaml(FILES.prometheus_dir / "tests" / "healthy.test.yml")["tests"]
                  if t["name"] == "healthy exporter never alerts"]  # fmt: skip
    checked = {case["alertname"] for case in healthy["alert_rule_test"]}
    assert checked == EXPECTED_ALERTS
    assert all(not case.get("exp_alerts") for case in healthy["alert_rule_test"])
    (everything,) = [c for c in healthy["promql_expr_test"] if c["expr"].startswith("count_over")]
    assert everything == {"expr": "count_over_time(ALERTS[24h])", "eval_time": "24h",
                          "exp_samples": []}  # fmt: skip
    assert "count_over_time(ALERTS[" in _silence_checks()


# ------------------------------------------------------------------ the Grafana copies


def grafana_copies_as_prometheus_rules(path: Path = GRAFANA_ALERTING) -> dict[str, Any]:
    """The generated Grafana-managed rules turned back into a Prometheus rules file (their
    own expressions, `for`, labels and annotations), with the shipped recording rules so
    that the unit tests' queries of recorded series still work."""
    grafana = load_yaml(path)
    shipped = load_yaml(RULES)
    groups = []
    for group in grafana["groups"]:
        rules = [copy.deepcopy(r) for g in shipped["groups"] if g["name"] == group["name"]
                 for r in g["rules"] if "record" in r]  # fmt: skip
        for rule in group["rules"]:
            annotations = {
                key: value.replace("$values.B.Value", "$value")
                for key, value in rule["annotations"].items()
                if not key.startswith("__")
            }
            rules.append({"alert": rule["title"], "expr": rule["data"][0]["model"]["expr"],
                          "for": rule["for"], "labels": rule["labels"],
                          "annotations": annotations})  # fmt: skip
        groups.append({"name": group["name"], "rules": rules})
    return {"groups": groups}


def test_grafana_copies_pass_the_same_unit_tests(tmp_path: Path) -> None:
    """The Grafana-managed copies, whose SLO expressions inline the recording rules, fire
    exactly when the Prometheus rules do: the unit tests of the SLO alerts pass on them."""
    rules_file = tmp_path / "grafana-copies.rules.yml"
    rules_file.write_text(yaml.safe_dump(grafana_copies_as_prometheus_rules(), sort_keys=False))
    slo = load_yaml(FILES.prometheus_dir / "tests" / "slo.test.yml")
    slo["rule_files"] = [str(rules_file)]
    test_file = tmp_path / "slo.test.yml"
    test_file.write_text(yaml.safe_dump(slo, sort_keys=False))
    result = promtool("test", "rules", str(test_file), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ the incident scenarios


def test_incident_scenarios_file_is_current() -> None:
    """prometheus/tests/incidents.test.yml is what tests/alerting/incidents.py writes from its
    scenarios and the shipped inhibit rules (an edit of either must regenerate it)."""
    from tests.alerting import incidents

    assert incidents.OUTPUT.read_text(encoding="utf-8") == incidents.render(), (
        "run python tests/alerting/incidents.py"
    )


def test_incident_series_notation() -> None:
    from tests.alerting import incidents

    assert incidents._compress(["0", "1", "2", "2", "_", "_", "stale", "5", "0"]) == (
        "0+1x2 2x0 _x2 stale 5-5x1"
    )
