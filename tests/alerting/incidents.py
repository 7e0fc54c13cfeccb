"""The incidents an operator meets first, as promtool unit tests of the pages they get.

    python tests/alerting/incidents.py            # writes prometheus/tests/incidents.test.yml
    python tests/alerting/incidents.py --check    # exit 1 if that file is not what this writes

Each scenario is a few accounts, each probed every 30s by an exporter (`instance`) from
`start` to `end`, with faults (a failure reason from one minute to another). The series
are what the exporter would export; the expected notifications are written by hand, per
alert and account, as [from, to) minutes. At every minute the generated test asks
promtool for the firing alerts that the shipped Alertmanager config does not inhibit
(`notified_expr`: its inhibit rules as PromQL over ALERTS) and compares them with the
expectation: no other page, no ticket, at any minute, through the recovery.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "prometheus" / "tests" / "incidents.test.yml"
ALERTMANAGER = ROOT / "prometheus" / "alertmanager.yml"
STEP = 30  # seconds between probes (the default --probe.interval) and between samples
STATUS = {"unauthorized": 401, "payment_required": 402, "forbidden": 403, "rate_limited": 429,
          "server_error": 503, "timeout": 0, "connection_error": 0}  # fmt: skip
TIMEOUT_SECONDS = 10.0  # a timed-out probe's duration
BUCKETS = ("0.25", "2.5", "10", "+Inf")


@dataclass(frozen=True)
class Probed:
    """One account probed by one exporter from minute `start` to `end` (then its series
    end, with a stale marker); `faults` are (from, to, reason): every probe in [from, to)
    fails; `every` > 1 fails one probe in that many (flapping)."""

    account: str
    instance: str = "a:8795"
    start: float = 0
    end: float | None = None
    faults: tuple[tuple[float, float, str], ...] = ()
    every: int = 1


@dataclass(frozen=True)
class Scenario:
    name: str
    probed: tuple[Probed, ...]
    minutes: int  # the scenario's length
    # (alertname, account, severity, from, to): notified in [from, to) minutes
    notified: tuple[tuple[str, str, str, int, int], ...] = ()
    check_from: int = 0
    comment: str = ""


def _failure(probed: Probed, minute: float, index: int) -> str | None:
    for begin, finish, reason in probed.faults:
        if begin <= minute < finish and index % probed.every == 0:
            return reason
    return None


def _compress(values: list[str]) -> str:
    """promtool's series notation: runs with a constant step as `a+bxN`, `axN`."""
    out: list[str] = []
    i = 0
    while i < len(values):
        if values[i] in ("_", "stale"):
            j = i
            while j + 1 < len(values) and values[j + 1] == values[i]:
                j += 1
            out.append(values[i] if values[i] == "stale" else f"_x{j - i + 1}")
            i = j + 1
            continue
        start = float(values[i])
        j, step = i, None
        while j + 1 < len(values) and values[j + 1] not in ("_", "stale"):
            delta = float(values[j + 1]) - float(values[j])
            if step is None:
                step = delta
            elif delta != step:
                break
            j += 1
        count = j - i
        text = _number(start)
        sign = "+" if (step or 0) >= 0 else "-"
        out.append(f"{text}x{count}" if not step else f"{text}{sign}{_number(abs(step))}x{count}")
        i = j + 1
    return " ".join(out)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def series(probed: Probed, minutes: int) -> dict[str, list[str]]:
    """{series selector: values} of one account on one exporter, sampled every STEP."""
    ident = f'job="pinference", instance="{probed.instance}", account="{probed.account}"'
    samples = int(minutes * 60 / STEP) + 1
    reasons = sorted({reason for _, _, reason in probed.faults})
    rows: dict[str, list[str]] = {}

    def put(name: str, value: float | str) -> None:
        rows.setdefault(name, []).append(value if isinstance(value, str) else _number(value))

    probes = 0
    failures = dict.fromkeys(reasons, 0)
    buckets = dict.fromkeys(BUCKETS, 0)
    index = 0
    for sample in range(samples):
        minute = sample * STEP / 60
        alive = minute >= probed.start and (probed.end is None or minute < probed.end)
        if not alive:
            gone = probed.end is not None and minute >= probed.end
            mark = "stale" if gone and minute - STEP / 60 < probed.end else "_"
            for name in _names(ident, reasons):
                put(name, mark)
            continue
        reason = _failure(probed, minute, index)
        index += 1
        probes += 1
        if reason:
            failures[reason] += 1
        duration = TIMEOUT_SECONDS if reason == "timeout" else 0.1
        for bound in BUCKETS:
            if bound == "+Inf" or duration <= float(bound):
                buckets[bound] += 1
        status = 200 if reason is None else STATUS[reason]
        put(f"pinference_up{{{ident}}}", 0 if reason else 1)
        for endpoint in ("list", "get"):
            labels = f'{ident}, endpoint="{endpoint}"'
            put(f"pinference_probe_http_status_code{{{labels}}}", status)
            put(f"pinference_probes_total{{{labels}}}", probes)
            for name, count in failures.items():
                put(f'pinference_probe_failures_total{{{labels}, reason="{name}"}}', count)
            for bound, count in buckets.items():
                put(f'pinference_probe_duration_seconds_bucket{{{labels}, le="{bound}"}}', count)
        put(f'pinference_probe_interval_seconds{{job="pinference", instance="{probed.instance}"}}',
            STEP)  # fmt: skip
        put(f'up{{job="pinference", instance="{probed.instance}"}}', 1)
    return rows


