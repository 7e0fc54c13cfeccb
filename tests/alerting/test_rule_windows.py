"""How the alert rules' windows slide: when an alert resolves after the cause eases, and
which past values a window still holds. prometheus/tests pins each threshold and the
incidents' pages minute by minute; these cases pin what those leave free (found by
`make mutation`, which runs them against each mutant of the rules too): a window's length,
and the short window of each burn-rate pair against a rate still above zero.

Each case is a promtool test group, run against the shipped rules file. Alerts are read
through ALERTS (labels only: the texts are pinned elsewhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.alerting.helpers import RULES, promtool

INSTANCE = "exp:8795"
BUCKETS = ("0.5", "1.0", "2.5", "+Inf")
# 100 list probes a minute keep every failure share a whole number of probes. The error
# budget windows divide by at least the probes a full window holds at the exporter's
# probe interval, so the exporter says it probes that often (0.6 s).
PROBES_PER_MINUTE = 100


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


def list_probes(
    account: str, steps: int, minutes_per_step: int, *failures: tuple[int, int]
) -> list[dict[str, str]]:
    """List probes of one account, 100 a minute, and its failures per step by phase."""
    labels = {"instance": INSTANCE, "account": account, "endpoint": "list"}
    per_step = PROBES_PER_MINUTE * minutes_per_step
    return [
        series("pinference_probes_total", counter((steps, per_step)), **labels),
        series(
            "pinference_probe_failures_total",
            counter(*failures),
            **labels,
            reason="server_error",
        ),
    ]


def probe_interval(steps: int) -> dict[str, str]:
    seconds = 60 / PROBES_PER_MINUTE
    return series("pinference_probe_interval_seconds", f"{seconds}x{steps}", instance=INSTANCE)


def latency() -> dict[str, Any]:
    """Two list probes a minute: fast (under 0.5 s) for 20 minutes, slow (1 to 2.5 s) for
    20, fast again. p95 passes 2 s while over 15% of the window's probes are slow: within
    2 minutes of the slowdown, and until about 8 minutes after the recovery."""
    fast_slow_fast = counter((20, 2), (20, 0), (30, 2))
    labels = {"instance": INSTANCE, "account": "slowdown", "endpoint": "list"}
    return {
        "name": "high latency fires 10 minutes after a slowdown, resolves as its 10m window clears",
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
            # pending: it waits as long as its window (for: 10m)
            firing("PinferenceHighLatency", "30m"),
            firing("PinferenceHighLatency", "35m", "slowdown"),
            # 6 minutes fast: the 10-minute window still holds 40% slow probes
            firing("PinferenceHighLatency", "46m", "slowdown"),
            firing("PinferenceHighLatency", "52m"),  # 12 minutes fast: resolved
        ],
    }


def catalog() -> dict[str, Any]:
    # A drop to under half that stays (the new normal) is models.test.yml's below-half.
    def models(account: str, values: str) -> dict[str, str]:
        return series("pinference_catalog_models", values, instance=INSTANCE, account=account)

    return {
        "name": "catalog shrinking: one model left, gradual and stepwise",
        "interval": "1m",
        "input_series": [
            models("one-left", "8x29 1x100"),  # not empty (PinferenceCatalogEmpty's job)
            models("gradual", "5x29 3x59 1x40"),  # 5 -> 3 at 30m -> 1 at 90m
            models("stepwise", "40x29 10x69 6x40"),  # 40 -> 10 at 30m -> 6 at 100m
        ],
        "promql_expr_test": [
            firing("PinferenceCatalogShrunk", "40m", "one-left", "stepwise"),
            # an hour after the drop the smaller catalogue is the maximum: resolved
            firing("PinferenceCatalogShrunk", "92m"),
            # gradual: under half of the hour's maximum, but only 2 fewer within the hour
            firing("PinferenceCatalogShrunk", "100m"),
            # stepwise: 10 -> 6 is not half of the last hour's maximum (the 40 is older)
            firing("PinferenceCatalogShrunk", "110m"),
        ],
    }


RATIO_5M = "account:pinference_list_errors:ratio_rate5m"


def easing() -> dict[str, Any]:
    """Partial outages after 8 clean hours (a full one pages as PinferenceAPIDown, and the
    burn rates then stay silent: incidents.test.yml).
    ending: half the probes fail for 10 minutes, then 5% (burn 10): the hour still burns
      above the page's 14.4x, the last 5 minutes at 10x: the page resolves (6 hours: <6x).
    easing: 4% fail for 6 hours (burn 8), then 2% (burn 4) for 40 minutes: 6 hours burn
      7.6x, the last 30 minutes 4x, below the page's 6x: resolved (1 hour: 5.3x < 14.4x)."""
    return {
        "name": "an easing outage stops paging when the short window drops below the page",
        "interval": "1m",
        "input_series": [
            *list_probes("ending", 560, 1, (480, 0), (10, 50), (70, 5)),
            *list_probes("easing", 880, 1, (480, 0), (360, 4), (40, 2)),
            probe_interval(880),
        ],
        "promql_expr_test": [
            firing("PinferenceErrorBudgetBurnFast", "493m", "ending"),
            firing("PinferenceErrorBudgetBurnFast", "500m"),
            firing("PinferenceErrorBudgetBurnFast", "830m", "easing"),
            firing("PinferenceErrorBudgetBurnFast", "880m"),
            {
                # 5 minutes back from 492m: three at 50% and two at 5%; over every
                # exporter of the account (no instance label)
                "expr": f'{RATIO_5M}{{account="ending"}}',
                "eval_time": "492m",
                "exp_samples": [
                    {"labels": f'{RATIO_5M}{{job="pinference", account="ending"}}', "value": 0.32}
                ],
            },
        ],
    }


def slow_burn() -> dict[str, Any]:
    """500 list probes per 5 minutes: 1% fail (burn 2) for 64 hours, then 0.4% (burn 0.8)
    for 12. At 76h the 3 days burn 1.8x but the last 6 hours 0.8x: no ticket."""
    return {
        "name": "an eased slow burn closes its ticket",
        "interval": "5m",
        "input_series": [
            *list_probes("eased", 912, 5, (768, 5), (144, 2)),
            probe_interval(912),
        ],
        "promql_expr_test": [
            firing("PinferenceErrorBudgetBurnSlow", "63h", "eased"),
            firing("PinferenceErrorBudgetBurnSlow", "76h"),
        ],
    }


#: promtool test files (evaluation interval, groups): `make mutation` runs them too.
PROMTOOL_FILES: dict[str, dict[str, Any]] = {
    "windows-1m.test.yml": {
        "evaluation_interval": "1m",
        "tests": [latency(), catalog(), easing()],
    },
    "windows-5m.test.yml": {"evaluation_interval": "5m", "tests": [slow_burn()]},
}


@pytest.mark.parametrize("name", sorted(PROMTOOL_FILES))
def test_the_shipped_rules_slide_their_windows_as_designed(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    doc = {"rule_files": [str(RULES)], **PROMTOOL_FILES[name]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", str(path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
