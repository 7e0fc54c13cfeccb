"""What the fake records of each request, and its one-line-per-request log."""

from __future__ import annotations

import pytest

from pinference_fake import FakePinference
from tests.fake.helpers import admin, chat, get, user


def test_requests_are_recorded(fake: FakePinference) -> None:
    get(fake, "/models/qwen/qwen3-coder%3Afree?x=1&y=a%20b", headers={"X-Prime-Team-ID": "t9"})
    chat(
        fake,
        {"model": "deepseek-chat", "messages": user("hi")},
        headers={"Authorization": "Bearer k1"},
    )
    admin(fake, "GET", "")
    records = fake.requests
    assert [r.endpoint for r in records] == ["get", "chat"]  # admin calls are not recorded
    first, second = records
    assert first.method == "GET"
    assert first.path == "/api/v1/models/qwen/qwen3-coder:free"
    assert first.query == {"x": ["1"], "y": ["a b"]}
    assert first.headers["x-prime-team-id"] == "t9"
    assert first.header("X-Prime-Team-ID") == "t9"
    assert first.client[0] == "127.0.0.1"
    assert "authorization" not in first.headers
    assert second.headers["authorization"] == "Bearer k1"
    assert second.json["messages"][0]["content"] == "hi"
    assert fake.requests_for("chat") == [second]
    fake.clear_requests()
    assert fake.requests == []


def test_verbose_logs_one_line_per_request(capsys: pytest.CaptureFixture[str]) -> None:
    with FakePinference(verbose=True) as fake:
        get(fake, "/models/nope")
    with FakePinference() as quiet:
        get(quiet, "/models")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert '"GET /api/v1/models/nope" 404' in err
