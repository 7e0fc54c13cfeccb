"""`make demo` is one of the README's two commands: run it as it runs there, and hold it to
what it promises: plain text when not on a terminal, commands that can be pasted as they
are printed (with their environment), the fault injected with curl, and, when Prometheus
and Alertmanager are installed, the alert firing and the notification arriving."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_output() -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIME_", "LLM_"))}
    env.pop("NO_COLOR", None)  # plain text must come from "not a terminal" alone
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    return text


def test_demo_runs_end_to_end(demo_output: str) -> None:
    text = demo_output
    assert "Traceback" not in text
    assert "Pinference: pinference/meta-llama/llama-3.1-70b-instruct" in text  # llm models
    assert "Hello from meta-llama/llama-3.1-70b-instruct! You said: Say hello" in text
    # the exporter counts the 401 (whatever the order of its labels)
    counted = re.findall(r"^  pinference_probe_failures_total\{([^}]*)\} [1-9]", text, flags=re.M)
    assert any('endpoint="list"' in c and 'reason="unauthorized"' in c for c in counted), counted


def test_no_terminal_codes_when_not_a_terminal(demo_output: str) -> None:
    assert "\x1b" not in demo_output


def test_a_partial_list_says_so(demo_output: str) -> None:
    (header,) = re.findall(r"^(\d+) models; the first (\d+):$", demo_output, flags=re.M)
    total, shown = int(header[0]), int(header[1])
    assert total > shown
    after = demo_output.split(f"{total} models; the first {shown}:\n", 1)[1].splitlines()
    rows = [line for line in after[: shown + 1] if line.startswith("  ")]
    assert len(rows) == shown


def _commands(text: str) -> list[list[str]]:
    return [shlex.split(line[2:], comments=True) for line in text.splitlines()
            if line.startswith("$ ")]  # fmt: skip


def test_every_printed_command_can_be_pasted(demo_output: str) -> None:
    """Each `$` line is valid shell, runs a program that exists, and the environment the
    commands need is printed first."""
    commands = _commands(demo_output)
    assert commands[0][0] == "export"
    exported = dict(item.split("=", 1) for item in commands[0][1:])
    assert set(exported) == {"PRIME_INFERENCE_URL", "PRIME_API_KEY", "LLM_USER_PATH", "HOME"}
    assert exported["PRIME_INFERENCE_URL"].startswith("http://127.0.0.1:")
    for argv in commands[1:]:
        program = argv[0]
        found = shutil.which(program) or (ROOT / program).exists() or Path(program).exists()
        assert found, f"not a program one can run: {shlex.join(argv)}"
    programs = {Path(argv[0]).name for argv in commands}
    assert {"llm", "pinference-exporter", "curl"} <= programs


def test_the_fault_is_injected_with_curl(demo_output: str) -> None:
    """The printed curl is what ran: the fake's answer to it follows each one."""
    lines = demo_output.splitlines()
    posts = [i for i, line in enumerate(lines) if line.startswith("$ curl -s -X POST ")]
    assert len(posts) == 2
    for i in posts:
        argv = shlex.split(lines[i][2:])
        assert argv[argv.index("-X") + 1] == "POST" and argv[4].endswith("/_admin/fault")
        body = argv[argv.index("-d") + 1]
        assert re.fullmatch(r'\{"endpoint": "(list|get)", "status": 401\}', body)
        assert lines[i + 1].startswith('{"endpoint":') and '"status":401' in lines[i + 1]
    deletes = [i for i, line in enumerate(lines) if line.startswith("$ curl -s -X DELETE ")]
    assert len(deletes) == 1 and lines[deletes[0] + 1] == '{"cleared":"all"}'


def test_the_alert_fires_and_the_notification_arrives(demo_output: str) -> None:
    if not shutil.which("prometheus"):
        pytest.skip("prometheus is not installed: the demo skips its alerting part")
    assert "PinferenceAuthFailing [firing]" in demo_output
    if not (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")):
        pytest.skip("Alertmanager is not installed: the demo shows no notification")
    # a refused key pages as the key (once per account), not as the API
    page = r"^  to pinference-page: \[firing\] PinferenceAuthFailing: Pinference rejects "
    assert re.search(page + "the API key of account default", demo_output, flags=re.M)
    assert not re.search(r"\] PinferenceAPIDown", demo_output)
    assert re.search(r"^  to pinference-page: \[resolved\] PinferenceAuthFailing", demo_output,
                     flags=re.M)  # fmt: skip
