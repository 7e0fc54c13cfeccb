import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from llm_pinference.core import notices
from llm_pinference.core.settings import (
    DEFAULT_BASE_URL,
    Settings,
    load_prime_config,
    resolve_settings,
)


def write_config(home: Path, data: object) -> Path:
    path = home / ".prime" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture(autouse=True)
def fresh_warnings():
    notices.forget()


def test_defaults_when_nothing_is_set():
    s = resolve_settings()
    assert s == Settings(api_key=None, team_id=None, base_url=DEFAULT_BASE_URL)
    assert s.headers() == {}


def test_config_file_used_when_env_unset(isolated_env):
    write_config(
        isolated_env,
        {"api_key": "cfg-key", "team_id": "cfg-team", "inference_url": "http://x.test/v1/"},
    )
    s = resolve_settings()
    assert (s.api_key, s.team_id, s.base_url) == ("cfg-key", "cfg-team", "http://x.test/v1")


def test_env_wins_over_config(isolated_env, monkeypatch):
    write_config(
        isolated_env, {"api_key": "cfg-key", "team_id": "cfg-team", "inference_url": "http://cfg"}
    )
    monkeypatch.setenv("PRIME_API_KEY", "env-key")
    monkeypatch.setenv("PRIME_TEAM_ID", "env-team")
    monkeypatch.setenv("PRIME_INFERENCE_URL", "http://env.test/api/v1///")
    s = resolve_settings()
    assert (s.api_key, s.team_id, s.base_url) == ("env-key", "env-team", "http://env.test/api/v1")


def test_blank_env_counts_as_unset(isolated_env, monkeypatch):
    write_config(isolated_env, {"team_id": "cfg-team", "api_key": "cfg-key"})
    monkeypatch.setenv("PRIME_TEAM_ID", "  ")
    monkeypatch.setenv("PRIME_API_KEY", "")
    s = resolve_settings()
    assert (s.api_key, s.team_id) == ("cfg-key", "cfg-team")


def test_team_header_only_with_key():
    assert Settings(team_id="t1").headers() == {}
    assert Settings(api_key="k-1234", team_id="t1").headers() == {
        "Authorization": "Bearer k-1234",
        "X-Prime-Team-ID": "t1",
    }
    assert Settings(api_key="k-1234").headers() == {"Authorization": "Bearer k-1234"}


def test_account_separates_urls_and_teams():
    a = Settings(api_key="k", team_id="t1", base_url="http://a")
    assert a.account != Settings(api_key="k", team_id="t2", base_url="http://a").account
    assert a.account != Settings(api_key="k", team_id="t1", base_url="http://b").account
    # Without a key the team header is not sent, so the team does not change what is visible.
    assert (
        Settings(team_id="t1", base_url="http://a").account == Settings(base_url="http://a").account
    )


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "not valid JSON"),
        ('{"api_key": ' + "[" * 100_000, "not valid JSON (nested too deeply)"),
        ("[1, 2]", "expected a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_config_warns_once_and_is_ignored(isolated_env, caplog, content, expected):
    path = isolated_env / ".prime" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with caplog.at_level(logging.WARNING, logger="llm_pinference"):
        assert resolve_settings() == Settings()
        assert resolve_settings() == Settings()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1, messages
    assert expected in messages[0] and "\n" not in messages[0]


def test_a_nested_config_file_still_lets_the_environment_decide(isolated_env, monkeypatch):
    write_config(isolated_env, "[" * 100_000 + "]" * 100_000)
    monkeypatch.setenv("PRIME_INFERENCE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("PRIME_API_KEY", "env-key")
    monkeypatch.setenv("PRIME_TEAM_ID", "env-team")
    assert resolve_settings() == Settings("env-key", "env-team", "http://127.0.0.1:9/api/v1")


def test_the_warning_is_printed_once_per_process(isolated_env):
    # What a user sees (logging's last-resort handler on stderr), not a logging record.
    write_config(isolated_env, "{broken")
    code = (
        "from llm_pinference.core.settings import resolve_settings\n"
        "for _ in range(3): resolve_settings()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "not valid JSON (line 1)" in lines[0], lines


def test_non_string_values_are_ignored(isolated_env):
    write_config(isolated_env, {"api_key": 123, "team_id": None, "inference_url": ["x"]})
    assert resolve_settings() == Settings()


def test_config_file_is_never_written(isolated_env):
    path = write_config(isolated_env, {"api_key": "cfg-key"})
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    resolve_settings()
    load_prime_config()
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_repr_hides_key():
    s = Settings(api_key="sk-secret-value", team_id="t")
    assert "sk-secret-value" not in repr(s) and "sk-secret-value" not in str(s)
