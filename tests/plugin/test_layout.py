"""The plugin's modules and the one credentials seam they share.

Arrows point one way: plugin -> commands -> messages -> core. Credentials (key, team, base
URL, headers) come from `settings.credentials` / `Settings.headers()` for listing,
prompting and the commands alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_pinference.core.settings import TEAM_HEADER, Settings, credentials
from pinference_fake import FakePinference
from tests.plugin.helpers import KEY, TEAM, invoke, reset_state, write_prime_config


def test_no_hooks_indirection() -> None:
    from llm_pinference import commands

    assert not hasattr(commands, "Hooks")
    assert commands.build_group().commands.keys() >= {"models", "model", "refresh"}


# The seam


def test_credentials_key_precedence(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"api_key": "from-config", "team_id": TEAM, "inference_url": "http://c/api/"}
    assert credentials(env={}, config=config) == Settings("from-config", TEAM, "http://c/api")
    env = {"PRIME_API_KEY": "from-env", "PRIME_INFERENCE_URL": "http://e/v1/"}
    assert credentials(env=env, config=config) == Settings("from-env", TEAM, "http://e/v1")
    assert credentials(" from-llm ", env=env, config=config).api_key == "from-llm"
    assert credentials("  ", env=env, config=config).api_key == "from-env"  # blank = none
    write_prime_config(isolated_env, api_key="from-file")
    assert credentials().api_key == "from-file"  # env and config default to the real ones


def test_team_applies_only_with_a_key() -> None:
    assert Settings(team_id=TEAM).team is None
    assert Settings(team_id=TEAM).headers() == {}
    with_key = Settings(api_key=KEY, team_id=TEAM)
    assert with_key.team == TEAM
    assert with_key.headers() == {"Authorization": f"Bearer {KEY}", TEAM_HEADER: TEAM}


def test_prompts_send_the_seams_headers(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chat requests carry exactly the headers Settings.headers() builds for the key in use."""
    reset_state()
    monkeypatch.setenv("PRIME_INFERENCE_URL", fake.base_url)
    monkeypatch.setenv("PRIME_TEAM_ID", TEAM)
    monkeypatch.setenv("PRIME_API_KEY", KEY)
    result = invoke(["-m", "pinference/deepseek-chat", "hi", "--no-log", "--key", "other-key"])
    assert result.exit_code == 0, result.output
    (chat,) = fake.requests_for("chat")
    expected = Settings(api_key="other-key", team_id=TEAM).headers()
    assert {name: chat.header(name) for name in expected} == expected
