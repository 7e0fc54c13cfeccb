"""The distribution as users get it.

Built with `python -m build` from what a fresh clone holds, checked with `twine check`,
installed into clean virtualenvs for each audience (the llm plugin through `llm install`;
the exporter with its extra), and the sdist's own tests run from the unpacked archive.
The declared dependencies are checked against what the code imports.
"""

from __future__ import annotations

import ast
import email
import importlib.util
import re
import secrets
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.deploy.helpers import (
    ROOT,
    installed,
    make_venv,
    pip_install,
    require,
    run,
    source_copy,
    tool_env,
    wait_until_up,
)
from tests.support import free_port

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra brings it on 3.10
    import tomli as tomllib

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MISSING_EXTRA = (
    "pinference-exporter: error: the exporter needs its extra: "
    "pip install 'llm-pinference[exporter]'"
)
SECRETS = "deploy/compose/secrets"
# The dashboard's schema check: node tooling of the project, not an asset.
SCHEMA_CHECK = "grafana/schema-check/"
# The folders shipped as data under pinference_exporter/assets/ (deploy/assets is its code).
ASSET_FOLDERS = ("prometheus", "grafana", "docs", "deploy")
# Source folder -> import name in the wheel.
PACKAGE_FOLDERS = {
    "llm_pinference": "llm_pinference",
    "exporter": "pinference_exporter",
    "pinference_fake": "pinference_fake",
    "deploy/assets": "pinference_exporter/assets",
}
# A fast part of the suite that needs each kind of shipped file (core, plugin, exporter
# config, dashboard and rules); run from the unpacked sdist.
SDIST_SUBSET = (
    "tests/core/test_settings.py",
    "tests/core/test_models.py",
    "tests/core/test_client.py",
    "tests/plugin/test_cache.py",
    "tests/test_architecture.py",
    "tests/exporter/test_config.py",
    "tests/alerting/test_dashboard.py",
    "tests/plugin/test_plugin_cache.py",
)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


# ------------------------------------------------------- declared vs imported (fast)


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one module, stdlib and own left out."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    own = {"llm_pinference", "exporter", "pinference_exporter"}
    return {n for n in names if n not in sys.stdlib_module_names and n not in own}


# Which requirements each part of the code may rely on: the core and the fake only on the
# base dependencies, the plugin also on its `llm` extra, the exporter on its own extras.
AUDIENCES = {
    # the helpers that start the exporter, Prometheus and Alertmanager for the demo and tests
    "harness": ("exporter",),
    "llm_pinference/plugin.py": ("llm",),
    "llm_pinference/messages.py": ("llm",),
    "llm_pinference/openai_http.py": ("llm",),
    "llm_pinference/commands.py": ("llm",),
    "llm_pinference/cost.py": ("llm",),
    "llm_pinference": (),
    "exporter": ("exporter", "basic-auth"),
}
DISTRIBUTION_OF = {"yaml": "pyyaml", "prometheus_client": "prometheus-client"}


def _allowed(relative: str) -> set[str]:
    project = PYPROJECT["project"]
    key = next(k for k in AUDIENCES if relative == k or relative.startswith(k + "/"))
    allowed = {_requirement_name(r) for r in project["dependencies"]}
    for extra in AUDIENCES[key]:
        allowed |= {_requirement_name(r) for r in project["optional-dependencies"][extra]}
    return allowed


def test_every_imported_distribution_is_declared_for_its_audience() -> None:
    missing = []
    modules = sorted([*ROOT.glob("llm_pinference/**/*.py"), *ROOT.glob("exporter/**/*.py")])
    assert modules
    for path in modules:
        relative = path.relative_to(ROOT).as_posix()
        allowed = _allowed(relative)
        for name in sorted(_third_party_imports(path)):
            if _norm(DISTRIBUTION_OF.get(name, name)) not in allowed:
                missing.append(f"{relative} imports {name}")
    assert missing == [], "not declared for that part of the package: " + "; ".join(missing)


