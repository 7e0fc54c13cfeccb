"""Prompting Pinference models through llm's CLI and Python API, against the fake server;
then against a misbehaving chat endpoint: a hung endpoint ends with a one-line timeout, a
broken answer (malformed, truncated, wrong shape, empty, huge; streamed or not) is a
one-line invalid_response with a non-zero exit, bounded in time and memory, and never
logged as an empty answer.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import llm
import openai
import pytest
from click.testing import Result

import llm_pinference
from llm_pinference import openai_http, plugin
from llm_pinference.openai_http import http_lib
from pinference_fake import FakePinference, Fault
from tests.plugin.helpers import (
    KEY,
    ChatServer,
    errors_as_users_see_them,
    invoke,
    reset_state,
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


@pytest.mark.parametrize("extra", [[], ["--no-stream"]])
def test_prompt_with_usage(fake: FakePinference, extra: list[str]) -> None:
    result = invoke(["-m", "pinference/" + CHAT, "hello there", *extra])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == REPLY
    (chat,) = fake.requests_for("chat")
    assert chat.header("user-agent") == f"llm-pinference/{llm_pinference.__version__}"
    body = chat.json
    assert body["model"] == CHAT and body["stream"] is not extra
    if not extra:
        assert body["stream_options"] == {"include_usage": True}
    log = last_log()
    assert log["model"] == "pinference/" + CHAT
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


@pytest.mark.parametrize(
    "args, refusal",
    [
        (["-T", "llm_version"], "does not support tools"),
        (["--schema", "a int"], "does not support schemas"),
    ],
)
def test_tools_and_schemas_refused_where_not_supported(
    fake: FakePinference, args: list[str], refusal: str
) -> None:
    result = invoke(["-m", "pinference/" + REASONING, *args, "use it"])
    assert result.exit_code != 0
    assert refusal in result.output
    assert chat_bodies(fake) == []


def test_schema_where_supported(fake: FakePinference) -> None:
    result = invoke(["-m", "pinference/" + CHAT, "--schema", "name, age int", "invent a dog"])
    assert result.exit_code == 0, result.output
    (body,) = chat_bodies(fake)
    assert body["response_format"]["type"] == "json_schema"
    assert set(json.loads(result.stdout)) == {"name", "age"}


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


# A misbehaving chat endpoint

MODEL = "pinference/deepseek-chat"
LLM = str(Path(sys.executable).with_name("llm"))
STREAMS = [pytest.param([], id="stream"), pytest.param(["--no-stream"], id="no-stream")]


def logged() -> int:
    """How many responses `llm logs` has (a good prompt first, so that logging is on)."""
    if not invoke(["logs", "-n", "1", "--json"]).stdout.strip():
        assert invoke(["-m", MODEL, "a good prompt"]).exit_code == 0
    result = invoke(["logs", "-n", "0", "--json"])
    assert result.exit_code == 0, result.output
    return len(json.loads(result.stdout or "[]"))


def one_line_error(result: Result, start: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: " + start), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def run_llm(args: list[str], **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """The installed `llm` in a subprocess (the real CLI, errors as users see them)."""
    full_env = {**os.environ, "LLM_LOAD_PLUGINS": "llm-pinference", **env}
    started = time.monotonic()
    proc = subprocess.run(
        [LLM, *args], env=full_env, capture_output=True, text=True, timeout=120, check=False
    )
    return proc, time.monotonic() - started


# Timeouts and retries


@pytest.mark.parametrize("extra", STREAMS)
def test_a_hung_chat_endpoint_ends_with_one_timeout_line(
    fake: FakePinference, extra: list[str]
) -> None:
    assert run_llm(["models"])[0].returncode == 0  # the list is cached: the runs below only chat
    # What a prompt costs here without a fault (interpreter start, llm, the plugin).
    baseline, base_seconds = run_llm(["-m", MODEL, "hi", "--no-log", *extra])
    assert baseline.returncode == 0, baseline.stderr
    fake.set_fault("chat", Fault(mode="hang"))
    fake.clear_requests()
    proc, seconds = run_llm(["-m", MODEL, "hi", *extra], LLM_PINFERENCE_TIMEOUT="1")
    assert proc.returncode == 1
    assert proc.stdout.strip() == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: Pinference timeout: no answer from http://127.0.0.1:")
    assert "within 1s" in line and "LLM_PINFERENCE_TIMEOUT" in line
    # A read timeout is never retried: one request, and timeout x 1 try + 2 s at most.
    assert len(fake.requests_for("chat")) == 1
    assert seconds - base_seconds < 1 * 1 + 2, (seconds, base_seconds)


def test_async_prompts_time_out_too(fake: FakePinference, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PINFERENCE_TIMEOUT", "0.5")
    fake.set_fault("chat", Fault(mode="hang"))

    async def run() -> str:
        return await llm.get_async_model(MODEL).prompt("hi").text()

    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError) as info:
        asyncio.run(run())
    assert time.monotonic() - started < 0.5 + 2
    assert str(info.value).startswith("Pinference timeout: no answer from")
    assert len(fake.requests_for("chat")) == 1


def test_at_most_one_retry(fake: FakePinference, monkeypatch: pytest.MonkeyPatch) -> None:
    errors_as_users_see_them(monkeypatch)
    fake.set_fault("chat", Fault(status=503))
    result = invoke(["-m", MODEL, "hi"])
    one_line_error(result, "Pinference server_error (HTTP 503)")
    assert len(fake.requests_for("chat")) == 2  # openai's default would make 3


def test_a_dropped_connection_is_not_cannot_reach(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors_as_users_see_them(monkeypatch)
    fake.set_fault("chat", Fault(mode="drop"))
    line = one_line_error(invoke(["-m", MODEL, "hi"]), "Pinference connection_error")
    assert "closed the connection without answering" in line and "cannot reach" not in line
    assert len(fake.requests_for("chat")) == 2  # a connection failure is retried once


# openai 1.x (the floor, 1.58) retries whatever the HTTP client's send raises and wraps it
# in APIConnectionError; openai 3 passes openai errors on. Verdicts hold either way.


def _chat_request(client: openai_http.GuardedClient, fake: FakePinference, attempt: int) -> object:
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {KEY}", openai_http.RETRY_HEADER: str(attempt)}
    request = client.build_request(
        "POST", fake.base_url + "/chat/completions", json=body, headers=headers
    )
    return client.send(request)


@pytest.mark.parametrize(
    "fault, error",
    [
        (Fault(mode="hang"), openai.APITimeoutError),
        (Fault(mode="wrong_shape"), openai_http.InvalidChatResponse),
    ],
    ids=["read-timeout", "invalid-answer"],
)
def test_a_verdict_is_not_sent_again_when_openai_retries(
    fake: FakePinference, fault: Fault, error: type[openai.APIError]
) -> None:
    fake.set_fault("chat", fault)
    with openai_http.GuardedClient(timeout=http_lib.Timeout(0.5)) as client:
        with pytest.raises(error) as first:
            _chat_request(client, fake, 0)
        with pytest.raises(error) as retried:
            _chat_request(client, fake, 1)  # openai 1.x's retry of the same call
        assert retried.value is first.value
        assert len(fake.requests_for("chat")) == 1
        fake.clear_faults()
        assert _chat_request(client, fake, 0).status_code == 200  # a new call is sent
    assert len(fake.requests_for("chat")) == 2


def test_a_wrapped_verdict_reaches_callers_as_itself() -> None:
    request = http_lib.Request("POST", "http://127.0.0.1:9/api/v1/chat/completions")
    verdict = openai.APITimeoutError(request=request)
    try:
        raise openai.APIConnectionError(request=request) from verdict
    except openai.APIConnectionError as wrapped:
        assert openai_http.unwrapped(wrapped) is verdict
    try:
        raise openai.APIConnectionError(request=request) from OSError("reset")
    except openai.APIConnectionError as plain:
        assert openai_http.unwrapped(plain) is plain


def test_the_chat_client_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    sync, async_ = llm.get_model(MODEL), llm.get_async_model(MODEL)
    for client in (sync.get_client(KEY), async_.get_client(KEY, async_=True)):
        assert client.timeout == http_lib.Timeout(120, connect=5)
        assert client.max_retries == 1
    monkeypatch.setenv("LLM_PINFERENCE_TIMEOUT", "300")
    assert sync.get_client(KEY).timeout == http_lib.Timeout(300, connect=5)
    monkeypatch.setenv("LLM_PINFERENCE_TIMEOUT", "2.5")
    assert sync.get_client(KEY).timeout == http_lib.Timeout(2.5, connect=2.5)


@pytest.mark.parametrize("value", ["soon", "0", "-3", "nan", "inf"])
def test_a_bad_timeout_setting_warns_once_and_uses_the_default(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"LLM_PINFERENCE_TIMEOUT": value}
    assert plugin.prompt_timeout(env) == plugin.DEFAULT_TIMEOUT
    assert plugin.prompt_timeout(env) == plugin.DEFAULT_TIMEOUT
    err = capsys.readouterr().err
    assert err.count("llm-pinference: ignoring LLM_PINFERENCE_TIMEOUT") == 1, err


# Broken answers


@pytest.mark.parametrize("extra", STREAMS)
@pytest.mark.parametrize("mode", ["malformed", "truncated", "wrong_shape", "empty", "huge"])
def test_broken_answers_are_one_line_invalid_response(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch, mode: str, extra: list[str]
) -> None:
    errors_as_users_see_them(monkeypatch)
    before = logged()
    fake.set_fault("chat", Fault(mode=mode))
    started = time.monotonic()
    result = invoke(["-m", MODEL, "hi", *extra])
    assert time.monotonic() - started < 10
    line = one_line_error(result, "Pinference invalid_response: http://127.0.0.1:")
    assert "did not answer like the Pinference API" in line
    for raw in ("NoneType", "model_dump", "Expecting value", "Unterminated"):
        assert raw not in result.output
    assert logged() == before  # a failure is not logged as an (empty) answer


@pytest.mark.parametrize("extra", STREAMS)
def test_a_100_mb_answer_is_refused_in_bounded_time_and_memory(
    fake: FakePinference, extra: list[str]
) -> None:
    assert run_llm(["models"])[0].returncode == 0
    fake.set_fault("chat", Fault(mode="huge", huge_bytes=100 * 1024 * 1024))
    # A parent of its own, so its children's peak RSS is the llm run's alone.
    measure = (
        "import resource, subprocess, sys\n"
        "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.stderr.write(proc.stderr)\n"
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", measure, LLM, "-m", MODEL, "hi", *extra],
        env={**os.environ, "LLM_LOAD_PLUGINS": "llm-pinference"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    seconds = time.monotonic() - started
    code, max_rss_kib = map(int, out.stdout.split())
    assert code == 1
    assert out.stderr.startswith("Error: Pinference invalid_response"), out.stderr
    assert "more than" in out.stderr
    assert seconds < 15
    assert max_rss_kib < 150 * 1024  # llm alone is ~65 MiB; the answer is 100 MiB


def test_a_long_stream_is_cut_at_the_cap(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors_as_users_see_them(monkeypatch)
    monkeypatch.setattr(openai_http, "MAX_STREAM_BYTES", 4096)
    words = " ".join(f"word{i}" for i in range(400))  # the fake echoes it, one event per word
    result = invoke(["-m", MODEL, words])
    line = one_line_error(result, "Pinference invalid_response")
    assert "the streamed answer passed 4096 bytes and was cut" in line
    assert result.stdout.startswith("Hello from deepseek-chat!")  # what came before the cut
    result = invoke(["-m", MODEL, "short"])
    assert result.exit_code == 0, result.output


def chunk(text: str) -> str:
    event = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    event["choices"] = [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
    return "data: " + json.dumps(event) + "\n\n"


NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "body, extra, detail",
    [
        (chunk("Hel") + chunk("lo"), [], "the event stream ended before `data: [DONE]`"),
        (chunk("Hi") + ": keep-alive\n\n" * 3, [], "the event stream ended before `data: [DONE]`"),
        ("[" * 50 + "]" * 50, ["--no-stream"], "the answer is not a chat completion"),
        ("data: [DONE]\n\n", [], "the event stream ended without a single event"),
        (
            'data: {"choices": [\n\ndata: [DONE]\n\n',
            [],
            "a stream event is not JSON",
        ),
        (f"data: {NESTED}\n\ndata: [DONE]\n\n", [], "a stream event is nested too deeply"),
        (NESTED, ["--no-stream"], "the answer is not JSON"),
        (
            '{"choices": [{"message": {"content": "hi"}}]}',
            ["--no-stream"],
            "the answer has no token usage",
        ),
        ("<html>Bad gateway</html>", ["--no-stream"], "the answer is not JSON"),
    ],
    ids=[
        "no-done",
        "comments-no-done",
        "nested-list",
        "only-done",
        "bad-event",
        "nested-event",
        "nested",
        "no-usage",
        "html",
    ],
)
def test_more_broken_answers(
    fake: FakePinference,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    extra: list[str],
    detail: str,
) -> None:
    errors_as_users_see_them(monkeypatch)
    before = logged()
    fake.set_fault("chat", Fault(body=body))
    line = one_line_error(invoke(["-m", MODEL, "hi", *extra]), "Pinference invalid_response")
    assert f"({detail})" in line
    assert logged() == before


def test_python_callers_get_an_openai_error(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(mode="wrong_shape"))
    for stream in (True, False):
        with pytest.raises(openai.APIError) as info:
            llm.get_model(MODEL).prompt("hi", stream=stream).text()
        assert isinstance(info.value, openai_http.InvalidChatResponse)

        async def run(stream: bool = stream) -> str:
            return await llm.get_async_model(MODEL).prompt("hi", stream=stream).text()

        with pytest.raises(openai_http.InvalidChatResponse) as async_info:
            asyncio.run(run())
        assert str(async_info.value).startswith("Pinference invalid_response")


def test_llms_response_logging_still_works_and_is_guarded(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_OPENAI_SHOW_RESPONSES", "1")
    result = invoke(["-m", MODEL, "hello there", "--no-stream"])
    assert result.exit_code == 0, result.output
    assert "Request: POST http://127.0.0.1:" in result.stderr  # llm's own debugging aid
    errors_as_users_see_them(monkeypatch)
    fake.set_fault("chat", Fault(mode="wrong_shape"))
    result = invoke(["-m", MODEL, "hi", "--no-stream"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: Pinference invalid_response")


@pytest.mark.parametrize("extra", STREAMS)
def test_a_huge_error_body_is_refused_too(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch, extra: list[str]
) -> None:
    errors_as_users_see_them(monkeypatch)
    fake.set_fault("chat", Fault(mode="huge", status=500))  # 20 MiB, declared
    line = one_line_error(invoke(["-m", MODEL, "hi", *extra]), "Pinference invalid_response")
    assert "the answer is 20 MiB, more than 16 MiB" in line  # an error body is a body
    assert len(fake.requests_for("chat")) == 1


# What the API sends back becomes valid values or a named reason (issue 23)


def completion(usage: object) -> str:
    return json.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    )


def usage_chunk(usage: object) -> str:
    event = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    return "data: " + json.dumps({**event, "choices": [], "usage": usage}) + "\n\n"


@pytest.mark.parametrize("extra", STREAMS)
@pytest.mark.parametrize(
    "usage, logged_as",
    [
        ({"prompt_tokens": 10**30, "completion_tokens": 2, "total_tokens": 3}, (None, 2)),
        ({"prompt_tokens": "12", "completion_tokens": 2.0, "total_tokens": 3}, (12, 2)),
        ({"prompt_tokens": 1.5, "completion_tokens": -4, "total_tokens": True}, (None, None)),
    ],
    ids=["huge", "string-and-float", "fraction-negative-bool"],
)
def test_odd_usage_is_logged_as_counts_or_nothing(
    fake: FakePinference, extra: list[str], usage: dict, logged_as: tuple
) -> None:
    body = completion(usage) if extra else chunk("hi") + usage_chunk(usage) + "data: [DONE]\n\n"
    fake.set_fault("chat", Fault(body=body))
    result = invoke(["-m", MODEL, "hi", *extra])
    assert result.exit_code == 0, result.output
    assert "Pydantic" not in result.output and "Traceback" not in result.output
    entry = json.loads(invoke(["logs", "-n", "1", "--json"]).stdout)[0]
    assert (entry["input_tokens"], entry["output_tokens"]) == logged_as


def test_a_stream_of_keep_alives_alone_ends_in_a_timeout(
    chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_PINFERENCE_TIMEOUT", "1")

    def forever() -> Iterator[bytes]:
        yield chunk("Hel").encode()
        for _ in range(300):  # 60 s, or until the client gives up
            time.sleep(0.2)
            yield b": keep-alive\n\n" + chunk("").encode()  # an event, but no token

    chat_server.reply = lambda: (200, {"Content-Type": "text/event-stream"}, forever())
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError) as info:
        chat_server.model().prompt("hi", key=KEY).text()
    assert time.monotonic() - started < 30  # a bound only a hang exceeds (the timeout: 1 s)
    assert str(info.value).startswith("Pinference timeout: no answer from")
    assert chat_server.requests == 1


@pytest.mark.parametrize("stream", [True, False])
def test_a_compressed_answer_is_capped_once_inflated(
    chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    monkeypatch.setattr(openai_http, "MAX_STREAM_BYTES", 1024 * 1024)
    monkeypatch.setattr(openai_http, "MAX_BODY_BYTES", 1024 * 1024)
    sent = []

    def bomb() -> Iterator[bytes]:
        packer = zlib.compressobj(wbits=31)  # gzip
        for _ in range(2000):  # 2000 MiB inflated, about 2 MiB sent: or until cut
            sent.append(packer.compress(b"\n" * 1024 * 1024 if stream else b" " * 1024 * 1024))
            yield sent[-1]

    kind = "text/event-stream" if stream else "application/json"
    chat_server.reply = lambda: (200, {"Content-Type": kind, "Content-Encoding": "gzip"}, bomb())
    with pytest.raises(openai_http.InvalidChatResponse) as info:
        chat_server.model().prompt("hi", stream=stream, key=KEY).text()
    assert "passed 1 MiB and was cut" in str(info.value)
    assert sum(map(len, sent)) < 1024 * 1024  # cut on what it inflates to, not what was sent


@pytest.mark.parametrize(
    "retry_after", ["9" * 400, "1e999", "-5", "Fri, 31 Dec 99999 23:59:59 GMT", "soon"]
)
def test_any_retry_after_gives_a_rate_limited_line(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch, retry_after: str
) -> None:
    errors_as_users_see_them(monkeypatch)
    fake.set_fault("chat", Fault(status=429, retry_after=retry_after))
    one_line_error(invoke(["-m", MODEL, "hi"]), "Pinference rate_limited (HTTP 429)")


def test_a_key_outside_latin_1_is_one_line_and_nothing_is_sent(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors_as_users_see_them(monkeypatch)
    assert invoke(["models"]).exit_code == 0  # the list is cached
    monkeypatch.setenv("PRIME_API_KEY", "pit_ключ")
    reset_state()
    result = invoke(["-m", MODEL, "hi"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    # The hooks' warning (they list the cached models, and fetch nothing) and the error.
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith("llm-pinference: cannot look up the API key (Pinference client_")
    assert error.startswith("Error: client_error: PRIME_API_KEY holds a character")
    assert "ключ" not in result.output
    assert fake.requests_for("chat") == []


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_not_followed_with_the_key_and_the_team(
    monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """Prompts stay on the configured origin: openai's default client follows redirects,
    and httpx strips only Authorization on the way, not X-Prime-Team-ID."""
    import asyncio

    from tests.core.conftest import RawServer

    errors_as_users_see_them(monkeypatch)
    monkeypatch.setenv("PRIME_TEAM_ID", "team-7")
    other, api = RawServer(), RawServer()
    try:
        moved = f"http://127.0.0.1:{other.port}/api/v1/chat/completions"
        api.answer = f"HTTP/1.1 {status} Moved\r\nLocation: {moved}\r\n\r\n".encode()
        model = llm.get_model("pinference/" + CHAT)  # registered from the fake's list
        model.api_base = api.base_url
        with pytest.raises(openai.APIError):
            model.prompt("hi").text()
        async_model = llm.get_async_model("pinference/" + CHAT)
        async_model.api_base = api.base_url
        with pytest.raises(openai.APIError):
            asyncio.run(async_model.prompt("hi").text())
    finally:
        other.close()
        api.close()
    assert len(api.heads) >= 2 and other.heads == []  # nothing reached the other origin
