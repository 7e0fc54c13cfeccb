"""The inference probe (`PinferenceClient.chat_probe`) against the fake over loopback, and
its stream reader and cost estimate on their own."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from llm_pinference.core.chatprobe import (
    CHAT_PROBE_PROMPT,
    ChatStream,
    EventStream,
    StreamError,
    TokenUsage,
    estimate_cost,
    token_usage,
)
from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.models import Pricing
from llm_pinference.core.settings import Settings
from llm_pinference.core.text import REDACTED
from pinference_fake import FakePinference, Fault
from tests.core.conftest import RawServer

KEY = "pit_chat_probe_key_0123456789"
MODEL = "meta-llama/llama-3.1-70b-instruct"


def client(fake: FakePinference, **kwargs: Any) -> PinferenceClient:
    kwargs.setdefault("total_timeout", 5.0)
    return PinferenceClient(Settings(api_key=KEY, base_url=fake.base_url), **kwargs)


def failure(call: Any) -> PinferenceError:
    with pytest.raises(PinferenceError) as info:
        call()
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    return info.value


def sse(*events: object, done: bool = True) -> str:
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    return "".join(lines) + ("data: [DONE]\n\n" if done else "")


def delta(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def test_a_probe_streams_a_tiny_completion_and_times_it(fake: FakePinference) -> None:
    started = time.monotonic()
    result = client(fake).chat_probe(MODEL)
    wall = time.monotonic() - started
    assert result.model == MODEL and result.status == 200
    assert result.ttft is not None and 0 < result.ttft <= result.duration <= wall
    # The fake counts words: the 6-word prompt, and an answer cut at max_tokens (8).
    assert result.usage == TokenUsage(6, 8, estimated=False)
    assert (result.usage.output_tokens, result.usage.prompt_tokens) == (8, 6)
    assert result.finish_reason == "length"
    (sent,) = fake.requests_for("chat")
    body = json.loads(sent.body)
    assert body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": CHAT_PROBE_PROMPT}],
        "max_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert sent.headers["accept"] == "text/event-stream"
    assert sent.headers["authorization"] == f"Bearer {KEY}"


def test_max_tokens_are_the_callers(fake: FakePinference) -> None:
    result = client(fake).chat_probe(MODEL, max_tokens=3)
    assert result.usage.output_tokens == 3
    assert json.loads(fake.requests_for("chat")[0].body)["max_tokens"] == 3


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, Reason.CLIENT_ERROR),
        (401, Reason.UNAUTHORIZED),
        (402, Reason.PAYMENT_REQUIRED),
        (403, Reason.FORBIDDEN),
        (429, Reason.RATE_LIMITED),
        (500, Reason.SERVER_ERROR),
        (503, Reason.SERVER_ERROR),
    ],
)
def test_http_statuses_have_their_reasons(
    fake: FakePinference, status: int, reason: Reason
) -> None:
    fake.set_fault("chat", Fault(status=status, retry_after="7"))
    err = failure(lambda: client(fake).chat_probe(MODEL))
    assert (err.reason, err.status) == (reason, status)
    assert err.api_message  # the fake's OpenAI-style message
    assert err.retry_after == (7.0 if status == 429 else None)


def test_an_unknown_model_and_a_wrong_key(fake: FakePinference) -> None:
    err = failure(lambda: client(fake).chat_probe("no/such-model"))
    assert (err.reason, err.status) == (Reason.NOT_FOUND, 404)
    fake.require_key = "another-key-entirely-0123"
    assert failure(lambda: client(fake).chat_probe(MODEL)).reason is Reason.UNAUTHORIZED


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (sse(delta("ok"), done=False), "the stream ended before `data: [DONE]`"),
        (sse('{"choices": [', delta("ok")), "a stream event is not JSON"),
        (sse("[1, 2]"), "a stream event is not a JSON object"),
        (sse({"choices": "nope"}), "`choices` is not a list"),
        (sse({"choices": ["nope"]}), "choice is not an object"),
        (sse("[" * 100 + "]" * 100), "nested too deeply"),
        ('{"id": "chatcmpl-1", "choices": []}', "the answer is not an event stream"),
        ("", "the answer is not an event stream"),
    ],
)
def test_a_broken_stream_is_invalid_response(fake: FakePinference, body: str, says: str) -> None:
    fake.set_fault("chat", Fault(body=body))
    err = failure(lambda: client(fake).chat_probe(MODEL))
    assert (err.reason, err.status) == (Reason.INVALID_RESPONSE, 200)
    assert says in str(err)


def test_a_json_error_instead_of_a_stream_keeps_the_apis_message(fake: FakePinference) -> None:
    error = {"error": {"message": "Model is overloaded, try again", "type": "server_error"}}
    fake.set_fault("chat", Fault(body=json.dumps(error)))
    err = failure(lambda: client(fake).chat_probe(MODEL))
    assert (err.reason, err.api_message) == (Reason.INVALID_RESPONSE, error["error"]["message"])
    assert "not an event stream" in str(err)


def test_an_error_in_the_stream_is_invalid_response_with_the_apis_words(
    fake: FakePinference,
) -> None:
    error = {"error": {"message": f"upstream overloaded (key {KEY})", "type": "server_error"}}
    fake.set_fault("chat", Fault(body=sse(delta("o"), error, delta("k"))))  # [DONE] follows
    err = failure(lambda: client(fake).chat_probe(MODEL))
    assert err.reason is Reason.INVALID_RESPONSE
    assert err.api_message == f"upstream overloaded (key {REDACTED})"
    assert str(err).startswith("invalid_response (HTTP 200): the stream carried an error")


def test_a_stream_that_stalls_is_a_timeout(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(mode="drip", drip_part="body", drip_bytes=200, drip_interval=2))
    started = time.monotonic()
    err = failure(lambda: client(fake, read_timeout=0.4).chat_probe(MODEL))
    assert str(err) == "timeout: no data for 0.4s (read timeout)"
    assert time.monotonic() - started < 4  # a hang bound: the total deadline (5 s) is not it


def test_a_slow_stream_is_cut_at_the_total_deadline(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(mode="drip", drip_part="body", drip_bytes=20, drip_interval=0.1))
    started = time.monotonic()
    err = failure(lambda: client(fake, read_timeout=1.0, total_timeout=0.8).chat_probe(MODEL))
    assert str(err) == "timeout: no complete answer within 0.8s (total deadline)"
    assert 0.75 <= time.monotonic() - started < 4  # a hang bound


def test_the_probe_ends_at_done(fake: FakePinference) -> None:
    # A server that keeps talking after [DONE] (keep-alive comments every 0.5 s).
    answer = sse(delta("ok"))
    body = answer + ": still here\n" * 10
    fake.set_fault("chat", Fault(mode="drip", body=body, drip_part="body",
                                 drip_bytes=len(answer), drip_interval=0.5))  # fmt: skip
    started = time.monotonic()
    assert client(fake).chat_probe(MODEL).usage.output_tokens == 1
    assert time.monotonic() - started < 4  # the comments after it take 5 s


def test_the_size_cap_holds_for_streams(fake: FakePinference) -> None:
    # The fake's stream is chunked (no length announced): counted as it arrives.
    err = failure(lambda: client(fake, max_bytes=600).chat_probe(MODEL))
    assert err.reason is Reason.INVALID_RESPONSE and "larger than 600 bytes" in str(err)
    fake.set_fault("chat", Fault(mode="huge", huge_bytes=50_000))  # announced in advance
    err = failure(lambda: client(fake, max_bytes=10_000).chat_probe(MODEL))
    assert "larger than 10000 bytes" in str(err)


def test_without_usage_the_output_is_counted_and_marked_estimated(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(body=sse(delta("o"), delta(""), delta("k"), delta("!"))))
    result = client(fake).chat_probe(MODEL)
    assert result.usage == TokenUsage(None, 3, estimated=True)
    assert estimate_cost(result.usage, Pricing(input=1, output=1)) is None


def test_cached_tokens_and_the_cost_from_the_reported_usage(fake: FakePinference) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010,
             "prompt_tokens_details": {"cached_tokens": 400}}  # fmt: skip
    fake.set_fault("chat", Fault(body=sse(delta("ok"), {"choices": [], "usage": usage})))
    result = client(fake).chat_probe(MODEL)
    assert result.usage == TokenUsage(1000, 10, False, cache_read_tokens=400)
    cost = estimate_cost(result.usage, Pricing(input=2.0, output=10.0, cache_read=0.5))
    assert cost == pytest.approx((600 * 2.0 + 400 * 0.5 + 10 * 10.0) / 1e6)


def test_the_servers_words_are_scrubbed(fake: FakePinference) -> None:
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": f"stop {KEY}\x1b[31m"}]}
    fake.set_fault("chat", Fault(body=sse(delta("ok"), finish)))
    result = client(fake).chat_probe(MODEL)
    assert KEY not in repr(result)
    assert result.finish_reason == f"stop {REDACTED}\\x1b[31m"  # the escape made visible


# --- the event stream reader ----------------------------------------------------------


STREAM = (
    b": a comment\r\n"
    b"event: message\r\n"
    b"data: one\r\n\r\n"
    b"data:two\n"
    b"data:  three\n"
    b"id: 7\n\n"
    b"data: four\r\r"
    b"data: [DONE]\n\n"
)


def test_events_are_split_however_the_bytes_arrive() -> None:
    expected = [b"one", b"two\n three", b"four", b"[DONE]"]
    whole = EventStream()
    assert whole.feed(STREAM) + whole.end() == expected
    for cut in range(1, len(STREAM)):  # every split point, CR before LF included
        stream = EventStream()
        assert stream.feed(STREAM[:cut]) + stream.feed(STREAM[cut:]) + stream.end() == expected
    stream = EventStream()
    got = [event for i in range(len(STREAM)) for event in stream.feed(STREAM[i : i + 1])]
    assert got + stream.end() == expected


def test_an_event_the_stream_ends_in_still_counts() -> None:
    stream = EventStream()
    assert stream.feed(b"data: [DONE]") == []
    assert stream.end() == [b"[DONE]"]


def test_the_first_token_is_the_first_text() -> None:
    stream = ChatStream(started=10.0)
    stream.feed(
        json.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]}).encode(), 10.1
    )
    stream.feed(json.dumps({"choices": [{"delta": {"reasoning_content": "hm"}}]}).encode(), 10.3)
    stream.feed(json.dumps(delta("ok")).encode(), 10.4)
    stream.feed(b"[DONE]", 10.5)
    stream.feed(b"not json, after [DONE]", 10.6)
    result = stream.result("m", 200)
    assert result.ttft == pytest.approx(0.3) and result.duration == pytest.approx(0.5)
    assert result.usage == TokenUsage(None, 2, estimated=True)
    early = ChatStream(0.0)
    early.feed(json.dumps(delta("x")).encode(), 0.1)
    with pytest.raises(StreamError, match="ended before"):
        early.result("m", 200)


def test_the_estimate_is_the_one_price_of_a_usage_cache_writes_included() -> None:
    """The cost report and the probe's estimate price a usage with one function
    (Pricing.cost_of): cache writes count here too, at their own price."""
    usage = token_usage(
        {"prompt_tokens": 100, "completion_tokens": 10,
         "prompt_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 30}}, 0
    )  # fmt: skip
    assert usage == TokenUsage(100, 10, False, cache_read_tokens=20, cache_write_tokens=30)
    pricing = Pricing(1.0, 2.0, cache_read=0.1, cache_write=5.0)
    assert estimate_cost(usage, pricing) == pricing.cost_of(100, 10, cache_read=20, cache_write=30)
    assert estimate_cost(usage, pricing) == pytest.approx((50 * 1 + 20 * 0.1 + 30 * 5 + 20) / 1e6)
    assert estimate_cost(TokenUsage(None, 10, estimated=True), pricing) is None


@pytest.mark.parametrize(("sent", "kept"), [(b"30", 30.0), (b"1e400", None), (b"soon", None)])
def test_a_rate_limited_probe_carries_the_retry_after(
    raw_server: RawServer, sent: bytes, kept: float | None
) -> None:
    """What the exporter's back-off (capped there at 10 chat intervals) starts from."""
    raw_server.answer = (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: " + sent + b"\r\nContent-Length: 0\r\n\r\n"
    )
    api = PinferenceClient(Settings(api_key=KEY, base_url=raw_server.base_url))
    err = failure(lambda: api.chat_probe(MODEL))
    assert (err.reason, err.status, err.retry_after) == (Reason.RATE_LIMITED, 429, kept)
