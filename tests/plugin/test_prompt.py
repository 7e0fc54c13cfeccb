"""Prompting Pinference models through llm's CLI and Python API, against the fake server."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llm
import openai
import pytest

import llm_pinference
from pinference_fake import FakePinference, Fault
from tests.plugin.helpers import (
    KEY,
    errors_as_users_see_them,
    invoke,
)
from tests.support import free_port as closed_port

CHAT = "qwen/qwen3-30b-a3b-instruct-2507"  # tools + schemas, no reasoning
REASONING = "deepseek/deepseek-r1-0528"  # reasoning, no tools, no schemas
REPLY = f"Hello from {CHAT}! You said: hello there"


pytestmark = pytest.mark.usefixtures("configured")


def last_log() -> dict:
    result = invoke(["logs", "-n", "1", "--json"])
    (entry,) = json.loads(result.stdout)
    return entry


def chat_bodies(fake: FakePinference) -> list[dict]:
    return [r.json for r in fake.requests_for("chat")]


def test_streaming_prompt_with_usage(fake: FakePinference) -> None:
    result = invoke(["-m", "pinference/" + CHAT, "hello there"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == REPLY
    (body,) = chat_bodies(fake)
    assert body["model"] == CHAT and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    log = last_log()
    assert log["model"] == "pinference/" + CHAT
    assert (log["input_tokens"], log["output_tokens"]) == (2, len(REPLY.split()))


@pytest.mark.parametrize("extra", [[], ["--no-stream"]])
def test_chat_requests_name_the_plugin(fake: FakePinference, extra: list[str]) -> None:
    assert invoke(["-m", "pinference/" + CHAT, "hi", *extra]).exit_code == 0
    (chat,) = fake.requests_for("chat")
    assert chat.header("user-agent") == f"llm-pinference/{llm_pinference.__version__}"


def test_non_streaming_prompt_with_usage(fake: FakePinference) -> None:
    result = invoke(["-m", "pinference/" + CHAT, "hello there", "--no-stream"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == REPLY
    (body,) = chat_bodies(fake)
    assert body.get("stream") is False
    log = last_log()
    assert (log["input_tokens"], log["output_tokens"]) == (2, len(REPLY.split()))


@pytest.mark.parametrize("stream", [True, False])
def test_async_prompt(fake: FakePinference, stream: bool) -> None:
    model = llm.get_async_model("pinference/" + CHAT)

    async def run() -> tuple[str, llm.Usage]:
        response = model.prompt("hello there", stream=stream)
        return await response.text(), await response.usage()

    text, usage = asyncio.run(run())
    assert text == REPLY
    assert (usage.input, usage.output) == (2, len(REPLY.split()))
    (body,) = chat_bodies(fake)
    assert body["model"] == CHAT and bool(body.get("stream")) is stream


def test_python_api_sync_prompt(fake: FakePinference) -> None:
    response = llm.get_model("pinference/" + CHAT).prompt("hello there")
    assert response.text() == REPLY
    assert response.usage().input == 2


def test_options_reach_the_request(fake: FakePinference) -> None:
    args = ["-m", "pinference/" + CHAT, "hi", "-o", "temperature", "0.2", "-o", "max_tokens", "50"]
    assert invoke(args).exit_code == 0
    (body,) = chat_bodies(fake)
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50


def test_reasoning_effort_for_reasoning_models_only(fake: FakePinference) -> None:
    result = invoke(["-m", "pinference/" + REASONING, "hi", "-o", "reasoning_effort", "low"])
    assert result.exit_code == 0, result.output
    (body,) = chat_bodies(fake)
    assert body["reasoning_effort"] == "low"

    result = invoke(["-m", "pinference/" + CHAT, "hi", "-o", "reasoning_effort", "low"])
    assert result.exit_code != 0
    assert "reasoning_effort" in result.output and "Extra inputs are not permitted" in result.output
    assert len(chat_bodies(fake)) == 1  # refused before any request


def test_tool_call_round_trip(fake: FakePinference) -> None:
    function = "def lucky_number() -> int:\n    'The lucky number'\n    return 42\n"
    result = invoke(["-m", "pinference/" + CHAT, "--functions", function, "use the tool"])
    assert result.exit_code == 0, result.output
    first, second = chat_bodies(fake)
    assert first["tools"][0]["function"]["name"] == "lucky_number"
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["42"]
    assert "The tool returned: 42" in result.stdout


def test_builtin_tool_with_no_stream(fake: FakePinference) -> None:
    result = invoke(
        ["-m", "pinference/" + CHAT, "-T", "llm_version", "use the tool", "--no-stream"]
    )
    assert result.exit_code == 0, result.output
    assert len(chat_bodies(fake)) == 2
    assert f"The tool returned: {importlib.metadata.version('llm')}" in result.stdout


def test_tools_refused_for_a_model_without_them(fake: FakePinference) -> None:
    result = invoke(["-m", "pinference/" + REASONING, "-T", "llm_version", "use the tool"])
    assert result.exit_code != 0
    assert "does not support tools" in result.output
    assert chat_bodies(fake) == []


def test_schema_where_supported(fake: FakePinference) -> None:
    result = invoke(["-m", "pinference/" + CHAT, "--schema", "name, age int", "invent a dog"])
    assert result.exit_code == 0, result.output
    (body,) = chat_bodies(fake)
    assert body["response_format"]["type"] == "json_schema"
    assert set(json.loads(result.stdout)) == {"name", "age"}


def test_schema_refused_where_not_supported(fake: FakePinference) -> None:
    result = invoke(["-m", "pinference/" + REASONING, "--schema", "name, age int", "a dog"])
    assert result.exit_code != 0
    assert "does not support schemas" in result.output
    assert chat_bodies(fake) == []


# API errors in prompts: one line, like llm's own OpenAI models, and still openai errors


@pytest.mark.parametrize(
    "status, expected",
    [
        (
            401,
            "Pinference unauthorized (HTTP 401): the API key was not accepted: run "
            "`llm keys set pinference` or set PRIME_API_KEY",
        ),
        (402, "Pinference payment_required (HTTP 402): the account is out of credit"),
        (403, "Pinference forbidden (HTTP 403): the key is not allowed to do this"),
        (404, f"Pinference not_found (HTTP 404) for '{CHAT}': no such model"),
    ],
)
def test_prompt_api_errors_are_one_line(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch, status: int, expected: str
) -> None:
    errors_as_users_see_them(monkeypatch)
    fake.set_fault("chat", Fault(status=status))
    for extra in ([], ["--no-stream"]):
        result = invoke(["-m", "pinference/" + CHAT, "hi", *extra])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: " + expected), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output and KEY not in result.output


def test_prompt_connection_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    errors_as_users_see_them(monkeypatch)
    model = llm.get_model("pinference/" + CHAT)  # registered from the fake's list
    model.api_base = f"http://127.0.0.1:{closed_port()}/api/v1"
    with pytest.raises(openai.APIConnectionError) as info:
        model.prompt("hi").text()
    assert str(info.value).startswith("Pinference connection_error: cannot reach http://127.0.0.1:")


def test_python_callers_still_get_openai_error_types(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(status=401))
    with pytest.raises(openai.AuthenticationError) as info:
        llm.get_model("pinference/" + CHAT).prompt("hi").text()
    assert info.value.status_code == 401
    assert "llm keys set pinference" in str(info.value)

    async def run() -> str:
        return await llm.get_async_model("pinference/" + CHAT).prompt("hi").text()

    with pytest.raises(openai.AuthenticationError) as async_info:
        asyncio.run(run())
    assert "llm keys set pinference" in str(async_info.value)


def test_rate_limit_error_mentions_retry_after(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(status=429, retry_after="30"))
    model = llm.get_model("pinference/" + CHAT)
    with pytest.raises(openai.RateLimitError) as info:
        # The openai client retries 429s; with Retry-After 30 s it gives up at once only
        # when told not to retry, which is what a test wants.
        model.get_client = _no_retry(model.get_client)  # type: ignore[method-assign]
        model.prompt("hi").text()
    assert "wait 30s and try again" in str(info.value)


def _no_retry(get_client: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(key: str | None, *, async_: bool = False) -> Any:
        return get_client(key, async_=async_).with_options(max_retries=0)

    return wrapped


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f80f00000101000518d84e0000000049454e44ae426082"
)


def test_images_go_to_vision_models_only(fake: FakePinference, tmp_path: Path) -> None:
    image = tmp_path / "pixel.png"
    image.write_bytes(PNG)
    result = invoke(["-m", "pinference/google/gemini-2.5-flash", "-a", str(image), "describe"])
    assert result.exit_code == 0, result.output
    (body,) = chat_bodies(fake)
    parts = body["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")

    result = invoke(["-m", "pinference/" + CHAT, "-a", str(image), "describe"])
    assert result.exit_code != 0 and "does not support attachments" in result.output
    assert len(chat_bodies(fake)) == 1
