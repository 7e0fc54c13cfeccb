"""The Kubernetes manifests (deploy/kubernetes/), rendered and validated offline.

`kubectl kustomize` renders the kustomization as `kubectl apply -k` would; the core kinds
are validated with kubernetes-validate (Kubernetes' own OpenAPI schemas, strict), the
Prometheus Operator kinds with check-jsonschema against schemas made from the operator's
CRDs (deploy/kubernetes/schemas/), and the PrometheusRule's rules with promtool. The
PrometheusRule is generated from prometheus/*.rules.yml and must be up to date.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import ROOT, require, run

K8S = ROOT / "deploy" / "kubernetes"
GENERATOR = K8S / "generate_prometheusrule.py"
SCHEMAS = K8S / "schemas"
CORE_KINDS = {"Deployment", "Service"}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = require("kubectl", "apt-get install kubernetes-client")
    return [d for d in yaml.safe_load_all(run([kubectl, "kustomize", K8S]).stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def test_kustomization_renders_every_kind(rendered: list[dict[str, Any]]) -> None:
    assert sorted(d["kind"] for d in rendered) == sorted(CORE_KINDS | CRD_KINDS)
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def _validate_core(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    validate = require("kubernetes-validate", "pip install kubernetes-validate (test extra)")
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] in CORE_KINDS]))
    result = run([validate, "--strict", path], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(CORE_KINDS), result.stdout


def test_core_kinds_pass_kubernetes_validate(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    _validate_core(rendered, tmp_path)


def test_kubernetes_validate_rejects_a_misspelt_field(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    broken = yaml.safe_load(yaml.safe_dump(rendered))
    container = by_kind(broken, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(AssertionError, match="readOnlyRootFilesytem"):
        _validate_core(broken, tmp_path)


def _validate_crd(doc: dict[str, Any], tmp_path: Path) -> Any:
    tool = require("check-jsonschema", "pip install check-jsonschema (the test extra)")
    schema = SCHEMAS / f"{doc['kind'].lower()}-monitoring-v1.json"
    path = tmp_path / f"{doc['kind']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return run([tool, "--schemafile", schema, path], check=False)


@pytest.mark.parametrize("kind", sorted(CRD_KINDS))
def test_operator_kinds_match_the_operator_schemas(
    rendered: list[dict[str, Any]], tmp_path: Path, kind: str
) -> None:
    result = _validate_crd(by_kind(rendered, kind), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    broken = yaml.safe_load(yaml.safe_dump(by_kind(rendered, kind)))
    broken["spec"]["endpointz" if kind == "ServiceMonitor" else "groupz"] = []
    result = _validate_crd(broken, tmp_path)
    assert result.returncode == 1 and "was unexpected" in result.stdout


def test_prometheusrule_is_generated_from_the_rules() -> None:
    result = run([sys.executable, GENERATOR, "--check"], check=False)
    assert result.returncode == 0, result.stderr


def test_generator_check_catches_a_stale_manifest(tmp_path: Path) -> None:
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text((K8S / "prometheusrule.yaml").read_text().replace("for: 5m", "for: 6m", 1))
    result = run([sys.executable, GENERATOR, "--check", "--output", stale], check=False)
    assert result.returncode == 1 and "out of date" in result.stderr
    run([sys.executable, GENERATOR, "--output", stale])
    assert stale.read_text() == (K8S / "prometheusrule.yaml").read_text()


def test_prometheusrule_holds_exactly_the_shipped_groups(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    groups = by_kind(rendered, "PrometheusRule")["spec"]["groups"]
    source = []
    for path in sorted((ROOT / "prometheus").glob("*.rules.yml")):
        source += yaml.safe_load(path.read_text())["groups"]
    assert groups == source
    promtool = require("promtool", "apt-get install prometheus")
    extracted = tmp_path / "extracted.rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": groups}))
    run([promtool, "check", "rules", extracted])


def test_deployment_is_locked_down_and_probed(rendered: list[dict[str, Any]]) -> None:
    pod = by_kind(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    ports = {p["name"] for p in container["ports"]} | {
        p["containerPort"] for p in container["ports"]
    }
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        assert container[probe]["httpGet"]["path"] == path
        assert container[probe]["httpGet"]["port"] in ports
    assert container["image"].endswith(":0.1.0")  # kustomize's images: applied


def test_key_comes_from_the_secret_and_ports_line_up(rendered: list[dict[str, Any]]) -> None:
    deployment = by_kind(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = container["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (item,) = volume["secret"]["items"]
    assert f"--api.key-file={mount['mountPath']}/{item['path']}" in container["args"]
    assert "subPath" not in mount  # a subPath mount never sees a rotated Secret
    assert not [e for e in container.get("env", []) if "KEY" in e["name"]]

    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = by_kind(rendered, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = container["ports"]
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"] and port["containerPort"] == 8795
    monitor = by_kind(rendered, "ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] == service_port["name"] and endpoint["path"] == "/metrics"
    # the rules and the dashboard expect job="pinference"
    assert {"targetLabel": "job", "replacement": "pinference", "action": "replace"} in endpoint[
        "relabelings"
    ]
    assert pod_labels["app.kubernetes.io/name"] == "pinference-exporter"


def test_generator_refuses_duplicate_groups(tmp_path: Path) -> None:
    for name in ("a.rules.yml", "b.rules.yml"):
        shutil.copy(ROOT / "prometheus" / "pinference.rules.yml", tmp_path / name)
    result = run(
        [sys.executable, GENERATOR, "--rules", tmp_path, "--output", tmp_path / "out.yaml"],
        check=False,
    )
    assert result.returncode == 2 and "used twice" in result.stderr
    assert result.stderr.count("\n") == 1
