"""The architecture, as a test: the import graph of llm_pinference/ (the fake included) and
exporter/, read with `ast` from the sources (every import counts: module level, in a
function, under TYPE_CHECKING).

- no import cycle inside any package;
- the core (settings, client, models, errors, text, notices, catalog and their helpers)
  imports neither llm nor prometheus_client, nor the front ends;
- the exporter never imports llm; the fake imports nothing but the standard library;
- no module takes another's private names;
- and, at run time, importing the core stays light (no llm, prometheus_client, requests).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("llm_pinference", "exporter")
CORE = (
    "llm_pinference",
    "llm_pinference.settings",
    "llm_pinference.client",
    "llm_pinference.models",
    "llm_pinference.errors",
    "llm_pinference.text",
    "llm_pinference.notices",
    "llm_pinference.catalog",
)
FRONT_ENDS = ("llm_pinference.plugin", "llm_pinference.commands", "exporter")


def project_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: Iterable[str]) -> set[str]:
    """What the module imports: project modules by full name, others by top-level name."""
    known = set(modules)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one.
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            nearest = target
            while nearest not in known and "." in nearest:  # `import a.b.c`: nearest known
                nearest = nearest.rpartition(".")[0]
            found.add(nearest if nearest in known else nearest.split(".")[0])
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


GRAPH = import_graph()


def cycles(graph: dict[str, set[str]], members: set[str]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(members):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root] & members)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child] & members))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    item = stack.pop()
                    on_stack.discard(item)
                    component.append(item)
                    if item == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def package_members(package: str) -> set[str]:
    return {m for m in GRAPH if m == package or m.startswith(package + ".")}


def closure(starts: Iterable[str]) -> set[str]:
    """Everything reachable from `starts` (project modules and external top-level names)."""
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += GRAPH.get(name, ())
    return seen


def test_the_graph_is_read() -> None:
    # The test sees what it claims to: known edges, relative imports resolved.
    assert "llm_pinference.errors" in GRAPH["llm_pinference.client"]
    assert "llm_pinference.fake.chat" in GRAPH["llm_pinference.fake.handler"]  # from . import
    assert "llm" in GRAPH["llm_pinference.plugin"]
    assert "prometheus_client" in GRAPH["exporter.collector"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, {"a", "b", "c", "d"}) == [
        ["a", "b", "c"]
    ]


@pytest.mark.parametrize(
    "package",
    [
        "llm_pinference",
        "llm_pinference.fake",
        "exporter",
    ],
)
def test_no_import_cycles(package: str) -> None:
    assert cycles(GRAPH, package_members(package)) == []


def test_the_core_imports_no_front_end_and_neither_llm_nor_prometheus_client() -> None:
    reached = closure(CORE)
    assert not reached & {"llm", "prometheus_client", "click", "openai", "yaml"}
    assert not [m for m in reached if m.startswith(FRONT_ENDS)]
    assert not [m for m in reached if m.startswith("llm_pinference.fake")]


def test_the_exporter_never_imports_llm() -> None:
    reached = closure(package_members("exporter"))
    assert "llm" not in reached and "openai" not in reached
    assert "llm_pinference.plugin" not in reached and "llm_pinference.commands" not in reached


def test_the_fake_uses_the_standard_library_only() -> None:
    fake = package_members("llm_pinference.fake")
    outside = {m for m in closure(fake) if m not in fake and m in GRAPH}
    assert outside <= {"llm_pinference"}  # the package itself (its version), nothing else
    external = {m for m in closure(fake) if m not in GRAPH}
    assert external <= set(sys.stdlib_module_names)


# NamedTuple's public API, spelt with an underscore so as not to clash with field names.
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def private_uses(path: Path) -> list[str]:
    """Private names taken from another module: imported, or read off another object."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            found += [
                f"{path.name}:{node.lineno} imports {a.name}"
                for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")
            ]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in NAMEDTUPLE_API
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            and not (isinstance(node.value, ast.Call) and ast.unparse(node.value) == "super()")
        ):
            found.append(f"{path.name}:{node.lineno} reads {ast.unparse(node)}")
    return found


def test_no_private_name_crosses_a_module_line() -> None:
    found = [use for path in project_modules().values() for use in private_uses(path)]
    assert found == []


CHECK = """
import sys
import llm_pinference, llm_pinference.settings, llm_pinference.errors
import llm_pinference.models, llm_pinference.client, llm_pinference.catalog
import llm_pinference.fake
heavy = [m for m in ("llm", "prometheus_client", "requests") if m in sys.modules]
print(",".join(heavy))
"""


def test_core_import_is_light() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_client_use_does_not_import_llm(fake: object) -> None:
    from llm_pinference.client import PinferenceClient
    from llm_pinference.settings import Settings

    base_url = fake.base_url  # type: ignore[attr-defined]
    code = (
        "import sys\n"
        "from llm_pinference.client import PinferenceClient\n"
        "from llm_pinference.settings import Settings\n"
        f"PinferenceClient(Settings(base_url={base_url!r})).list_models()\n"
        "print('llm' in sys.modules, 'prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"]
    assert PinferenceClient(Settings(base_url=base_url)).list_models().models
