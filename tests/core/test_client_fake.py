"""The client against the fake server over real loopback sockets: every reason, every rule."""

import pytest

from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import REASONS, PinferenceError, Reason
from llm_pinference.core.settings import Settings
from pinference_fake import Fault, default_catalog
from tests.support import free_port

KEY = "pit_loopback_secret_456"


def make_client(fake, key=KEY, team=None, **kwargs) -> PinferenceClient:
    kwargs.setdefault("connect_timeout", 2)
    kwargs.setdefault("read_timeout", 2)
    return PinferenceClient(Settings(api_key=key, team_id=team, base_url=fake.base_url), **kwargs)


def failure(call) -> PinferenceError:
    with pytest.raises(PinferenceError) as info:
        call()
    return info.value


def test_list_and_get_every_catalog_id(fake):
    client = make_client(fake)
    listed = client.list_models()
    expected = [m["id"] for m in default_catalog()]
    assert [m.id for m in listed.models] == expected and listed.skipped == 0
    for model_id in expected:  # slashes, colons, dots, upper case, no slash
        assert client.get_model(model_id).id == model_id


FAULTS = [
    (Fault(status=401), Reason.UNAUTHORIZED, 401),
    (Fault(status=402), Reason.PAYMENT_REQUIRED, 402),
    (Fault(status=403), Reason.FORBIDDEN, 403),
    (Fault(status=404), Reason.NOT_FOUND, 404),
    (Fault(status=429, retry_after="3"), Reason.RATE_LIMITED, 429),
    (Fault(status=418), Reason.CLIENT_ERROR, 418),
    (Fault(status=500), Reason.SERVER_ERROR, 500),
    (Fault(status=503, html=True), Reason.SERVER_ERROR, 503),
    (Fault(delay=3), Reason.TIMEOUT, None),
    (Fault(mode="hang"), Reason.TIMEOUT, None),
    (Fault(mode="drop"), Reason.CONNECTION_ERROR, None),
    (Fault(mode="truncated"), Reason.CONNECTION_ERROR, None),
    (Fault(mode="malformed"), Reason.INVALID_RESPONSE, 200),
    (Fault(mode="wrong_shape"), Reason.INVALID_RESPONSE, 200),
    (Fault(mode="huge", huge_bytes=300_000), Reason.INVALID_RESPONSE, 200),
    (Fault(mode="nested"), Reason.INVALID_RESPONSE, 200),
    (Fault(mode="reset"), Reason.CONNECTION_ERROR, None),
    (Fault(mode="drip", drip_interval=0.3), Reason.TIMEOUT, None),
]


def test_the_faults_reach_every_reason():
    assert {r.value for _, r, _ in FAULTS} == set(REASONS)


@pytest.mark.parametrize("endpoint", ["list", "get"])
@pytest.mark.parametrize("fault, reason, status", FAULTS, ids=[r for _, r, _ in FAULTS])
def test_fault_gives_reason(fake, endpoint, fault, reason, status):
    fake.set_fault(endpoint, fault)
    client = make_client(fake, read_timeout=1, total_timeout=1.5, max_bytes=100_000)
    call = client.list_models if endpoint == "list" else lambda: client.get_model("deepseek-chat")
    err = failure(call)
    assert err.reason is reason
    assert err.status == status
    assert KEY not in str(err) and KEY not in repr(err)
    if reason is Reason.RATE_LIMITED:
        assert err.retry_after == 3
    if status and status >= 400 and not fault.html:
        assert err.api_message  # the fake's OpenAI-style message is surfaced


@pytest.mark.parametrize(
    "fault, message",
    [
        (Fault(mode="drop"), "connection closed before the response was complete"),
        (Fault(mode="truncated"), "connection closed before the response was complete"),
        (Fault(mode="reset"), "connection closed before the response was complete"),
    ],  # a hang and a drip: test_client_deadline.py
    ids=["drop", "truncated", "reset"],
)
def test_transport_failures_say_what_happened(fake, fault, message):
    fake.set_fault("list", fault)
    err = failure(make_client(fake, read_timeout=1, total_timeout=1.5).list_models)
    assert message in str(err) and "cannot connect" not in str(err)


def test_a_refused_connection_is_cannot_connect():
    client = PinferenceClient(Settings(base_url=f"http://127.0.0.1:{free_port()}/api/v1"))
    err = failure(client.list_models)
    assert err.reason is Reason.CONNECTION_ERROR
    assert str(err) == "connection_error: cannot connect to the API (connection refused)"


def test_unknown_model_is_not_found_with_api_message(fake):
    err = failure(lambda: make_client(fake).get_model("nobody/nothing"))
    assert err.reason is Reason.NOT_FOUND and "nobody/nothing" in (err.api_message or "")


def test_headers_seen_by_the_server(fake):
    make_client(fake, team="team-7").list_models()
    make_client(fake, key=None, team="team-7").list_models()
    with_key, without_key = fake.requests_for("list")
    assert with_key.header("authorization") == f"Bearer {KEY}"
    assert with_key.header("x-prime-team-id") == "team-7"
    assert with_key.header("user-agent").startswith("llm-pinference/")
    assert without_key.header("authorization") is None
    assert without_key.header("x-prime-team-id") is None


MIB = 1024 * 1024


@pytest.mark.parametrize("size, accepted", [(16 * MIB, True), (16 * MIB + 1, False)])
def test_the_default_response_cap_is_16_mib(fake, size, accepted):
    # Sizes as literals and the client's default: a larger or smaller default fails one.
    fake.set_fault("get", Fault(mode="huge", huge_bytes=size))
    client = PinferenceClient(Settings(base_url=fake.base_url), read_timeout=30)
    if accepted:
        assert client.get_model("any/model").id == "huge/model"
    else:
        err = failure(lambda: client.get_model("any/model"))
        assert err.reason is Reason.INVALID_RESPONSE and "larger than 16777216 bytes" in str(err)
