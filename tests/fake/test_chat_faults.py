"""The fake's faults for streamed chat completions (a wait before the first token, slow
tokens, an error in the stream, a stream cut before [DONE]) and what the inference probe
measures and reports with them."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.settings import Settings
from pinference_fake import FakePinference, Fault
from pinference_fake.chat import Pacing, build_reply, stream_events

MODEL = "meta-llama/llama-3.1-70b-instruct"
TIMEOUT = 10
SLACK = 0.05
STREAM = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}


def client(fake: FakePinference) -> PinferenceClient:
    return PinferenceClient(Settings(base_url=fake.base_url), total_timeout=5)


def events(response: requests.Response | Iterator[bytes]) -> list[Any]:
    found: list[Any] = []
    lines = response.iter_lines() if isinstance(response, requests.Response) else response
    for line in lines:
        if line.startswith(b"data: "):
            data = line[6:]
            found.append(data.decode() if data == b"[DONE]" else json.loads(data))
    return found


def contents(found: list[Any]) -> list[str]:
    return [
        e["choices"][0]["delta"]["content"]
        for e in found
        if isinstance(e, dict) and e.get("choices") and e["choices"][0]["delta"].get("content")
    ]


def test_the_probe_measures_an_injected_time_to_first_token(fake: FakePinference) -> None:
    # The median over 5 probes with and without the delay: what the delay adds to the
    # measured TTFT is the delay, within 5 ms. Each probe's TTFT is at least the delay.
    delay = 0.15
    api = client(fake)
    api.chat_probe(MODEL)  # connection and first-use costs out of the way

    def ttfts() -> list[float]:
        found = [api.chat_probe(MODEL).ttft for _ in range(5)]
        assert all(t is not None for t in found)
        return found  # type: ignore[return-value]

    baseline = ttfts()
    fake.set_fault("chat", Fault(ttft_delay=delay))
    delayed = ttfts()
    assert min(delayed) >= delay, delayed
    added = statistics.median(delayed) - statistics.median(baseline)
    assert abs(added - delay) <= 0.005, (baseline, delayed)


def test_the_wait_comes_after_the_headers_and_the_role_chunk(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(ttft_delay=0.4))
    started = time.monotonic()
    url = fake.base_url + "/chat/completions"
    with requests.post(url, json=STREAM, stream=True, timeout=TIMEOUT) as response:
        assert response.status_code == 200
        assert time.monotonic() - started < 0.2  # the headers did not wait
        lines = response.iter_lines()  # one iterator: dropping one closes the response
        first = next(lines)
        assert time.monotonic() - started < 0.2  # nor the role chunk (no text in it)
        assert json.loads(first[6:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        rest = events(lines)
    assert time.monotonic() - started >= 0.4
    assert contents(rest) and rest[-1] == "[DONE]"


def test_slow_tokens_stretch_the_stream_not_the_first_token(fake: FakePinference) -> None:
    # Waits long against a busy machine's scheduling noise: a first token held back by the
    # fault would come after one wait (0.3 s), a stream not stretched in under 0.6 s.
    fake.set_fault("chat", Fault(token_interval=0.3))
    result = client(fake).chat_probe(MODEL)  # 8 words in 4 chunks: 3 waits
    assert result.ttft is not None and result.ttft < 0.2
    assert 0.9 - 0.15 <= result.duration - result.ttft <= 0.9 + 0.15


def test_an_error_in_the_stream(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(mode="stream_error", times=1))
    url = fake.base_url + "/chat/completions"
    found = events(requests.post(url, json=STREAM, timeout=TIMEOUT))
    assert len(contents(found)) == 1  # one token, then the error, then [DONE]
    assert found[-2]["error"]["type"] == "server_error" and found[-1] == "[DONE]"
    fake.set_fault("chat", Fault(mode="stream_error"))
    with pytest.raises(PinferenceError) as info:
        client(fake).chat_probe(MODEL)
    assert (info.value.reason, info.value.status) == (Reason.INVALID_RESPONSE, 200)
    assert info.value.api_message == "The model stopped generating: upstream inference error"


def test_a_stream_cut_before_done(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(mode="stream_cut", times=1))
    url = fake.base_url + "/chat/completions"
    body = {**STREAM, "messages": [{"role": "user", "content": "please say hello to all"}]}
    found = events(requests.post(url, json=body, timeout=TIMEOUT))
    assert len(contents(found)) == 2 and "[DONE]" not in found  # half of the 4, body complete
    fake.set_fault("chat", Fault(mode="stream_cut"))
    with pytest.raises(PinferenceError) as info:
        client(fake).chat_probe(MODEL)
    assert info.value.reason is Reason.INVALID_RESPONSE
    assert "the stream ended before `data: [DONE]`" in str(info.value)


def test_the_stream_faults_leave_other_answers_alone(fake: FakePinference) -> None:
    fake.set_fault("*", Fault(ttft_delay=1.0, token_interval=1.0, mode="stream_cut"))
    started = time.monotonic()
    url = fake.base_url + "/chat/completions"
    plain = requests.post(url, json={**STREAM, "stream": False}, timeout=TIMEOUT)
    assert plain.json()["choices"][0]["message"]["content"]
    assert requests.get(fake.base_url + "/models", timeout=TIMEOUT).json()["data"]
    assert time.monotonic() - started < 0.5


def test_the_admin_route_sets_the_stream_faults(fake: FakePinference) -> None:
    spec = {"endpoint": "chat", "ttft_delay": 0.2, "token_interval": 0.05, "mode": "stream_cut"}
    answer = requests.post(f"{fake.url}/_admin/fault", json=spec, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert fake.faults["chat"] == Fault(ttft_delay=0.2, token_interval=0.05, mode="stream_cut")
    for bad in ({"ttft_delay": -1}, {"token_interval": "slow"}, {"mode": "stream_later"}):
        refused = requests.post(f"{fake.url}/_admin/fault", json=bad, timeout=TIMEOUT)
        assert refused.status_code == 400
        assert next(iter(bad)) in refused.json()["error"]["message"]


def test_stop_is_quick_during_a_wait_for_the_first_token() -> None:
    fake = FakePinference().start()
    fake.set_fault("chat", Fault(ttft_delay=30))
    response = requests.post(
        fake.base_url + "/chat/completions", json=STREAM, stream=True, timeout=TIMEOUT
    )
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 1.0
    response.close()


@pytest.mark.parametrize(
    ("content", "waits"),
    [
        ("please say hello to everyone here", [1.0, 2.0, 2.0, 2.0]),  # text in 4 chunks
        ("call a tool", [1.0, 2.0]),  # a tool call in 2 chunks
    ],
)
def test_the_waits_go_before_each_token_chunk(content: str, waits: list[float]) -> None:
    body: dict[str, Any] = {**STREAM, "messages": [{"role": "user", "content": content}]}
    body["tools"] = [{"type": "function", "function": {"name": "lookup"}}]
    seen: list[tuple[float, int]] = []
    sent: list[bytes] = []

    def wait(seconds: float) -> bool:
        seen.append((seconds, len(sent)))
        return False

    pacing = Pacing(ttft_delay=1.0, token_interval=2.0)
    for piece in stream_events(MODEL, body, build_reply(MODEL, body), pacing, wait):
        sent.append(piece)
    assert [s for s, _ in seen] == waits
    deltas = [
        json.loads(p[6:])["choices"][0]["delta"] if b'"choices":[{' in p else {} for p in sent
    ]
    tokens = [i for i, d in enumerate(deltas) if d.get("content") or d.get("tool_calls")]
    assert [at for _, at in seen] == tokens  # each wait right before a token chunk
