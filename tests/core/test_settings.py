"""Key, team and base URL: which source decides, how settings show themselves, and the
config file as anyone may have left it (broken, huge, a FIFO, any bytes at all)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_pinference.core import notices
from llm_pinference.core.errors import InvalidSetting, Reason
from llm_pinference.core.settings import (
    DEFAULT_BASE_URL,
    MAX_CONFIG_BYTES,
    Settings,
    credentials,
    load_prime_config,
    resolve_settings,
)


def write_config(home: Path, data: object) -> Path:
    path = home / ".prime" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


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


def test_an_llm_key_wins_over_env_and_config(isolated_env):
    config = {"api_key": "from-config", "team_id": "t1", "inference_url": "http://c/api/"}
    assert credentials(env={}, config=config) == Settings("from-config", "t1", "http://c/api")
    env = {"PRIME_API_KEY": "from-env", "PRIME_INFERENCE_URL": "http://e/v1/"}
    assert credentials(env=env, config=config) == Settings("from-env", "t1", "http://e/v1")
    assert credentials(" from-llm ", env=env, config=config).api_key == "from-llm"
    assert credentials("  ", env=env, config=config).api_key == "from-env"  # blank = none
    write_config(isolated_env, {"api_key": "from-file"})
    assert credentials().api_key == "from-file"  # env and config default to the real ones


def test_team_header_only_with_key():
    assert Settings(team_id="t1").team is None and Settings(team_id="t1").headers() == {}
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
        ("{not json", "not valid JSON (line 1)"),
        ('{\n  "api_key": "k-1234",\n  "team_id": oops\n}\n', "not valid JSON (line 3)"),
        # json refuses an integer of more than 4300 digits with an error that has no line
        ('{"team_id": ' + "7" * 5000 + "}", "not valid JSON (a number too long)"),
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


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_each_distinct_problem_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Once per problem, not once in all: a second broken file is still reported."""
    broken, listed = tmp_path / "broken.json", tmp_path / "listed.json"
    broken.write_text("{broken")
    listed.write_text("[1, 2]")
    with caplog.at_level(logging.WARNING, logger="llm_pinference"):
        for _ in range(3):
            assert load_prime_config(broken) == {}
            assert load_prime_config(listed) == {}
    said = warnings(caplog)
    assert len(said) == 2, said
    assert "broken.json: not valid JSON" in said[0]
    assert "listed.json: expected a JSON object" in said[1]


@pytest.mark.parametrize("make", [os.mkdir, os.mkfifo])  # a FIFO: a blocking open would hang
def test_a_config_that_is_no_regular_file_is_a_notice(
    isolated_env: Path, caplog: pytest.LogCaptureFixture, make: Callable[[Path], None]
) -> None:
    path = isolated_env / ".prime" / "config.json"
    path.parent.mkdir(parents=True)
    make(path)
    with caplog.at_level(logging.WARNING, logger="llm_pinference"):
        assert resolve_settings() == Settings()
    (said,) = warnings(caplog)
    assert said.endswith("config.json: not a regular file"), said


def test_the_config_file_is_utf8_whatever_the_locale(isolated_env: Path) -> None:
    """A service (systemd, cron, a container) often runs in the C locale, whose default
    encoding is ASCII: the config file is read as UTF-8 there too."""
    write_config(isolated_env, json.dumps({"api_key": "k-1234", "team_id": "équipe"}))
    assert resolve_settings().team_id == "équipe"
    env = {
        **os.environ,
        "LC_ALL": "C",
        "PYTHONUTF8": "0",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONIOENCODING": "utf-8",
    }
    code = (
        "import locale\n"
        "from llm_pinference.core.settings import resolve_settings\n"
        "print(locale.getpreferredencoding(False), resolve_settings().team_id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
        check=True, encoding="utf-8",
    )  # fmt: skip
    encoding, team = out.stdout.split()
    assert encoding.lower().replace("-", "") != "utf8", "the C locale is UTF-8 here: no test"
    assert team == "équipe", out.stderr


