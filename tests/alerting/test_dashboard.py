"""Offline checks of the Grafana dashboard and of the Grafana provisioning files.

No Grafana server is available to the tests: the dashboard's structure is checked here,
its PromQL is parsed by promtool, and (in test_prometheus_integration.py) every query is
run against a real Prometheus. The Grafana alert rules must be the generated, up-to-date
translation of the Prometheus rules.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.alerting.helpers import (
    ALERTS_DOC,
    DASHBOARD,
    FILES,
    GENERATOR,
    GRAFANA_ALERTING,
    GRAFANA_DASHBOARD_PROVIDER,
    GRAFANA_DATASOURCE,
    JOB,
    PROMETHEUS_SERIES,
    RULES,
    alert_rules,
    check_exprs_with_promtool,
    contract_metrics,
    contract_series_names,
    dashboard_queries,
    is_exporter_level,
    iter_panels,
    load_dashboard,
    load_yaml,
    metric_names,
    promtool,
    run,
    substitute,
)

DS_REF = {"type": "prometheus", "uid": "${datasource}"}
# Series with no job/instance: the objective recorded by the rules (a global setting).
GLOBAL_SERIES = frozenset({"pinference:slo_objective:ratio"})
BUILTIN_GRAFANA_DS = {"type": "grafana", "uid": "-- Grafana --"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="module")
def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(iter_panels(dashboard["panels"]))


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_alerting", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def by_title(panels: list[dict[str, Any]], title: str) -> dict[str, Any]:
    matches = [panel for panel in panels if panel.get("title") == title]
    assert len(matches) == 1, f"expected one panel titled {title!r}, found {len(matches)}"
    return matches[0]


def exprs_of(panel: dict[str, Any]) -> list[str]:
    return [target["expr"] for target in panel.get("targets", [])]


# ------------------------------------------------------------------ structure


def test_dashboard_is_importable_json(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["title"] == "Pinference"
    assert dashboard["uid"] == "pinference"
    assert dashboard["id"] is None  # provisioning and import assign their own
    assert dashboard["panels"]
    inputs = dashboard["__inputs"]
    assert [(i["name"], i["type"], i["pluginId"]) for i in inputs] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")
    ]


def test_panel_ids_and_titles_are_unique(panels: list[dict[str, Any]]) -> None:
    ids, titles = [panel["id"] for panel in panels], [panel["title"] for panel in panels]
    assert all(isinstance(i, int) and i > 0 for i in ids) and len(ids) == len(set(ids))
    assert all(titles) and len(titles) == len(set(titles))


def _check_layout(panels: list[dict[str, Any]]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        x, y, w, h = pos["x"], pos["y"], pos["w"], pos["h"]
        assert 1 <= w <= 24 and x >= 0 and x + w <= 24, f"{panel['title']}: {pos}"
        assert h >= 1 and y >= 0, f"{panel['title']}: {pos}"
        for cell in itertools.product(range(x, x + w), range(y, y + h)):
            assert cell not in cells, f"{panel['title']!r} overlaps {cells[cell]!r} at {cell}"
            cells[cell] = panel["title"]


def test_grid_positions_fit_and_do_not_overlap(dashboard: dict[str, Any]) -> None:
    """As shown (collapsed rows closed), and with each collapsed row opened in place."""
    top = dashboard["panels"]
    _check_layout(top)
    for row in top:
        if row.get("collapsed"):
            assert row["panels"], f"{row['title']}: a collapsed row holds its panels"
            _check_layout([{**row, "panels": []}, *row["panels"]])
            assert min(p["gridPos"]["y"] for p in row["panels"]) == row["gridPos"]["y"] + 1
        else:
            assert not row.get("panels"), f"{row['title']}: an open row holds no panels"


def test_rows_empty_by_default_are_collapsed(dashboard: dict[str, Any]) -> None:
    """Chat probes (--probe.chat.models) and watched models (--probe.models) are opt-in:
    their rows start collapsed, as does the long catalog table; the rest is open."""
    rows = {p["title"]: bool(p.get("collapsed")) for p in dashboard["panels"] if p["type"] == "row"}
    collapsed = {title for title, closed in rows.items() if closed}
    assert collapsed == {"Inference (chat probes)", "Watched models", "Catalog: models listed now"}
    assert list(rows)[-len(collapsed) :] == [t for t in rows if t in collapsed]  # at the end
    assert len(list(iter_panels(dashboard["panels"]))) <= 45  # was 50: kept small


def test_rows_are_full_width_and_first(panels: list[dict[str, Any]]) -> None:
    rows = [panel for panel in panels if panel["type"] == "row"]
    assert len(rows) >= 6
    for row in rows:
        assert row["gridPos"]["w"] == 24 and row["gridPos"]["x"] == 0
    assert min(panels, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))["type"] == "row"


def test_targets_have_unique_ref_ids(panels: list[dict[str, Any]]) -> None:
    for panel in panels:
        if panel["type"] == "row":
            assert not panel.get("targets")
            continue
        targets = panel.get("targets") or []
        assert targets, f"{panel['title']}: no query"
        ref_ids = [target.get("refId") for target in targets]
        assert all(ref_ids), f"{panel['title']}: target without refId"
        assert len(ref_ids) == len(set(ref_ids)), f"{panel['title']}: duplicate refId"
        assert all(target.get("expr") for target in targets), f"{panel['title']}: empty expr"


def test_every_panel_tells_the_operator_what_to_look_at(panels: list[dict[str, Any]]) -> None:
    for panel in panels:
        if panel["type"] != "row":
            assert len(panel.get("description", "")) >= 60, f"{panel['title']}: description"


# ------------------------------------------------------------------ data source and variables


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    items = [(path, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            items += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            items += _walk(value, f"{path}[{i}]")
    return items


# Grafana's import (pkg/services/dashboardimport/utils: DashTemplateEvaluator) replaces
# every "${INPUT_NAME}" in every string of the JSON with the value chosen for that input.
_IMPORT_VARIABLE = re.compile(r"\$\{.+?\}")


def grafana_import(dashboard: dict[str, Any], chosen: dict[str, str]) -> dict[str, Any]:
    """The dashboard as Grafana's import stores it, with `chosen` {input name: value}."""
    table = {f"${{{name}}}": value for name, value in chosen.items()}
    missing = {i["name"] for i in dashboard.get("__inputs", [])} - set(chosen)
    assert not missing, f"the import form would ask for {missing}"

    def evaluate(node: Any) -> Any:
        if isinstance(node, str):
            return _IMPORT_VARIABLE.sub(lambda m: table.get(m.group(0), m.group(0)), node)
        if isinstance(node, dict):
            return {key: evaluate(value) for key, value in node.items()}
        if isinstance(node, list):
            return [evaluate(value) for value in node]
        return node

    return evaluate(dashboard)


