"""What build of the exporter this is: version, revision (when known), Python version.

The revision comes from the installer's record of a VCS install (PEP 610 `direct_url.json`,
e.g. `pip install git+https://...@<sha>`), else from git when the package runs from a
checkout (an editable install or the source tree). Neither: unknown, and not shown.
"""

from __future__ import annotations

import functools
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from llm_pinference import __version__

DISTRIBUTION = "llm-pinference"
_HERE = Path(__file__).resolve().parent


def version() -> str:
    return __version__


def python_version() -> str:
    return platform.python_version()


@functools.cache
def revision() -> str | None:
    """The commit this build was made from, or None when it cannot be known."""
    return _recorded_revision() or _checkout_revision()


def _recorded_revision() -> str | None:
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
        commit = json.loads(text or "{}").get("vcs_info", {}).get("commit_id")
    except (metadata.PackageNotFoundError, ValueError, AttributeError, OSError):
        return None
    return commit if isinstance(commit, str) and commit else None


def _checkout_revision() -> str | None:
    """HEAD of the git checkout this package's files are tracked in (not merely inside)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(_HERE), *args],
                capture_output=True, text=True, timeout=2, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    head = git("rev-parse", "HEAD")
    return head if head and len(head) == 40 else None


def describe() -> str:
    """One line for `--version`."""
    rev = revision()
    extra = f", revision {rev[:12]}" if rev else ""
    return f"version {version()}{extra} (python {python_version()})"
