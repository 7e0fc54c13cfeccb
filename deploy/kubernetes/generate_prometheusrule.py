#!/usr/bin/env python3
"""Generate the Prometheus Operator's PrometheusRule from the Prometheus rule files.

    python deploy/kubernetes/generate_prometheusrule.py          # rewrites the manifest
    python deploy/kubernetes/generate_prometheusrule.py --check  # exit 1 if it is stale

The output is deploy/kubernetes/prometheusrule.yaml. The rule files in prometheus/
(`*.rules.yml`, the files Prometheus loads; promtool test files are not rules) are the
single source: their groups go into `spec.groups` unchanged, in file order. Standard
library and PyYAML only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "prometheus"
PATTERN = "*.rules.yml"
OUTPUT = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"
COMMAND = "python deploy/kubernetes/generate_prometheusrule.py"

HEADER = f"""\
# GENERATED FILE, DO NOT EDIT: run  {COMMAND}
# Source: prometheus/{PATTERN} (the same groups and rules, unchanged).
#
# A Prometheus managed by the Prometheus Operator loads PrometheusRules by label (its
# ruleSelector; kube-prometheus-stack's default is release: <helm release name>): add that
# label here if yours needs it. The rules expect the scrape job "pinference"
# (servicemonitor.yaml sets it).
"""
METADATA = {
    "name": "pinference",
    "labels": {
        "app.kubernetes.io/name": "pinference-exporter",
        "app.kubernetes.io/part-of": "llm-pinference",
    },
}


class GenerationError(Exception):
    pass


def groups(rules_dir: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    files = sorted(rules_dir.glob(PATTERN))
    if not files:
        raise GenerationError(f"no {PATTERN} in {rules_dir}")
    for path in files:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
            raise GenerationError(f"{path}: no list of groups")
        found += data["groups"]
    names = [group.get("name") for group in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GenerationError(f"group names used twice: {', '.join(map(str, duplicates))}")
    return found


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None  # multi-line expressions stay readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def render(rules_dir: Path) -> str:
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": METADATA,
        "spec": {"groups": groups(rules_dir)},
    }
    body = yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the output is stale")
    parser.add_argument("--rules", type=Path, default=RULES, help="folder of *.rules.yml")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="PrometheusRule manifest")
    args = parser.parse_args(argv)
    try:
        text = render(args.rules)
    except (GenerationError, OSError, yaml.YAMLError) as exc:
        print(f"generate_prometheusrule: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(f"{args.output} is out of date: run  {COMMAND}", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