def test_base_dependencies_leave_out_both_front_ends() -> None:
    base = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert base == {"requests", "urllib3"}
    assert {"llm", "openai", "click"} <= {_requirement_name(r) for r in extras["llm"]}
    assert {_requirement_name(r) for r in extras["exporter"]} == {"prometheus-client", "pyyaml"}


def test_build_requirement_supports_the_license_expression() -> None:
    (requirement,) = PYPROJECT["build-system"]["requires"]
    floor = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", requirement)
    assert floor and int(floor[1]) >= 77, requirement  # PEP 639 `license = "Apache-2.0"`
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()


# ------------------------------------------------------------- the built distribution


# What a user of the compose stack keeps in its secrets folder: never shipped.
PLANTED_SECRET = f"pit_{secrets.token_hex(12)}"  # random: not in any shipped file


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """sdist and wheel, built the way a release is (`python -m build`: the wheel from the
    unpacked sdist), from the files a fresh clone has, plus a key where the compose stack
    keeps it."""
    require("git", "apt-get install git")
    source = source_copy(tmp_path_factory.mktemp("clone"))
    (source / SECRETS / "prime_api_key").write_text(PLANTED_SECRET)
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, source], timeout=600, env=tool_env())
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    # `pip install .` builds the wheel from the checkout itself, not through the sdist
    direct = tmp_path_factory.mktemp("direct")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", direct, source], env=tool_env())
    (direct_wheel,) = direct.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel, "direct_wheel": direct_wheel, "source": source}


@pytest.mark.integration
def test_twine_check_passes(dist: dict[str, Path]) -> None:
    result = run([sys.executable, "-m", "twine", "check", "--strict", dist["sdist"], dist["wheel"]])
    assert result.stdout.count("PASSED") == 2, result.stdout


def _wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist() if ".dist-info/" not in n}


def _expected_wheel_files(source: Path) -> set[str]:
    """Every module and asset of the source tree, at its place in the wheel."""
    expected = {
        f"{p}/py.typed" for p in ("llm_pinference", "pinference_exporter", "pinference_fake")
    }
    for folder, package in PACKAGE_FOLDERS.items():
        for path in (source / folder).rglob("*.py"):
            expected.add(f"{package}/{path.relative_to(source / folder).as_posix()}")
    expected.update(f"pinference_exporter/assets/{name}" for name in _asset_names(source))
    return expected


def _asset_names(source: Path) -> list[str]:
    """The files of the asset folders (not dot files, not the assets package's code, not
    the compose stack's secrets)."""
    return sorted(
        path.relative_to(source).as_posix()
        for folder in ASSET_FOLDERS
        for path in (source / folder).rglob("*")
        if path.is_file()
        and not path.name.startswith(".")
        and not path.relative_to(source)
        .as_posix()
        .startswith(("deploy/assets/", SECRETS, SCHEMA_CHECK))
    )


def _leaks(names_and_bytes: list[tuple[str, bytes]]) -> list[str]:
    return [n for n, data in names_and_bytes if PLANTED_SECRET.encode() in data or SECRETS in n]


@pytest.mark.integration
def test_wheel_holds_every_module_and_asset_under_unambiguous_names(
    dist: dict[str, Path],
) -> None:
    files = _wheel_files(dist["wheel"])
    assert files == _expected_wheel_files(dist["source"])
    assert {name.split("/")[0] for name in files} == {
        "llm_pinference",
        "pinference_exporter",
        "pinference_fake",
    }
    with zipfile.ZipFile(dist["wheel"]) as archive:
        info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(info))
        licence = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    for built in (dist["wheel"], dist["direct_wheel"]):
        with zipfile.ZipFile(built) as archive:
            assert _leaks([(n, archive.read(n)) for n in archive.namelist()]) == [], built.name
    assert _wheel_files(dist["direct_wheel"]) == files
    assert licence
    assert metadata["License-Expression"] == "Apache-2.0"
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL"))
    assert urls["Repository"] == "https://github.com/llm-pinference/llm-pinference"
    assert {"Homepage", "Documentation", "Issues"} <= set(urls)
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    unconditional = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert [_requirement_name(r) for r in unconditional] == ["requests", "urllib3"]
    assert "pinference-exporter = pinference_exporter.cli:main" in entry_points
    assert "pinference = llm_pinference.plugin" in entry_points


