#!/usr/bin/env python3
"""Make the JSON schemas of the Prometheus Operator kinds used here from its CRDs.

    python deploy/kubernetes/schemas/vendor_crd_schemas.py PROMETHEUS_OPERATOR_CHECKOUT

reads example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,
prometheusrules}.yaml and writes <kind>-monitoring-v1.json beside this file (the file
names kubeconform looks for). Each is the CRD's openAPIV3Schema without descriptions, with
apiVersion and kind fixed and unknown fields refused (as `kubectl apply` refuses them), so
the offline check catches misspelt fields. Go's `(?i)` flag in a pattern, which JSON
Schema's regular expressions (ECMA-262) lack, is spelt out as [aA] classes. Standard
library and PyYAML only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CRDS = ("servicemonitors", "prometheusrules")


def ecma_pattern(pattern: str) -> str:
    """`^(?i)(abort|warn)?$` -> `^([aA][bB][oO][rR][tT]|[wW][aA][rR][nN])?$`."""
    head, flag, tail = pattern.partition("(?i)")
    if not flag:
        return pattern
    if "[" in tail or "(?" in tail:
        raise ValueError(f"cannot spell out (?i) in {pattern!r}")
    out, escaped = [], False
    for char in tail:
        out.append(f"[{char.lower()}{char.upper()}]" if char.isalpha() and not escaped else char)
        escaped = char == "\\" and not escaped
    return head + "".join(out)


def strict(node: Any) -> Any:
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items() if key != "description"}
    if isinstance(out.get("pattern"), str):
        out["pattern"] = ecma_pattern(out["pattern"])
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def convert(crd: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"enum": [f"{group}/v1"]}
    schema["properties"]["kind"] = {"enum": [kind]}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "spec"})
    operator = crd["metadata"]["annotations"].get("operator.prometheus.io/version", "?")
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$comment": f"{kind} from the Prometheus Operator {operator} CRD (Apache-2.0), "
        "made by vendor_crd_schemas.py",
        **schema,
    }
    return f"{kind.lower()}-{group.split('.')[0]}-v1.json", schema


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    source = Path(argv[0]) / "example" / "prometheus-operator-crd"
    for name in CRDS:
        crd = yaml.safe_load((source / f"monitoring.coreos.com_{name}.yaml").read_text())
        filename, schema = convert(crd)
        (HERE / filename).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"wrote {HERE / filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
