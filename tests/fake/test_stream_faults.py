"""The fake's faults for streamed chat completions (a wait before the first token, slow
tokens, an error in the stream, a stream cut before [DONE]) and what the inference probe
reports with them."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
import requests

from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.settings import Settings
from pinference_fake import FakePinference, Fault
from tests.fake.helpers import MODEL, QUICK, STREAM, TIMEOUT, contents, sse_events


def client(fake: FakePinference) -> PinferenceClient:
    return PinferenceClient(Settings(base_url=fake.base_url), total_timeout=5)


def test_the_probe_measures_an_injected_time_to_first_token(fake: FakePinference) -> None:
    # Only the lower bound holds on any machine (less the microseconds by which the fake's
    # sleep and the probe's clock differ); how close it comes is bench_probe_accuracy's.
    delay = 0.15
    api = client(fake)
    fake.set_fault("chat", Fault(ttft_delay=delay))
    found = [api.chat_probe(MODEL).ttft for _ in range(3)]
    assert all(t is not None and delay - 0.005 <= t < delay + TIMEOUT for t in found), found


def test_the_wait_comes_after_the_headers_and_the_role_chunk() -> None:
    # A wait longer than the read timeout: had the headers or the role chunk waited, the
    # read would fail. Stopping the server ends the wait before any token is sent.
    fake = FakePinference().start()
    fake.set_fault("chat", Fault(ttft_delay=300))
    url = fake.base_url + "/chat/completions"
    with requests.post(url, json=STREAM, stream=True, timeout=TIMEOUT) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # one iterator: dropping one closes the response
        first = next(lines)
        assert json.loads(first[6:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < QUICK  # stop() does not wait out the delay
        rest: list[bytes] = []
        with contextlib.suppress(requests.RequestException):
            rest.extend(lines)
    assert contents(sse_events(rest)) == []


def test_slow_tokens_stretch_the_stream(fake: FakePinference) -> None:
    # 8 words in 4 chunks: 3 waits between the first token and the last. That the first
    # token does not wait is test_the_waits_go_before_each_token_chunk's (test_chat.py).
    fake.set_fault("chat", Fault(token_interval=0.3))
    result = client(fake).chat_probe(MODEL)
    assert result.ttft is not None and result.duration - result.ttft >= 0.9


def test_an_error_in_the_stream(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(mode="stream_error", times=1))
    url = fake.base_url + "/chat/completions"
    found = sse_events(requests.post(url, json=STREAM, timeout=TIMEOUT))
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
    found = sse_events(requests.post(url, json=body, timeout=TIMEOUT))
    assert len(contents(found)) == 2 and "[DONE]" not in found  # half of the 4, body complete
    fake.set_fault("chat", Fault(mode="stream_cut"))
    with pytest.raises(PinferenceError) as info:
        client(fake).chat_probe(MODEL)
    assert info.value.reason is Reason.INVALID_RESPONSE
    assert "the stream ended before `data: [DONE]`" in str(info.value)


def test_the_stream_faults_leave_other_answers_alone(fake: FakePinference) -> None:
    # Waits far longer than the read timeout: a plain answer that waited fails the read.
    fake.set_fault("*", Fault(ttft_delay=300, token_interval=300, mode="stream_cut"))
    url = fake.base_url + "/chat/completions"
    plain = requests.post(url, json={**STREAM, "stream": False}, timeout=TIMEOUT)
    assert plain.json()["choices"][0]["message"]["content"]
    assert requests.get(fake.base_url + "/models", timeout=TIMEOUT).json()["data"]


def test_the_admin_route_sets_the_stream_faults(fake: FakePinference) -> None:
    spec = {"endpoint": "chat", "ttft_delay": 0.2, "token_interval": 0.05, "mode": "stream_cut"}
    answer = requests.post(f"{fake.url}/_admin/fault", json=spec, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert fake.faults["chat"] == Fault(ttft_delay=0.2, token_interval=0.05, mode="stream_cut")
    for bad in ({"ttft_delay": -1}, {"token_interval": "slow"}, {"mode": "stream_later"}):
        refused = requests.post(f"{fake.url}/_admin/fault", json=bad, timeout=TIMEOUT)
        assert refused.status_code == 400
        assert next(iter(bad)) in refused.json()["error"]["message"]
