#!/usr/bin/env python3
"""Generate Grafana-managed alert rules from the Prometheus alerting rules, and keep the
runbook links of the rules and the dashboard on one setting.

    python grafana/generate_alerting.py          # rewrites what is out of date
    python grafana/generate_alerting.py --check  # exit 1 if anything is out of date

Settings (edit them here, then run the generator):
- RUNBOOK_BASE: where the runbooks are. By default the project's docs/alerts.md at the
  `Repository` URL of pyproject.toml's [project.urls] (DEFAULT_REPOSITORY without one).
  Every alert's runbook_url is RUNBOOK_BASE#<alert name in lower case>, and the dashboard's
  "Alert runbooks" link is RUNBOOK_BASE.

Outputs: grafana/provisioning/alerting/pinference.yml (generated), and in place the
runbook_url lines of prometheus/pinference.rules.yml and the runbook link of
grafana/dashboards/pinference.json (nothing else in those two files is touched).
grafana/alert-uids.txt is the ledger of every rule uid ever generated: a uid the rules no
longer have (an alert renamed or removed) goes to the output's deleteRules, so that
Grafana deletes the old rule instead of keeping it firing forever.

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
Recorded series (the error budget ratios, the objective) are replaced by their recording
rules' expressions: a Grafana-managed rule must not depend on Prometheus having loaded the
rules file. Each rule is linked to a dashboard panel (PANELS below), so that its state
changes show on the dashboard.

Standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: read the one key with a regular expression
    tomllib = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "pinference.rules.yml"
OUTPUT = ROOT / "grafana" / "provisioning" / "alerting" / "pinference.yml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "pinference.json"
UIDS = ROOT / "grafana" / "alert-uids.txt"
PYPROJECT = ROOT / "pyproject.toml"

# ---- settings
RUNBOOK_BASE: str | None = None  # None: <Repository>/blob/main/docs/alerts.md
DEFAULT_REPOSITORY = "https://github.com/llm-pinference/llm-pinference"
RUNBOOK_LINK_TITLE = "Alert runbooks"  # the dashboard link that RUNBOOK_BASE feeds

# The dashboard panel each Grafana-managed rule is linked to (dashboardUid and panelId):
# Grafana records the rule's state changes as annotations of that panel, which the
# dashboard's built-in "Annotations & Alerts" shows. Every alert needs one.
PANELS = {
    "PinferenceExporterDown": "Exporter up",
    "PinferenceAPIDown": "API up now",
    "PinferenceAuthFailing": "Auth OK",
    "PinferencePaymentRequired": "Failures by reason",
    "PinferenceRateLimited": "Failures by reason",
    "PinferenceServerErrors": "Failures by reason",
    "PinferenceWatchedModelMissing": "Watched models over time",
    "PinferenceHighLatency": "Probe latency percentiles",
    "PinferenceCatalogEmpty": "Models listed now",
    "PinferenceCatalogShrunk": "Models listed over time",
    "PinferenceProbesStale": "Last probe age",
    "PinferenceTLSCertExpiringSoon": "TLS certificate expires in",
    "PinferenceInferenceFailing": "Chat probe failures by reason",
    "PinferenceSlowFirstToken": "Time to first token",
    "PinferenceErrorBudgetBurnFast": "Error budget burn rate",
    "PinferenceErrorBudgetBurnSlow": "Error budget burn rate",
}

DATASOURCE_UID = "prometheus"  # grafana/provisioning/datasources/prometheus.yml
FOLDER = "Pinference"
INTERVAL = "1m"  # Grafana evaluates in multiples of 10s; every `for` is a multiple of this
ORG_ID = 1
QUERY, REDUCE, CONDITION = "A", "B", "C"
VALUE_TEMPLATE = f"$values.{REDUCE}.Value"
MIN_TIME_RANGE = 600  # seconds, Grafana's default for an instant query

HEADER = """\
# GENERATED FILE, DO NOT EDIT: run  python grafana/generate_alerting.py
# Source: prometheus/pinference.rules.yml (same expressions, for, labels and annotations;
# recorded series are replaced by their recording rules' expressions).
#
# Grafana-managed alert rules, in Grafana's file-provisioning format (Grafana 10 and 11).
# Mount this directory as /etc/grafana/provisioning/alerting. The rules query the data
# source with uid "prometheus" (grafana/provisioning/datasources/prometheus.yml).
# Query A is the PromQL expression; B reduces it (a no-op for instant data, so that
# templates can read $values.B.Value); C fires for every series A returns, like Prometheus.
# Each rule is linked to a panel of the dashboard (uid "pinference"): its state changes
# show there through the built-in "Annotations & Alerts". Who is notified:
# notifications.yml in this directory (edit its placeholders). deleteRules removes the
# rules of alerts that were renamed or removed from the source (kept for good).
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


