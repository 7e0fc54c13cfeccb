"""Where the project keeps the files that Prometheus, Alertmanager and Grafana read.

The demo and the tests run from a source checkout; both name these files through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

JOB = "pinference"  # the job name the shipped scrape config, rules and dashboard expect


@dataclass(frozen=True)
class ProjectFiles:
    root: Path

    @property
    def prometheus_dir(self) -> Path:
        return self.root / "prometheus"

    @property
    def prometheus_config(self) -> Path:
        return self.prometheus_dir / "prometheus.yml"

    @property
    def rules(self) -> Path:
        return self.prometheus_dir / "pinference.rules.yml"

    @property
    def rules_tests(self) -> list[Path]:
        """The promtool unit tests of the rules, one file per theme."""
        return sorted((self.prometheus_dir / "tests").glob("*.test.yml"))

    @property
    def alertmanager_config(self) -> Path:
        return self.prometheus_dir / "alertmanager.yml"

    @property
    def dashboard(self) -> Path:
        return self.root / "grafana" / "dashboards" / "pinference.json"

    @property
    def grafana_provisioning(self) -> Path:
        return self.root / "grafana" / "provisioning"

    @property
    def grafana_alerting(self) -> Path:
        return self.grafana_provisioning / "alerting" / "pinference.yml"

    @property
    def grafana_notifications(self) -> Path:
        return self.grafana_provisioning / "alerting" / "notifications.yml"

    @property
    def grafana_datasource(self) -> Path:
        return self.grafana_provisioning / "datasources" / "prometheus.yml"

    @property
    def grafana_dashboard_provider(self) -> Path:
        return self.grafana_provisioning / "dashboards" / "pinference.yml"

    @property
    def generator(self) -> Path:
        return self.root / "grafana" / "generate_alerting.py"

    @property
    def schema_check(self) -> Path:
        return self.root / "grafana" / "schema-check"

    @property
    def metrics_doc(self) -> Path:
        return self.root / "docs" / "metrics.md"

    @property
    def alerts_doc(self) -> Path:
        return self.root / "docs" / "alerts.md"

    @property
    def readme(self) -> Path:
        return self.root / "README.md"
