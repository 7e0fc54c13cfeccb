"""The option table is the one description of every option (help, defaults, config fields),
and docs/metrics.md the contract of every family."""

from __future__ import annotations

import re
from pathlib import Path

from pinference_exporter import Exporter, cli
from pinference_exporter.config import AccountConfig, ExporterConfig
from pinference_exporter.options import (
    MAX_CONFIG_BYTES,
    MAX_KEY_BYTES,
    MAX_YAML_NODES,
    OPTIONS,
    Target,
    markdown,
)

from pinference_fake import FakePinference
from tests.exporter.helpers import ROOT, make_certificate, scrape


def test_help_renders_every_default_from_the_table() -> None:
    helps = {a.option_strings[0]: a.help for a in cli.build_parser()._actions if a.option_strings}
    for option in OPTIONS:
        text = helps[option.flag] or ""
        assert text.startswith(option.help)
        if option.default is not None:
            assert text.endswith(option.show(option.default) + ")"), text
        if option.env:
            assert f"(default: ${option.env}, else" in text, text
    assert helps["--probe.interval"].endswith("(default: 30s)")


def test_config_defaults_are_the_tables() -> None:
    configs = {Target.EXPORTER: ExporterConfig(), Target.ACCOUNT: AccountConfig()}
    checked = 0
    for option in OPTIONS:
        if option.default is not None and option.target in configs:
            assert getattr(configs[option.target], option.field) == option.default, option.key
            checked += 1
    assert checked >= 7


def test_docs_metrics_lists_every_family_with_its_labels(tmp_path: Path) -> None:
    """docs/metrics.md is the contract: each row's name and labels are what is exported
    (by an exporter that has them all: HTTPS, a watched model, a chat-probed model)."""
    rows = {}
    for line in (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`pinference_"):
            names = re.sub(r"\([^)]*\)", "", cells[2])  # drop value lists: (`list`, `get`)
            labels = {m.split("`")[1] for m in names.split(",") if "`" in m}
            rows[cells[0].strip("`")] = labels
    assert len(rows) >= 18
    cert, key = make_certificate(tmp_path)
    with FakePinference(certfile=cert, keyfile=key) as fake:
        account = AccountConfig(
            base_url=fake.base_url, ca_file=str(cert),
            probe_models=("meta-llama/llama-3.1-70b-instruct",), chat_models=("deepseek-chat",),
        )  # fmt: skip
        config = ExporterConfig(listen_address="127.0.0.1:0", accounts=(account,))
        with Exporter(config).start(probe=False) as exp:
            exp.run_probe_cycle()
            exp.prober.chat.run_cycle()
            scraped = scrape(exp)
    exported = {}
    for family in scraped.families.values():
        if not family.name.startswith("pinference_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        exported[name] = {k for s in family.samples for k in s.labels if k != "le"}
    assert exported == rows


def test_docs_configuration_is_generated_from_the_table() -> None:
    """docs/configuration.md holds `python -m pinference_exporter.options`'s table, which
    names every flag, file key, per-account key and environment variable, and the limits."""
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert markdown() in committed, "regenerate: python -m pinference_exporter.options"
    for limit in (MAX_CONFIG_BYTES >> 10, MAX_KEY_BYTES >> 10, MAX_YAML_NODES):
        assert f" {limit} " in committed, limit
    for option in OPTIONS:
        for name in (option.flag, option.key, option.account_key, option.env):
            assert name is None or f"`{name}`" in committed, name
