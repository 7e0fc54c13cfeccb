"""`make demo` is one of the README's two commands: run it as it runs there."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIME_", "LLM_"))}
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    assert "Pinference: pinference/meta-llama/llama-3.1-70b-instruct" in text  # llm models
    assert "Hello from meta-llama/llama-3.1-70b-instruct! You said: Say hello" in text
    assert (
        'pinference_probe_failures_total{account="default",endpoint="list",reason="unauthorized"}'
        in text
    )
    if shutil.which("prometheus"):
        assert "PinferenceAuthFailing [firing]" in text
