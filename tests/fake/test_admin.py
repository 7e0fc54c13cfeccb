"""The fake's /_admin/ routes: the index, faults, catalog, key, reset, recorded requests,
and loopback clients only."""

from __future__ import annotations

import pytest
import requests

from pinference_fake import FakePinference, Fault, default_catalog
from pinference_fake import handler as handler_module
from pinference_fake.admin import ADMIN_ROUTES, is_loopback
from pinference_fake.faults import FAULT_MODES
from tests.fake.helpers import KEY, TIMEOUT, admin, get


def test_the_index_lists_the_routes_the_modes_and_the_state(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(mode="hang", times=2))
    fake.require_key = KEY
    fake.set_latency("get", 0.25)
    fake.add_private_model("team-1", {"id": "t/private"})
    get(fake, "/models")
    index = admin(fake, "GET", "").json()
    assert requests.get(f"{fake.url}/_admin", timeout=TIMEOUT).json() == index
    assert index["api_routes"][0].startswith("GET /api/v1/models: ")
    for method, name in ADMIN_ROUTES:
        assert any(line.startswith(f"{method} /_admin/{name}: ") for line in index["admin_routes"])
    assert set(index["fault_modes"]) == set(FAULT_MODES) and index["fault_fields"]["times"] is None
    assert any('the word "tool"' in rule for rule in index["chat"])
    assert index["state"] == {
        "base_url": fake.base_url,
        "models": len(default_catalog()),
        "private_models": {"team-1": 1},
        "require_key": True,
        "faults": {"chat": Fault(mode="hang", times=2).to_dict()},
        "latency": {"*": 0.0, "get": 0.25},
        "recorded_requests": 1,
    }
    assert KEY not in admin(fake, "GET", "").text


def test_every_listed_admin_route_is_served(fake: FakePinference) -> None:
    for method, name in ADMIN_ROUTES:
        answer = admin(fake, method, name, json={} if method != "GET" else None)
        assert answer.status_code != 404, (method, name, answer.text)
    assert admin(fake, "GET", "status").status_code == 404


def test_admin_fault_set_and_clear(fake: FakePinference) -> None:
    spec = {"endpoint": "list", "status": 503, "retry_after": "2", "mode": None, "times": None}
    assert admin(fake, "POST", "fault", json=spec).status_code == 200
    response = get(fake, "/models")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "2")
    assert admin(fake, "GET", "").json()["state"]["faults"]["list"]["status"] == 503
    assert admin(fake, "DELETE", "fault", params={"endpoint": "list"}).status_code == 200
    assert get(fake, "/models").status_code == 200
    bad = admin(fake, "POST", "fault", json={"endpoint": "list", "mode": "explode"})
    assert bad.status_code == 400 and "mode" in bad.json()["error"]["message"]
    assert admin(fake, "POST", "fault", data=b"{nope").status_code == 400
    assert admin(fake, "GET", "nothing-here").status_code == 404


def test_admin_models_key_and_reset(fake: FakePinference) -> None:
    new = [{"id": "a/one", "object": "model"}, {"id": "b/two", "object": "model"}]
    assert admin(fake, "PUT", "models", json=new).json() == {"models": 2}
    assert [m["id"] for m in get(fake, "/models").json()["data"]] == ["a/one", "b/two"]
    assert admin(fake, "PUT", "models", json=[{"no": "id"}]).status_code == 400

    reply = admin(fake, "POST", "require-key", json={"key": KEY})
    assert reply.json() == {"require_key": True} and KEY not in reply.text
    assert get(fake, "/models").status_code == 401

    admin(fake, "POST", "fault", json={"endpoint": "get", "status": 500})
    assert admin(fake, "POST", "reset").status_code == 200
    assert fake.faults == {} and fake.require_key is None and fake.requests == []
    assert len(get(fake, "/models").json()["data"]) == len(default_catalog())


def test_admin_requests_redact_keys(fake: FakePinference) -> None:
    get(fake, "/models", headers={"Authorization": f"Bearer {KEY}", "X-Prime-Team-ID": "t1"})
    response = admin(fake, "GET", "requests")
    assert KEY not in response.text
    (record,) = response.json()
    assert record["headers"]["authorization"] == "Bearer ***"
    assert record["headers"]["x-prime-team-id"] == "t1"
    assert record["endpoint"] == "list" and record["path"] == "/api/v1/models"
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"  # in-process view


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.168.1.20", False),
        ("::ffff:10.0.0.1", False),
        ("2001:db8::1", False),
        ("not-an-ip", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_admin_refuses_non_loopback_clients(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler_module, "is_loopback", lambda host: False)
    response = admin(fake, "POST", "reset")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