def _merge(old: list[str], new: list[str]) -> list[str]:
    """Two lives of one series (an exporter restarted): a sample wins over a stale marker,
    which wins over nothing."""
    rank = {"_": 0, "stale": 1}
    return [a if rank.get(a, 2) >= rank.get(b, 2) else b for a, b in zip(old, new, strict=True)]


def _names(ident: str, reasons: list[str]) -> list[str]:
    instance = ident.split(", account=", maxsplit=1)[0]
    names = [f"pinference_up{{{ident}}}"]
    for endpoint in ("list", "get"):
        labels = f'{ident}, endpoint="{endpoint}"'
        names += [f"pinference_probe_http_status_code{{{labels}}}",
                  f"pinference_probes_total{{{labels}}}"]  # fmt: skip
        names += [f'pinference_probe_failures_total{{{labels}, reason="{r}"}}' for r in reasons]
        names += [f'pinference_probe_duration_seconds_bucket{{{labels}, le="{b}"}}'
                  for b in BUCKETS]  # fmt: skip
    names += [f"pinference_probe_interval_seconds{{{instance}}}", f"up{{{instance}}}"]
    return names


# ------------------------------------------------------------------ inhibition as PromQL

FIRING = 'alertstate="firing"'


def _selector(matchers: list[str]) -> str:
    return "ALERTS{" + ", ".join([FIRING, *matchers]) + "}"


def inhibited_expr(rule: dict[str, Any]) -> str:
    """The firing alerts one Alertmanager inhibit rule silences: a target is silenced
    while a firing source has the same values of the `equal` labels (a missing label is
    the empty value on both sides, as in Alertmanager). AM's matcher syntax is PromQL's."""
    equal = ", ".join(rule.get("equal") or [])
    return (f"{_selector(rule['target_matchers'])} and on ({equal}) "
            f"{_selector(rule['source_matchers'])}")  # fmt: skip


def notified_expr(config: dict[str, Any]) -> str:
    """Firing alerts that no inhibit rule of `config` silences: what is notified."""
    rules = config.get("inhibit_rules") or []
    if not rules:
        return f"ALERTS{{{FIRING}}}"
    silenced = " or ".join(f"({inhibited_expr(rule)})" for rule in rules)
    return f"ALERTS{{{FIRING}}} unless ({silenced})"


