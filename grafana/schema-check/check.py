#!/usr/bin/env python3
"""Type-check Grafana dashboards against Grafana's published dashboard schema.

    python grafana/schema-check/check.py [DASHBOARD.json ...]
    (default: every grafana/dashboards/*.json)

No Grafana server is needed. Grafana publishes its dashboard model as TypeScript types in
the npm package @grafana/schema; package.json and package-lock.json here pin it and the
TypeScript compiler, and `npm ci` installs them into node_modules/ on first use (again
only when the lock file changes). Each dashboard is written as a typed constant and
`tsc --noEmit --strict` checks it: a wrong type, a missing required field or an unknown
key is an error.

Two adaptations, both needed to state a JSON file in TypeScript:
- the package's enums become unions of their values (a JSON string cannot be typed as an
  enum member), and references to enum members become those values;
- data source queries: the schema types panel targets as open records and annotation
  targets as the bare DataQuery, because each data source plugin owns its query fields.
  This dashboard's data source is Prometheus, so targets are checked against the
  Prometheus query fields below (from Grafana's grafana-prometheus package), and an
  annotation may carry the Prometheus annotation options Grafana keeps beside its target.
The export-only keys __inputs, __requires and __elements are not part of the model.

Exit status: 0 no errors; 1 schema errors, printed as FILE: JSON path: message; 2 the
check could not run (node or npm missing, the packages could not be installed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE.parent / "dashboards"
EXPORT_ONLY = ("__inputs", "__requires", "__elements")
STAMP = ".pinference-lock.sha256"

CHECKED_TYPES = """\
import type { AnnotationQuery, Dashboard, DataQuery, Panel, RowPanel } from './schema';

// Prometheus query fields (PromQuery of Grafana's grafana-prometheus package).
export interface PrometheusQuery extends DataQuery {
  expr: string;
  instant?: boolean;
  range?: boolean;
  exemplar?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  legendFormat?: string;
  interval?: string;
  intervalFactor?: number;
  editorMode?: 'code' | 'builder';
}

// Options the Prometheus annotation editor keeps beside the target.
export interface PrometheusAnnotation extends AnnotationQuery<PrometheusQuery> {
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
}

