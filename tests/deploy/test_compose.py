"""The compose stack (deploy/compose/), checked by the tools that read it.

check-jsonschema validates it against the Compose Specification's own schema (typos,
misplaced keys); podman-compose parses it as it would to start it (interpolation,
profiles); promtool checks the stack's Prometheus configuration. No images can be pulled
here, so the stack is not started; the exporter's image is built and run in
test_deploy_container.py.
"""

from __future__ import annotations

import glob
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import ROOT, require, run, tool_env

COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
# Written by the alerting work; the stack mounts it as Alertmanager's configuration.
ALERTMANAGER = ROOT / "prometheus" / "alertmanager.yml"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _config(*args: str, **env: str) -> dict[str, Any]:
    """`podman-compose config` of the shipped file, parsed."""
    tool = require("podman-compose", "pip install podman-compose (the test extra)")
    result = run([tool, "-f", COMPOSE, *args, "config"], env=tool_env(**env))
    return yaml.safe_load(result.stdout)


def test_compose_file_follows_the_compose_specification() -> None:
    tool = require("check-jsonschema", "pip install check-jsonschema (the test extra)")
    run([tool, "--builtin-schema", "vendor.compose-spec", COMPOSE])


def test_the_schema_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    tool = require("check-jsonschema", "pip install check-jsonschema (the test extra)")
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    read_only: true", "    readonly: true", 1))
    result = run([tool, "--builtin-schema", "vendor.compose-spec", broken], check=False)
    assert result.returncode == 1 and "'readonly' was unexpected" in result.stdout


def test_the_stack_and_its_offline_profile() -> None:
    online = _config()
    assert set(online["services"]) == {"exporter", "prometheus", "alertmanager", "grafana"}
    offline = _config("--profile", "offline", PRIME_INFERENCE_URL="http://fake:8099/api/v1")
    assert set(offline["services"]) == set(online["services"]) | {"fake"}
    exporter = offline["services"]["exporter"]
    assert exporter["environment"]["PRIME_INFERENCE_URL"] == "http://fake:8099/api/v1"
    fake = offline["services"]["fake"]
    assert fake["image"] == exporter["image"] and fake["entrypoint"] == ["pinference-fake"]
    assert "--port=8099" in fake["command"]


def test_secrets_are_files_never_environment() -> None:
    compose = _compose()
    assert {name: s["file"] for name, s in compose["secrets"].items()} == {
        "prime_api_key": "./secrets/prime_api_key",
        "grafana_admin_password": "./secrets/grafana_admin_password",
    }
    exporter = compose["services"]["exporter"]
    assert exporter["secrets"] == ["prime_api_key"]
    # the image reads /run/secrets/prime_api_key (its default command)
    containerfile = (ROOT / "deploy" / "container" / "Containerfile").read_text()
    assert "--api.key-file=/run/secrets/prime_api_key" in containerfile
    grafana = compose["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    text = COMPOSE.read_text()
    assert not re.search(r"(API_KEY|PASSWORD)\s*:", text.replace("PASSWORD__FILE:", ""))
    # the directory for them exists, and git keeps what users put there out of the repo
    assert (COMPOSE_DIR / "secrets" / ".gitignore").read_text().splitlines()[-2:] == [
        "*",
        "!.gitignore",
    ]


def _mounts() -> list[tuple[str, Path, str]]:
    """(service, host path, container path) of every bind mount."""
    found = []
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                found.append((name, (COMPOSE_DIR / source).resolve(), target))
    return found


def test_mounted_files_are_the_shipped_ones() -> None:
    mounts = _mounts()
    assert mounts
    for service, source, _ in mounts:
        if source == ALERTMANAGER and not source.exists():
            continue  # the Alertmanager example is checked below once it exists
        assert source.exists(), f"{service} mounts {source}, which does not exist"
        assert source.is_relative_to(ROOT)
    targets = {target for _, _, target in mounts}
    assert "/etc/grafana/provisioning/alerting" in targets
    assert "/var/lib/grafana/dashboards/pinference" in targets  # where the provider looks
    provider = (ROOT / "grafana/provisioning/dashboards/pinference.yml").read_text()
    assert "path: /var/lib/grafana/dashboards/pinference" in provider


def test_alertmanager_gets_the_shipped_example() -> None:
    _, source, target = next(m for m in _mounts() if m[0] == "alertmanager")
    assert (source, target) == (ALERTMANAGER, "/etc/alertmanager/alertmanager.yml")
    if not ALERTMANAGER.exists():
        pytest.skip("prometheus/alertmanager.yml is not written yet")
    amtool = require("amtool", "apt-get install prometheus-alertmanager")
    run([amtool, "check-config", ALERTMANAGER])


def test_prometheus_config_loads_the_shipped_rules(tmp_path: Path) -> None:
    config = COMPOSE_DIR / "prometheus.yml"
    promtool = require("promtool", "apt-get install prometheus")
    run([promtool, "check", "config", "--syntax-only", config])
    # resolve the rule_files as Prometheus will inside the container
    mounted = {target: source for _, source, target in _mounts()}
    rules: list[str] = []
    for pattern in yaml.safe_load(config.read_text())["rule_files"]:
        target, _, rest = pattern.rpartition("/")
        assert target in mounted, f"{pattern} is not in a mounted directory"
        rules += glob.glob(str(mounted[target] / rest))
    names = sorted(Path(r).name for r in rules)
    assert "pinference.rules.yml" in names
    assert not [n for n in names if "test" in n], names  # promtool test files are not rules
    copied = [shutil.copy(r, tmp_path) for r in rules]
    run([promtool, "check", "rules", *copied])
    targets = yaml.safe_load(config.read_text())["scrape_configs"][0]
    assert targets["job_name"] == "pinference"  # what the rules and the dashboard expect
    assert targets["static_configs"][0]["targets"] == ["exporter:8795"]
