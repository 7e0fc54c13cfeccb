"""The client's error mapping and parsing rules, with `responses` standing in for the API."""

from __future__ import annotations

import json

import pytest
import responses

from llm_pinference.core.client import PinferenceClient, check_model_id, model_path
from llm_pinference.core.errors import REASONS, InvalidModelId, PinferenceError, Reason
from llm_pinference.core.settings import Settings

BASE = "https://api.test/api/v1"
KEY = "pit_supersecret_key_123"


def client(**kwargs) -> PinferenceClient:
    settings = kwargs.pop("settings", Settings(api_key=KEY, team_id="team-1", base_url=BASE))
    return PinferenceClient(settings, **kwargs)


def error_for(call) -> PinferenceError:
    with pytest.raises(PinferenceError) as info:
        call()
    return info.value


def openai_error(message: str, type_: str = "x", code: str = "y") -> dict:
    return {"error": {"message": message, "type": type_, "code": code}}


@responses.activate
@pytest.mark.parametrize(
    "status, reason",
    [
        (401, Reason.UNAUTHORIZED),
        (402, Reason.PAYMENT_REQUIRED),
        (403, Reason.FORBIDDEN),
        (404, Reason.NOT_FOUND),
        (429, Reason.RATE_LIMITED),
        (400, Reason.CLIENT_ERROR),
        (418, Reason.CLIENT_ERROR),
        (500, Reason.SERVER_ERROR),
        (503, Reason.SERVER_ERROR),
    ],
)
def test_http_status_reasons(status, reason):
    responses.get(f"{BASE}/models", status=status, json=openai_error(f"api says {status}"))
    err = error_for(client().list_models)
    assert err.reason is reason
    assert err.status == status
    assert err.api_message == f"api says {status}"
    assert "\n" not in str(err) and f"HTTP {status}" in str(err)


@responses.activate
def test_429_carries_retry_after_seconds_and_date():
    responses.get(f"{BASE}/models", status=429, headers={"Retry-After": "7"})
    assert error_for(client().list_models).retry_after == 7
    responses.replace(
        responses.GET, f"{BASE}/models", status=429, headers={"Retry-After": "garbage"}
    )
    assert error_for(client().list_models).retry_after is None
    responses.replace(
        responses.GET,
        f"{BASE}/models",
        status=429,
        headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )
    assert error_for(client().list_models).retry_after == 0  # a date in the past


@responses.activate
def test_html_error_body_has_no_api_message():
    responses.get(f"{BASE}/models", status=502, body="<html><h1>Bad gateway</h1></html>")
    err = error_for(client().list_models)
    assert (err.reason, err.status, err.api_message) == (Reason.SERVER_ERROR, 502, None)


@responses.activate
@pytest.mark.parametrize(
    "body",
    ["not json at all", '{"data": "nope"}', '{"object": "list"}', "42", '{"data": {"id": "x"}}'],
)
def test_invalid_list_responses(body):
    responses.get(f"{BASE}/models", body=body, content_type="application/json")
    err = error_for(client().list_models)
    assert err.reason is Reason.INVALID_RESPONSE and err.status == 200


@responses.activate
def test_too_large_by_declared_length_and_by_streamed_size():
    big = json.dumps({"data": [{"id": f"m/{i}"} for i in range(2000)]})
    responses.get(f"{BASE}/models", body=big)
    err = error_for(client(max_bytes=1000).list_models)
    assert err.reason is Reason.INVALID_RESPONSE and "larger than 1000" in str(err)

    # No Content-Length (chunked): the cap applies while reading.
    def chunked(request):
        return (200, {}, iter([big[:800].encode(), big[800:].encode()]))

    responses.replace(responses.GET, f"{BASE}/models", body="")
    responses.add_callback(responses.GET, f"{BASE}/models", callback=chunked)
    assert error_for(client(max_bytes=1000).list_models).reason is Reason.INVALID_RESPONSE


@responses.activate
@pytest.mark.parametrize("wrap", ["data", "models", None])
def test_list_shapes_and_skipped_entries(wrap):
    items = [
        {"id": "meta-llama/llama-3.1-70b-instruct", "owned_by": "meta"},
        {"id": "deepseek-chat"},
        "not an object",
        {"no": "id"},
        {"id": 42},
        {"id": ""},
        {"id": "deepseek-chat"},  # a repeat
    ]
    payload = items if wrap is None else {"object": "list", wrap: items}
    responses.get(f"{BASE}/models", json=payload)
    result = client().list_models()
    assert [m.id for m in result.models] == ["meta-llama/llama-3.1-70b-instruct", "deepseek-chat"]
    assert [m.owned_by for m in result.models] == ["meta", "deepseek-chat"]
    assert result.skipped == 5
    assert result.status == 200


@responses.activate
def test_get_model_quotes_id_and_parses():
    responses.get(
        f"{BASE}/models/myteam/private%20model:v2",
        json={"id": "myteam/private model:v2", "context_length": 8192},
    )
    model = client().get_model("myteam/private model:v2")
    assert model.id == "myteam/private model:v2" and model.context_window == 8192
    assert responses.calls[0].request.url == f"{BASE}/models/myteam/private%20model:v2"


@responses.activate
@pytest.mark.parametrize("payload", [[1, 2], {"object": "model"}, "text", {"id": None}])
def test_get_model_wrong_shape(payload):
    responses.get(f"{BASE}/models/a/b", json=payload)
    assert error_for(lambda: client().get_model("a/b")).reason is Reason.INVALID_RESPONSE