def test_the_given_environment_decides_not_the_process_one(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin asks for the config file's key alone with `env={}`."""
    write_config(isolated_env, json.dumps({"api_key": "k-from-file"}))
    monkeypatch.setenv("PRIME_API_KEY", "k-from-env")
    monkeypatch.setenv("PRIME_INFERENCE_URL", "http://env.test/v1")
    alone = resolve_settings(env={})
    assert (alone.api_key, alone.base_url) == ("k-from-file", Settings().base_url)
    given = resolve_settings(env={"PRIME_API_KEY": "k-given"}, config={})
    assert given.api_key == "k-given"


def test_settings_show_whether_a_key_is_set_never_the_key() -> None:
    assert "api_key='***'" in repr(Settings(api_key="k-123456"))
    assert "api_key=None" in repr(Settings())
    assert "k-123456" not in repr(Settings(api_key="k-123456"))


def test_a_config_past_the_size_cap_is_a_notice(
    isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_config(isolated_env, '{"api_key": "k-1234"}' + " " * MAX_CONFIG_BYTES)
    with caplog.at_level(logging.WARNING, logger="llm_pinference"):
        assert resolve_settings() == Settings()
    (said,) = warnings(caplog)
    assert said.endswith(f"config.json: larger than {MAX_CONFIG_BYTES} bytes"), said
    write_config(isolated_env, '{"api_key": "k-1234"}'.ljust(MAX_CONFIG_BYTES))
    assert resolve_settings().api_key == "k-1234"  # at the cap: read


KEY_WITH = "pit_ключ_0123456789"  # Cyrillic: outside Latin-1


def refusal(call: Callable[[], object]) -> str:
    with pytest.raises(InvalidSetting) as info:
        call()
    assert info.value.reason is Reason.CLIENT_ERROR and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "ключ" not in message and "\n" not in message
    return message


def test_a_key_http_cannot_carry_is_refused_naming_its_source(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIME_API_KEY", KEY_WITH)
    assert refusal(resolve_settings) == (
        "client_error: PRIME_API_KEY holds a character an HTTP header cannot carry "
        "(outside Latin-1, or a control character)"
    )
    monkeypatch.delenv("PRIME_API_KEY")
    write_config(isolated_env, {"api_key": KEY_WITH})
    assert refusal(resolve_settings).startswith(
        f"client_error: `api_key` in {isolated_env / '.prime' / 'config.json'} holds"
    )
    assert refusal(lambda: credentials(KEY_WITH, config={})).startswith(
        "client_error: the key given to llm holds"
    )
    monkeypatch.setenv("PRIME_TEAM_ID", "team\x1b[31m")
    assert refusal(lambda: resolve_settings(config={})).startswith("client_error: PRIME_TEAM_ID")
    # Built directly (a front end's own key file): refused when the headers are made.
    assert refusal(Settings(api_key="pit_a\nb_0123").headers).startswith(
        "client_error: the API key holds"
    )
    assert Settings(api_key="pit_café_0123").headers()["Authorization"] == "Bearer pit_café_0123"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["api_key", "team_id", "inference_url", "x"]) | st.text(max_size=5),
            inner, max_size=4),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
))  # fmt: skip
def test_any_bytes_in_the_config_give_settings_or_one_line(
    isolated_env: Path, content: bytes
) -> None:
    """Fuzzed: whatever the file holds, settings come out (or a key HTTP cannot carry is
    refused with one line), and every notice is one line."""
    notices.forget()
    path = isolated_env / ".prime" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("llm_pinference")
    logger.addHandler(handler)
    try:
        try:
            found = resolve_settings(env={})
        except InvalidSetting as exc:
            assert "\n" not in str(exc)
            return
    finally:
        logger.removeHandler(handler)
    assert isinstance(found, Settings) and isinstance(found.base_url, str)
    found.headers()  # sendable
    assert len(records) <= 1 and all("\n" not in r.getMessage() for r in records)
