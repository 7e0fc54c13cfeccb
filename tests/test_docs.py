"""Every shell command in the README, docs/ and CONTRIBUTING.md, run as a newcomer runs it.

The blocks fenced ```sh, ```bash or ```console run in document order (README.md first,
then docs/*.md, then CONTRIBUTING.md), each as one bash script under `set -eo pipefail`,
so a command that fails, or a `| grep` that finds nothing, fails the block. In a
```console block, `$ ` starts a command and the lines after it are what it prints: each
shown line must appear in the command's output, in order, compared loosely (runs of
spaces are one space, `...` matches anything).

The newcomer's machine, and how the test maps it:
- llm is installed first in a fresh virtualenv (`pip install llm`, the README's
  prerequisite); its `bin/` leads PATH. From docs/ on, the exporter's virtualenv that the
  README's quick start creates is on PATH too ("activated"), as those pages assume.
- `git clone https://github.com/llm-pinference/llm-pinference` is replaced by the checkout
  itself: its files (what a fresh clone holds) are copied to `./llm-pinference` in the
  working directory every block runs in; every other command runs as written.
- Every command talks to a fake Pinference on loopback: PRIME_INFERENCE_URL points at one
  started for the test (any key works), and commands that start their own fake use it.
- Where a command asks for the key on the terminal, the test types a fake key on stdin.
- A server command (pinference-fake, pinference-exporter, prometheus) runs in the
  background, and the test waits until it answers (the exporter: ready, after its first
  probe; Prometheus: after its first scrape); whatever a block starts is stopped when the
  block ends (the README's, when the README ends: its quick start scrapes in one block
  the exporter the block before started). Blocks run in a network namespace of their own
  when `unshare` allows, so the ports the docs name (8765, 8795, 9090) are free; blocks
  that install packages run outside it (they need the package index).
- Commands that cannot run here are listed in NOT_RUN with the reason and what runs
  instead; the list must stay short and every entry must still match a command.
- CONTRIBUTING.md runs from the clone (contributors work there); `.venv/bin/` in it is
  this test's own virtualenv.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.helpers import PIP_CACHE_DIR, ROOT, make_venv, require, source_copy

pytestmark = pytest.mark.integration

DOCS = [
    "README.md",
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")),
    "CONTRIBUTING.md",
]
FENCE = re.compile(r"^```(sh|bash|console)[^\n]*\n(.*?)^```", re.M | re.S)
CLONE = "llm-pinference"
FAKE_KEY = "fake-key-for-the-docs"
FAKE_PORT = 18099  # the test's own fake; the docs start theirs on other ports
# Installing needs the package index: such blocks run on the host's network.
INSTALLS = re.compile(r"\b(pip|pipx|llm) install\b")
# Files whose commands inspect a running exporter (the alerts' runbook `curl`s): the test
# runs the README's exporter for them, as a reader who followed the quick start has it.
NEEDS_EXPORTER = {"docs/alerts.md", "docs/metrics.md"}
EXPORTER = "pinference-exporter --api.key-file=prime_api_key"


@dataclass
class Skip:
    reason: str
    instead: str  # a regex replacement: what runs in its place
    used: int = 0


# Commands that cannot run in a test, what runs in their place, and why.
NOT_RUN: dict[str, Skip] = {
    r"^git clone https://github\.com/llm-pinference/llm-pinference$": Skip(
        "the clone is the checkout under test (copied to ./llm-pinference)", ":"
    ),
    r"^make (?!-n)(.*)$": Skip(
        "`make test` is this suite, `make demo` is tests/test_demo.py, `make mutation` and "
        "`make bench` take many minutes: checked to exist with a dry run",
        r'make -n -C "$DOCS_CLONE" \1 >/dev/null',
    ),
    r"^podman build .*$": Skip(
        "tests/deploy/test_container.py builds and runs the image (minutes, podman)",
        "test -f llm-pinference/deploy/container/Containerfile",
    ),
    r"^podman (secret create|run) .*$": Skip(
        "tests/deploy/test_container.py runs the image; here: the key file exists",
        "test -s prime_api_key",
    ),
    r"^docker compose up .*$": Skip(
        "the stack needs container images; tests/deploy/test_compose.py checks the file "
        "with the Compose schema and podman-compose config",
        "test -f compose.yaml",
    ),
    r"^(kubectl .*create secret .*)$": Skip(
        "no cluster: the Secret is made client-side", r"\1 --dry-run=client -o yaml >/dev/null"
    ),
    r"^kubectl apply (.*)-k (\S+)$": Skip(
        "no cluster: the kustomization is rendered (tests/deploy/test_kubernetes.py "
        "validates what it renders)",
        r"kubectl kustomize \2 >/dev/null",
    ),
}
# Commands that read the key from the terminal: the test types it.
INTERACTIVE = (
    re.compile(r"^llm keys set pinference\b"),
    re.compile(r"^\(umask 077 && cat > prime_api_key\)"),
)
SERVERS = {"pinference-fake", "pinference-exporter", "prometheus"}
NOT_SERVING = {"--help", "-h", "--version", "--config.check"}
PRELUDE = r"""
set -eo pipefail
_docs_wait() {  # URL PATTERN PID: until URL answers with PATTERN, while PID lives
  for _ in $(seq 600); do
    if ! kill -0 "$3" 2>/dev/null; then echo "docs test: the server exited" >&2; return 1; fi
    if curl -sf --max-time 2 "$1" 2>/dev/null | grep -q -- "$2"; then return 0; fi
    sleep 0.1
  done
  echo "docs test: $1 never answered with $2" >&2
  return 1
}
"""


@dataclass
class Command:
    text: str
    line: int
    shown: list[str] = field(default_factory=list)


@dataclass
class Block:
    doc: str
    line: int
    kind: str
    commands: list[Command]

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"


def _logical_lines(body: str, first_line: int) -> Iterator[tuple[int, str]]:
    pending, start = "", first_line
    for offset, raw in enumerate(body.splitlines()):
        if not pending:
            start = first_line + offset
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        yield start, pending + raw
        pending = ""


def parse(doc: str) -> list[Block]:
    text = (ROOT / doc).read_text()
    blocks = []
    for match in FENCE.finditer(text):
        kind, body = match.group(1), match.group(2)
        first = text.count("\n", 0, match.start(2)) + 1
        commands: list[Command] = []
        for line, logical in _logical_lines(body, first):
            if kind == "console":
                if logical.startswith("$ "):
                    commands.append(Command(logical[2:].strip(), line))
                elif logical.strip() and commands:
                    commands[-1].shown.append(logical)
            elif logical.strip() and not logical.lstrip().startswith("#"):
                commands.append(Command(logical.strip(), line))
        blocks.append(Block(doc, first, kind, commands))
    return blocks


BLOCKS = [block for doc in DOCS if (ROOT / doc).exists() for block in parse(doc)]


def _strip_comment(command: str) -> str:
    """The command without a trailing `# comment` (outside quotes)."""
    quote = None
    for i, char in enumerate(command):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip()
    return command


def _program(command: str) -> tuple[str, list[str]]:
    words = [w for w in command.split() if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
    return (Path(words[0]).name if words else ""), words[1:]


def _server_wait(command: str) -> str | None:
    """The readiness check for a server command, or None if it is not one."""
    program, args = _program(command.rstrip("&").strip())
    if program not in SERVERS or NOT_SERVING & set(args):
        return None
    joined = " ".join(args)
    if program == "pinference-fake":
        port = re.search(r"--port[= ](\d+)", joined)
        url = f"http://127.0.0.1:{port.group(1) if port else 8099}/api/v1/models"
        return f"_docs_wait {url} '\"data\"'"
    if program == "pinference-exporter":
        port = re.search(r"--web\.listen-address[= ]\S*:(\d+)", joined)
        return f"_docs_wait http://127.0.0.1:{port.group(1) if port else 8795}/-/ready ''"
    return '_docs_wait http://127.0.0.1:9090/api/v1/targets \'"health":"up"\''


def translate(command: str, log: Path) -> str:
    """What runs for one documented command (see the module docstring)."""
    command = _strip_comment(command)
    for pattern, skip in NOT_RUN.items():
        if re.match(pattern, command):
            skip.used += 1
            return re.sub(pattern, skip.instead, command)
    command = command.replace(".venv/bin/", f"{Path(sys.prefix)}/bin/")
    if any(p.match(command) for p in INTERACTIVE):
        return f"printf '%s\\n' {FAKE_KEY} | {command}"
    wait = _server_wait(command)
    if wait is not None:
        return f"{command.rstrip('&').strip()} >>{log} 2>&1 &\n{wait} $!"
    return command


def script(block: Block, log: Path) -> str:
    parts = [PRELUDE]
    for i, command in enumerate(block.commands):
        run = translate(command.text, log)
        if block.kind == "console" and "&\n_docs_wait" not in run:
            parts.append(f"printf '\\n@@docs {i}@@\\n'\n{{ {run}\n}} 2>&1")
        else:
            parts.append(run)
    return "\n".join(parts) + "\n"


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip())


def check_output(block: Block, stdout: str) -> list[str]:
    """The shown lines missing from each command's output (in order, loosely)."""
    sections = dict(
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"@@docs (\d+)@@\n(.*?)(?=\n@@docs \d+@@|\Z)", stdout, re.S)
    )
    missing = []
    for i, command in enumerate(block.commands):
        actual = [_normal(line) for line in sections.get(i, "").splitlines()]
        position = 0
        for shown in command.shown:
            pattern = re.compile(
                ".*".join(re.escape(_normal(p)) for p in shown.split("...")).join(["^", "$"])
            )
            found = next(
                (k for k in range(position, len(actual)) if pattern.search(actual[k])), None
            )
            if found is None:
                missing.append(f"line {command.line} `{command.text}` did not print: {shown}")
            else:
                position = found + 1
    return missing