@responses.activate
def test_get_model_accepts_data_wrapper():
    responses.get(f"{BASE}/models/a/b", json={"data": {"id": "a/b"}})
    assert client().get_model("a/b").id == "a/b"


@pytest.mark.parametrize(
    "model_id, path",
    [
        ("meta-llama/llama-3.1-70b-instruct", "models/meta-llama/llama-3.1-70b-instruct"),
        ("Qwen/Qwen3-235B-A22B-Instruct-2507", "models/Qwen/Qwen3-235B-A22B-Instruct-2507"),
        ("team/model:tag", "models/team/model:tag"),
        ("a b?c#d%e", "models/a%20b%3Fc%23d%25e"),
        ("é/ü", "models/%C3%A9/%C3%BC"),
    ],
)
def test_model_path_quoting(model_id, path):
    assert model_path(model_id) == path


def test_model_path_rejects_empty():
    with pytest.raises(ValueError):
        model_path("")


@responses.activate
def test_key_is_redacted_from_errors_even_if_the_api_echoes_it():
    responses.get(
        f"{BASE}/models", status=401, json=openai_error(f"Invalid API key {KEY} for team")
    )
    err = error_for(client().list_models)
    for text in (str(err), repr(err), err.api_message, *map(str, err.args)):
        assert KEY not in text
    assert "Invalid API key *** for team" in str(err)
    assert KEY not in repr(client()) and KEY not in repr(client().settings)


def test_reasons_are_the_closed_set():
    assert REASONS == (
        "unauthorized",
        "payment_required",
        "forbidden",
        "not_found",
        "rate_limited",
        "client_error",
        "server_error",
        "timeout",
        "connection_error",
        "invalid_response",
    )


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"error": {"message": "outer"}}, "outer"),
        ({"message": "inner", "type": "x"}, "inner"),  # the openai library keeps the inner object
        ({"error": "flat"}, "flat"),
        ({"detail": "fastapi"}, "fastapi"),
        ("bare", "bare"),
        ({"error": {"message": "  "}}, None),
        ([1, 2], None),
        (None, None),
    ],
)
def test_error_body_message_shapes(data, expected):
    from llm_pinference.core.errors import error_body_message

    assert error_body_message(data) == expected


@responses.activate
@pytest.mark.parametrize("depth", [200, 100_000])
def test_deeply_nested_json_is_invalid(depth):
    responses.get(f"{BASE}/models", body="[" * depth + "]" * depth)
    err = error_for(client().list_models)
    assert (err.reason, err.status) == (Reason.INVALID_RESPONSE, 200)
    assert str(err) == "invalid_response (HTTP 200): response is nested too deeply"


@responses.activate
def test_nesting_within_the_limit_is_kept():
    from llm_pinference.core.text import MAX_JSON_DEPTH

    extra: object = "leaf"
    for _ in range(MAX_JSON_DEPTH - 3):  # data list, model object, then these
        extra = [extra]
    responses.get(f"{BASE}/models", json={"data": [{"id": "a/b", "extra": extra}]})
    assert [m.id for m in client().list_models().models] == ["a/b"]
    responses.replace(responses.GET, f"{BASE}/models", json={"data": [{"id": "a/b", "x": [extra]}]})
    assert error_for(client().list_models).reason is Reason.INVALID_RESPONSE


@responses.activate
def test_a_nested_error_body_keeps_the_status_reason():
    responses.get(f"{BASE}/models", status=503, body="[" * 100_000)
    err = error_for(client().list_models)
    assert (err.reason, err.status, err.api_message) == (Reason.SERVER_ERROR, 503, None)


@responses.activate
@pytest.mark.parametrize(
    "items", [[{"no": "id"}], ["a", "b"], [{"id": ""}, {"id": 42}, None, [{"id": "x"}]]]
)
def test_a_list_of_only_unusable_entries_is_invalid(items):
    responses.get(f"{BASE}/models", json={"object": "list", "data": items})
    err = error_for(client().list_models)
    assert (err.reason, err.status) == (Reason.INVALID_RESPONSE, 200)
    assert f"none of the {len(items)} entries" in str(err)


@responses.activate
def test_an_empty_list_and_one_usable_entry_are_fine():
    responses.get(f"{BASE}/models", json={"data": []})
    assert client().list_models().models == []
    responses.replace(responses.GET, f"{BASE}/models", json={"data": [{"no": "id"}, {"id": "a"}]})
    result = client().list_models()
    assert ([m.id for m in result.models], result.skipped) == (["a"], 1)


def refusal(model_id: str) -> str:
    with pytest.raises(InvalidModelId) as info:
        check_model_id(model_id)
    return str(info.value)


@pytest.mark.parametrize("length", [10, 79, 80, 81, 82, 5000])
def test_a_refused_id_is_shown_up_to_80_characters(length: int) -> None:
    model_id = "../" + "x" * (length - 3)
    shown = model_id if length <= 80 else "../" + "x" * 74 + "..."  # 80 characters
    assert f"invalid model id '{shown}': " in refusal(model_id)


def test_a_client_closed_before_any_request_closes_quietly() -> None:
    with PinferenceClient(Settings(base_url=BASE)) as client:
        pass
    client.close()  # twice is fine too