# ------------------------------------------------------------------ the scenarios

AUTH, PAY, DOWN = "PinferenceAuthFailing", "PinferencePaymentRequired", "PinferenceAPIDown"
FAST, SERVER = "PinferenceErrorBudgetBurnFast", "PinferenceServerErrors"
C, W = "critical", "warning"


def _outage(reason: str, alert: str) -> Scenario:
    # faulty from 10m to 25m: pages at 15m (for: 5m), resolved 2m after the fix
    # (keep_firing_for); nothing after, although every window still holds the failures
    return Scenario(
        name=f"{reason} on every probe of account default for 15 minutes, then fixed",
        probed=(Probed("default", faults=((10, 25, reason),)), Probed("team")),
        minutes=100,
        notified=((alert, "default", C, 15, 27),),
    )


SCENARIOS = (
    Scenario(
        name="fresh install: one failed probe of each kind pages nothing",
        comment="a 3-minute-old exporter; one account gets a 503, the other a 401",
        probed=(
            Probed("default", faults=((3, 3.5, "server_error"),)),
            Probed("team", faults=((3, 3.5, "unauthorized"),)),
        ),
        minutes=70,
    ),
    Scenario(
        name="new account whose first probe fails pages nothing",
        probed=(Probed("default"), Probed("new", start=60, faults=((60, 60.5, "timeout"),))),
        minutes=130,
        check_from=55,
    ),
    Scenario(
        name="rollout: the new instance's first probe fails, nothing pages",
        probed=(
            Probed("default", instance="old:8795", end=60),
            Probed(
                "default", instance="new:8795", start=60.5, faults=((60.5, 61, "server_error"),)
            ),
        ),
        minutes=130,
        check_from=55,
    ),
    Scenario(
        name="a 2-minute blip after 6 hours of history pages and tickets nothing",
        probed=(Probed("default", faults=((360, 362, "connection_error"),)),),
        minutes=480,
        check_from=355,
    ),
    _outage("unauthorized", AUTH),
    _outage("forbidden", AUTH),
    _outage("payment_required", PAY),
    _outage("server_error", DOWN),
    _outage("rate_limited", DOWN),
    _outage("timeout", DOWN),
    _outage("connection_error", DOWN),
    Scenario(
        name="several accounts at once: one page per account, each naming its cause",
        probed=(
            Probed("default", faults=((10, 25, "server_error"),)),
            Probed("team", faults=((10, 25, "server_error"),)),
            Probed("billing", faults=((12, 30, "payment_required"),)),
            Probed("fine"),
        ),
        minutes=100,
        notified=(
            (DOWN, "default", C, 15, 27),
            (DOWN, "team", C, 15, 27),
            (PAY, "billing", C, 17, 32),
        ),
    ),
    Scenario(
        name="flapping: half the list probes fail for 30 minutes, a partial outage",
        comment="after an hour of health; APIDown never sees 5 minutes without a success",
        probed=(Probed("default", faults=((60, 90, "server_error"),), every=2),),
        minutes=180,
        check_from=55,
        notified=((FAST, "default", C, 70, 118), (SERVER, "default", W, 74, 95)),
    ),
    Scenario(
        name="exporter restarted mid-outage: one page, resolved once after the fix",
        comment="the exporter is gone for a minute at 17m; its counters restart from 0",
        probed=(
            Probed("default", end=17, faults=((10, 17, "server_error"),)),
            Probed("default", start=18, faults=((18, 25, "server_error"),)),
        ),
        minutes=100,
        notified=((DOWN, "default", C, 15, 27),),
    ),
    Scenario(
        name="exporter rescheduled mid-outage (a new instance): one page",
        probed=(
            Probed("default", instance="old:8795", end=17, faults=((10, 17, "server_error"),)),
            Probed(
                "default", instance="new:8795", start=17.5, faults=((17.5, 25, "server_error"),)
            ),
        ),
        minutes=100,
        notified=((DOWN, "default", C, 15, 27),),
    ),
    Scenario(
        name="an account added while the API is down pages for that account too",
        probed=(
            Probed("team", faults=((10, 25, "server_error"),)),
            Probed("new", start=15, faults=((15, 25, "server_error"),)),
        ),
        minutes=100,
        notified=((DOWN, "team", C, 15, 27), (DOWN, "new", C, 20, 27)),
    ),
    Scenario(
        name="a 35-minute outage pages once and tickets its cost against the objective",
        comment="35 minutes is 16% of the month's error budget: the slow burn (a ticket) "
        "starts during the outage, at 10% of it, and stays while the 6h window burns",
        probed=(Probed("default", faults=((10, 45, "server_error"),)),),
        minutes=120,
        notified=(
            (DOWN, "default", C, 15, 47),
            ("PinferenceErrorBudgetBurnSlow", "default", W, 32, 121),
        ),
    ),
)


