"""The model-list cache as llm users meet it: TTL, stale fallback, back-off, corrupt files,
account switches, and no secret on disk or in output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import llm
import pytest

from llm_pinference import cache as catalog
from llm_pinference import registration
from pinference_fake import FakePinference, Fault, default_catalogue, generate_catalogue
from tests.plugin.helpers import (
    KEY,
    PRIVATE_MODEL,
    TEAM,
    cache_file,
    invoke,
    pinference_ids,
    read_cache,
    reset_state,
    set_cache_times,
    user_dir,
)
from tests.support import free_port as closed_port

ALL_IDS = sorted(m["id"] for m in default_catalogue())
WARNING = "llm-pinference: could not refresh the model list"


pytestmark = pytest.mark.usefixtures("configured")  # a key: the hooks fetch the list


def listed() -> list[str]:
    result = invoke(["models"])
    assert result.exit_code == 0, result.output
    return sorted(pinference_ids(result.stdout))


def test_warm_cache_makes_no_request(fake: FakePinference) -> None:
    assert listed() == ALL_IDS
    for _ in range(3):
        assert listed() == ALL_IDS
        llm.get_model("pinference/deepseek-chat")
    assert len(fake.requests_for("list")) == 1


def test_cache_file_format() -> None:
    listed()
    data = read_cache()
    assert data["format"] == "llm-pinference/models-cache" and data["version"] == 1
    (account,) = data["accounts"]
    assert account == f"{os.environ['PRIME_INFERENCE_URL']}|team="
    entry = data["accounts"][account]
    assert sorted(m["id"] for m in json.loads(entry["models"])) == ALL_IDS  # JSON text
    assert abs(entry["fetched_at"] - time.time()) < 600
    assert entry["retry_at"] is None and entry["error"] is None
    assert not [p.name for p in user_dir().iterdir() if p.name.endswith(".tmp")]


def test_the_records_the_hooks_read() -> None:
    listed()
    (entry,) = read_cache()["accounts"].values()
    version, records = entry["records"]
    assert version == registration.RECORDS.version
    by_id = {r[0]: r for r in records}
    assert sorted(by_id) == ALL_IDS
    sonnet = by_id["anthropic/claude-sonnet-4.5"]
    assert sonnet[1] == (
        "Pinference: pinference/anthropic/claude-sonnet-4.5 (Claude Sonnet 4.5, 200k context)"
    )
    assert sonnet[2] == registration.VISION | registration.TOOLS | registration.SCHEMA
    assert "reasoning_effort" in registration.names_of(sonnet[3])
    assert sorted(p.name for p in user_dir().iterdir() if p.name.startswith("pinference")) == [
        catalog.CACHE_FILENAME,
        catalog.CACHE_FILENAME + catalog.LOCK_SUFFIX,
    ]  # one cache file (and its lock)


def test_a_warm_start_parses_no_api_object(fake: FakePinference, parsed: list[object]) -> None:
    listed()
    parsed.clear()
    for _ in range(2):
        reset_state()  # a new llm process
        assert listed() == ALL_IDS
        assert llm.get_model("pinference/deepseek-chat").supports_tools is not None
    assert parsed == []
    assert len(fake.requests_for("list")) == 1
    # A model's details are still at hand, parsed when asked for.
    sonnet = llm.get_model("pinference/anthropic/claude-sonnet-4.5")
    assert sonnet.info.display_name == "Claude Sonnet 4.5" and sonnet.info.pricing.input == 3
    assert len(parsed) == len(ALL_IDS)


def test_records_of_another_release_are_derived_from_the_list(fake: FakePinference) -> None:
    listed()
    data = read_cache()
    (entry,) = data["accounts"].values()
    entry["models"] = [
        *json.loads(entry["models"]),
        {"id": "added/by-hand", "display_name": "By hand"},
    ]  # a list of objects (as written before) is read too
    entry["records"][0] += 1  # what another release of the plugin derived
    cache_file().write_text(json.dumps(data))
    reset_state()
    assert listed() == sorted([*ALL_IDS, "added/by-hand"])
    assert len(fake.requests_for("list")) == 1


def test_ttl_expiry_triggers_exactly_one_refetch(fake: FakePinference) -> None:
    listed()
    set_cache_times(fetched_at=time.time() - 3601)
    fake.set_models(default_catalogue()[:3])
    assert listed() == sorted(m["id"] for m in default_catalogue()[:3])
    listed()
    assert len(fake.requests_for("list")) == 2


def test_ttl_from_the_environment(fake: FakePinference, monkeypatch: pytest.MonkeyPatch) -> None:
    listed()
    set_cache_times(fetched_at=time.time() - 120)
    listed()
    assert len(fake.requests_for("list")) == 1  # 2 minutes old: fresh for the 1 h default
    monkeypatch.setenv("LLM_PINFERENCE_CACHE_TTL", "60")
    listed()
    assert len(fake.requests_for("list")) == 2


def test_stale_list_with_a_single_warning(
    fake: FakePinference, capsys: pytest.CaptureFixture[str]
) -> None:
    listed()
    set_cache_times(fetched_at=time.time() - 7200)
    fake.set_fault("list", Fault(status=500))
    result = invoke(["models"])
    assert sorted(pinference_ids(result.stdout)) == ALL_IDS
    warnings = [line for line in result.stderr.splitlines() if line.startswith(WARNING)]
    assert len(warnings) == 1, result.stderr
    assert "Using the list cached 2 h ago; next try in 5 min" in warnings[0]
    assert "server_error (HTTP 500)" in warnings[0]
    # Same process, more lookups: no second request (the back-off)...
    llm.get_model("pinference/deepseek-chat")
    result = invoke(["models"])
    assert WARNING not in result.stderr
    assert len(fake.requests_for("list")) == 2
    # ...and when the back-off is over and the same failure comes back, no second warning.
    set_cache_times(retry_at=time.time() - 1)
    catalog.reset_process_state()  # the in-process back-off and memo, not the notices
    capsys.readouterr()
    llm.get_model("pinference/deepseek-chat")
    result = invoke(["models"])
    assert len(fake.requests_for("list")) == 3  # it failed again
    assert sorted(pinference_ids(result.stdout)) == ALL_IDS
    assert WARNING not in capsys.readouterr().err + result.stderr


def test_backoff_stops_retries_and_warnings_across_processes(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=503))
    result = invoke(["models"])
    assert WARNING in result.stderr and "No Pinference models until then" in result.stderr
    assert pinference_ids(result.stdout) == []
    entry = next(iter(read_cache()["accounts"].values()))
    assert 250 < entry["retry_at"] - time.time() <= 300
    assert "server_error" in entry["error"]

    reset_state()  # a new llm process: only the file remembers
    result = invoke(["models"])
    assert result.exit_code == 0 and WARNING not in result.stderr
    assert len(fake.requests_for("list")) == 1

    fake.clear_faults()
    set_cache_times(retry_at=time.time() - 1)  # the back-off is over
    assert listed() == ALL_IDS
    assert len(fake.requests_for("list")) == 2


def test_backoff_honours_a_long_retry_after(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=429, retry_after="1200"))
    result = invoke(["models"])
    assert "wait 1200s and try again" in result.stderr and "next try in 20 min" in result.stderr
    entry = next(iter(read_cache()["accounts"].values()))
    assert 1100 < entry["retry_at"] - time.time() <= 1200


def test_backoff_even_when_the_cache_cannot_be_written(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unwritable(path: Path, data: bytes) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(catalog, "_atomic_write", unwritable)
    fake.set_fault("list", Fault(status=503))
    invoke(["models"])
    invoke(["models"])
    assert len(fake.requests_for("list")) == 1


@pytest.mark.parametrize(
    "content",
    [
        b"this is not json",
        b"",
        b"\x00\xff\xfe\x89PNG\r\n\x1a\n" * 20,
        b'["a", "list"]',
        b'{"data": [{"id": "openrouter/model"}]}',  # someone else's cache format
        b'{"format": "llm-pinference/models-cache", "version": 1, "accounts": []}',
        b'{"format": "llm-pinference/models-cache", "version": 99, "accounts": {}}',
        b'{"format": "llm-pinference/models-cache", "version": 1, "accounts": {"ACCOUNT": '
        b'{"fetched_at": "yesterday", "models": "many"}}}',
    ],
)
def test_corrupt_or_foreign_cache_is_ignored_and_replaced(
    fake: FakePinference, content: bytes
) -> None:
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    account = f"{fake.base_url}|team=".encode()
    path.write_bytes(content.replace(b"ACCOUNT", account))
    result = invoke(["models"])
    assert result.exit_code == 0 and sorted(pinference_ids(result.stdout)) == ALL_IDS
    assert result.stderr == ""
    assert read_cache()["format"] == "llm-pinference/models-cache"  # replaced
    assert len(fake.requests_for("list")) == 1


def test_another_base_url_never_shows_the_other_list(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert listed() == ALL_IDS
    other_models = generate_catalogue(4)
    with FakePinference(models=other_models) as other:
        monkeypatch.setenv("PRIME_INFERENCE_URL", other.base_url)
        assert listed() == sorted(m["id"] for m in other_models)
        # Unreachable third URL, nothing cached for it: nothing shown, not the others' lists.
        monkeypatch.setenv("PRIME_INFERENCE_URL", f"http://127.0.0.1:{closed_port()}/api/v1")
        assert listed() == []
        monkeypatch.setenv("PRIME_INFERENCE_URL", fake.base_url)
        assert listed() == ALL_IDS  # back to the first account: from the cache
        assert len(other.requests_for("list")) == 1
    assert len(fake.requests_for("list")) == 1
    assert len(read_cache()["accounts"]) == 3


def test_another_team_never_shows_the_other_teams_models(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_private_model(TEAM, PRIVATE_MODEL)
    monkeypatch.setenv("PRIME_API_KEY", KEY)
    monkeypatch.setenv("PRIME_TEAM_ID", TEAM)
    assert PRIVATE_MODEL["id"] in listed()
    monkeypatch.setenv("PRIME_TEAM_ID", "team-other")
    assert listed() == ALL_IDS
    monkeypatch.delenv("PRIME_TEAM_ID")
    assert listed() == ALL_IDS
    assert len(fake.requests_for("list")) == 3
    monkeypatch.setenv("PRIME_TEAM_ID", TEAM)
    assert PRIVATE_MODEL["id"] in listed()  # cached per team
    assert len(fake.requests_for("list")) == 3


def test_a_hanging_server_costs_one_read_timeout_then_nothing(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "READ_TIMEOUT", 0.5)
    fake.set_fault("list", Fault(mode="hang"))
    started = time.monotonic()
    result = invoke(["models"])
    assert time.monotonic() - started < 30  # generous: bounded by the timeout, not hung
    assert "timeout" in result.stderr and result.exit_code == 0
    invoke(["models"])
    assert len(fake.requests_for("list")) == 1


def test_the_key_is_in_no_output_and_no_file(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that echoes the key into model metadata must not get it written to disk.
    fake.set_models([*default_catalogue(), {"id": "echo/model", "display_name": f"key {KEY}"}])
    fake.add_private_model(TEAM, PRIVATE_MODEL)
    monkeypatch.setenv("PRIME_TEAM_ID", TEAM)
    outputs = []
    assert invoke(["keys", "set", "pinference", "--value", KEY]).exit_code == 0
    for args in (
        ["models"],
        ["pinference", "models", "--json"],
        ["pinference", "refresh"],
        ["pinference", "model", PRIVATE_MODEL["id"]],
        ["-m", "pinference/deepseek-chat", "hello"],
        ["logs", "--json"],
    ):
        result = invoke(args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    fake.set_fault("*", Fault(status=401))
    for args in (["pinference", "refresh"], ["pinference", "model", "deepseek-chat"]):
        outputs.append(invoke(args).output)
    set_cache_times(fetched_at=0)
    outputs.append(invoke(["models"]).output)
    assert all(KEY not in out for out in outputs)
    assert any(f"Bearer {KEY}" == r.header("authorization") for r in fake.requests)
    leaks = [
        path.name
        for path in user_dir().rglob("*")
        if path.is_file() and path.name != "keys.json" and KEY.encode() in path.read_bytes()
    ]
    assert leaks == []
    assert cache_file().exists() and KEY.encode() in (user_dir() / "keys.json").read_bytes()


def test_cache_survives_json_round_trip_of_every_field(fake: FakePinference) -> None:
    listed()
    reset_state()  # parse from the file, not the in-process memo
    sonnet = llm.get_model("pinference/anthropic/claude-sonnet-4.5")
    assert sonnet.supports_tools and "image/png" in sonnet.attachment_types
    assert str(sonnet) == (
        "Pinference: pinference/anthropic/claude-sonnet-4.5 (Claude Sonnet 4.5, 200k context)"
    )
    assert json.loads(cache_file().read_text())["accounts"]


# `llm models` against a list that arrives one byte every 0.5 s (each byte well inside the
# read timeout): the README's budget, measured in real llm processes against a no-fault
# baseline run in the same test.

LLM = str(Path(sys.executable).with_name("llm"))
#: What llm's start-up may vary by between two runs on a busy machine.
STARTUP_SLACK = 2.5


def run_llm(args: list[str], user_dir: Path, base_url: str) -> tuple[float, str, str]:
    env = {
        **os.environ,
        "LLM_LOAD_PLUGINS": "llm-pinference",
        "LLM_USER_PATH": str(user_dir),
        "PRIME_INFERENCE_URL": base_url,
        "PRIME_API_KEY": KEY,
    }
    started = time.monotonic()
    proc = subprocess.run(
        [LLM, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return time.monotonic() - started, proc.stdout, proc.stderr


@pytest.mark.integration
@pytest.mark.parametrize("part", ["head", "body"])
def test_llm_models_against_a_dripping_list_keeps_its_budget(
    fake: FakePinference, tmp_path: Path, part: str
) -> None:
    baseline, out, _ = run_llm(["models"], tmp_path / "baseline", fake.base_url)
    assert sorted(pinference_ids(out)) == ALL_IDS
    fake.set_fault("list", Fault(mode="drip", drip_part=part, drip_interval=0.5))
    fake.clear_requests()

    first, out, err = run_llm(["models"], tmp_path / "dripped", fake.base_url)
    budget = catalog.TOTAL_TIMEOUT  # the whole fetch, the 2 s connect included
    # at least most of the budget was spent waiting (a busy machine skews the baseline)
    assert budget - 1.5 <= first - baseline <= budget + STARTUP_SLACK, (first, baseline)
    (warning,) = err.strip().splitlines()
    assert warning.startswith(WARNING) and "timeout" in warning
    assert "OpenAI Chat: gpt-4o" in out and pinference_ids(out) == []

    second, out, err = run_llm(["models"], tmp_path / "dripped", fake.base_url)
    assert second - baseline <= STARTUP_SLACK, (second, baseline)  # backing off
    assert err == "" and "OpenAI Chat: gpt-4o" in out
    assert len(fake.requests_for("list")) == 1