# ------------------------------------------------------------------ runbook links


def repository_url(pyproject: Path = PYPROJECT) -> str:
    """The `Repository` URL of [project.urls] in pyproject.toml, or DEFAULT_REPOSITORY."""
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return DEFAULT_REPOSITORY
    if tomllib is not None:
        urls = tomllib.loads(text).get("project", {}).get("urls", {})
        url = next((v for k, v in urls.items() if k.lower() == "repository"), None)
    else:
        section = re.search(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", text, flags=re.M | re.S)
        found = section and re.search(
            r'^\s*"?repository"?\s*=\s*"([^"]+)"', section.group(1), flags=re.M | re.I
        )
        url = found.group(1) if found else None
    return str(url).rstrip("/") if url else DEFAULT_REPOSITORY


def runbook_base(pyproject: Path = PYPROJECT) -> str:
    """RUNBOOK_BASE, or the project's docs/alerts.md at its repository."""
    if RUNBOOK_BASE:
        return RUNBOOK_BASE
    return f"{repository_url(pyproject)}/blob/main/docs/alerts.md"


def runbook_url(base: str, alert: str) -> str:
    """The runbook of an alert: its heading's anchor in the runbook document."""
    return f"{base}#{alert.lower()}"


_ALERT_LINE = re.compile(r"^\s*-\s*alert:\s*(\S+)\s*$")
_RUNBOOK_LINE = re.compile(r"^(\s*)runbook_url:.*$")


def sync_rule_runbooks(rules_text: str, base: str) -> str:
    """The rules file with every runbook_url line set from `base` (comments and the rest
    of the file unchanged). Every alert must have one."""
    lines, alert, seen = [], None, set()
    for line in rules_text.splitlines(keepends=True):
        new = line
        if match := _ALERT_LINE.match(line):
            alert = match.group(1)
        elif (match := _RUNBOOK_LINE.match(line)) and alert is not None:
            ending = line[len(line.rstrip("\r\n")) :]
            new = f"{match.group(1)}runbook_url: '{runbook_url(base, alert)}'{ending}"
            seen.add(alert)
        lines.append(new)
    alerts = {r["alert"] for g in yaml.safe_load(rules_text)["groups"] for r in g["rules"]
              if "alert" in r}  # fmt: skip
    if missing := sorted(alerts - seen):
        raise GenerationError(f"no runbook_url annotation in: {', '.join(missing)}")
    return "".join(lines)


def sync_dashboard_runbooks(dashboard_text: str, base: str) -> str:
    """The dashboard JSON with its runbook link set to `base` (the file's own format)."""
    dashboard = json.loads(dashboard_text)
    links = [link for link in dashboard.get("links", []) if link.get("title") == RUNBOOK_LINK_TITLE]
    if len(links) != 1:
        raise GenerationError(f"the dashboard needs one link titled {RUNBOOK_LINK_TITLE!r}")
    links[0]["url"] = base
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


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


_MATCHER = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


def _matchers(selector: str) -> set[str]:
    """The equality matchers of a `{...}` selector, normalised to label="value"."""
    body = selector.strip()[1:-1]
    found = {f'{name}="{value}"' for name, value in _MATCHER.findall(body)}
    rest = _MATCHER.sub("", body).replace(",", "").strip()
    if rest:
        raise GenerationError(
            f'only label="value" matchers can select a recorded series: {selector}'
        )
    return found


def inline_records(expr: str, records: dict[str, str]) -> str:
    """Replace every recorded series in `expr` by its recording rule's expression.

    Grafana-managed rules query Prometheus directly and cannot rely on Prometheus having
    loaded the recording rules, so each copy carries the whole computation. A selector on
    a recorded series is accepted only if each of its matchers is already applied by
    every selector of the recording expression (then filtering before or after the
    aggregation is the same); a range over a recorded series would need a subquery and is
    refused."""
    for name, recorded in records.items():
        pattern = re.compile(rf"(?<![\w:]){re.escape(name)}(?![\w:])(\s*\{{[^}}]*\}})?(\s*\[)?")

        def replace(match: re.Match[str], name: str = name, recorded: str = recorded) -> str:
            if match.group(2):
                raise GenerationError(f"a range over the recorded series {name} cannot be inlined")
            if match.group(1):
                inner = [_matchers(sel) for sel in re.findall(r"\{[^}]*\}", recorded)]
                wanted = _matchers(match.group(1))
                if not inner or any(not wanted <= applied for applied in inner):
                    raise GenerationError(
                        f"{name}{match.group(1).strip()}: the recording rule does not select "
                        f"{sorted(wanted)} everywhere, so the selector cannot be inlined"
                    )
            return f"({' '.join(recorded.split())})"

        expr = pattern.sub(replace, expr)
    return expr


def recording_rules(rules_doc: dict[str, Any]) -> dict[str, str]:
    """{recorded name: expression}, each expression with earlier records inlined."""
    records: dict[str, str] = {}
    for group in rules_doc.get("groups") or []:
        for rule in group.get("rules") or []:
            if "record" in rule:
                if rule["record"] in records:
                    raise GenerationError(f"{rule['record']} is recorded twice")
                if rule.get("labels"):
                    raise GenerationError(f"{rule['record']}: labels on a record are not inlined")
                records[rule["record"]] = inline_records(str(rule["expr"]), records)
    return records


def panel_links(dashboard: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """{alert: (dashboard uid, panel id)} from PANELS and the dashboard's panel titles."""
    ids: dict[str, list[int]] = {}

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            ids.setdefault(panel.get("title", ""), []).append(int(panel["id"]))
            walk(panel.get("panels") or [])

    walk(dashboard.get("panels") or [])
    links = {}
    for alert, title in PANELS.items():
        found = ids.get(title, [])
        if len(found) != 1:
            raise GenerationError(
                f"{alert}: the dashboard has {len(found)} panels titled {title!r}"
            )
        links[alert] = (str(dashboard["uid"]), found[0])
    return links


def grafana_rule(
    rule: dict[str, Any],
    records: dict[str, str] | None = None,
    link: tuple[str, int] | None = None,
) -> dict[str, Any]:
    alert = rule["alert"]
    expr = inline_records(str(rule["expr"]), records or {})
    labels = dict(rule.get("labels") or {})
    for name, value in labels.items():
        if "{{" in str(value):
            raise GenerationError(f"{alert}: templated label {name} is not translated")
        if "$" in str(value):
            # Grafana's file provisioning expands $VARIABLES from its environment in labels
            raise GenerationError(f"{alert}: label {name} has a $, which Grafana would expand")
    annotations = {
        k: translate_template(str(v)) for k, v in (rule.get("annotations") or {}).items()
    }
    # keep_firing_for (bridging an exporter restart's scrape gap) has no equivalent in the
    # Grafana 11 provisioning format: the copies resolve, and may notify again, across it.
    linked: dict[str, Any] = {}
    if link is not None:
        # the fields for Grafana's file provisioning, and the annotations it also reads
        annotations.update(__dashboardUid__=link[0], __panelId__=str(link[1]))
        linked = {"dashboardUid": link[0], "panelId": link[1]}
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
        **linked,
        "noDataState": "OK",
        "execErrState": "Error",
        "for": str(rule.get("for", "0s")),
        "annotations": annotations,
        "labels": labels,
        "isPaused": False,
    }


def generate(
    rules_doc: dict[str, Any],
    dashboard: dict[str, Any] | None = None,
    retired: list[str] | None = None,
) -> dict[str, Any]:
    """The Grafana alerting file: the alerts as Grafana rules (linked to the dashboard's
    panels when given), and the deletion of `retired` rule uids."""
    records = recording_rules(rules_doc)
    links = panel_links(dashboard) if dashboard is not None else {}
    if dashboard is not None:
        alerts = {
            r["alert"] for g in rules_doc.get("groups") or [] for r in g["rules"] if "alert" in r
        }
        if missing := sorted(alerts - set(links)):
            raise GenerationError(f"no dashboard panel in PANELS for {', '.join(missing)}")
    groups = []
    for group in rules_doc.get("groups") or []:
        rules = [grafana_rule(r, records, links.get(r["alert"]))
                 for r in group.get("rules") or [] if "alert" in r]  # fmt: skip
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
    document: dict[str, Any] = {"apiVersion": 1, "groups": groups}
    current = {rule["uid"] for group in groups for rule in group["rules"]}
    if len(current) != sum(len(group["rules"]) for group in groups):
        raise GenerationError("two alerts share a uid")
    deletions = sorted(set(retired or []) - current)
    if deletions:
        document["deleteRules"] = [{"orgId": ORG_ID, "uid": uid} for uid in deletions]
    return document


UIDS_HEADER = """\
# Every uid that python grafana/generate_alerting.py has given a Grafana-managed rule, one
# per line. The generator adds new ones; the uids that the rules no longer have are
# deleted from Grafana (deleteRules in provisioning/alerting/pinference.yml). Never remove
# a line: a Grafana provisioned long ago would keep that rule.
"""


def read_uids(text: str | None) -> set[str]:
    if not text:
        return set()
    return {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}


def output_uids(previous_text: str | None) -> set[str]:
    """Every rule uid a previous output created or deleted (a second memory of the uids,
    should the ledger lose one)."""
    if not previous_text:
        return set()
    try:
        previous = yaml.safe_load(previous_text) or {}
    except yaml.YAMLError as exc:
        raise GenerationError(f"cannot read the previous output for its uids: {exc}") from None
    uids = {r["uid"] for g in previous.get("groups") or [] for r in g.get("rules") or []}
    return uids | {d["uid"] for d in previous.get("deleteRules") or []}


def render_uids(uids: set[str]) -> str:
    return UIDS_HEADER + "".join(f"{uid}\n" for uid in sorted(uids))


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literal blocks, keys in the order given."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data and not any(line != line.rstrip() for line in data.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def render_grafana(
    rules_text: str, dashboard_text: str | None = None, known_uids: set[str] | None = None
) -> str:
    """The Grafana alerting file for a Prometheus rules file's text, the dashboard its
    rules link to, and every uid generated before (those no longer made are deleted)."""
    dashboard = json.loads(dashboard_text) if dashboard_text is not None else None
    document = generate(yaml.safe_load(rules_text), dashboard, sorted(known_uids or ()))
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=10_000, allow_unicode=True)
    return HEADER + body


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def outputs(
    rules: Path = RULES,
    output: Path = OUTPUT,
    dashboard: Path = DASHBOARD,
    base: str | None = None,
    uids: Path = UIDS,
) -> dict[Path, str]:
    """Every file the generator owns, or owns a part of, with the text it must have."""
    base = base or runbook_base()
    rules_text = sync_rule_runbooks(rules.read_text(encoding="utf-8"), base)
    dashboard_text = sync_dashboard_runbooks(dashboard.read_text(encoding="utf-8"), base)
    current = {rule_uid(r["alert"]) for g in yaml.safe_load(rules_text)["groups"]
               for r in g["rules"] if "alert" in r}  # fmt: skip
    known = read_uids(_read(uids)) | output_uids(_read(output)) | current
    return {
        rules: rules_text,
        dashboard: dashboard_text,
        output: render_grafana(rules_text, dashboard_text, known),
        uids: render_uids(known),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if anything is stale")
    parser.add_argument("--rules", type=Path, default=RULES, help="Prometheus rules file")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="Grafana alerting file")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD, help="Grafana dashboard")
    parser.add_argument("--uids", type=Path, default=UIDS, help="ledger of generated uids")
    args = parser.parse_args(argv)
    try:
        wanted = outputs(args.rules, args.output, args.dashboard, uids=args.uids)
    except (GenerationError, KeyError, OSError, ValueError, yaml.YAMLError) as exc:
        print(f"generate_alerting: {exc}", file=sys.stderr)
        return 2
    stale = [path for path, text in wanted.items() if _read(path) != text]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run  python grafana/generate_alerting.py",
                  file=sys.stderr)  # fmt: skip
        if not stale:
            print("the rules, the dashboard, the Grafana alerting file and the uids are up to date")
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path}")
    if not stale:
        print("nothing to do: everything is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