@pytest.mark.integration
def test_sdist_is_a_complete_source_tree(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
        members = [m for m in archive.getmembers() if m.isfile()]
        assert _leaks([(m.name, archive.extractfile(m).read()) for m in members]) == []  # type: ignore[union-attr]
    source = dist["source"]
    for folder in ("tests", "harness", "grafana", "prometheus", "docs", "deploy", "llm_pinference"):
        wanted = {
            p.relative_to(source).as_posix()
            for p in (source / folder).rglob("*")
            if p.is_file() and not p.relative_to(source).as_posix().startswith(SECRETS)
        }
        assert wanted and wanted <= names, f"{folder}: missing {sorted(wanted - names)}"
    assert {"LICENSE", "README.md", "pyproject.toml", "tests/conftest.py"} <= names


@pytest.mark.integration
def test_sdist_tests_pass_unpacked(dist: dict[str, Path], tmp_path: Path) -> None:
    with tarfile.open(dist["sdist"]) as archive:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
            archive.extractall(tmp_path / "sdist", filter="data")
        else:
            archive.extractall(tmp_path / "sdist")  # noqa: S202 (our own archive, just built)
    (tree,) = (tmp_path / "sdist").iterdir()
    subset = [name for name in SDIST_SUBSET if (tree / name).exists()]
    assert len(subset) >= 5, f"the sdist lacks most of {SDIST_SUBSET}"
    # The tests import the unpacked sources (the working directory), not the checkout.
    where = run(
        [
            sys.executable,
            "-c",
            "import llm_pinference, pinference_fake, harness; print(llm_pinference.__file__); "
            "print(pinference_fake.__file__); print(harness.__file__)",
        ],
        cwd=tree,
    )
    assert all(Path(p).is_relative_to(tree) for p in where.stdout.split()), where.stdout
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *subset],
        cwd=tree,
        timeout=600,
        env=tool_env(),
    )
    assert re.search(r"\d+ passed", result.stdout)
    assert not re.search(r"\d+ (failed|error)", result.stdout)


# ----------------------------------------------------------------- clean virtualenvs


