"""Edges of the model record: the top-level layout (no `specs`), cache prices, free models,
numbers sent as floats or strings (found by `make mutation`)."""

from __future__ import annotations

import pytest

from llm_pinference.core.models import ModelInfo, Pricing, owner_from_id

# The layout of a single-model answer and of OpenAI-like gateways: everything at the top.
FLAT = {
    "id": "deepseek/deepseek-r1",
    "name": "DeepSeek R1",
    "context_window": 163840,
    "max_output_tokens": 32768,
    "supports_reasoning": True,
    "modalities": {"input": ["text", "image"], "output": ["text"]},
    "pricing": {
        "input_usd_per_mtok": 0.55,
        "output_usd_per_mtok": 2.19,
        "cache_read_usd_per_mtok": 0.14,
        "cache_write_usd_per_mtok": "0.6",
    },
}


def parse(obj: object) -> ModelInfo:
    model = ModelInfo.from_api(obj)
    assert model is not None
    return model


def test_the_top_level_layout_is_read_like_specs() -> None:
    model = parse(FLAT)
    assert model.display_name == "DeepSeek R1"
    assert (model.context_window, model.max_output_tokens) == (163840, 32768)
    assert model.reasoning is True and model.supports_reasoning is True
    assert model.input_modalities == ("text", "image") and model.supports_vision is True
    assert model.pricing == Pricing(input=0.55, output=2.19, cache_read=0.14, cache_write=0.6)


def test_specs_win_over_the_top_level() -> None:
    model = parse(
        {
            **FLAT,
            "display_name": "R1",
            "specs": {
                "context_window": 65536,
                "max_output_tokens": 8192,
                "supports_reasoning": False,
                "modalities": {"input": ["text"]},
            },
        }
    )
    assert model.display_name == "R1"
    assert (model.context_window, model.max_output_tokens) == (65536, 8192)
    assert model.reasoning is False and model.supports_vision is False


def test_a_reasoning_flag_that_is_not_a_boolean_says_nothing() -> None:
    model = parse({"id": "x/y", "specs": {"supports_reasoning": "yes"}})
    assert model.supports_reasoning is None and model.reasoning is None


def test_a_free_model_costs_zero_not_unknown() -> None:
    pricing = parse(
        {"id": "x/free", "pricing": {"input_usd_per_mtok": 0, "output_usd_per_mtok": "0"}}
    ).pricing
    assert (pricing.input, pricing.output) == (0.0, 0.0)


@pytest.mark.parametrize(
    "sent, read",
    [(131072, 131072), (131072.0, 131072), ("131072", 131072), (" 4096 ", 4096)],
)
def test_token_counts_sent_as_floats_or_strings_are_read(sent: object, read: int) -> None:
    model = parse({"id": "x/y", "specs": {"context_window": sent, "max_output_tokens": sent}})
    assert (model.context_window, model.max_output_tokens) == (read, read)


@pytest.mark.parametrize("sent", [-1, -1.0, float("inf"), float("nan"), "-5", "1e3", True, None])
def test_impossible_token_counts_are_unknown(sent: object) -> None:
    assert parse({"id": "x/y", "specs": {"context_window": sent}}).context_window is None


def test_the_owner_is_the_first_path_segment() -> None:
    assert owner_from_id("org/family/model-7b") == "org"
    assert parse({"id": "org/family/model-7b"}).owned_by == "org"
    assert owner_from_id("standalone") == "standalone"
