"""The architecture: the import contracts in pyproject.toml ([tool.importlinter]: the core
free of llm and prometheus_client, the exporter on the core only, the fake on the standard
library, the plugin's arrows one way, no cycles), and a core that stays light at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    # The contracts can fail: the same checker over a config that forbids what the plugin does.
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["llm_pinference"]\n'
        'include_external_packages = true\n'
        '[[tool.importlinter.contracts]]\nname = "x"\ntype = "forbidden"\n'
        'source_modules = ["llm_pinference.plugin"]\nforbidden_modules = ["llm"]\n'
    )
    result = lint_imports("--config", str(config))
    assert result.returncode == 1 and "BROKEN" in result.stdout


CHECK = """
import sys
import llm_pinference, llm_pinference.core.settings, llm_pinference.core.errors
import llm_pinference.core.models, llm_pinference.core.client, llm_pinference.cache
import pinference_fake
heavy = [m for m in ("llm", "prometheus_client", "requests") if m in sys.modules]
print(",".join(heavy))
"""


def test_core_import_is_light() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_client_use_does_not_import_llm(fake: object) -> None:
    base_url = fake.base_url  # type: ignore[attr-defined]
    code = (
        "import sys\n"
        "from llm_pinference.core.client import PinferenceClient\n"
        "from llm_pinference.core.settings import Settings\n"
        f"print(len(PinferenceClient(Settings(base_url={base_url!r})).list_models().models))\n"
        "print('llm' in sys.modules, 'prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    count, *flags = out.stdout.split()
    assert int(count) > 0 and flags == ["False", "False"]
