"""The fake's API routes as a client meets them: the model list and single models, the
URL prefix and methods, keep-alive, the required key, team-private models, the body cap."""

from __future__ import annotations

import pytest
import requests

from pinference_fake import FakePinference, default_catalog, generate_catalog
from tests.fake.helpers import KEY, TIMEOUT, chat, get, sse_events, user


def test_list_serves_the_default_catalog(fake: FakePinference) -> None:
    response = get(fake, "/models")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [m["id"] for m in default_catalog()]
    ids = {m["id"] for m in body["data"]}
    assert "deepseek-chat" in ids
    assert any(":" in i for i in ids) and any(i != i.lower() for i in ids)
    assert {"id", "object"} in [set(m) for m in body["data"]]  # a bare model
    assert any(
        "image" in m.get("specs", {}).get("modalities", {}).get("input", []) for m in body["data"]
    )


@pytest.mark.parametrize(
    "model_id",
    [
        "meta-llama/llama-3.1-70b-instruct",
        "Qwen/Qwen3-235B-A22B-Instruct-2507",
        "anthropic/claude-sonnet-4.5",
        "deepseek-chat",
        "myteam/private-model:v2",
    ],
)
def test_get_model_by_id_with_awkward_characters(fake: FakePinference, model_id: str) -> None:
    fake.set_models([*default_catalog(), {"id": "myteam/private-model:v2", "object": "model"}])
    response = get(fake, "/models/" + model_id)
    assert response.status_code == 200
    assert response.json()["id"] == model_id


def test_get_model_accepts_a_percent_encoded_colon(fake: FakePinference) -> None:
    response = get(fake, "/models/qwen/qwen3-coder%3Afree")
    assert response.status_code == 200
    assert response.json()["id"] == "qwen/qwen3-coder:free"


def test_unknown_model_is_an_openai_style_404(fake: FakePinference) -> None:
    response = get(fake, "/models/no/such-model")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model 'no/such-model' does not exist",
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }


def test_only_the_api_prefix_is_served(fake: FakePinference) -> None:
    response = requests.get(fake.url + "/models", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    wrong_method = requests.post(fake.base_url + "/models", timeout=TIMEOUT)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET"


def test_keep_alive_connection_serves_stream_then_json(fake: FakePinference) -> None:
    with requests.Session() as session:
        streamed = session.post(
            fake.base_url + "/chat/completions",
            json={"model": "deepseek-chat", "messages": user("hi"), "stream": True},
            timeout=TIMEOUT,
        )
        assert sse_events(streamed)[-1] == "[DONE]"
        assert session.get(fake.base_url + "/models", timeout=TIMEOUT).json()["object"] == "list"
    ports = {r.client[1] for r in fake.requests}
    assert len(ports) == 1  # both requests on one connection


def test_require_key(fake: FakePinference) -> None:
    fake.require_key = KEY
    missing = get(fake, "/models")
    assert missing.status_code == 401
    assert missing.json() == {
        "error": {
            "message": "Invalid API key",
            "type": "authentication_error",
            "code": "invalid_api_key",
        }
    }
    assert get(fake, "/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = {"Authorization": f"Bearer {KEY}"}
    assert get(fake, "/models", headers=ok).status_code == 200
    assert chat(fake, {"model": "deepseek-chat", "messages": user("x")}).status_code == 401
    fake.require_key = None
    assert get(fake, "/models").status_code == 200


def test_team_private_models_need_key_and_team(fake: FakePinference) -> None:
    private_id = "myteam/private-model:v2"
    fake.add_private_model("team-1", {"id": private_id, "object": "model", "owned_by": "myteam"})

    def ids(headers: dict[str, str]) -> set[str]:
        return {m["id"] for m in get(fake, "/models", headers=headers).json()["data"]}

    assert private_id not in ids({})
    assert private_id not in ids({"X-Prime-Team-ID": "team-1"})
    assert private_id not in ids({"Authorization": "Bearer k"})
    assert private_id not in ids({"Authorization": "Bearer k", "X-Prime-Team-ID": "team-2"})
    team = {"Authorization": "Bearer k", "X-Prime-Team-ID": "team-1"}
    assert private_id in ids(team)
    assert get(fake, "/models/" + private_id).status_code == 404
    assert get(fake, "/models/" + private_id, headers=team).json()["owned_by"] == "myteam"
    body = {"model": private_id, "messages": user("hi")}
    assert chat(fake, body).status_code == 404
    assert chat(fake, body, headers=team).status_code == 200


def test_request_body_is_capped() -> None:
    with FakePinference(max_body_bytes=1000) as fake:
        response = requests.post(
            fake.base_url + "/chat/completions", data=b"x" * 5000, timeout=TIMEOUT
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
        assert get(fake, "/models").status_code == 200


def test_big_generated_catalog_is_served(fake: FakePinference) -> None:
    fake.set_models(generate_catalog(5000))
    assert len(get(fake, "/models").json()["data"]) == 5000
    assert get(fake, "/models/vendor3/model-20").status_code == 200
