"""Strings from the API are data: shown escaped, never echoing a secret, one bounded line.

Control characters and ANSI escapes in ids and names must not drive the user's terminal;
an error body that echoes the key (or the base URL's password) must not print it; an
error message stays one line of a few hundred characters whatever the server sends.
"""

from __future__ import annotations

import json

import llm
import pytest

from llm_pinference import messages
from pinference_fake import FakePinference, Fault, default_catalogue
from tests.plugin.helpers import (
    KEY,
    ensure_registered,
    errors_as_users_see_them,
    invoke,
    reset_state,
)
from tests.support import free_port as closed_port

EVIL_ID = "evil/\x1b[31mred\x1b[0m-model"
EVIL = {
    "id": EVIL_ID,
    "object": "model",
    "owned_by": "\x1b[2Jowner",
    "display_name": "Name \x1b]0;pwned\x07 with\rcarriage",
    "serving": "hosted\x1b[5m",
    "specs": {"modalities": {"input": ["text\x1b[1m"], "output": ["text"]}},
    "supported_parameters": ["temperature\x08\x08"],
}
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, 0x9B)]
CHAT = "pinference/deepseek-chat"


@pytest.fixture(autouse=True)
def _plugin(fake: FakePinference, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_registered()
    reset_state()
    monkeypatch.setenv("PRIME_INFERENCE_URL", fake.base_url)
    monkeypatch.setenv("PRIME_API_KEY", KEY)


def assert_inert(text: str) -> None:
    """Nothing a terminal would act on: no control character but the newline."""
    found = sorted({repr(c) for c in text if c in CONTROLS})
    assert found == [], found


@pytest.mark.parametrize(
    "args",
    [
        ["models"],
        ["models", "-q", "evil"],
        ["pinference", "models"],
        ["pinference", "models", "-q", "evil"],
        ["pinference", "model", EVIL_ID],
        ["pinference", "refresh"],
    ],
    ids=lambda args: " ".join(a for a in args if a != EVIL_ID),
)
def test_api_strings_are_shown_escaped(fake: FakePinference, args: list[str]) -> None:
    fake.set_models([*default_catalogue()[:2], EVIL])
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert_inert(result.output)
    assert "evil/\\x1b[31mred\\x1b[0m-model" in result.stdout  # visible, not obeyed


def test_json_output_keeps_the_data_and_escapes_it(fake: FakePinference) -> None:
    fake.set_models([EVIL])
    result = invoke(["pinference", "models", "--json"])
    assert_inert(result.stdout)
    (model,) = json.loads(result.stdout)
    assert model["id"] == EVIL_ID and model["display_name"] == EVIL["display_name"]


def test_error_lines_from_the_api_are_escaped(fake: FakePinference) -> None:
    fake.set_fault("*", Fault(status=500, body=json.dumps({"error": "bad \x1b[2J\x1b[H day"})))
    result = invoke(["pinference", "refresh"])
    assert result.exit_code == 1
    assert_inert(result.output)
    assert "bad \\x1b[2J\\x1b[H day" in result.stderr


# Prompt errors: redacted and bounded, whatever the API sends back


def echo_fault(message: str, status: int = 400) -> Fault:
    return Fault(status=status, body=json.dumps({"error": {"message": message, "type": "x"}}))


@pytest.mark.parametrize("extra", [[], ["--no-stream"]], ids=["stream", "no-stream"])
@pytest.mark.parametrize("status", [400, 401, 500])
def test_a_key_echoed_in_a_prompt_error_is_redacted(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch, status: int, extra: list[str]
) -> None:
    errors_as_users_see_them(monkeypatch)
    fake.set_fault("chat", echo_fault(f"Incorrect API key provided: {KEY}.", status))
    result = invoke(["-m", CHAT, "hi", *extra])
    assert result.exit_code == 1
    assert KEY not in result.output and KEY[:8] not in result.output
    assert "Incorrect API key provided: ***." in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_key_given_with_dash_dash_key_is_redacted_too(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors_as_users_see_them(monkeypatch)
    other = "pit_other_key_8d7e6f5a4b"
    fake.set_fault("chat", echo_fault(f"key {other} is revoked", 401))
    result = invoke(["-m", CHAT, "hi", "--key", other])
    assert result.exit_code == 1
    assert other not in result.output and "key *** is revoked" in result.stderr


def test_a_key_at_the_cut_is_not_half_shown(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors_as_users_see_them(monkeypatch)
    # The key straddles the detail limit: cut first, redact after, and half of it would show.
    padding = "x" * (messages.DETAIL_LIMIT - len(KEY) // 2)
    fake.set_fault("chat", echo_fault(padding + KEY + " and more"))
    result = invoke(["-m", CHAT, "hi"])
    assert KEY[: len(KEY) // 2] not in result.output


@pytest.mark.parametrize("extra", [[], ["--no-stream"]], ids=["stream", "no-stream"])
def test_a_huge_multiline_error_is_one_bounded_line(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch, extra: list[str]
) -> None:
    errors_as_users_see_them(monkeypatch)
    noise = "\n".join(f"line {i}: \x1b[31mtrace\x1b[0m\tframe" for i in range(2000))
    fake.set_fault("chat", echo_fault(noise, 500))
    result = invoke(["-m", CHAT, "hi", *extra])
    (line,) = result.stderr.strip().splitlines()
    assert len(line) <= len("Error: ") + messages.MESSAGE_LIMIT
    assert line.startswith("Error: Pinference server_error (HTTP 500)")
    assert_inert(line)


def test_credentials_in_the_base_url_are_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors_as_users_see_them(monkeypatch)
    model = llm.get_model(CHAT)  # registered from the fake's list
    url = f"http://user:s3cretpass@127.0.0.1:{closed_port()}/api/v1"
    model.api_base = url
    monkeypatch.setenv("PRIME_INFERENCE_URL", url)
    outputs = [invoke(["pinference", *args]).output for args in (["refresh"], ["model", "a/b"])]
    with pytest.raises(Exception) as info:
        model.prompt("hi").text()
    outputs.append(str(info.value))
    for out in outputs:
        assert "s3cretpass" not in out, out
        assert "cannot reach http://127.0.0.1:" in out, out


def test_describe_error_bounds_and_redacts() -> None:
    from llm_pinference.core.errors import PinferenceError, Reason

    error = PinferenceError(
        Reason.SERVER_ERROR,
        "x",
        status=502,
        api_message=f"{KEY} " + "y" * 5000,
        url="https://u:pw12345@api.example/v1",
    )
    line = messages.describe_error(error, secrets=(KEY,))
    assert len(line) <= messages.MESSAGE_LIMIT
    assert KEY not in line and "***" in line
    error = PinferenceError(Reason.TIMEOUT, "slow", url="https://u:pw12345@api.example/v1")
    line = messages.describe_error(error)
    assert "pw12345" not in line and "https://api.example/v1" in line
