"""Fresh-connection list probes over loopback: a new connection each time, and phases that
cover the request from its start to the end of the body, each boundary in its place.

Each phase is checked against a delay injected where that phase happens (the name lookup,
the TCP connect, the server's answer, a body sent slowly), with the other phases staying
small. Lower bounds are the injected delay (a phase cannot be shorter); upper bounds leave
SLACK for a busy 2-core machine.
"""

from __future__ import annotations

import socket
import statistics
import time
from dataclasses import astuple
from typing import Any

import pytest

from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.probes import PHASES, PhaseClock, Phases
from llm_pinference.core.settings import Settings
from pinference_fake import FakePinference, Fault

KEY = "pit_phase_probe_key_0123456789"
SLACK = 0.04
SMALL_BODY = '{"object":"list","data":[{"id":"a/b"}]}       '


def client(base_url: str, **kwargs: Any) -> PinferenceClient:
    kwargs.setdefault("total_timeout", 5.0)
    return PinferenceClient(Settings(api_key=KEY, base_url=base_url), **kwargs)


def ports(fake: FakePinference, endpoint: str) -> list[int]:
    return [r.client[1] for r in fake.requests_for(endpoint)]


def test_each_fresh_list_opens_a_new_connection_and_get_probes_reuse_it(
    fake: FakePinference,
) -> None:
    api = client(fake.base_url)
    first = api.list_models(fresh=True)
    api.get_model("deepseek-chat")
    second = api.list_models(fresh=True)
    api.get_model("deepseek-chat")
    lists, gets = ports(fake, "list"), ports(fake, "get")
    assert lists[0] != lists[1]  # the kept-alive connection was not used for the list
    assert gets == lists  # each get went out on the list's new connection
    for result in (first, second):
        assert result.timing is not None and result.timing.connect > 0
        assert result.tls is None  # http
    plain = api.list_models()
    assert plain.timing is None and plain.tls is None
    assert ports(fake, "list")[-1] == lists[1]  # without `fresh`, the pool as usual


def test_the_phases_add_up_to_the_measured_duration(fake: FakePinference) -> None:
    api = client(fake.base_url)
    api.list_models(fresh=True)  # imports and first-use costs out of the way
    gaps = []
    for _ in range(7):
        started = time.monotonic()
        result = api.list_models(fresh=True)
        wall = time.monotonic() - started
        timing = result.timing
        assert timing is not None
        assert [name for name, _ in timing.items()] == list(PHASES)
        assert all(seconds >= 0 for _, seconds in timing.items())
        assert timing.tls == 0.0  # http
        assert sum(seconds for _, seconds in timing.items()) == pytest.approx(timing.total)
        gaps.append(wall - timing.total)
    # What the call does outside the phases (decoding a 5 KB list: ~0.4 ms on an idle
    # 2-core box) stays under 1 ms. The least of 7: a run descheduled on a busy machine
    # says nothing about where the clock starts and stops.
    assert min(gaps) >= 0, gaps
    assert min(gaps) <= 0.001, f"median {statistics.median(gaps):.6f}s of {gaps}"


def test_processing_is_the_wait_for_the_answer(fake: FakePinference) -> None:
    fake.set_latency("list", 0.08)
    timing = client(fake.base_url).list_models(fresh=True).timing
    assert timing is not None
    assert 0.08 <= timing.processing <= 0.08 + SLACK, timing
    assert timing.resolve + timing.connect + timing.transfer <= SLACK, timing


def test_transfer_runs_from_the_first_byte_to_the_end_of_the_body(fake: FakePinference) -> None:
    # The status line, headers and body go out 32 bytes every 50 ms: the first byte comes
    # at once (processing is short), the rest of the head and the body take transfer.
    fake.set_fault("list", Fault(mode="drip", body=SMALL_BODY, drip_bytes=32, drip_interval=0.05))
    timing = client(fake.base_url).list_models(fresh=True).timing
    assert timing is not None
    # Over 160 bytes in all (a head of 120+, the body of 46): 6 pieces, 5 waits at least.
    assert timing.processing <= SLACK, timing
    assert timing.transfer >= 5 * 0.05, timing


@pytest.fixture
def slow_name_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pinference.test` resolves to 127.0.0.1 after 60 ms; `nowhere.test` does not."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "pinference.test":
            time.sleep(0.06)
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_resolve_is_the_name_lookup(fake: FakePinference, slow_name_lookup: object) -> None:
    url = fake.base_url.replace("127.0.0.1", "pinference.test")
    timing = client(url).list_models(fresh=True).timing
    assert timing is not None
    assert 0.06 <= timing.resolve <= 0.06 + SLACK, timing
    assert timing.connect + timing.processing + timing.transfer <= SLACK, timing


def test_connect_is_the_tcp_connect(fake: FakePinference, monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        time.sleep(0.05)
        real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    timing = client(fake.base_url).list_models(fresh=True).timing
    assert timing is not None
    assert 0.05 <= timing.connect <= 0.05 + SLACK, timing
    assert timing.resolve + timing.processing + timing.transfer <= SLACK, timing


def test_a_name_that_does_not_resolve_is_a_connection_error(
    fake: FakePinference, slow_name_lookup: object
) -> None:
    url = fake.base_url.replace("127.0.0.1", "nowhere.test")
    with pytest.raises(PinferenceError) as info:
        client(url).list_models(fresh=True)
    assert info.value.reason is Reason.CONNECTION_ERROR
    assert "host name not resolved" in str(info.value)
    assert KEY not in repr(info.value) and KEY not in str(info.value)


def test_a_fresh_probe_keeps_the_deadline_and_the_size_cap(fake: FakePinference) -> None:
    api = client(fake.base_url, total_timeout=0.5, read_timeout=1.0)
    api.list_models(fresh=True)
    fake.set_fault("list", Fault(mode="drip", drip_part="body", drip_interval=0.2, times=1))
    started = time.monotonic()
    with pytest.raises(PinferenceError) as info:
        api.list_models(fresh=True)
    assert info.value.reason is Reason.TIMEOUT
    assert time.monotonic() - started <= 0.5 + 0.6
    fake.set_fault("list", Fault(mode="huge", huge_bytes=300_000, times=1))
    with pytest.raises(PinferenceError) as info:
        client(fake.base_url, max_bytes=100_000).list_models(fresh=True)
    assert info.value.reason is Reason.INVALID_RESPONSE
    assert "larger than" in str(info.value)


def test_missing_marks_make_their_phases_zero() -> None:
    clock = PhaseClock()
    started = clock.started
    clock.first_byte = started + 0.25
    timing = clock.phases(started + 1.0)
    assert timing == Phases(0.0, 0.0, 0.0, 0.25, 0.75)
    assert timing.total == pytest.approx(1.0)
    clock.resolved, clock.connected = started + 0.1, started + 0.2
    assert astuple(clock.phases(started + 1.0)) == pytest.approx((0.1, 0.1, 0.0, 0.05, 0.75))
