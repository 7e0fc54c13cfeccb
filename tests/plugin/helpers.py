"""Helpers for the llm plugin tests: register the plugin with llm, drive llm's real CLI.

llm loads installed entry points unless `sys._called_from_test` is set (llm's own test
suite sets it). Setting it before llm is imported keeps other installed plugins out of the
tests; this plugin is then registered by hand, exactly once per process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys._called_from_test = True  # type: ignore[attr-defined]

import click  # noqa: E402
import llm  # noqa: E402
import llm.cli  # noqa: E402
from click.testing import CliRunner, Result  # noqa: E402
from llm.plugins import pm  # noqa: E402

from llm_pinference import cache as catalog  # noqa: E402
from llm_pinference import plugin  # noqa: E402
from llm_pinference.core import notices  # noqa: E402

KEY = "pit_test_key_4f9c2a7d1e"
TEAM = "team-1234"
PRIVATE_MODEL = {
    "id": "team-1234/private-finetune:v2",
    "object": "model",
    "owned_by": "team-1234",
    "display_name": "Team private fine-tune",
    "supported_parameters": ["tools"],
}


def ensure_registered() -> None:
    """Register the plugin module with llm once; add its commands if llm.cli predates it."""
    if not pm.is_registered(plugin) and pm.get_plugin("pinference") is None:
        pm.register(plugin, name="pinference")
    cli: click.Group = llm.cli.cli
    if "pinference" not in cli.commands:
        plugin.register_commands(cli)


def reset_state() -> None:
    """Forget what the plugin remembers per process (memo, back-off, warnings)."""
    catalog.reset_process_state()
    notices.forget()


def invoke(args: list[str], input: str | None = None) -> Result:
    ensure_registered()
    return CliRunner().invoke(llm.cli.cli, args, input=input, catch_exceptions=True)


def errors_as_users_see_them(monkeypatch: Any) -> None:
    """llm re-raises prompt errors when `sys._called_from_test` is set; a user sees
    `Error: ...` instead. Plugins are loaded already, so dropping the flag is safe."""
    ensure_registered()
    monkeypatch.delattr(sys, "_called_from_test", raising=False)


def user_dir() -> Path:
    return Path(os.environ["LLM_USER_PATH"])


def cache_file() -> Path:
    return user_dir() / catalog.CACHE_FILENAME


def read_cache() -> dict[str, Any]:
    return json.loads(cache_file().read_text())


def set_cache_times(**fields: float | None) -> None:
    """Rewrite fetched_at / retry_at / failed_at of every account (to age the cache)."""
    data = read_cache()
    for entry in data["accounts"].values():
        entry.update(fields)
    cache_file().write_text(json.dumps(data))


def pinference_ids(output: str) -> list[str]:
    """The model ids in `llm models` output lines `Pinference: pinference/<id> (...)`."""
    ids = []
    for line in output.splitlines():
        if line.startswith("Pinference: pinference/"):
            ids.append(line.split()[1].removeprefix("pinference/"))
    return ids


def set_key(key: str) -> None:
    """What `llm keys set pinference` does."""
    path = user_dir() / "keys.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pinference": key}))


def write_prime_config(home: Path, **values: str) -> None:
    (home / ".prime").mkdir(exist_ok=True)
    (home / ".prime" / "config.json").write_text(json.dumps(values))


def auth_header(request: Any) -> str | None:
    return request.header("authorization")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now
