"""The dashboard against Grafana's published schema (@grafana/schema, TypeScript types).

grafana/schema-check/check.py installs the pinned packages with `npm ci` on first use and
type-checks each dashboard with the TypeScript compiler. Skipped when node or npm are
missing or the npm registry cannot be reached, except in CI, where that fails.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness import in_ci
from tests.alerting.helpers import DASHBOARD, FILES, require_tool, run

CHECK = FILES.schema_check / "check.py"


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard_schema_check", CHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def installed(checker: ModuleType) -> Path:
    """The pinned packages, installed (npm ci) once."""
    require_tool("node", "nodejs")
    require_tool("npm", "npm")
    try:
        return checker.ensure_packages()
    except checker.CheckError as exc:
        if in_ci():
            pytest.fail(f"cannot install the schema packages: {exc}")
        pytest.skip(f"cannot install the schema packages (offline?): {exc}")


def check(*paths: Path) -> tuple[int, str]:
    result = run([sys.executable, str(CHECK), *map(str, paths)], timeout=300)
    return result.returncode, result.stdout + result.stderr


def test_packages_are_pinned() -> None:
    package = json.loads((FILES.schema_check / "package.json").read_text())
    lock = json.loads((FILES.schema_check / "package-lock.json").read_text())
    for name, version in package["devDependencies"].items():
        assert version[0].isdigit(), f"{name} {version}: pin an exact version"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert package["devDependencies"]["@grafana/schema"].startswith("11.")


def test_shipped_dashboard_has_zero_schema_errors(installed: Path) -> None:
    status, output = check(DASHBOARD)
    assert status == 0, output
    assert "1 dashboard(s), 0 schema errors (@grafana/schema 11." in output


def _broken(dashboard: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Copies of the dashboard with one defect each, and the path the error must name."""
    cases: dict[str, tuple[dict[str, Any], str]] = {}

    def case(name: str, where: str) -> dict[str, Any]:
        copy_ = copy.deepcopy(dashboard)
        cases[name] = (copy_, where)
        return copy_

    del case("no-width", "panels[1].gridPos")["panels"][1]["gridPos"]["w"]
    case("schema-version-text", "schemaVersion")["schemaVersion"] = "39"
    case("bad-tooltip", "graphTooltip")["graphTooltip"] = 5
    legacy = case("legacy-annotation", "annotations.list[1].expr")
    legacy["annotations"]["list"][1]["expr"] = legacy["annotations"]["list"][1]["target"]["expr"]
    case("variable-definition", "templating.list[1].definition")["templating"]["list"][1][
        "definition"
    ] = "label_values(up, job)"
    del case("target-without-refid", "panels[1].targets[0]")["panels"][1]["targets"][0]["refId"]
    case("instant-as-text", "panels[1].targets[0].instant")["panels"][1]["targets"][0][
        "instant"
    ] = "yes"
    case("string-datasource", "panels[1].datasource")["panels"][1]["datasource"] = "Prometheus"
    return cases


def test_broken_copies_are_rejected(installed: Path, tmp_path: Path) -> None:
    """The check can fail: each defect is reported, at the right place."""
    dashboard = json.loads(DASHBOARD.read_text())
    cases = _broken(dashboard)
    paths = []
    for name, (broken, _) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(broken, indent=2))
        paths.append(path)
    status, output = check(*paths)
    assert status == 1, output
    for name, (_, where) in cases.items():
        lines = [
            line for line in output.splitlines() if line.startswith(f"{tmp_path}/{name}.json:")
        ]
        assert lines, f"{name}: not rejected\n{output}"
        assert any(f": {where}" in line for line in lines), f"{name}: {lines}"


def test_enums_become_unions_of_their_values(checker: ModuleType) -> None:
    source = (
        'declare enum Mode {\n    A = "a",\n    /** doc, with a comma */\n    B = "b"\n}\n'
        "declare enum Hide {\n    none = 0,\n    label,\n    all = 5\n}\n"
        "interface X {\n    mode: Mode.B;\n    hide?: Hide;\n    other: Other.Thing;\n}"
    )
    converted = checker.enums_to_unions(source)
    assert 'type Mode = "a" | "b";' in converted
    assert "type Hide = 0 | 1 | 5;" in converted
    assert 'mode: "b";' in converted and "other: Other.Thing;" in converted


def test_a_missing_tool_is_one_line(checker: ModuleType, tmp_path: Path) -> None:
    """Without node the check exits 2 with one line, not a traceback."""
    env_path = tmp_path / "bin"
    env_path.mkdir()
    result = run(
        [sys.executable, str(CHECK), str(DASHBOARD)], env={"PATH": str(env_path)}, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("schema-check: node is not installed")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