def _timeline(scenario: Scenario) -> dict[tuple[str, str, str], tuple[int, int]]:
    found: dict[tuple[str, str, str], tuple[int, int]] = {}
    for name, account, severity, begin, end in scenario.notified:
        key = (name, account, severity)
        # end = minutes + 1: still notified at the end
        assert key not in found and scenario.check_from <= begin < end <= scenario.minutes + 1
        found[key] = (begin, end)
    return found


def _samples(timeline: dict[tuple[str, str, str], tuple[int, int]], value: Any) -> list[Any]:
    return [{"labels": f'{{alertname="{n}", account="{a}", severity="{s}"}}',
             "value": value(begin, end)}
            for (n, a, s), (begin, end) in sorted(timeline.items())]  # fmt: skip


def test_group(scenario: Scenario, notified: str) -> dict[str, Any]:
    inputs: dict[str, list[str]] = {}
    for probed in scenario.probed:
        for name, values in series(probed, scenario.minutes).items():
            inputs[name] = _merge(inputs[name], values) if name in inputs else values
    # Every minute from check_from to the end, as a subquery: the first and the last
    # minute each alert was notified and the number of minutes it was (a contiguous
    # interval when count = last - first + 1), and nothing else.
    span = f"[{scenario.minutes - scenario.check_from + 1}m:1m]"
    notified_now = f"group by (alertname, account, severity) ({notified})"
    timeline = _timeline(scenario)
    end = f"{scenario.minutes}m"
    checks = [
        (f"min_over_time(timestamp({notified_now}){span}) / 60", lambda b, e: b),
        (f"max_over_time(timestamp({notified_now}){span}) / 60", lambda b, e: e - 1),
        (f"count_over_time({notified_now}{span})", lambda b, e: e - b),
    ]
    return {
        "name": scenario.name,
        "interval": f"{STEP}s",
        "input_series": [
            {"series": name, "values": _compress(values)} for name, values in inputs.items()
        ],
        "promql_expr_test": [
            {"expr": expr, "eval_time": end, "exp_samples": _samples(timeline, value)}
            for expr, value in checks
        ],
    }


HEADER = """\
# GENERATED by python tests/alerting/incidents.py from its scenarios and the inhibit rules of
# prometheus/alertmanager.yml: edit those, then run it again. Do not edit by hand.
#
# The incidents an operator meets first. At every minute of each scenario, the firing
# alerts that the shipped Alertmanager config does not inhibit (the pages and tickets
# an operator gets) are exactly those expected:
#   promtool test rules prometheus/tests/incidents.test.yml
"""


def render(alertmanager: Path = ALERTMANAGER) -> str:
    config = yaml.safe_load(alertmanager.read_text(encoding="utf-8"))
    notified = notified_expr(config)
    doc = {
        "rule_files": ["../pinference.rules.yml"],
        "evaluation_interval": f"{STEP}s",
        "tests": [test_group(scenario, notified) for scenario in SCENARIOS],
    }
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
