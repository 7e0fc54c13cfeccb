"""The exporter's structure: no import cycles between its modules, and the option table is
the one description of every option (help, defaults, config fields)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from exporter_helpers import ROOT, make_certificate, scrape

from exporter import Exporter, cli
from exporter.config import AccountConfig, ExporterConfig
from exporter.options import OPTIONS, Target
from llm_pinference.fake import FakePinference

PACKAGE = ROOT / "exporter"


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (any import statement, even guarded)."""
    name = package.name
    modules = {path.stem for path in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module is None:
                    edges |= {a.name for a in node.names if a.name in modules}
                elif node.level == 1 or (node.module or "").startswith(name + "."):
                    target = (node.module or "").removeprefix(name + ".").split(".")[0]
                    edges.add(target)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(name + "."):
                        edges.add(alias.name.split(".")[1])
        graph[path.stem] = edges & modules - {path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_exporter_has_no_import_cycles() -> None:
    graph = import_graph(PACKAGE)
    assert "config" in graph and "webconfig" in graph["config"]  # the walker sees imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


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