def datasource_refs(dashboard: dict[str, Any]) -> list[tuple[str, Any]]:
    """(path, value) of every `datasource` key, except the built-in Grafana annotation."""
    refs = []
    for path, node in _walk(dashboard):
        if isinstance(node, dict) and "datasource" in node and node.get("builtIn") != 1:
            refs.append((f"{path}.datasource", node["datasource"]))
    return refs


def resolve_datasource(dashboard: dict[str, Any], ref: Any) -> str:
    """The data source uid a reference ends on: a variable reference is replaced by the
    variable's current value, as Grafana does when the dashboard loads."""
    assert isinstance(ref, dict) and ref.get("type") == "prometheus", ref
    uid = ref["uid"]
    match = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", uid)
    if not match:
        return str(uid)
    name = match.group(1) or match.group(2)
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus", variable
    return str(variable["current"]["value"])


def test_one_datasource_mechanism_fed_by_the_import_input(dashboard: dict[str, Any]) -> None:
    """__inputs feeds the `datasource` variable, and everything uses that variable: choosing
    a data source on import sets it, and it can still be switched afterwards."""
    (ds_input,) = [i for i in dashboard["__inputs"] if i["type"] == "datasource"]
    assert ds_input["pluginId"] == "prometheus"
    placeholder = f"${{{ds_input['name']}}}"
    fed = [v for v in dashboard["templating"]["list"]
           if v["type"] == "datasource" and v["current"].get("value") == placeholder]  # fmt: skip
    assert [v["name"] for v in fed] == ["datasource"], "the input must feed the variable"
    assert json.dumps(dashboard).count(placeholder) == 2  # the variable's value and text
    refs = datasource_refs(dashboard)
    assert len(refs) >= 30
    for path, ref in refs:
        assert ref == DS_REF, f"{path} does not use the datasource variable: {ref!r}"


def test_importing_with_another_datasource_points_everything_at_it(
    dashboard: dict[str, Any],
) -> None:
    imported = grafana_import(dashboard, {"DS_PROMETHEUS": "second-prometheus"})
    resolved = {path: resolve_datasource(imported, ref) for path, ref in datasource_refs(imported)}
    wrong = {path: uid for path, uid in resolved.items() if uid != "second-prometheus"}
    assert not wrong, wrong
    # the variable stays switchable: panels still reference it, not the chosen uid
    assert all(ref == DS_REF for _, ref in datasource_refs(imported))


def test_import_checks_catch_a_reference_that_bypasses_the_variable(
    dashboard: dict[str, Any],
) -> None:
    """The two tests above fail on the original bug: a reference to ${DS_PROMETHEUS} or a
    hard-coded uid, or an input that feeds nothing."""
    for uid in ("${DS_PROMETHEUS}", "prometheus"):
        broken = json.loads(json.dumps(dashboard))
        broken["panels"][1]["targets"][0]["datasource"] = {"type": "prometheus", "uid": uid}
        with pytest.raises(AssertionError):
            test_one_datasource_mechanism_fed_by_the_import_input(broken)
    unfed = json.loads(json.dumps(dashboard))
    unfed["templating"]["list"][0]["current"] = {"text": "default", "value": "default"}
    with pytest.raises(AssertionError):
        test_importing_with_another_datasource_points_everything_at_it(unfed)


def test_no_hard_coded_datasource_uid(dashboard: dict[str, Any]) -> None:
    allowed = {"${datasource}", BUILTIN_GRAFANA_DS["uid"]}
    for path, node in _walk(dashboard):
        if isinstance(node, dict) and "uid" in node and path:
            assert node["uid"] in allowed, f"hard-coded uid at {path}: {node['uid']!r}"
        if isinstance(node, dict) and isinstance(node.get("datasource"), str):
            raise AssertionError(f"legacy string datasource at {path}")


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "account", "model"]
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    job = variables["job"]
    assert job["current"]["value"] == JOB and not job["multi"]
    for name in ("instance", "account", "model"):
        assert variables[name]["multi"] and variables[name]["includeAll"], name
    assert 'job="$job"' in variables["instance"]["query"]["query"]
    account = variables["account"]
    # All must also match series without the label (an absent label is the empty value)
    assert account["allValue"] == ".*"
    assert re.fullmatch(
        r'label_values\(pinference_up\{job="\$job", instance=~"\$instance"\}, account\)',
        account["query"]["query"],
    )
    model = variables["model"]
    assert model["query"]["query"].startswith("label_values(pinference_model_available{")
    assert 'account=~"$account"' in model["query"]["query"]
    assert model["query"]["query"].endswith(", model)")
    for variable in variables.values():
        assert "definition" not in variable, "not in Grafana's schema: Grafana derives it"