@pytest.fixture(scope="module")
def exporter_venv(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install 'llm-pinference[exporter]'`, from the wheel, into a clean venv."""
    python = make_venv(tmp_path_factory.mktemp("exporter-venv") / "venv", with_pip=False)
    pip_install(python, f"{dist['wheel']}[exporter]")
    return python


@pytest.mark.integration
def test_exporter_extra_installs_a_working_exporter_without_llm(
    exporter_venv: Path, fake: object
) -> None:
    bindir = exporter_venv.parent
    assert not {"llm", "openai", "pydantic", "click"} & installed(exporter_venv)
    version = run([bindir / "pinference-exporter", "--version"]).stdout
    assert re.search(r"\d+\.\d+\.\d+", version), version
    assert run([exporter_venv, "-m", "pinference_exporter", "--version"]).stdout == version
    # the generic name `exporter` is not installed
    assert run([exporter_venv, "-c", "import exporter"], check=False).returncode == 1

    port = free_port()
    proc = subprocess.Popen(
        [bindir / "pinference-exporter", f"--web.listen-address=127.0.0.1:{port}"],
        env=tool_env(PRIME_INFERENCE_URL=fake.base_url),  # type: ignore[attr-defined]
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = wait_until_up(f"http://127.0.0.1:{port}/metrics", proc)
    finally:
        proc.terminate()
        proc.wait(10)
    assert "pinference_models" in body


@pytest.mark.integration
def test_assets_come_with_the_wheel(
    exporter_venv: Path, dist: dict[str, Path], tmp_path: Path
) -> None:
    module = [exporter_venv, "-m", "pinference_exporter.assets"]
    names = run([*module, "--list"]).stdout.split()
    source = dist["source"]
    assert names == _asset_names(source)
    for wanted in (
        "grafana/dashboards/pinference.json",
        "prometheus/pinference.rules.yml",
        "prometheus/prometheus.yml",
        "deploy/container/Containerfile",
    ):
        assert wanted in names

    printed = run([*module, "--print", "prometheus/prometheus.yml"]).stdout
    assert printed == (source / "prometheus/prometheus.yml").read_text()
    out = tmp_path / "assets"
    run([*module, "--extract", out])
    for name in names:
        assert (out / name).read_bytes() == (source / name).read_bytes(), name

    again = run([*module, "--extract", out], check=False)  # refuses to overwrite
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--force" in again.stderr
    unknown = run([*module, "--print", "nope.yml"], check=False)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1, unknown.stderr


class LlmVenv(NamedTuple):
    python: Path
    before_plugin: set[str]  # what llm alone installed


@pytest.fixture(scope="module")
def llm_venv(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> LlmVenv:
    """llm in a clean venv, then the plugin the way its README says: `llm install`."""
    python = make_venv(tmp_path_factory.mktemp("llm-venv") / "venv")
    pip_install(python, "llm")
    before = installed(python)
    run([python.parent / "llm", "install", dist["wheel"]], timeout=600, env=tool_env())
    return LlmVenv(python, before)


@pytest.mark.integration
def test_llm_install_adds_the_plugin_without_the_exporter_dependencies(
    llm_venv: LlmVenv, fake: object, tmp_path: Path
) -> None:
    python = llm_venv.python
    added = installed(python) - llm_venv.before_plugin
    assert "llm-pinference" in added
    assert "prometheus-client" not in installed(python)
    assert added <= {
        "llm-pinference",
        "requests",
        "urllib3",
        "idna",
        "certifi",
        "charset-normalizer",
    }, added
    env = tool_env(
        PRIME_INFERENCE_URL=fake.base_url,  # type: ignore[attr-defined]
        LLM_USER_PATH=str(tmp_path / "llm"),
        PRIME_API_KEY="sk-packaging-test",  # configured: the hooks fetch the list
    )
    models = run([python.parent / "llm", "models"], env=env, timeout=120).stdout
    assert "pinference/" in models, models


@pytest.mark.integration
def test_exporter_without_its_extra_says_what_to_install(llm_venv: LlmVenv) -> None:
    """--help, --version and the assets work in the plugin's environment; running the
    exporter, or importing `Exporter`, says what to install in one line."""
    python = llm_venv.python
    command = python.parent / "pinference-exporter"
    for argv in ([command, "--version"], [python, "-m", "pinference_exporter", "--version"]):
        assert "pinference-exporter, version" in run(argv).stdout
    assert "--probe.interval" in run([command, "--help"]).stdout
    listed = run([python, "-m", "pinference_exporter.assets", "--list"]).stdout.split()
    assert "grafana/dashboards/pinference.json" in listed
    for argv in ([command], [python, "-m", "pinference_exporter"]):
        result = run(argv, check=False)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", MISSING_EXTRA + "\n")
    library = run([python, "-c", "from pinference_exporter import Exporter"], check=False)
    assert "ImportError: the exporter needs its extra" in library.stderr


def test_assets_from_a_source_tree_are_the_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a checkout (an editable install), the same names, read from the folders."""
    spec = importlib.util.spec_from_file_location(
        "assets_under_test", ROOT / "deploy" / "assets" / "__init__.py"
    )
    assert spec and spec.loader
    assets = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, assets)
    spec.loader.exec_module(assets)
    found = assets.assets()
    assert list(found) == _asset_names(ROOT)
    assert (
        assets.read("prometheus/prometheus.yml")
        == (ROOT / "prometheus/prometheus.yml").read_bytes()
    )
    with pytest.raises(assets.AssetError, match="no asset named"):
        assets.read("../pyproject.toml")
    (tmp_path / "out" / "docs").mkdir(parents=True)
    (tmp_path / "out" / "docs" / "alerts.md").write_text("mine")
    with pytest.raises(assets.AssetError, match="exists; use --force"):
        assets.extract(tmp_path / "out")
    assert (tmp_path / "out" / "docs" / "alerts.md").read_text() == "mine"  # nothing written
    assert not (tmp_path / "out" / "prometheus").exists()
