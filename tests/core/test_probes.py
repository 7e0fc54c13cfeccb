"""Fresh-connection list probes over loopback: a new connection each time, and phases that
cover the request from its start to the end of the body, each boundary in its place.

Each phase is checked against a delay injected where that phase happens (the name lookup,
the TCP connect, the server's answer, a body sent slowly): that phase holds at least the
delay (a phase cannot be shorter, however loaded the machine), and each neighbour less than
it (a boundary in the wrong place would hand the delay to a neighbour). How closely the
phases match the delays is measured in bench/bench_probe_accuracy.py, not asserted here.
"""

from __future__ import annotations

import socket
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
DELAY = 0.3  # injected into one phase; a neighbour would need a 0.3 s stall to reach it
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
    for _ in range(3):
        started = time.monotonic()
        result = api.list_models(fresh=True)
        wall = time.monotonic() - started
        timing = result.timing
        assert timing is not None
        assert [name for name, _ in timing.items()] == list(PHASES)
        assert all(seconds >= 0 for _, seconds in timing.items())
        assert timing.tls == 0.0  # http
        assert sum(seconds for _, seconds in timing.items()) == pytest.approx(timing.total)
        # The clock starts inside the call and stops before it returns. (What the call
        # does outside the phases, ~0.4 ms, is the bench's to measure.)
        assert 0 < timing.total <= wall, (timing, wall)


def only(timing: Phases | None, phase: str) -> None:
    """`phase` holds the injected delay, each other phase less than it."""
    assert timing is not None
    assert getattr(timing, phase) >= DELAY, timing
    assert all(seconds < DELAY for name, seconds in timing.items() if name != phase), timing


def test_processing_is_the_wait_for_the_answer(fake: FakePinference) -> None:
    fake.set_latency("list", DELAY)
    only(client(fake.base_url).list_models(fresh=True).timing, "processing")


def test_transfer_runs_from_the_head_to_the_end_of_the_body(fake: FakePinference) -> None:
    # The head at once (processing is short), then the body of 46 bytes 6 every 60 ms: 8
    # pieces, 7 waits at least.
    fake.set_fault("list", Fault(mode="drip", body=SMALL_BODY, drip_part="body", drip_bytes=6,
                                 drip_interval=DELAY / 5))  # fmt: skip
    only(client(fake.base_url).list_models(fresh=True).timing, "transfer")


@pytest.fixture
def slow_name_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pinference.test` resolves to 127.0.0.1 after DELAY; `nowhere.test` does not."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "pinference.test":
            time.sleep(DELAY)
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_resolve_is_the_name_lookup(fake: FakePinference, slow_name_lookup: object) -> None:
    url = fake.base_url.replace("127.0.0.1", "pinference.test")
    only(client(url).list_models(fresh=True).timing, "resolve")


def test_connect_is_the_tcp_connect(fake: FakePinference, monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        time.sleep(DELAY)
        real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    only(client(fake.base_url).list_models(fresh=True).timing, "connect")


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
    assert str(info.value) == "timeout: no complete answer within 0.5s (total deadline)"
    assert time.monotonic() - started < 3  # a hang bound: the drip alone takes far longer
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
