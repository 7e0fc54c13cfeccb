"""Offline checks of the Grafana dashboard and of the Grafana provisioning files.

No Grafana server is available to the tests: the dashboard's structure is checked here,
its PromQL is parsed by promtool, and (in test_prometheus_integration.py) every query is
run against a real Prometheus. The Grafana alert rules must be the generated, up-to-date
translation of the Prometheus rules.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from promhelpers import (
    ALERTS_DOC,
    DASHBOARD,
    GENERATOR,
    GRAFANA_ALERTING,
    GRAFANA_DASHBOARD_PROVIDER,
    GRAFANA_DATASOURCE,
    JOB,
    PROMETHEUS_SERIES,
    RULES,
    TEMPLATE_VALUES,
    alert_rules,
    check_exprs_with_promtool,
    contract_metrics,
    contract_series_names,
    dashboard_queries,
    iter_panels,
    load_dashboard,
    load_yaml,
    metric_names,
    run,
    substitute,
)

DS_REF = {"type": "prometheus", "uid": "${datasource}"}
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


def test_panel_ids_are_unique(panels: list[dict[str, Any]]) -> None:
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(ids) == len(set(ids))


def test_panel_titles_are_unique(panels: list[dict[str, Any]]) -> None:
    titles = [panel["title"] for panel in panels]
    assert all(titles) and len(titles) == len(set(titles))


def test_grid_positions_fit_and_do_not_overlap(panels: list[dict[str, Any]]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        x, y, w, h = pos["x"], pos["y"], pos["w"], pos["h"]
        assert 1 <= w <= 24 and x >= 0 and x + w <= 24, f"{panel['title']}: {pos}"
        assert h >= 1 and y >= 0, f"{panel['title']}: {pos}"
        for cell in itertools.product(range(x, x + w), range(y, y + h)):
            assert cell not in cells, f"{panel['title']!r} overlaps {cells[cell]!r} at {cell}"
            cells[cell] = panel["title"]


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


def test_every_query_uses_the_datasource_variable(
    dashboard: dict[str, Any], panels: list[dict[str, Any]]
) -> None:
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DS_REF, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DS_REF, f"{panel['title']} {target['refId']}"
    annotations = dashboard["annotations"]["list"]
    assert [a["datasource"] for a in annotations if not a.get("builtIn")] == [DS_REF]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DS_REF, variable["name"]


def test_no_hard_coded_datasource_uid(dashboard: dict[str, Any]) -> None:
    allowed = {"${datasource}", BUILTIN_GRAFANA_DS["uid"]}
    for path, node in _walk(dashboard):
        if isinstance(node, dict) and "uid" in node and path:
            assert node["uid"] in allowed, f"hard-coded uid at {path}: {node['uid']!r}"
        if isinstance(node, dict) and isinstance(node.get("datasource"), str):
            raise AssertionError(f"legacy string datasource at {path}")


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "model"]
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    assert datasource["current"].get("value") in (None, "default")
    job = variables["job"]
    assert job["current"]["value"] == JOB and not job["multi"]
    instance, model = variables["instance"], variables["model"]
    assert instance["multi"] and instance["includeAll"]
    assert 'job="$job"' in instance["query"]["query"]
    assert model["multi"] and model["includeAll"]
    assert model["query"]["query"].startswith("label_values(pinference_model_available{")
    assert model["query"]["query"].endswith(", model)")


def test_queries_are_scoped_to_job_and_instance(panels: list[dict[str, Any]]) -> None:
    for panel in panels:
        for expr in exprs_of(panel):
            for selector in re.findall(r"[a-zA-Z_:][\w:]*\{([^}]*)\}", expr):
                assert 'job="$job"' in selector, f"{panel['title']}: {expr}"
                assert 'instance=~"$instance"' in selector, f"{panel['title']}: {expr}"
            for name in metric_names(expr):
                assert re.search(rf"\b{name}\{{", expr), f"{panel['title']}: bare {name}"


# ------------------------------------------------------------------ required content


def test_is_it_up_row(panels: list[dict[str, Any]]) -> None:
    expectations = {
        "API up now": "pinference_up{",
        "List success ratio (24h)": "[24h]",
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


def test_failures_by_reason_are_stacked_rates(panels: list[dict[str, Any]]) -> None:
    panel = by_title(panels, "Failures by reason")
    (expr,) = exprs_of(panel)
    assert expr.startswith("sum by (endpoint, reason) (rate(pinference_probe_failures_total{")
    assert panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"


def test_catalogue_panels(panels: list[dict[str, Any]]) -> None:
    assert any(
        "pinference_catalog_models{" in e
        for e in exprs_of(by_title(panels, "Models listed over time"))
    )
    (changes,) = exprs_of(by_title(panels, "Catalogue changes"))
    assert "increase(pinference_catalog_changes_total{" in changes
    table = by_title(panels, "Catalogue")
    assert table["type"] == "table"
    (target,) = table["targets"]
    assert target["expr"].startswith("pinference_model_info{")
    assert target["instant"] is True and target["format"] == "table"
    (organize,) = [t for t in table["transformations"] if t["id"] == "organize"]
    hidden = {k for k, v in organize["options"]["excludeByName"].items() if v}
    assert {"Value", "Time", "__name__"} <= hidden
    assert {"model", "owned_by", "display_name", "serving"} <= set(
        organize["options"]["renameByName"]
    )


def test_watched_models_and_status_panels(panels: list[dict[str, Any]]) -> None:
    timeline = by_title(panels, "Watched models over time")
    assert timeline["type"] == "state-timeline"
    assert all('model=~"$model"' in e for e in exprs_of(timeline))
    assert all('model=~"$model"' in e for e in exprs_of(by_title(panels, "Watched models now")))
    status = by_title(panels, "Last HTTP status")
    assert exprs_of(status)[0].startswith("pinference_probe_http_status_code{")


def test_exporter_health_row(panels: list[dict[str, Any]]) -> None:
    version = by_title(panels, "Exporter version")
    assert exprs_of(version)[0].startswith("pinference_exporter_build_info{")
    assert version["options"]["reduceOptions"]["fields"] == "/^version$/"
    assert exprs_of(by_title(panels, "Probe interval"))[0].startswith(
        "pinference_probe_interval_seconds{"
    )
    assert "rate(pinference_probes_total{" in exprs_of(by_title(panels, "Probes per second"))[0]
    assert exprs_of(by_title(panels, "Model series dropped"))[0].startswith(
        "pinference_model_series_dropped{"
    )


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


def test_every_metric_is_in_the_contract(dashboard: dict[str, Any]) -> None:
    allowed = contract_series_names() | PROMETHEUS_SERIES
    used: set[str] = set()
    sources = [(where, expr) for where, expr in dashboard_queries(dashboard)]
    sources += [(f"rule {r['alert']}", r["expr"]) for r in alert_rules()]
    for where, expr in sources:
        names = metric_names(expr)
        assert names, f"{where}: reads no metric? {expr!r}"
        unknown = names - allowed
        assert not unknown, f"{where} reads {sorted(unknown)}, not in docs/metrics.md"
        used |= names
    assert "pinference_probe_duration_seconds_bucket" in used


def test_dashboard_shows_every_contract_metric(dashboard: dict[str, Any]) -> None:
    used: set[str] = set()
    for _, expr in dashboard_queries(dashboard):
        used |= metric_names(expr)
    used |= {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    # New in the contract with config reload; their panel is still to be added.
    awaiting_panel = {
        "pinference_exporter_config_last_reload_successful",
        "pinference_exporter_config_last_reload_success_timestamp_seconds",
    }
    missing = set(contract_metrics()) - used - awaiting_panel
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
    assert {"Failures by reason", "Last HTTP status", "Catalogue changes"} <= named
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
    (group,) = doc["groups"]
    assert group["orgId"] == 1 and group["name"] == "pinference" and group["folder"]
    assert re.fullmatch(r"\d+[sm]", group["interval"])
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
        assert query["model"]["expr"] == prom["expr"]
        assert query["model"]["instant"] is True
        assert query["relativeTimeRange"]["from"] >= 600 and query["relativeTimeRange"]["to"] == 0
        assert reduce["model"]["type"] == "reduce" and reduce["model"]["expression"] == "A"
        assert condition["model"]["type"] == "math"
        assert condition["model"]["expression"] == "is_number($B) || is_nan($B) || is_inf($B)"
        assert rule["condition"] == "C"
        assert rule["for"] == prom["for"]
        assert rule["labels"] == prom["labels"]
        assert rule["noDataState"] == "OK" and rule["execErrState"] == "Error"
        assert set(rule["annotations"]) == set(prom["annotations"])
        for key, text in prom["annotations"].items():
            translated = rule["annotations"][key]
            assert translated == generator.translate_template(text)
            assert not re.search(r"\$value(?![\w.])", translated), f"{name}.{key}"
            assert translated.replace("$values.B.Value", "$value") == text
        assert re.fullmatch(r"[a-z0-9-]{1,40}", rule["uid"])


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


def test_datasource_provisioning() -> None:
    doc = load_yaml(GRAFANA_DATASOURCE)
    assert doc["apiVersion"] == 1
    (datasource,) = doc["datasources"]
    assert datasource["uid"] == "prometheus" and datasource["type"] == "prometheus"
    assert datasource["url"] == "http://localhost:9090"
    assert TEMPLATE_VALUES["datasource"] == datasource["uid"]


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    doc = load_yaml(GRAFANA_DASHBOARD_PROVIDER)
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path.startswith("/")
    text = GRAFANA_DASHBOARD_PROVIDER.read_text()
    assert f"grafana/dashboards:{path}" in text, "the comment must show how to mount it"
    assert DASHBOARD.parent.name == "dashboards"
    assert RULES.exists()
