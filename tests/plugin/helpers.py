"""Helpers for the llm plugin tests: register the plugin with llm, drive llm's real CLI.

llm loads installed entry points unless `sys._called_from_test` is set (llm's own test
suite sets it). Setting it before llm is imported keeps other installed plugins out of the
tests; this plugin is then registered by hand, exactly once per process.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import sys
from collections.abc import Callable, Iterable
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


Reply = tuple[int, dict[str, str], Iterable[bytes]]


class ChatServer:
    """A loopback chat endpoint for answers the fake does not send (any headers, any
    bytes, at any pace): every POST gets `reply()` (status, headers, body chunks), sent as
    it is and ended by closing the connection."""

    def __init__(self) -> None:
        self.reply: Callable[[], Reply] = lambda: (200, {}, [b""])
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                server.requests += 1
                status, headers, chunks = server.reply()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(OSError):
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def model(self, *, async_: bool = False) -> Any:
        """A registered-like pinference model whose chat goes to this server."""
        from llm_pinference import plugin
        from llm_pinference.core.models import ModelInfo
        from llm_pinference.core.settings import Settings
        from llm_pinference.registration import record

        pair = plugin.model_builder(Settings(base_url=self.base_url))(record(ModelInfo("m", "m")))
        return pair[1] if async_ else pair[0]
