"""Edges of the settings lookup: what a broken config file says, which mapping decides,
and how settings show themselves (found by mutation testing, `make mutation`)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_pinference.core import notices
from llm_pinference.core.settings import Settings, load_prime_config, resolve_settings


@pytest.fixture(autouse=True)
def fresh_warnings() -> None:
    notices.forget()


def config_file(home: Path, text: str) -> Path:
    path = home / ".prime" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


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


def test_a_broken_config_names_the_line_to_fix(
    isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_file(isolated_env, '{\n  "api_key": "k-1234",\n  "team_id": oops\n}\n')
    with caplog.at_level(logging.WARNING, logger="llm_pinference"):
        assert resolve_settings() == Settings()
    (said,) = warnings(caplog)
    assert said.endswith("config.json: not valid JSON (line 3)"), said


@pytest.mark.skipif(
    not hasattr(sys, "get_int_max_str_digits"), reason="no limit on int digits here"
)
def test_a_number_too_long_to_read_is_a_warning_not_a_crash(
    isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """json refuses an integer of more than 4300 digits with a ValueError that has no line."""
    config_file(isolated_env, '{"api_key": "k-1234", "team_id": ' + "7" * 5000 + "}")
    with caplog.at_level(logging.WARNING, logger="llm_pinference"):
        assert resolve_settings() == Settings()
    (said,) = warnings(caplog)
    assert said.endswith("config.json: not valid JSON (a number too long)"), said


def test_an_unreadable_config_says_why(
    isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (isolated_env / ".prime" / "config.json").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="llm_pinference"):
        assert resolve_settings() == Settings()
    (said,) = warnings(caplog)
    assert said.endswith("config.json: not a regular file"), said


def test_the_config_file_is_utf8_whatever_the_locale(isolated_env: Path) -> None:
    """A service (systemd, cron, a container) often runs in the C locale, whose default
    encoding is ASCII: the config file is read as UTF-8 there too."""
    config_file(isolated_env, json.dumps({"api_key": "k-1234", "team_id": "équipe"}))
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
    config_file(isolated_env, json.dumps({"api_key": "k-from-file"}))
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