export type CheckedPanel = Omit<Panel, 'targets'> & { targets?: PrometheusQuery[] };
export type CheckedRow = Omit<RowPanel, 'panels'> & { panels: CheckedPanel[] };
export type CheckedDashboard = Omit<Dashboard, 'annotations' | 'panels'> & {
  panels?: Array<CheckedPanel | CheckedRow>;
  annotations?: { list?: Array<PrometheusAnnotation | AnnotationQuery> };
};
"""


class CheckError(Exception):
    """The check could not run."""


# ------------------------------------------------------------------ packages


def _run(argv: Sequence[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckError(f"{argv[0]}: {exc}") from None


def ensure_packages(here: Path = HERE) -> Path:
    """node_modules/ as package-lock.json pins it (npm ci when missing or stale)."""
    if shutil.which("node") is None:
        raise CheckError("node is not installed (Debian: apt-get install nodejs npm)")
    lock = (here / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()
    modules = here / "node_modules"
    stamp = modules / STAMP
    tsc = modules / "typescript" / "bin" / "tsc"
    if tsc.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise CheckError("npm is not installed (Debian: apt-get install npm)")
    done = _run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        here, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise CheckError(f"npm ci failed: {detail[-1] if detail else done.returncode}")
    stamp.write_text(digest + "\n")
    return modules


def versions(modules: Path) -> str:
    found = []
    for name in ("@grafana/schema", "typescript"):
        meta = json.loads((modules / name / "package.json").read_text(encoding="utf-8"))
        found.append(f"{name} {meta['version']}")
    return ", ".join(found)


# ------------------------------------------------------------------ schema types

_ENUM = re.compile(r"declare enum ([\w$]+) \{(.*?)\n\}", flags=re.S)
_MEMBER = re.compile(r"^\s*(\w+)\s*(?:=\s*(.+?))?\s*$", flags=re.S)


def enums_to_unions(declarations: str) -> str:
    """`declare enum X { A = "a", B = "b" }` -> `type X = "a" | "b";`, and `X.A` -> `"a"`."""
    enums: dict[str, dict[str, str]] = {}

    def union(match: re.Match[str]) -> str:
        name, members, following = match.group(1), {}, 0
        body = re.sub(r"/\*.*?\*/|//[^\n]*", "", match.group(2), flags=re.S)
        for item in body.split(","):
            if not item.strip():
                continue
            member = _MEMBER.match(item)
            if member is None:
                raise CheckError(f"cannot read enum {name}: {item.strip()!r}")
            value = member.group(2) or str(following)
            if re.fullmatch(r"-?\d+", value):
                following = int(value) + 1
            members[member.group(1)] = value
        enums[name] = members
        return f"type {name} = {' | '.join(dict.fromkeys(members.values()))};"

    text = _ENUM.sub(union, declarations)
    if "declare enum" in text:
        raise CheckError("an enum of @grafana/schema was not converted")

    def value(match: re.Match[str]) -> str:
        members = enums.get(match.group(1))
        return members[match.group(2)] if members and match.group(2) in members else match.group(0)

    text = re.sub(r"\b([A-Za-z_][\w$]*)\.(\w+)\b", value, text)
    return text


# ------------------------------------------------------------------ dashboards as TypeScript


def _dump(node: Any, path: str, indent: int, lines: list[tuple[str, str]]) -> None:
    """Pretty-print JSON into `lines` as (text, JSON path of that line)."""
    pad = "  " * indent
    if isinstance(node, dict) and node:
        lines.append(("{", path))
        items = list(node.items())
        for i, (key, value) in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            child = f"{path}.{key}" if path else key
            start = len(lines)
            _dump(value, child, indent + 1, lines)
            first = lines[start][0]
            lines[start] = (f"{pad}  {json.dumps(key)}: {first.lstrip()}", child)
            lines[-1] = (lines[-1][0] + comma, lines[-1][1])
        lines.append((f"{pad}}}", path))
    elif isinstance(node, list) and node:
        lines.append(("[", path))
        for i, value in enumerate(node):
            comma = "," if i < len(node) - 1 else ""
            start = len(lines)
            _dump(value, f"{path}[{i}]", indent + 1, lines)
            lines[start] = (f"{pad}  {lines[start][0].lstrip()}", lines[start][1])
            lines[-1] = (lines[-1][0] + comma, lines[-1][1])
        lines.append((f"{pad}]", path))
    else:
        lines.append((json.dumps(node), path))


def dashboard_source(dashboard: dict[str, Any]) -> tuple[str, list[str]]:
    """A .ts module declaring the dashboard as CheckedDashboard; and, per line of it, the
    JSON path that line belongs to."""
    model = {key: value for key, value in dashboard.items() if key not in EXPORT_ONLY}
    lines: list[tuple[str, str]] = []
    _dump(model, "", 0, lines)
    head = [
        ("import type { CheckedDashboard } from './checked';", ""),
        ("", ""),
    ]
    first, path = lines[0]
    lines[0] = (f"const dashboard: CheckedDashboard = {first}", path)
    lines[-1] = (lines[-1][0] + ";", lines[-1][1])
    body = [*head, *lines, ("export default dashboard;", "")]
    return "\n".join(text for text, _ in body) + "\n", [p for _, p in body]


_TSC_LINE = re.compile(
    r"^(?P<file>[^(]+)\((?P<line>\d+),(?P<col>\d+)\): error (?P<code>TS\d+): (?P<msg>.*)$"
)


def check(dashboards: Sequence[Path], here: Path = HERE) -> tuple[list[str], str]:
    """Schema errors of each dashboard (as 'FILE: path: message'), and the versions used."""
    modules = ensure_packages(here)
    types = (modules / "@grafana" / "schema" / "dist" / "index.d.ts").read_text(encoding="utf-8")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dashboard-schema-") as tmp:
        work = Path(tmp)
        (work / "schema.d.ts").write_text(enums_to_unions(types), encoding="utf-8")
        (work / "checked.ts").write_text(CHECKED_TYPES, encoding="utf-8")
        sources: dict[str, tuple[Path, list[str]]] = {}
        for i, path in enumerate(dashboards):
            try:
                dashboard = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                problems.append(f"{path}: not readable JSON: {exc}")
                continue
            if not isinstance(dashboard, dict):
                problems.append(f"{path}: not a JSON object")
                continue
            text, line_paths = dashboard_source(dashboard)
            name = f"dashboard_{i}.ts"
            (work / name).write_text(text, encoding="utf-8")
            sources[name] = (path, line_paths)
        if sources:
            tsc = modules / "typescript" / "bin" / "tsc"
            done = _run(
                ["node", str(tsc), "--noEmit", "--strict", "--skipLibCheck", "--pretty", "false",
                 "--target", "es2020", *sources],
                work, timeout=300,
            )  # fmt: skip
            problems += _errors(done, sources)
            if done.returncode != 0 and len(problems) == 0:
                raise CheckError(f"tsc failed: {(done.stdout + done.stderr).strip()[:500]}")
    return problems, versions(modules)


def _errors(
    done: subprocess.CompletedProcess[str], sources: dict[str, tuple[Path, list[str]]]
) -> Iterator[str]:
    for line in (done.stdout + done.stderr).splitlines():
        match = _TSC_LINE.match(line.strip())
        if match is None:
            continue  # continuation of a multi-line message, or a tool error (see check)
        name = Path(match.group("file")).name
        if name not in sources:
            yield f"{match.group('file')}: {match.group('msg')} ({match.group('code')})"
            continue
        path, line_paths = sources[name]
        index = int(match.group("line")) - 1
        where = line_paths[index] if 0 <= index < len(line_paths) else "?"
        yield f"{path}: {where or '(dashboard)'}: {match.group('msg')} ({match.group('code')})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dashboards", nargs="*", type=Path, help="dashboard JSON files")
    args = parser.parse_args(argv)
    dashboards = args.dashboards or sorted(DASHBOARDS.glob("*.json"))
    try:
        problems, used = check(dashboards)
    except CheckError as exc:
        print(f"schema-check: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    word = "error" if len(problems) == 1 else "errors"
    print(f"{len(dashboards)} dashboard(s), {len(problems)} schema {word} ({used})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
