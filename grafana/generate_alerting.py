#!/usr/bin/env python3
"""Generate Grafana-managed alert rules from the Prometheus alerting rules.

    python grafana/generate_alerting.py          # rewrites the Grafana alerting file
    python grafana/generate_alerting.py --check  # exit 1 if that file is out of date

The output is grafana/provisioning/alerting/pinference.yml.

prometheus/pinference.rules.yml is the single source: the Grafana rules get the same
PromQL expression, `for`, labels and annotations. Each Grafana rule is built the way
Grafana's own Prometheus-rule importer builds one, so that it fires exactly when the
Prometheus rule does, for every series the expression returns:

    A  the PromQL expression, an instant query on the Prometheus data source
    B  reduce(A, last): a no-op on instant data, it exposes the value to templates as
       $values.B.Value on every Grafana version (older ones leave queries out of $values)
    C  math: is_number($B) || is_nan($B) || is_inf($B), i.e. "A returned this series";
       the rule's condition

An empty result is normal (the expressions filter), so noDataState is OK, as in
Prometheus; a failed query is Error. Annotation templates are translated: `$value`
becomes `$values.B.Value`; `$labels.x` and the humanize* functions are the same in Grafana.
Prometheus-only template functions (query, first, label, value, ...) are refused.

Standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "pinference.rules.yml"
OUTPUT = ROOT / "grafana" / "provisioning" / "alerting" / "pinference.yml"

DATASOURCE_UID = "prometheus"  # grafana/provisioning/datasources/prometheus.yml
FOLDER = "Pinference"
INTERVAL = "1m"  # Grafana evaluates in multiples of 10s; every `for` is a multiple of this
ORG_ID = 1
QUERY, REDUCE, CONDITION = "A", "B", "C"
VALUE_TEMPLATE = f"$values.{REDUCE}.Value"
MIN_TIME_RANGE = 600  # seconds, Grafana's default for an instant query

HEADER = """\
# GENERATED FILE, DO NOT EDIT: run  python grafana/generate_alerting.py
# Source: prometheus/pinference.rules.yml (same expressions, for, labels and annotations).
#
# Grafana-managed alert rules, in Grafana's file-provisioning format (Grafana 10 and 11).
# Mount this directory as /etc/grafana/provisioning/alerting. The rules query the data
# source with uid "prometheus" (grafana/provisioning/datasources/prometheus.yml).
# Query A is the PromQL expression; B reduces it (a no-op for instant data, so that
# templates can read $values.B.Value); C fires for every series A returns, like Prometheus.
# Use either these rules or the Prometheus rules with Alertmanager, not both, or every
# alert is notified twice.
"""

# Template functions of Prometheus that Grafana does not have (they query Prometheus).
PROMETHEUS_ONLY = ("query", "first", "label", "value", "strvalue", "sortByLabel", "safeHtml")
_DURATION = re.compile(r"\[(\d+)([smhdwy])\]")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_UID_OK = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")


class GenerationError(Exception):
    """The Prometheus rules cannot be translated faithfully."""


def translate_template(text: str) -> str:
    """Prometheus annotation template -> Grafana annotation template."""
    for action in re.findall(r"{{(.*?)}}", text, flags=re.S):
        for word in re.findall(r"(?<![$.\w])([A-Za-z_]\w*)", action):
            if word in PROMETHEUS_ONLY:
                raise GenerationError(f"template function {word!r} does not exist in Grafana")
        if "$externalLabels" in action or "$externalURL" in action:
            raise GenerationError("$externalLabels / $externalURL do not exist in Grafana")
    return re.sub(r"\$value(?![\w.])", VALUE_TEMPLATE, text)


def rule_uid(alert: str) -> str:
    """PinferenceAPIDown -> pinference-api-down (stable, <= 40 characters)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", alert)
    uid = words.lower()
    if not _UID_OK.match(uid):
        raise GenerationError(f"cannot make a Grafana uid from {alert!r}: {uid!r}")
    return uid


def time_range_seconds(expr: str) -> int:
    """The longest range selector in expr, at least MIN_TIME_RANGE."""
    ranges = [int(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(expr)]
    return max([MIN_TIME_RANGE, *ranges])


def expression_node(ref_id: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "refId": ref_id,
        "datasourceUid": "__expr__",
        "model": {
            "refId": ref_id,
            "datasource": {"type": "__expr__", "uid": "__expr__"},
            **model,
        },
    }


def grafana_rule(rule: dict[str, Any]) -> dict[str, Any]:
    alert, expr = rule["alert"], rule["expr"]
    labels = dict(rule.get("labels") or {})
    for name, value in labels.items():
        if "{{" in str(value):
            raise GenerationError(f"{alert}: templated label {name} is not translated")
    annotations = {
        k: translate_template(str(v)) for k, v in (rule.get("annotations") or {}).items()
    }
    if "keep_firing_for" in rule:
        raise GenerationError(f"{alert}: keep_firing_for has no Grafana equivalent here")
    return {
        "uid": rule_uid(alert),
        "title": alert,
        "condition": CONDITION,
        "data": [
            {
                "refId": QUERY,
                "relativeTimeRange": {"from": time_range_seconds(expr), "to": 0},
                "datasourceUid": DATASOURCE_UID,
                "model": {
                    "refId": QUERY,
                    "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
                    "editorMode": "code",
                    "expr": expr,
                    "instant": True,
                    "range": False,
                    "intervalMs": 1000,
                    "maxDataPoints": 43200,
                },
            },
            expression_node(REDUCE, {"type": "reduce", "expression": QUERY, "reducer": "last"}),
            expression_node(
                CONDITION,
                {
                    "type": "math",
                    "expression": f"is_number(${REDUCE}) || is_nan(${REDUCE}) || is_inf(${REDUCE})",
                },
            ),
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": str(rule.get("for", "0s")),
        "annotations": annotations,
        "labels": labels,
        "isPaused": False,
    }


def generate(rules_doc: dict[str, Any]) -> dict[str, Any]:
    groups = []
    for group in rules_doc.get("groups") or []:
        rules = [grafana_rule(r) for r in group.get("rules") or [] if "alert" in r]
        if not rules:
            continue
        uids = [r["uid"] for r in rules]
        if len(set(uids)) != len(uids):
            raise GenerationError(f"group {group['name']}: duplicate alert names")
        groups.append(
            {
                "orgId": ORG_ID,
                "name": group["name"],
                "folder": FOLDER,
                "interval": INTERVAL,
                "rules": rules,
            }
        )
    if not groups:
        raise GenerationError("no alerting rules found")
    return {"apiVersion": 1, "groups": groups}


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literal blocks, keys in the order given."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data and not any(line != line.rstrip() for line in data.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def render(rules_path: Path = RULES) -> str:
    doc = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    body = yaml.dump(
        generate(doc), Dumper=_Dumper, sort_keys=False, width=10_000, allow_unicode=True
    )
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the output is stale")
    parser.add_argument("--rules", type=Path, default=RULES, help="Prometheus rules file")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="Grafana alerting file")
    args = parser.parse_args(argv)
    try:
        text = render(args.rules)
    except (GenerationError, KeyError, OSError, yaml.YAMLError) as exc:
        print(f"generate_alerting: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(
                f"{args.output} is out of date: run  python grafana/generate_alerting.py",
                file=sys.stderr,
            )
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