class Newcomer:
    """The newcomer's machine: a working directory with the clone, llm in a fresh
    virtualenv, an isolated HOME, and (when allowed) a network namespace of its own."""

    def __init__(self, root: Path) -> None:
        self.work = root / "work"
        self.work.mkdir()
        source_copy(self.work / CLONE)
        self.home = root / "home"
        self.home.mkdir()
        self.log = root / "servers.log"
        llm_venv = root / "llm-venv"
        make_venv(llm_venv)
        subprocess.run(
            [llm_venv / "bin" / "pip", "install", "-q", "llm"],
            check=True,
            env=dict(os.environ, PIP_CACHE_DIR=PIP_CACHE_DIR, PIP_DISABLE_PIP_VERSION_CHECK="1"),
            timeout=600,
        )
        self.llm_bin = llm_venv / "bin"
        # What the README's blocks start keeps running until the README is done: its
        # exporter quick start scrapes in one block what the block before started.
        self.lingering: list[int] = []
        self.namespace = self._namespace()
        self.fake = subprocess.Popen(
            [*self.enter, sys.executable, "-m", "pinference_fake", "--port", str(FAKE_PORT)],
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
        )

    def _namespace(self) -> subprocess.Popen[bytes] | None:
        if not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
            return None
        holder = subprocess.Popen(["unshare", "-rn", "sleep", "infinity"])
        time.sleep(0.2)
        up = subprocess.run(
            [*self._nsenter(holder.pid), "ip", "link", "set", "lo", "up"], check=False
        )
        if up.returncode != 0:
            holder.kill()
            holder.wait()
            return None
        return holder

    @staticmethod
    def _nsenter(pid: int) -> list[str]:
        return ["nsenter", "-t", str(pid), "-U", "-n", "--preserve-credentials"]

    @property
    def enter(self) -> list[str]:
        return self._nsenter(self.namespace.pid) if self.namespace else []

    def env(self, doc: str) -> dict[str, str]:
        own = str(Path(sys.prefix) / "bin")
        system = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != own]
        path = [str(self.llm_bin), *system]
        if doc != "README.md":
            path.insert(0, str(self.work / "exporter-venv" / "bin"))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PRIME_", "LLM_", "PYTEST", "VIRTUAL_ENV", "PYTHON"))
        }
        env.update(
            PATH=os.pathsep.join(path),
            HOME=str(self.home),
            LLM_USER_PATH=str(self.home / "llm"),
            PRIME_INFERENCE_URL=f"http://127.0.0.1:{FAKE_PORT}/api/v1",
            PIP_CACHE_DIR=PIP_CACHE_DIR,
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            DOCS_CLONE=str(self.work / CLONE),
        )
        return env

    def run(
        self, block: Block, text: str, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        if block.doc != "README.md":
            self.stop_lingering()
        on_host = any(INSTALLS.search(c.text) for c in block.commands)
        cwd = self.work / CLONE if block.doc == "CONTRIBUTING.md" else self.work
        proc = subprocess.Popen(
            [*([] if on_host else self.enter), "bash", "-c", text],
            cwd=cwd,
            env=self.env(block.doc),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc.pid)
            stdout, stderr = proc.communicate()
            stderr += f"\ndocs test: the block took more than {timeout}s"
        if block.doc == "README.md":
            self.lingering.append(proc.pid)
        else:
            _stop_group(proc.pid)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    def stop_lingering(self) -> None:
        while self.lingering:
            _stop_group(self.lingering.pop())

    def close(self) -> None:
        self.stop_lingering()
        self.fake.terminate()
        self.fake.wait(timeout=10)
        if self.namespace:
            self.namespace.kill()
            self.namespace.wait()


def _stop_group(pgid: int) -> None:
    """Stop what a block started in the background (SIGTERM, then SIGKILL), and wait."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Newcomer]:
    for tool in ("curl", "promtool", "prometheus"):
        require(tool, "apt-get install curl prometheus")
    world = Newcomer(tmp_path_factory.mktemp("docs"))
    try:
        yield world
    finally:
        world.close()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_documented_commands_run(newcomer: Newcomer, block: Block) -> None:
    text = script(block, newcomer.log)
    if block.doc in NEEDS_EXPORTER:
        text = text.replace(PRELUDE, PRELUDE + translate(EXPORTER, newcomer.log) + "\n", 1)
    result = newcomer.run(block, text)
    shown = "\n".join(c.text for c in block.commands)
    assert result.returncode == 0, (
        f"{block.name} failed (exit {result.returncode}):\n{shown}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}\n"
        f"--- servers\n{newcomer.log.read_text()[-2000:] if newcomer.log.exists() else ''}"
    )
    missing = check_output(block, result.stdout)
    assert not missing, "\n".join(missing) + f"\n--- stdout\n{result.stdout[-3000:]}"


def test_every_not_run_entry_matches_a_documented_command() -> None:
    """An entry that matches nothing is stale: a skip must name a command still shown."""
    commands = [_strip_comment(c.text) for b in BLOCKS for c in b.commands]
    stale = [p for p in NOT_RUN if not any(re.match(p, c) for c in commands)]
    assert not stale, stale


def test_the_readme_leads_with_the_quick_starts() -> None:
    """A newcomer meets the plugin's quick start, then the exporter's, before anything
    else, and the README stays short."""
    readme = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", readme, re.M)
    assert headings[:2] == ["The llm plugin: quick start", "The exporter: quick start"]
    assert len(readme.splitlines()) <= 300
    assert "llm install llm-pinference\n" not in readme  # not on PyPI
