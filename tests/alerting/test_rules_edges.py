"""Edges of the alert rules that the promtool unit tests in prometheus/tests do not pin
(found by `make mutation`, which also runs these cases against each mutant of the rules).

Each case is a promtool test group, run against the shipped rules file: when an alert
resolves, a small catalogue that shrinks, an outage that eases, the dashboard's 1-day
error ratio. Alerts are read through ALERTS (labels only: the texts are pinned elsewhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.alerting.helpers import RULES, promtool

INSTANCE = "exp:8795"
BUCKETS = ("0.5", "1.0", "2.5", "+Inf")


def counter(*phases: tuple[int, int]) -> str:
    """A counter as promtool values: (steps, increase per step) for each phase, from 0."""
    values, total = [0], 0
    for steps, step in phases:
        for _ in range(steps):
            total += step
            values.append(total)
    return " ".join(map(str, values))


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    text = ", ".join(f'{k}="{v}"' for k, v in {"job": "pinference", **labels}.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def firing(alert: str, at: str, *accounts: str) -> dict[str, Any]:
    """promql_expr_test: exactly these accounts have `alert` firing at `at`."""
    return {
        "expr": f'count by (account) (ALERTS{{alertname="{alert}", alertstate="firing"}})',
        "eval_time": at,
        "exp_samples": [{"labels": f'{{account="{a}"}}', "value": 1} for a in accounts],
    }


def list_probes(account: str, minutes: int, *failures: tuple[int, int], per_step: int = 100):
    """`per_step` list probes per step, failures per step by phase."""
    labels = {"instance": INSTANCE, "account": account, "endpoint": "list"}
    return [
        series("pinference_probes_total", counter((minutes, per_step)), **labels),
        series(
            "pinference_probe_failures_total",
            counter(*failures),
            **labels,
            reason="server_error",
        ),
    ]


def latency() -> dict[str, Any]:
    """Two list probes a minute: fast (under 0.5 s) for 20 minutes, slow (1 to 2.5 s) for
    20, fast again. p95 over 10 minutes passes 2 s within 2 minutes of the slowdown."""
    fast_slow_fast = counter((20, 2), (20, 0), (30, 2))
    labels = {"instance": INSTANCE, "account": "slowdown", "endpoint": "list"}
    return {
        "name": "high latency fires 5 minutes after a slowdown, resolves 10 after recovery",
        "interval": "1m",
        "input_series": [
            series(
                "pinference_probe_duration_seconds_bucket",
                fast_slow_fast if le in ("0.5", "1.0") else counter((70, 2)),
                **labels,
                le=le,
            )
            for le in BUCKETS
        ],
        "promql_expr_test": [
            firing("PinferenceHighLatency", "25m"),  # pending: slow for 5 minutes
            firing("PinferenceHighLatency", "30m", "slowdown"),
            firing("PinferenceHighLatency", "40m", "slowdown"),
            firing("PinferenceHighLatency", "52m"),  # 12 minutes fast: resolved
        ],
    }


def catalog() -> dict[str, Any]:
    def models(account: str, values: str) -> dict[str, str]:
        return series("pinference_catalog_models", values, instance=INSTANCE, account=account)

    return {
        "name": "catalog shrinking: the new normal, one model left, gradual and stepwise",
        "interval": "1m",
        "input_series": [
            models("new-normal", "40x29 15x100"),  # dropped at 30m, stays there
            models("one-left", "8x29 1x100"),  # not empty (PinferenceCatalogEmpty's job)
            models("gradual", "5x29 3x59 1x40"),  # 5 -> 3 at 30m -> 1 at 90m
            models("stepwise", "40x29 10x69 6x40"),  # 40 -> 10 at 30m -> 6 at 100m
        ],
        "promql_expr_test": [
            firing("PinferenceCatalogShrunk", "40m", "new-normal", "one-left", "stepwise"),
            # an hour after the drop the smaller catalogue is the maximum: resolved
            firing("PinferenceCatalogShrunk", "92m"),
            # gradual: under half of the hour's maximum, but only 2 fewer within the hour
            firing("PinferenceCatalogShrunk", "100m"),
            # stepwise: 10 -> 6 is not half of the last hour's maximum (the 40 is older)
            firing("PinferenceCatalogShrunk", "110m"),
        ],
    }


def easing() -> dict[str, Any]:
    """100 list probes a minute after 8 clean hours.
    ending: all fail for 8 minutes, then 5% (burn 10): the hour still burns at 28.7x,
      the last 5 minutes at 10x, below the page's 14.4x: no page (6 hours: 4.8x < 6x).
    easing: 4% fail for 6 hours (burn 8), then 2% (burn 4) for 40 minutes: 6 hours burn
      7.6x, the last 30 minutes 4x, below the page's 6x: no page (1 hour: 5.3x < 14.4x)."""
    return {
        "name": "an easing outage stops paging when the short window drops below the page",
        "interval": "1m",
        "input_series": [
            *list_probes("ending", 560, (480, 0), (8, 100), (72, 5)),
            *list_probes("easing", 880, (480, 0), (360, 4), (40, 2)),
        ],
        "promql_expr_test": [
            firing("PinferenceErrorBudgetBurnFast", "486m", "ending"),
            firing("PinferenceErrorBudgetBurnFast", "500m"),
            firing("PinferenceErrorBudgetBurnFast", "830m", "easing"),
            firing("PinferenceErrorBudgetBurnFast", "880m"),
            {
                # 5 minutes back from 492m: one minute of outage and four at 5%
                "expr": 'account:pinference_list_errors:ratio_rate5m{account="ending"}',
                "eval_time": "492m",
                "exp_samples": [
                    {
                        "labels": "account:pinference_list_errors:ratio_rate5m"
                        f'{{job="pinference", instance="{INSTANCE}", account="ending"}}',
                        "value": 0.24,
                    }
                ],
            },
        ],
    }


def slow_burn() -> dict[str, Any]:
    """500 list probes per 5 minutes: 1% fail (burn 2) for 64 hours, then 0.4% (burn 0.8)
    for 12. At 76h the 3 days burn 1.8x but the last 6 hours 0.8x: no ticket."""
    ratio = "account:pinference_list_errors:ratio_rate1d"
    return {
        "name": "an eased slow burn opens no ticket; the 1-day ratio covers one day",
        "interval": "5m",
        "input_series": list_probes("eased", 912, (768, 5), (144, 2), per_step=500),
        "promql_expr_test": [
            firing("PinferenceErrorBudgetBurnSlow", "63h", "eased"),
            firing("PinferenceErrorBudgetBurnSlow", "76h"),
            {
                # one day back from 76h: 12 hours at 1% and 12 at 0.4%
                "expr": f'{ratio}{{account="eased"}}',
                "eval_time": "76h",
                "exp_samples": [
                    {
                        "labels": f'{ratio}{{job="pinference", instance="{INSTANCE}", '
                        'account="eased"}',
                        "value": 0.007,
                    }
                ],
            },
        ],
    }


#: promtool test files (evaluation interval, groups): `make mutation` runs them too.
PROMTOOL_FILES: dict[str, dict[str, Any]] = {
    "edges-1m.test.yml": {"evaluation_interval": "1m", "tests": [latency(), catalog(), easing()]},
    "edges-5m.test.yml": {"evaluation_interval": "5m", "tests": [slow_burn()]},
}


@pytest.mark.parametrize("name", sorted(PROMTOOL_FILES))
def test_the_shipped_rules_pass_the_edge_cases(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    doc = {"rule_files": [str(RULES)], **PROMTOOL_FILES[name]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", str(path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
