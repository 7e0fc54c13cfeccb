"""Registration through llm's real CLI: listing, display, capabilities, keys, team header,
and the installed entry point (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import llm
import pytest

from llm_pinference import cache as catalog
from llm_pinference import plugin
from llm_pinference.core.settings import TEAM_HEADER
from pinference_fake import FakePinference, Fault, default_catalogue
from tests.plugin.helpers import (
    KEY,
    PRIVATE_MODEL,
    TEAM,
    auth_header,
    cache_file,
    errors_as_users_see_them,
    invoke,
    pinference_ids,
    read_cache,
    reset_state,
    set_cache_times,
    set_key,
    write_prime_config,
)

CHAT_MODEL = "qwen/qwen3-30b-a3b-instruct-2507"


pytestmark = pytest.mark.usefixtures("configured")  # a key: the hooks fetch the list


def registered() -> dict[str, llm.Model]:
    return {m.model_id: m for m in llm.get_models() if m.model_id.startswith("pinference/")}


def test_llm_models_lists_every_fake_model(fake: FakePinference) -> None:
    result = invoke(["models"])
    assert result.exit_code == 0, result.output
    assert sorted(pinference_ids(result.stdout)) == sorted(m["id"] for m in default_catalogue())
    # llm's own models are still there: the plugin adds, never replaces.
    assert "OpenAI Chat: gpt-4o" in result.stdout
    assert len(fake.requests_for("list")) == 1
    lines = result.stdout.splitlines()
    assert (
        "Pinference: pinference/meta-llama/llama-3.1-70b-instruct "
        "(Llama 3.1 70B Instruct, 128k context)" in lines
    )
    assert (
        "Pinference: pinference/anthropic/claude-sonnet-4.5 (Claude Sonnet 4.5, 200k context)"
        in (lines)
    )
    # A model with nothing but an id gets a bare line.
    assert "Pinference: pinference/mistralai/mistral-small-3.2-24b-instruct" in lines


def test_llm_models_query_matches_display_name() -> None:
    result = invoke(["models", "-q", "sonnet", "-q", "pinference"])
    assert pinference_ids(result.stdout) == ["anthropic/claude-sonnet-4.5"]


def test_sync_and_async_models_carry_the_real_id_and_base_url(fake: FakePinference) -> None:
    model = llm.get_model("pinference/" + CHAT_MODEL)
    async_model = llm.get_async_model("pinference/" + CHAT_MODEL)
    for m in (model, async_model):
        assert m.model_name == CHAT_MODEL
        assert m.api_base == fake.base_url
        assert m.needs_key == "pinference"
        assert m.key_env_var == "PRIME_API_KEY"
    assert isinstance(model, plugin.PinferenceChat)
    assert isinstance(async_model, plugin.PinferenceAsyncChat)


def test_capabilities_follow_the_metadata() -> None:
    models = registered()
    sonnet = models["pinference/anthropic/claude-sonnet-4.5"]  # vision, tools, reasoning
    assert sonnet.supports_tools and sonnet.supports_schema
    assert "image/png" in sonnet.attachment_types
    assert "application/pdf" not in sonnet.attachment_types  # images only
    assert "reasoning_effort" in sonnet.Options.model_fields

    llama = models["pinference/meta-llama/llama-3.1-70b-instruct"]  # text, tools, no reasoning
    assert llama.supports_tools and llama.supports_schema
    assert not llama.attachment_types
    assert "reasoning_effort" not in llama.Options.model_fields

    r1 = models["pinference/deepseek/deepseek-r1-0528"]  # reasoning without tools
    assert not r1.supports_tools and not r1.supports_schema
    assert "reasoning_effort" in r1.Options.model_fields

    bare = models["pinference/mistralai/mistral-small-3.2-24b-instruct"]  # unknown: all off
    assert not bare.supports_tools and not bare.supports_schema
    assert not bare.attachment_types
    assert "reasoning_effort" not in bare.Options.model_fields


# Keys: --key, then `llm keys set pinference`, then PRIME_API_KEY, then ~/.prime/config.json


def _prompt_auth(fake: FakePinference, *extra: str) -> str | None:
    fake.clear_requests()
    result = invoke(["-m", "pinference/" + CHAT_MODEL, "hi", "--no-log", *extra])
    assert result.exit_code == 0, result.output
    (chat,) = fake.requests_for("chat")
    return auth_header(chat)


def test_key_lookup_order(
    fake: FakePinference, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    write_prime_config(isolated_env, api_key="from-config")
    assert _prompt_auth(fake) == "Bearer from-config"
    monkeypatch.setenv("PRIME_API_KEY", "from-env")
    assert _prompt_auth(fake) == "Bearer from-env"
    assert invoke(["keys", "set", "pinference", "--value", "from-keys"]).exit_code == 0
    assert _prompt_auth(fake) == "Bearer from-keys"
    assert _prompt_auth(fake, "--key", "from-option") == "Bearer from-option"


def test_no_key_anywhere_is_a_one_line_error(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    errors_as_users_see_them(monkeypatch)
    assert invoke(["pinference", "refresh"]).exit_code == 0  # the public list, cached
    result = invoke(["-m", "pinference/" + CHAT_MODEL, "hi"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: No key found")
    assert "llm keys set pinference" in result.stderr and "PRIME_API_KEY" in result.stderr
    assert "~/.prime/config.json" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert fake.requests_for("chat") == []


# Not configured: no network from the hooks


@pytest.mark.parametrize("args", [["models"], ["--help"], ["models", "-q", "gpt"], ["aliases"]])
def test_no_key_no_request_and_no_word(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "pinference" not in result.stdout.lower() or args == ["--help"]
    assert result.stderr == ""
    llm.get_model("gpt-4o")
    assert fake.requests == []


def test_without_a_key_the_cached_list_is_used_at_any_age(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    # `llm pinference models` and `refresh` work without a key: the list is public.
    assert invoke(["pinference", "models"]).exit_code == 0
    assert auth_header(fake.requests_for("list")[0]) is None
    assert invoke(["pinference", "refresh"]).exit_code == 0
    assert len(fake.requests) == 2
    set_cache_times(fetched_at=time.time() - 30 * 86400)  # a month old: still used, silently
    fake.set_fault("list", Fault(status=500))
    result = invoke(["models"])
    assert sorted(pinference_ids(result.stdout)) == sorted(m["id"] for m in default_catalogue())
    assert result.stderr == ""
    assert len(fake.requests) == 2  # no request from the hooks


@pytest.mark.parametrize(
    "sources, used",
    [
        (["env"], "k-env"),
        (["keys.json"], "k-keys"),
        (["config"], "k-config"),
        (["config", "env", "keys.json"], "k-keys"),  # the prompt's order holds for listings
    ],
)
def test_a_key_from_any_source_turns_fetching_on(
    fake: FakePinference,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    sources: list[str],
    used: str,
) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    if "env" in sources:
        monkeypatch.setenv("PRIME_API_KEY", "k-env")
    if "keys.json" in sources:
        set_key("k-keys")
    if "config" in sources:
        write_prime_config(isolated_env, api_key="k-config")
    assert pinference_ids(invoke(["models"]).stdout)
    (listing,) = fake.requests_for("list")
    assert auth_header(listing) == f"Bearer {used}"


# Team header: only together with a key


def test_team_header_needs_a_key(fake: FakePinference, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    fake.add_private_model(TEAM, PRIVATE_MODEL)
    monkeypatch.setenv("PRIME_TEAM_ID", TEAM)
    assert invoke(["pinference", "refresh"]).exit_code == 0
    ids = pinference_ids(invoke(["models"]).stdout)
    (listing,) = fake.requests_for("list")
    assert listing.header(TEAM_HEADER) is None and auth_header(listing) is None
    assert PRIVATE_MODEL["id"] not in ids

    monkeypatch.setenv("PRIME_API_KEY", KEY)
    ids = pinference_ids(invoke(["models"]).stdout)  # another account: its own list
    listing = fake.requests_for("list")[-1]
    assert listing.header(TEAM_HEADER) == TEAM and auth_header(listing) == f"Bearer {KEY}"
    assert PRIVATE_MODEL["id"] in ids

    result = invoke(["-m", "pinference/" + PRIVATE_MODEL["id"], "hi", "--no-log"])
    assert result.exit_code == 0, result.output
    (chat,) = fake.requests_for("chat")
    assert chat.header(TEAM_HEADER) == TEAM


def test_team_header_with_a_key_given_only_as_option(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    monkeypatch.setenv("PRIME_TEAM_ID", TEAM)
    assert invoke(["pinference", "refresh"]).exit_code == 0
    fake.clear_requests()
    result = invoke(["-m", "pinference/" + CHAT_MODEL, "hi", "--key", KEY, "--no-log"])
    assert result.exit_code == 0, result.output
    (chat,) = fake.requests_for("chat")
    assert chat.header(TEAM_HEADER) == TEAM


def test_no_team_header_without_a_team(fake: FakePinference) -> None:
    invoke(["-m", "pinference/" + CHAT_MODEL, "hi", "--no-log"])
    (chat,) = fake.requests_for("chat")
    assert chat.header(TEAM_HEADER) is None


# The hooks never raise


def test_a_failing_catalog_never_breaks_llm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def broken(self: object, **kwargs: object) -> None:
        calls.append(1)
        raise RuntimeError("boom")

    monkeypatch.setattr(catalog.Catalog, "get", broken)
    warning = "llm-pinference: cannot list Pinference models"
    result = invoke(["models"])
    assert result.exit_code == 0
    assert "OpenAI Chat: gpt-4o" in result.stdout
    assert result.stderr.count(warning) == 1
    assert "RuntimeError: boom" in result.stderr
    # The same failure again, in the same process: still resolvable, and not said twice.
    failures = len(calls)
    capsys.readouterr()
    assert llm.get_model("gpt-4o").model_id == "gpt-4o"
    again = invoke(["models"])
    assert again.exit_code == 0 and "OpenAI Chat: gpt-4o" in again.stdout
    assert len(calls) > failures  # the hook failed again...
    assert warning not in capsys.readouterr().err + again.stderr  # ...and said nothing


def test_a_corrupt_keys_file_still_lists_models(fake: FakePinference) -> None:
    keys = Path(os.environ["LLM_USER_PATH"]) / "keys.json"
    keys.parent.mkdir(parents=True, exist_ok=True)
    keys.write_text("{not json")
    assert len(registered()) == len(default_catalogue())


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r.__setitem__(3, "many"),  # options
        lambda r: r.__setitem__(3, 1 << 40),
        lambda r: r.__setitem__(2, 99),  # capabilities
        lambda r: r.__setitem__(1, 42),  # the line llm prints must be text
        lambda r: r.__delitem__(slice(1, None)),
    ],
    ids=["options", "options-range", "capabilities", "line", "short"],
)
def test_one_damaged_record_does_not_hide_the_others(damage: Callable[[list], None]) -> None:
    invoke(["models"])
    data = read_cache()
    (entry,) = data["accounts"].values()
    (record,) = [r for r in entry["records"] if r[0] == CHAT_MODEL]
    damage(record)
    cache_file().write_text(json.dumps(data))
    reset_state()
    result = invoke(["models"])
    assert result.exit_code == 0 and "OpenAI Chat: gpt-4o" in result.stdout
    assert sorted(pinference_ids(result.stdout)) == sorted(
        m["id"] for m in default_catalogue() if m["id"] != CHAT_MODEL
    )
    assert "skipped 1 model(s) that could not be registered" in result.stderr


# The installed entry point, in real subprocesses


def _llm(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("llm")
    return subprocess.run(
        [str(exe), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_entry_point_loads_in_a_real_llm(fake: FakePinference) -> None:
    env = {**os.environ, "LLM_LOAD_PLUGINS": "llm-pinference", "PRIME_API_KEY": KEY}
    plugins = _llm(["plugins"], env)
    assert plugins.returncode == 0, plugins.stderr
    assert {p["name"] for p in json.loads(plugins.stdout)} == {"llm-pinference"}

    models = _llm(["models"], env)
    assert models.returncode == 0, models.stderr
    assert sorted(pinference_ids(models.stdout)) == sorted(m["id"] for m in default_catalogue())

    prompt = _llm(["-m", "pinference/" + CHAT_MODEL, "hello"], env)
    assert prompt.returncode == 0, prompt.stderr
    assert f"Hello from {CHAT_MODEL}! You said: hello" in prompt.stdout
    assert len(fake.requests_for("list")) == 1  # the second process used the cache


def test_entry_point_found_without_llm_load_plugins(fake: FakePinference) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LLM_LOAD_PLUGINS"}
    result = _llm(["pinference", "models", "-q", "sonnet"], env)
    assert result.returncode == 0, result.stderr
    assert "pinference/anthropic/claude-sonnet-4.5" in result.stdout


@pytest.mark.parametrize(
    "imports, unloaded",
    [("llm.cli, llm_pinference.plugin", "requests"), ("llm_pinference.cache", "llm, requests")],
)
def test_importing_loads_neither_requests_nor_what_the_module_does_not_need(
    imports: str, unloaded: str
) -> None:
    """Start-up stays light: requests loads on the first request; the cache needs no llm."""
    code = f"import sys, {imports}; print(*[m in sys.modules for m in '{unloaded}'.split(', ')])"
    env = {**os.environ, "LLM_LOAD_PLUGINS": "llm-pinference"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0 and set(out.stdout.split()) == {"False"}, out.stderr


def test_an_unknown_pinference_model_gets_a_hint(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors_as_users_see_them(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["llm", "-m", "pinference/nope", "hi"])
    monkeypatch.delenv("PRIME_API_KEY")
    # No key, no cached list: how to set a key.
    result = invoke(["-m", "pinference/nope", "hi"])
    hint, error = result.stderr.strip().splitlines()
    assert hint.startswith("llm-pinference: no Pinference models are listed")
    assert "llm keys set pinference" in hint and "llm pinference refresh" in hint
    assert error == "Error: 'Unknown model: pinference/nope'"
    # A key and a cached list without the model: refresh.
    monkeypatch.setenv("PRIME_API_KEY", KEY)
    reset_state()
    result = invoke(["-m", "pinference/nope", "hi"])
    hint = result.stderr.strip().splitlines()[0]
    assert hint.startswith("llm-pinference: pinference/nope is not in the model list cached")
    assert "`llm pinference refresh`" in hint
    # Other commands and models say nothing.
    reset_state()
    monkeypatch.setattr(sys, "argv", ["llm", "models"])
    assert invoke(["models"]).stderr == ""


@pytest.mark.parametrize(
    "argv, wanted",
    [
        (["llm", "-m", "pinference/a/b", "hi"], "a/b"),
        (["llm", "--model=pinference/a"], "a"),
        (["llm", "-mpinference/x"], "x"),
        (["llm", "chat", "--model", "pinference/y"], "y"),
        (["llm", "-m", "gpt-4o", "pinference/z"], None),
        (["llm", "models", "-q", "pinference/z"], None),
    ],
)
def test_the_model_a_command_line_asks_for(argv: list[str], wanted: str | None) -> None:
    assert plugin.requested_model(argv) == wanted
