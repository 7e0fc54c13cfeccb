"""Helpers for the packaging and deploy tests: tools, clean source copies, clean venvs."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from pathlib import Path
from typing import Any

import pytest

from tests.support import in_ci

ROOT = Path(__file__).resolve().parents[2]
# The tests run with HOME in a temporary directory; pip keeps using the real cache.
PIP_CACHE_DIR = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
# Commands run from an empty directory unless told otherwise: `python -m` and `-c` put the
# working directory first on sys.path, and the checkout's packages must not shadow what a
# test installed.
NEUTRAL_DIR = tempfile.mkdtemp(prefix="pinference-cwd-")
atexit.register(shutil.rmtree, NEUTRAL_DIR, True)
# What a checkout has besides the tracked files (ignored by git, never shipped).
JUNK = (".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache")


def require(name: str, hint: str) -> str:
    """Path of an executable; skip the test (fail in CI) when it is not installed."""
    path = shutil.which(name) or (
        str(Path(sys.executable).parent / name)
        if (Path(sys.executable).parent / name).exists()
        else None
    )
    if path is None:
        message = f"{name} is not installed ({hint})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(
    argv: list[str | Path], timeout: float = 120, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure (when `check`) fail the test with its output."""
    kwargs.setdefault("cwd", NEUTRAL_DIR)
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, argv))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for pip, build and the installed commands (real pip cache)."""
    env = dict(os.environ, PIP_CACHE_DIR=PIP_CACHE_DIR, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def source_copy(target: Path) -> Path:
    """The project as a fresh clone has it: the files git knows (tracked, or new and not
    ignored), or, outside a git checkout (an unpacked sdist), the tree without junk."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0 and listed.stdout:
        for name in sorted(set(listed.stdout.decode().split("\0")) - {""}):
            source = ROOT / name
            if source.is_file():  # deleted but still tracked: not in a fresh clone
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
    else:
        shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(*JUNK), dirs_exist_ok=True)
    return target


def make_venv(path: Path, with_pip: bool = True) -> Path:
    """A clean virtualenv (no system site-packages); returns its python."""
    venv.EnvBuilder(with_pip=with_pip, clear=True).create(path)
    return path / "bin" / "python"


def pip_install(python: Path, *requirements: str | Path, timeout: float = 600) -> None:
    """Install into the venv of `python` with this interpreter's pip (the venv needs none)."""
    run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", *requirements],
        timeout=timeout,
        env=tool_env(),
    )


def installed(python: Path) -> set[str]:
    """Normalised names of the distributions installed in the venv of `python`."""
    code = (
        "import importlib.metadata as m, re\n"
        "print('\\n'.join(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower()"
        " for d in m.distributions()})))"
    )
    return set(run([python, "-c", code]).stdout.split())


def wait_until_up(
    url: str, proc: subprocess.Popen[str] | None = None, timeout: float = 30
) -> str:
    """The exporter's /metrics at `url` once it reports a successful probe
    (`pinference_up 1`); fails at `timeout`, or at once if `proc` (the exporter) exits."""
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            stderr = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the exporter exited {proc.returncode}: {stderr}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read().decode()
            if re.search(r"^pinference_up(\{[^}]*\})? 1", body, re.M):
                return body
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"no successful probe on {url} within {timeout}s: {body[:500]}")
