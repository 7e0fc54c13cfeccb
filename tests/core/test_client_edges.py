"""Edges of the client (found by `make mutation`): how a refused model id is shown, what
an answer without a model list says, and a client closed before any request."""

from __future__ import annotations

import pytest
import responses

from llm_pinference.core.client import PinferenceClient, check_model_id
from llm_pinference.core.errors import InvalidModelId, PinferenceError, Reason
from llm_pinference.core.settings import Settings

BASE = "https://api.test/api/v1"


def refusal(model_id: str) -> str:
    with pytest.raises(InvalidModelId) as info:
        check_model_id(model_id)
    return str(info.value)


@pytest.mark.parametrize("length", [10, 79, 80])
def test_a_refused_id_up_to_80_characters_is_shown_whole(length: int) -> None:
    model_id = "../" + "x" * (length - 3)
    assert f"invalid model id '{model_id}': " in refusal(model_id)


@pytest.mark.parametrize("length", [81, 82, 5000])
def test_a_longer_refused_id_is_cut_to_80_characters(length: int) -> None:
    model_id = "../" + "x" * (length - 3)
    shown = "'../" + "x" * 74 + "...'"  # 80 characters between the quotes
    assert f"invalid model id {shown}: " in refusal(model_id)


@responses.activate
@pytest.mark.parametrize(
    "body", [{"object": "list"}, {"data": "none"}, {"models": {"a": 1}}, "a string"]
)
def test_an_answer_without_a_model_list_says_so(body: object) -> None:
    responses.get(f"{BASE}/models", json=body)
    with pytest.raises(PinferenceError) as info:
        PinferenceClient(Settings(base_url=BASE)).list_models()
    assert info.value.reason is Reason.INVALID_RESPONSE and info.value.status == 200
    assert "model list has no `data` or `models` array" in str(info.value)


def test_a_client_closed_before_any_request_closes_quietly() -> None:
    with PinferenceClient(Settings(base_url=BASE)) as client:
        pass
    client.close()  # twice is fine too
