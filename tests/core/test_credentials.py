"""Credentials go to the configured origin only: the key and the team header are never
sent where a redirect points (requests would strip Authorization on the way to another
host, not the team header), and ~/.netrc is never read (requests would put its password
in place of the key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.settings import Settings
from tests.core.conftest import RawServer

KEY = "pit_origin_only_key_0123456789"
MODELS = b'{"data": [{"id": "a/b"}]}'


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def redirect(status: int, location: str) -> bytes:
    return f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()


def api(base_url: str) -> PinferenceClient:
    return PinferenceClient(Settings(api_key=KEY, team_id="team-7", base_url=base_url))


CALLS = {
    "list": lambda c: c.list_models(),
    "get": lambda c: c.get_model("a/b"),
    "chat": lambda c: c.chat_probe("a/b"),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_is_not_followed(
    raw_server: RawServer, call: str, status: int
) -> None:
    other = RawServer()
    try:
        other.answer = ok(MODELS)
        raw_server.answer = redirect(status, f"http://u:pw@127.0.0.1:{other.port}/x?key={KEY}")
        with pytest.raises(PinferenceError) as info:
            CALLS[call](api(raw_server.base_url))
    finally:
        other.close()
    assert other.heads == []  # nothing at all reached the other origin
    err = info.value
    assert (err.reason, err.status) == (Reason.INVALID_RESPONSE, status)
    assert str(err) == (
        f"invalid_response (HTTP {status}): redirect to http://127.0.0.1:{other.port}/x "
        f"not followed (credentials go to {raw_server.base_url} only)"
    )


def test_a_redirect_within_the_origin_is_not_followed_either(raw_server: RawServer) -> None:
    raw_server.answer = redirect(301, "/api/v1/models/")
    with pytest.raises(PinferenceError) as info:
        api(raw_server.base_url).list_models()
    assert len(raw_server.heads) == 1
    assert f"redirect to http://127.0.0.1:{raw_server.port}/api/v1/models/ not" in str(info.value)


@pytest.fixture
def netrc(isolated_env: Path) -> None:
    """A ~/.netrc entry for the API's host, as a user of curl or git may have."""
    path = isolated_env / ".netrc"
    path.write_text("machine 127.0.0.1 login someone password netrc-password-123\n")
    path.chmod(0o600)


@pytest.mark.usefixtures("netrc")
@pytest.mark.parametrize("key", [KEY, None])
@pytest.mark.parametrize("call", CALLS)
def test_netrc_is_never_read(raw_server: RawServer, key: str | None, call: str) -> None:
    raw_server.answer = lambda head: (
        ok(b"data: [DONE]\n\n")
        if head.startswith(b"POST")
        else ok(MODELS.replace(b"[", b"", 1).replace(b"]", b"", 1))
        if b"/models/" in head
        else ok(MODELS)
    )
    client = PinferenceClient(Settings(api_key=key, base_url=raw_server.base_url))
    CALLS[call](client)
    (head,) = raw_server.heads
    authorization = [h for h in head.split(b"\r\n") if h.lower().startswith(b"authorization:")]
    assert authorization == ([f"Authorization: Bearer {KEY}".encode()] if key else [])


def test_a_location_that_is_not_utf8_is_an_invalid_answer(raw_server: RawServer) -> None:
    raw_server.answer = b"HTTP/1.1 302 Found\r\nLocation: \x80\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(PinferenceError) as info:
        api(raw_server.base_url).list_models()
    assert str(info.value) == "invalid_response: the answer is not valid HTTP"