def _selectors(expr: str) -> list[tuple[str, str]]:
    return re.findall(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", expr)


def test_queries_are_scoped_to_job_instance_and_account(panels: list[dict[str, Any]]) -> None:
    for panel in panels:
        for expr in exprs_of(panel):
            where = f"{panel['title']}: {expr}"
            for name, selector in _selectors(expr):
                if name in GLOBAL_SERIES:
                    continue
                assert 'job="$job"' in selector, where
                # the error budget is per account over every exporter: no instance label
                if not name.startswith(
                    ("account:pinference_list_errors:", "account:pinference_list_probes:")
                ):
                    assert 'instance=~"$instance"' in selector, where
                if not is_exporter_level(name):
                    assert 'account=~"$account"' in selector, where
            for name in metric_names(expr) - GLOBAL_SERIES:
                assert re.search(rf"\b{re.escape(name)}\{{", expr), f"bare {name}: {where}"
            for clause in re.findall(r"\bby\s*\(([^)]*)\)", expr):
                labels = {label.strip() for label in clause.split(",")}
                if "instance" in labels:
                    assert "account" in labels, f"by ({clause}) drops account: {where}"


_AGGREGATION = re.compile(
    r"\b(sum|min|max|avg|count|topk|bottomk|quantile|group|stddev)\s*"
    r"(?:by\s*\(([^)]*)\)\s*)?\("
)


def _argument(expr: str, start: int) -> str:
    """The parenthesised text that opens at expr[start - 1]."""
    depth = 1
    for i in range(start, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0:
            return expr[start:i]
    raise AssertionError(f"unbalanced: {expr}")


def test_every_panel_is_per_account(panels: list[dict[str, Any]]) -> None:
    """Like its neighbours, every panel shows each selected account on its own: an
    aggregation of series that carry `account` keeps it (`by (..., account, ...)`)."""
    checked = 0
    for panel in panels:
        for expr in exprs_of(panel):
            for match in _AGGREGATION.finditer(expr):
                read = metric_names(_argument(expr, match.end())) - GLOBAL_SERIES
                if all(is_exporter_level(name) for name in read):
                    continue  # the probe interval, Prometheus' up: no account to keep
                checked += 1
                labels = {x.strip() for x in (match.group(2) or "").split(",")}
                assert "account" in labels, f"{panel['title']}: {match.group(0)} drops account"
    assert checked >= 20


def test_panel_aggregation_check_catches_a_sum_over_accounts() -> None:
    expr = 'sum(increase(pinference_probes_total{job="$job"}[24h]))'
    match = _AGGREGATION.search(expr)
    assert match and match.group(2) is None
    assert metric_names(_argument(expr, match.end())) == {"pinference_probes_total"}


def test_windows_fit_the_panel(panels: list[dict[str, Any]]) -> None:
    """Range queries take rates over $__rate_interval (at least four scrapes at any zoom)
    and count per bar with the counter's difference over $__interval (no extrapolation);
    instant stats count over the dashboard's range or a fixed window their title names."""
    checked = 0
    for panel in panels:
        for target in panel.get("targets") or []:
            expr = target["expr"]
            windows = re.findall(r"\b(?:rate|irate|increase|delta|deriv)\([^\[]*\[([^\]]+)\]",
                                 expr)  # fmt: skip
            for window in windows:
                checked += 1
                if target.get("instant"):
                    assert window == "$__range" or f"({window})" in panel["title"], panel["title"]
                else:
                    assert window == "$__rate_interval", f"{panel['title']}: [{window}]"
            for offset in re.findall(r"\boffset\s+(\S+?)\)", expr):
                checked += 1
                assert offset == "$__interval" and not target.get("instant"), panel["title"]
                assert panel["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
                assert panel["fieldConfig"]["defaults"]["decimals"] == 0
    assert checked >= 10


def test_annotations_show_prometheus_and_grafana_alerts(dashboard: dict[str, Any]) -> None:
    builtin, prometheus = dashboard["annotations"]["list"]
    # Grafana-managed rules are linked to panels (dashboardUid/panelId): their state
    # changes appear through the built-in annotation
    assert builtin["builtIn"] == 1 and builtin["enable"] is True
    assert builtin["datasource"] == BUILTIN_GRAFANA_DS and builtin["type"] == "dashboard"
    # Prometheus rules: the ALERTS series, in the current target shape
    assert prometheus["datasource"] == DS_REF and prometheus["enable"] is True
    for legacy in ("expr", "step", "query"):
        assert legacy not in prometheus, f"legacy top-level {legacy!r}"
    target = prometheus["target"]
    assert target["refId"] and target["datasource"] == DS_REF
    assert target["expr"].startswith('ALERTS{alertname=~"Pinference.+", alertstate="firing"')
    # alerts without an account or instance label (exporter-wide ones) still show
    assert 'account=~"$account|"' in target["expr"] and 'instance=~"$instance|"' in target["expr"]
    assert prometheus["titleFormat"] == "{{alertname}}"


def test_runbook_link_follows_the_generator_setting(
    dashboard: dict[str, Any], generator: ModuleType
) -> None:
    (link,) = [link for link in dashboard["links"] if link["title"] == "Alert runbooks"]
    assert link["url"] == generator.runbook_base()
    assert link["url"].endswith("/docs/alerts.md")


def test_runbook_base_comes_from_the_package_metadata(
    generator: ModuleType, tmp_path: Path
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\n\n[project.urls]\nHomepage = "https://h.example"\n'
        'Repository = "https://git.example/team/fork/"\n'
    )
    assert generator.repository_url(pyproject) == "https://git.example/team/fork"
    assert generator.runbook_base(pyproject) == (
        "https://git.example/team/fork/blob/main/docs/alerts.md"
    )
    pyproject.write_text('[project]\nname = "x"\n')
    assert generator.repository_url(pyproject) == generator.DEFAULT_REPOSITORY
    assert generator.repository_url(tmp_path / "missing.toml") == generator.DEFAULT_REPOSITORY


def test_generator_rewrites_every_runbook_link(generator: ModuleType, tmp_path: Path) -> None:
    """One setting moves the rules' runbook_url, the dashboard link and the Grafana copies."""
    rules, dashboard_file = tmp_path / "rules.yml", tmp_path / "dashboard.json"
    rules.write_text(RULES.read_text())
    dashboard_file.write_text(DASHBOARD.read_text())
    output = tmp_path / "grafana.yml"
    base = "https://runbooks.example/pinference.md"
    wanted = generator.outputs(rules, output, dashboard_file, base)
    for group in yaml.safe_load(wanted[rules])["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["annotations"]["runbook_url"] == f"{base}#{rule['alert'].lower()}"
    (link,) = [x for x in json.loads(wanted[dashboard_file])["links"] if "runbook" in x["title"]]
    assert link["url"] == base
    grafana = yaml.safe_load(wanted[output])
    urls = {r["annotations"]["runbook_url"] for g in grafana["groups"] for r in g["rules"]}
    assert urls and all(url.startswith(base + "#") for url in urls)
    # only the runbook lines changed in the rules file (its comments are kept)
    old, new = RULES.read_text().splitlines(), wanted[rules].splitlines()
    assert len(old) == len(new)
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert changed and all("runbook_url:" in a and "runbook_url:" in b for a, b in changed)


# ------------------------------------------------------------------ required content


def test_is_it_up_row(panels: list[dict[str, Any]]) -> None:
    expectations = {
        "API up now": "pinference_up{",
        "Exporter up": "up{",
        "Auth OK": "pinference_probe_http_status_code{",
        "Last successful list": "pinference_last_success_timestamp_seconds{",
    }
    row_y = by_title(panels, "Is it up?")["gridPos"]["y"]
    for title, needle in expectations.items():
        panel = by_title(panels, title)
        assert panel["type"] == "stat"
        assert panel["gridPos"]["y"] == row_y + 1, f"{title} is not in the first row"
        assert any(needle in expr for expr in exprs_of(panel)), title


def _row_of(panels: list[dict[str, Any]], row_title: str) -> list[dict[str, Any]]:
    """The panels of a row: those between it and the next one, or in it when collapsed."""
    row = by_title(panels, row_title)
    if row.get("collapsed"):
        return sorted(row["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    nested = {id(child) for panel in panels for child in panel.get("panels") or []}
    shown = (panel for panel in panels if id(panel) not in nested)
    ordered = sorted(shown, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    start = ordered.index(row)
    members = []
    for panel in ordered[start + 1 :]:
        if panel["type"] == "row":
            break
        members.append(panel)
    return members


def test_error_budget_row(dashboard: dict[str, Any], panels: list[dict[str, Any]]) -> None:
    """Availability over the objective's window, budget remaining and burn rates, all
    computed from the objective the rules record (no copy of the number here)."""
    row = _row_of(panels, "Error budget")
    assert [p["title"] for p in row] == [
        "Availability (30d)", "Error budget remaining (30d)", "Objective", "Error budget burn rate",
    ]  # fmt: skip
    (availability,) = exprs_of(row[0])
    assert availability.count("[30d]") == 2 and availability.count('endpoint="list"') == 2
    (remaining,) = exprs_of(row[1])
    failures, probes = availability.removeprefix("1 - (").removesuffix(")").split(" / ")
    # the month's allowance: at least the probes 30 days hold at the probe interval
    full = "2592000 * max by (account) (account:pinference_list_probes:min_rate{"
    assert remaining.startswith(f"1 - ({failures} / ({probes} > {full}")
    assert remaining.endswith(") / scalar(1 - pinference:slo_objective:ratio)")
    assert exprs_of(row[2]) == ["pinference:slo_objective:ratio"]
    records = {r["record"] for g in load_yaml(RULES)["groups"] for r in g["rules"] if "record" in r}
    assert "pinference:slo_objective:ratio" in records
    burn = exprs_of(row[3])
    windows = [re.match(r"account:pinference_list_errors:ratio_rate(\w+)\{", e) for e in burn]
    assert [m.group(1) for m in windows if m] == ["1h", "6h", "3d"]
    for expr in burn:
        assert expr.split("{")[0] in records, expr
        assert expr.endswith("/ scalar(1 - pinference:slo_objective:ratio)")
    # the threshold lines are the alerts' burn-rate factors
    factors = set()
    for rule in alert_rules():
        if rule["alert"].startswith("PinferenceErrorBudgetBurn"):
            factors |= {float(f) for f in re.findall(r"\) > ([\d.]+)", rule["expr"])}
    steps = row[3]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert {s["value"] for s in steps if s["value"] is not None} == factors == {1.0, 6.0, 14.4}
    objective = [r for g in load_yaml(RULES)["groups"] for r in g["rules"]
                 if r.get("record") == "pinference:slo_objective:ratio"]  # fmt: skip
    number = re.fullmatch(r"vector\(([\d.]+)\)", objective[0]["expr"]).group(1)
    assert number not in json.dumps(dashboard), "the objective is copied into the dashboard"


def test_latency_percentiles_per_endpoint(panels: list[dict[str, Any]]) -> None:
    panel = by_title(panels, "Probe latency percentiles")
    quantiles = []
    for expr in exprs_of(panel):
        match = re.match(r"histogram_quantile\((0\.\d+), sum by \(([^)]*)\)", expr)
        assert match, expr
        quantiles.append(match.group(1))
        assert "endpoint" in match.group(2) and "le" in match.group(2)
        assert "pinference_probe_duration_seconds_bucket{" in expr
    assert quantiles == ["0.5", "0.95", "0.99"]
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"


def _alert_threshold(name: str) -> float:
    """The number an alert's expression compares with (`... < 14 * 86400`)."""
    (rule,) = [r for r in alert_rules() if r["alert"] == name]
    match = re.search(r"[<>] ([\d.]+(?: \* [\d.]+)?)\s*$", rule["expr"].strip())
    assert match, rule["expr"]
    value = 1.0
    for factor in match.group(1).split("*"):
        value *= float(factor)
    return value


def test_connection_and_tls_row(panels: list[dict[str, Any]]) -> None:
    row = _row_of(panels, "Connection and TLS")
    assert [p["title"] for p in row] == [
        "Connection phases (last successful list probe)",
        "TLS certificate expires in",
        "TLS version",
    ]
    phases, expiry, version = row
    (expr,) = exprs_of(phases)
    assert re.match(r"max by \(instance, account, phase\) \(pinference_probe_phase_seconds\{", expr)
    assert 'endpoint="list"' in expr
    assert phases["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    assert phases["fieldConfig"]["defaults"]["unit"] == "s"
    (expr,) = exprs_of(expiry)
    assert "pinference_tls_cert_expiry_timestamp_seconds{" in expr and expr.endswith("- time()")
    steps = expiry["fieldConfig"]["defaults"]["thresholds"]["steps"]
    # green from the alert's threshold on: the panel turns orange when the alert fires
    assert steps[-1]["color"] == "green"
    assert steps[-1]["value"] == _alert_threshold("PinferenceTLSCertExpiringSoon") == 14 * 86400
    (expr,) = exprs_of(version)
    assert "pinference_tls_version_info{" in expr
    assert version["options"]["reduceOptions"]["fields"] == "/^version$/"


def test_inference_row(panels: list[dict[str, Any]]) -> None:
    """TTFT and duration percentiles, failures by reason, success, tokens and spend; every
    range query spans at least two probes at the default chat interval (5m)."""
    row = _row_of(panels, "Inference (chat probes)")
    assert [p["title"] for p in row] == [
        "Time to first token", "Chat probe duration", "Chat probe failures by reason",
        "Chat probe success ratio", "Chat output tokens", "Chat probe spend (30d)",
        "Unpriced chat probes (24h)",
    ]  # fmt: skip
    assert by_title(panels, "Inference (chat probes)")["collapsed"] is True
    by = {p["title"]: p for p in row}
    for title, metric in (
        ("Time to first token", "pinference_chat_probe_ttft_seconds"),
        ("Chat probe duration", "pinference_chat_probe_duration_seconds"),
    ):
        quantiles = []
        for expr in exprs_of(by[title]):
            match = re.match(r"histogram_quantile\((0\.\d+), sum by \(([^)]*)\)", expr)
            assert match and f"{metric}_bucket{{" in expr, expr
            assert {"model", "le", "account"} <= {x.strip() for x in match.group(2).split(",")}
            quantiles.append(match.group(1))
        assert quantiles == ["0.5", "0.9", "0.99"]
        assert by[title]["fieldConfig"]["defaults"]["unit"] == "s"
    (failures,) = exprs_of(by["Chat probe failures by reason"])
    assert failures.startswith("sum by (account, model, reason) (pinference_chat_probe_failures_")
    assert by["Chat probe failures by reason"]["fieldConfig"]["defaults"]["custom"]["stacking"][
        "mode"] == "normal"  # fmt: skip
    (ratio,) = exprs_of(by["Chat probe success ratio"])
    assert "pinference_chat_probe_failures_total{" in ratio
    assert "pinference_chat_probes_total{" in ratio
    (tokens,) = exprs_of(by["Chat output tokens"])
    assert tokens.startswith("round(sum by (account, model) (increase(pinference_chat_probe_out")
    assert tokens.endswith("[$__range])))")
    for title in ("Chat output tokens", "Unpriced chat probes (24h)"):  # whole numbers
        assert exprs_of(by[title])[0].startswith("round(")
        assert by[title]["fieldConfig"]["defaults"]["decimals"] == 0
    (spend,) = exprs_of(by["Chat probe spend (30d)"])
    assert "increase(pinference_chat_probe_cost_usd_total{" in spend and "[30d]" in spend
    assert by["Chat probe spend (30d)"]["fieldConfig"]["defaults"]["unit"] == "currencyUSD"
    assert "pinference_chat_probe_unpriced_total{" in exprs_of(by["Unpriced chat probes (24h)"])[0]
    for panel in row:
        if any(not t.get("instant") for t in panel["targets"]):
            assert panel["interval"] == "10m", panel["title"]


def test_failures_by_reason_are_stacked_counts(panels: list[dict[str, Any]]) -> None:
    """Whole failed probes per bar, not per-second rates of a 30s probe (a sawtooth); a
    bar is at least a minute (two probes at the default interval)."""
    panel = by_title(panels, "Failures by reason")
    (expr,) = exprs_of(panel)
    selector = expr.split(") - ")[0].removeprefix("sum by (account, endpoint, reason) (")
    assert expr == (
        f"sum by (account, endpoint, reason) ({selector}) - "
        f"sum by (account, endpoint, reason) ({selector} offset $__interval) > 0"
    )
    assert selector.startswith("pinference_probe_failures_total{")
    assert panel["interval"] == "1m"
    assert panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"


def test_catalog_panels(panels: list[dict[str, Any]]) -> None:
    (listed,) = exprs_of(by_title(panels, "Models listed over time"))
    assert listed.startswith("sum by (account, owned_by) (pinference_models{")  # stacked
    (changes,) = exprs_of(by_title(panels, "Catalog changes"))
    assert changes.startswith("sum by (account, change) (pinference_catalog_changes_total{")
    assert "offset $__interval" in changes
    table = by_title(panels, "Catalog")
    assert table["type"] == "table"
    (target,) = table["targets"]
    assert target["expr"].startswith("pinference_model_info{")
    assert target["instant"] is True and target["format"] == "table"
    (organize,) = [t for t in table["transformations"] if t["id"] == "organize"]
    hidden = {k for k, v in organize["options"]["excludeByName"].items() if v}
    assert {"Value", "Time", "__name__"} <= hidden
    assert {"model", "owned_by", "display_name", "serving", "account"} <= set(
        organize["options"]["renameByName"]
    )


def test_watched_models_and_status_panels(panels: list[dict[str, Any]]) -> None:
    timeline = by_title(panels, "Watched models over time")
    assert timeline["type"] == "state-timeline"
    assert all('model=~"$model"' in e for e in exprs_of(timeline))
    assert _row_of(panels, "Watched models") == [timeline]
    status = by_title(panels, "Last HTTP status")
    assert exprs_of(status)[0].startswith("pinference_probe_http_status_code{")


def test_exporter_health_row(panels: list[dict[str, Any]]) -> None:
    version = by_title(panels, "Exporter version")
    assert exprs_of(version)[0].startswith("pinference_exporter_build_info{")
    assert version["options"]["reduceOptions"]["fields"] == "/^version$/"
    assert exprs_of(by_title(panels, "Probe interval"))[0].startswith(
        "pinference_probe_interval_seconds{"
    )
    assert exprs_of(by_title(panels, "Model series dropped"))[0].startswith(
        "pinference_model_series_dropped{"
    )
    reload = by_title(panels, "Config reload")
    (expr,) = exprs_of(reload)
    assert "pinference_exporter_config_last_reload_successful{" in expr
    texts = {v["text"] for m in reload["fieldConfig"]["defaults"]["mappings"]
             for v in m["options"].values()}  # fmt: skip
    assert texts == {"OK", "FAILED"}
    (expr,) = exprs_of(by_title(panels, "Config loaded"))
    assert expr.startswith("time() - pinference_exporter_config_last_reload_success_timestamp_")
    (expr,) = exprs_of(by_title(panels, "Render errors"))
    assert expr.startswith("pinference_exporter_render_errors_total{")
    health = {p["title"] for p in _row_of(panels, "Exporter health")}
    assert {"Config reload", "Config loaded", "Render errors"} <= health


# ------------------------------------------------------------------ PromQL and the contract


def test_substitute_replaces_every_variable_form() -> None:
    expr = 'rate(x{job="$job", instance=~"${instance}", m=~"[[model]]"}[$__rate_interval])'
    assert substitute(expr) == 'rate(x{job="pinference", instance=~".+", m=~".+"}[1m])'
    with pytest.raises(KeyError):
        substitute("x[$nope]")


def test_every_dashboard_query_uses_known_variables(dashboard: dict[str, Any]) -> None:
    for where, expr in dashboard_queries(dashboard):
        substituted = substitute(expr)
        assert "$" not in substituted, f"{where}: {substituted}"


def test_every_promql_expression_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    queries = [(where, substitute(expr)) for where, expr in dashboard_queries(dashboard)]
    queries += [(f"rule {r['alert']}", r["expr"]) for r in alert_rules()]
    queries += [(f"grafana rule {t}", e) for t, e in _grafana_rule_exprs().items()]
    assert len(queries) > 40
    problems = check_exprs_with_promtool(queries, tmp_path)
    assert not problems, "\n".join(problems)


def test_promtool_check_rejects_a_broken_expression(tmp_path: Path) -> None:
    """The parse check above is not vacuous."""
    problems = check_exprs_with_promtool([("good", "up"), ("bad", "sum by (job (up)")], tmp_path)
    assert len(problems) == 1 and problems[0].startswith("bad:")


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{job="x", le!="1"}[5m]))) '
        '> on (job) group_left () (3 * b + 60) or label_replace(c, "d", "e", "", "") '
        "and time() - d_total offset 5m > bool 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d_total"}


def recorded_series() -> set[str]:
    return {r["record"] for g in load_yaml(RULES)["groups"] for r in g["rules"] if "record" in r}


def test_every_metric_is_in_the_contract(dashboard: dict[str, Any]) -> None:
    """Queries read the exporter's metrics (docs/metrics.md), Prometheus' own series, or
    series the shipped rules record."""
    allowed = contract_series_names() | PROMETHEUS_SERIES | recorded_series()
    used: set[str] = set()
    sources = [(where, expr) for where, expr in dashboard_queries(dashboard)]
    sources += [(f"rule {r['alert']}", r["expr"]) for r in alert_rules()]
    records = [r for g in load_yaml(RULES)["groups"] for r in g["rules"] if "record" in r]
    sources += [(f"record {r['record']}", r["expr"]) for r in records]
    for where, expr in sources:
        names = metric_names(expr)
        assert names or where.startswith("record "), f"{where}: reads no metric? {expr!r}"
        unknown = names - allowed
        assert not unknown, f"{where} reads {sorted(unknown)}, not in docs/metrics.md"
        used |= names
    assert "pinference_probe_duration_seconds_bucket" in used


def test_dashboard_shows_every_contract_metric(dashboard: dict[str, Any]) -> None:
    used: set[str] = set()
    for _, expr in dashboard_queries(dashboard):
        used |= metric_names(expr)
    used |= {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    missing = set(contract_metrics()) - used
    assert not missing, f"metrics of docs/metrics.md with no panel: {sorted(missing)}"


def test_panels_named_in_alerts_and_runbooks_exist(panels: list[dict[str, Any]]) -> None:
    """Alert descriptions and docs/alerts.md send operators to panels by their title."""
    titles = {panel["title"] for panel in panels}
    texts = [str(v) for r in alert_rules() for v in r["annotations"].values()]
    texts.append(ALERTS_DOC.read_text(encoding="utf-8"))
    named = set()
    for text in texts:
        outside_templates = re.sub(r"{{.*?}}", "", text)
        named |= set(re.findall(r'"([A-Z][^"$]*)"', outside_templates))
    assert {"Failures by reason", "Last HTTP status", "Catalog changes", "Error budget"} <= named
    assert not named - titles, f"no such panel: {sorted(named - titles)}"


# ------------------------------------------------------------------ Grafana alerting


def _grafana_rules() -> dict[str, dict[str, Any]]:
    doc = load_yaml(GRAFANA_ALERTING)
    return {rule["title"]: rule for group in doc["groups"] for rule in group["rules"]}


def _grafana_rule_exprs() -> dict[str, str]:
    return {title: rule["data"][0]["model"]["expr"] for title, rule in _grafana_rules().items()}


def test_grafana_alerting_file_is_up_to_date() -> None:
    result = run([sys.executable, str(GENERATOR), "--check"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_generator_check_detects_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "alerting.yml"
    stale.write_text(GRAFANA_ALERTING.read_text().replace("for: 5m", "for: 1m", 1))
    result = run([sys.executable, str(GENERATOR), "--check", "--output", str(stale)])
    assert result.returncode == 1
    assert "out of date" in result.stderr
    result = run([sys.executable, str(GENERATOR), "--output", str(stale)])
    assert result.returncode == 0 and stale.read_text() == GRAFANA_ALERTING.read_text()


def test_grafana_rules_equal_prometheus_rules(generator: ModuleType) -> None:
    doc = load_yaml(GRAFANA_ALERTING)
    assert doc["apiVersion"] == 1
    shipped = load_yaml(RULES)
    alerting_groups = [
        g["name"] for g in shipped["groups"] if any("alert" in r for r in g["rules"])
    ]
    assert [g["name"] for g in doc["groups"]] == alerting_groups == ["pinference", "pinference-slo"]
    for group in doc["groups"]:
        assert group["orgId"] == 1 and group["folder"]
        assert re.fullmatch(r"\d+[sm]", group["interval"])
    records = generator.recording_rules(shipped)
    grafana = _grafana_rules()
    prometheus = {rule["alert"]: rule for rule in alert_rules()}
    assert list(grafana) == list(prometheus)
    datasource_uid = load_yaml(GRAFANA_DATASOURCE)["datasources"][0]["uid"]
    uids = [rule["uid"] for rule in grafana.values()]
    assert len(set(uids)) == len(uids)
    for name, prom in prometheus.items():
        rule = grafana[name]
        query, reduce, condition = rule["data"]
        assert query["refId"] == "A" and query["datasourceUid"] == datasource_uid
        expr = query["model"]["expr"]
        assert expr == generator.inline_records(prom["expr"], records)
        if not set(records) & metric_names(prom["expr"]):
            assert expr == prom["expr"]  # no recorded series: the very same expression
        assert not set(records) & metric_names(expr), f"{name}: needs the recording rules"
        assert query["model"]["instant"] is True
        longest = max([600, *map(duration_seconds, re.findall(r"\[(\w+)\]", expr))])
        assert query["relativeTimeRange"] == {"from": longest, "to": 0}
        assert reduce["model"]["type"] == "reduce" and reduce["model"]["expression"] == "A"
        assert condition["model"]["type"] == "math"
        assert condition["model"]["expression"] == "is_number($B) || is_nan($B) || is_inf($B)"
        assert rule["condition"] == "C"
        assert rule["for"] == prom["for"]
        assert rule["labels"] == prom["labels"]
        assert rule["noDataState"] == "OK" and rule["execErrState"] == "Error"
        links = {"__dashboardUid__", "__panelId__"}
        assert set(rule["annotations"]) == set(prom["annotations"]) | links
        for key, text in prom["annotations"].items():
            translated = rule["annotations"][key]
            assert translated == generator.translate_template(text)
            assert not re.search(r"\$value(?![\w.])", translated), f"{name}.{key}"
            assert translated.replace("$values.B.Value", "$value") == text
        assert re.fullmatch(r"[a-z0-9-]{1,40}", rule["uid"])


def duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhdw])", text))


def test_recorded_series_are_inlined_faithfully(generator: ModuleType) -> None:
    records = {
        "job:x:ratio": 'sum by (job) (rate(a{job="j", e="l"}[5m]))'
        ' / sum by (job) (rate(b{job="j"}[5m]))',
        "o:ratio": "vector(0.9)",
    }
    inline = generator.inline_records
    assert inline('job:x:ratio{job="j"} / scalar(1 - o:ratio) > 2', records) == (
        '(sum by (job) (rate(a{job="j", e="l"}[5m])) / sum by (job) (rate(b{job="j"}[5m])))'
        " / scalar(1 - (vector(0.9))) > 2"
    )
    assert (
        inline("x:job:x:ratio + job:x:ratio_total", records) == "x:job:x:ratio + job:x:ratio_total"
    )
    for refused in (
        'job:x:ratio{job="other"}',  # a filter the record does not apply everywhere
        'job:x:ratio{e="l"}',  # applied to a only: not the same after aggregation
        'job:x:ratio{job=~"j"}',  # not an equality matcher
        "max_over_time(job:x:ratio[1h])",  # would need a subquery
    ):
        with pytest.raises(generator.GenerationError):
            inline(refused, records)


def test_template_translation(generator: ModuleType) -> None:
    translate = generator.translate_template
    assert translate("{{ $value | humanizePercentage }} of {{ $labels.endpoint }}") == (
        "{{ $values.B.Value | humanizePercentage }} of {{ $labels.endpoint }}"
    )
    assert translate("{{ $values.A.Value }}") == "{{ $values.A.Value }}"
    assert translate('{{ if eq $labels.stale "probe" }}x{{ end }}') == (
        '{{ if eq $labels.stale "probe" }}x{{ end }}'
    )
    for prometheus_only in ('{{ query "up" | first | value }}', "{{ $externalLabels.x }}"):
        with pytest.raises(generator.GenerationError):
            translate(prometheus_only)


def test_generator_time_range_covers_the_longest_window(generator: ModuleType) -> None:
    assert generator.time_range_seconds("max_over_time(x[1h]) - y") == 3600
    assert generator.time_range_seconds("rate(x[5m])") == 600
    assert generator.rule_uid("PinferenceAPIDown") == "pinference-api-down"


# ------------------------------------------------------------------ provisioning files


def test_grafana_rules_show_on_their_panels(
    dashboard: dict[str, Any], panels: list[dict[str, Any]], generator: ModuleType
) -> None:
    """Each Grafana-managed rule is linked to a panel: its state changes appear there
    through the dashboard's built-in annotation (the Prometheus rules through ALERTS)."""
    by_id = {panel["id"]: panel for panel in panels}
    rules = _grafana_rules()
    assert set(rules) == set(generator.PANELS)
    for name, rule in rules.items():
        assert rule["dashboardUid"] == dashboard["uid"] == "pinference", name
        panel = by_id[rule["panelId"]]
        assert panel["title"] == generator.PANELS[name] and panel["type"] != "row", name
        assert rule["annotations"]["__dashboardUid__"] == rule["dashboardUid"]
        assert rule["annotations"]["__panelId__"] == str(rule["panelId"])


def _generate(generator: ModuleType, tmp_path: Path, rules_text: str, output: Path) -> Any:
    """Run the generator on copies: rules, dashboard and uid ledger in tmp_path."""
    rules, dashboard_file = tmp_path / "rules.yml", tmp_path / "dashboard.json"
    rules.write_text(rules_text)
    dashboard_file.write_text(DASHBOARD.read_text())
    uids = tmp_path / "uids.txt"
    if not uids.exists():
        uids.write_text(generator.UIDS.read_text())
    status = generator.main(["--rules", str(rules), "--output", str(output),
                             "--dashboard", str(dashboard_file), "--uids", str(uids)])  # fmt: skip
    assert status == 0
    return load_yaml(output)


def _check(generator: ModuleType, tmp_path: Path, output: Path) -> int:
    argv = ["--check", "--rules", str(tmp_path / "rules.yml"), "--output", str(output)]
    return int(generator.main([*argv, "--dashboard", str(tmp_path / "dashboard.json"),
                               "--uids", str(tmp_path / "uids.txt")]))  # fmt: skip


def test_renamed_and_removed_alerts_are_deleted_from_grafana(
    generator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grafana keeps a provisioned rule until told to delete it: the generator lists every
    uid it generated before and no longer has in deleteRules, for good."""
    monkeypatch.setitem(generator.PANELS, "PinferenceSlowProbes", "Probe latency percentiles")
    output = tmp_path / "alerting.yml"
    output.write_text(GRAFANA_ALERTING.read_text())
    text = RULES.read_text()
    changed = text.replace("- alert: PinferenceHighLatency", "- alert: PinferenceSlowProbes")
    start = changed.index("      - alert: PinferenceCatalogEmpty")
    end = changed.index("      # The catalog fell below half")
    removed = changed[:start] + changed[end:]
    doc = _generate(generator, tmp_path, removed, output)
    current = {rule["uid"] for group in doc["groups"] for rule in group["rules"]}
    deleted = [entry["uid"] for entry in doc["deleteRules"]]
    assert deleted == ["pinference-catalog-empty", "pinference-high-latency"]
    assert all(entry["orgId"] == 1 for entry in doc["deleteRules"])
    assert "pinference-slow-probes" in current and not current & set(deleted)
    # sticky: regenerating keeps the deletions (a Grafana may upgrade from any old version)
    again = _generate(generator, tmp_path, removed, output)
    assert [entry["uid"] for entry in again["deleteRules"]] == deleted
    # an alert that comes back is no longer deleted (Grafana deletes after creating)
    back = _generate(generator, tmp_path, changed, output)
    assert [entry["uid"] for entry in back["deleteRules"]] == ["pinference-high-latency"]
    assert "pinference-catalog-empty" in {r["uid"] for g in back["groups"] for r in g["rules"]}


def test_check_fails_when_a_deletion_or_a_uid_is_lost(
    generator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retired uids are remembered twice (the ledger and the generated file): losing
    them from either one is caught by --check, and regenerating restores them."""
    monkeypatch.setitem(generator.PANELS, "PinferenceSlow", "Probe latency percentiles")
    output = tmp_path / "alerting.yml"
    output.write_text(GRAFANA_ALERTING.read_text())
    renamed = RULES.read_text().replace("alert: PinferenceHighLatency", "alert: PinferenceSlow")
    _generate(generator, tmp_path, renamed, output)
    assert [e["uid"] for e in load_yaml(output)["deleteRules"]] == ["pinference-high-latency"]
    assert "pinference-high-latency\n" in (tmp_path / "uids.txt").read_text()
    assert _check(generator, tmp_path, output) == 0
    generated = output.read_text()
    output.write_text(generated.split("deleteRules:")[0])  # a hand edit drops the deletion
    assert _check(generator, tmp_path, output) == 1
    output.write_text(generated)
    ledger = tmp_path / "uids.txt"
    ledger.write_text(ledger.read_text().replace("pinference-high-latency\n", ""))
    assert _check(generator, tmp_path, output) == 1
    _generate(generator, tmp_path, renamed, output)
    assert "pinference-high-latency\n" in ledger.read_text()


def test_the_ledger_holds_every_shipped_uid(generator: ModuleType) -> None:
    ledger = generator.read_uids(generator.UIDS.read_text())
    doc = load_yaml(GRAFANA_ALERTING)
    created = {rule["uid"] for group in doc["groups"] for rule in group["rules"]}
    deleted = {entry["uid"] for entry in doc.get("deleteRules") or []}
    assert ledger == created | deleted


def test_the_shipped_file_deletes_nothing_it_still_creates() -> None:
    doc = load_yaml(GRAFANA_ALERTING)
    created = {rule["uid"] for group in doc["groups"] for rule in group["rules"]}
    deleted = {entry["uid"] for entry in doc.get("deleteRules") or []}
    assert not created & deleted


def _default_count_error(files: list[dict[str, Any]]) -> str | None:
    """Grafana's check at start-up (provisioning/datasources: validateDefaultUniqueness):
    more than one provisioned data source marked default in one organisation is fatal."""
    defaults: dict[int, int] = {}
    for doc in files:
        for datasource in doc.get("datasources") or []:
            if datasource.get("isDefault"):
                org = datasource.get("orgId") or 1
                defaults[org] = defaults.get(org, 0) + 1
                if defaults[org] > 1:
                    return "Only one datasource per organization can be marked as default"
    return None


def test_datasource_provisioning() -> None:
    doc = load_yaml(GRAFANA_DATASOURCE)
    assert doc["apiVersion"] == 1
    (datasource,) = doc["datasources"]
    assert datasource["uid"] == "prometheus" and datasource["type"] == "prometheus"
    # never the default: next to a site's own default data source Grafana must still start
    assert datasource["isDefault"] is False
    theirs = {"datasources": [{"name": "Theirs", "type": "loki", "isDefault": True}]}
    assert _default_count_error([doc, theirs]) is None
    claimed = copy.deepcopy(doc)
    claimed["datasources"][0]["isDefault"] = True
    assert _default_count_error([claimed, theirs])  # the check catches the old file
    # the container example: Grafana reaches Prometheus by its service name
    url = datasource["url"]
    host = re.fullmatch(r"http://([\w.-]+):9090", url)
    assert host and host.group(1) != "localhost", url
    provider_text = GRAFANA_DASHBOARD_PROVIDER.read_text()
    assert re.search(rf"^#\s+{host.group(1)}:\s*$", provider_text, flags=re.M), (
        f"the provider's Compose example has no service named {host.group(1)}"
    )
    rules = _grafana_rules()
    assert {r["data"][0]["datasourceUid"] for r in rules.values()} == {datasource["uid"]}


def test_notifications_route_like_the_alertmanager_example() -> None:
    """Grafana-managed alerts notify someone: contact points and a policy that routes by
    severity like prometheus/alertmanager.yml (same receivers, grouping, timings)."""
    doc = load_yaml(FILES.grafana_notifications)
    alertmanager = load_yaml(FILES.alertmanager_config)
    points = {point["name"]: point for point in doc["contactPoints"]}
    assert set(points) == {receiver["name"] for receiver in alertmanager["receivers"]}
    uids = [r["uid"] for point in points.values() for r in point["receivers"]]
    assert len(uids) == len(set(uids))
    for point in points.values():
        assert point["orgId"] == 1
        for receiver in point["receivers"]:
            assert receiver["type"] == "webhook"
            assert ".example.com" in receiver["settings"]["url"], "a placeholder to edit"
    (policy,) = doc["policies"]
    route = alertmanager["route"]
    assert policy["receiver"] == route["receiver"]
    assert policy["group_by"] == ["grafana_folder", *route["group_by"]]
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert policy[key] == route[key], key
    grafana_routes = [
        ({f"{n}{op}{v}" for n, op, v in child["object_matchers"]}, child["receiver"],
         child.get("repeat_interval"))
        for child in policy["routes"]
    ]  # fmt: skip
    alertmanager_routes = [
        ({m.replace('"', "") for m in child["matchers"]}, child["receiver"],
         child.get("repeat_interval"))
        for child in route["routes"]
    ]  # fmt: skip
    assert grafana_routes == alertmanager_routes
    # Grafana expands $VARIABLES of its environment in these values: there must be none
    assert "$" not in json.dumps(doc)
    text = FILES.grafana_notifications.read_text()
    assert "REPLACES the whole notification policy tree" in text


def test_every_severity_reaches_a_contact_point() -> None:
    doc = load_yaml(FILES.grafana_notifications)
    (policy,) = doc["policies"]
    for rule in _grafana_rules().values():
        severity = rule["labels"]["severity"]
        matched = [child["receiver"] for child in policy["routes"]
                   if ["severity", "=", severity] in child["object_matchers"]]  # fmt: skip
        assert matched, f"{rule['title']}: severity {severity} has no route"


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    doc = load_yaml(GRAFANA_DASHBOARD_PROVIDER)
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path.startswith("/")
    text = GRAFANA_DASHBOARD_PROVIDER.read_text()
    assert f"grafana/dashboards:{path}" in text, "the comment must show how to mount it"


# ------------------------------------------------------------------ what panels show on known data

SERIES_LABELS = f'job="{JOB}", instance="exp:8795"'


Check = tuple[str, str, list[Any]]  # (eval_time, PromQL, expected samples)


def _shows(tmp_path: Path, series: dict[str, str], checks: list[Check]) -> None:
    """promtool evaluates panel queries (variables substituted) over `series` (one sample
    every 30s, the default probe interval) with the shipped rules loaded: each check is
    (eval_time, expr, expected samples as {labels, value})."""
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "30s",
        "tests": [{
            "interval": "30s",
            "input_series": [{"series": name, "values": values} for name, values in series.items()],
            "promql_expr_test": [
                {"expr": expr, "eval_time": at, "exp_samples": samples}
                for at, expr, samples in checks
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "panels.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def _query(panels: list[dict[str, Any]], title: str) -> str:
    (expr,) = exprs_of(by_title(panels, title))
    return substitute(expr)


def test_a_young_series_spends_the_month_not_more(
    panels: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Half an hour after install, every list probe failed (60 of them): the availability
    of those probes is 0, and the error budget has lost 60 of the 432 failures 30 days at
    30s allow (13.9%): 86.1% remains, not -19,900% (60 / 60 failed, over a 0.5% budget)."""
    series = {
        f"pinference_probe_interval_seconds{{{SERIES_LABELS}}}": "30x60",
        f'pinference_probes_total{{{SERIES_LABELS}, account="a", endpoint="list"}}': "0+1x60",
        f'pinference_probe_failures_total{{{SERIES_LABELS}, account="a", endpoint="list", '
        'reason="timeout"}': "0+1x60",
    }
    budget = _query(panels, "Error budget remaining (30d)")
    _shows(tmp_path, series, [
        ("30m", _query(panels, "Availability (30d)"), [{"labels": '{account="a"}', "value": 0}]),
        ("30m", f"count(({budget}) > 0.86 < 0.862)", [{"labels": "{}", "value": 1}]),
        ("30m", f"({budget}) < 0", []),
    ])  # fmt: skip


def test_failures_are_counted_whole_in_their_bars(
    panels: list[dict[str, Any]], tmp_path: Path
) -> None:
    """8 failed list probes between minutes 5 and 9: the bars of "Failures by reason" add up
    to 8 (whole numbers, nothing extrapolated), and a reason that never failed has none."""
    series = {
        f'pinference_probe_failures_total{{{SERIES_LABELS}, account="a", endpoint="list", '
        'reason="timeout"}': "0x10 1+1x7 8x43",
        f'pinference_probe_failures_total{{{SERIES_LABELS}, account="a", endpoint="list", '
        'reason="server_error"}': "0x61",
    }
    bars = _query(panels, "Failures by reason")
    labels = '{account="a", endpoint="list", reason="timeout"}'
    _shows(tmp_path, series, [
        ("30m", f"sum_over_time(({bars})[30m:1m])", [{"labels": labels, "value": 8}]),
        ("30m", f"max_over_time(({bars})[30m:1m])", [{"labels": labels, "value": 2}]),
        ("30m", f"sum_over_time((({bars}) - round({bars}))[30m:1m])",
         [{"labels": labels, "value": 0}]),
    ])  # fmt: skip


def test_chat_tokens_are_a_whole_count(panels: list[dict[str, Any]], tmp_path: Path) -> None:
    """Three chat probes of 8 tokens each in a young series: 24 tokens, not 24.4."""
    series = {
        f'pinference_chat_probe_output_tokens_total{{{SERIES_LABELS}, account="a", '
        'model="m"}': "0x9 8x10 16x10 24x31",
    }
    _shows(tmp_path, series, [
        ("30m", _query(panels, "Chat output tokens"),
         [{"labels": '{account="a", model="m"}', "value": 24}]),
    ])  # fmt: skip
