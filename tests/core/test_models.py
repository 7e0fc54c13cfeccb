"""The parsed model record and the model list: every field beyond the id optional, any
JSON either models with valid text or nothing, and the price of a usage."""

from __future__ import annotations

import math
from dataclasses import astuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_pinference.core.models import (
    ModelInfo,
    Pricing,
    cache_tokens,
    extract_model_list,
    owner_from_id,
    parse_models,
)

FULL = {
    "id": "qwen/qwen3-vl-235b",
    "object": "model",
    "owned_by": "qwen",
    "created": 1700000000,
    "display_name": "Qwen3 VL 235B",
    "serving": "hosted",
    "pricing": {
        "input_usd_per_mtok": 0.2,
        "output_usd_per_mtok": "0.8",
        "cache_read_usd_per_mtok": None,
        "cache_write_usd_per_mtok": -1,
    },
    "specs": {
        "context_window": 262144,
        "max_output_tokens": 32768,
        "supports_reasoning": True,
        "modalities": {"input": ["text", "image"], "output": ["text"]},
    },
    "supported_parameters": ["tools", "response_format", "temperature"],
}


def test_full_record():
    m = ModelInfo.from_api(FULL)
    assert m is not None
    assert (m.id, m.owned_by, m.display_name, m.created, m.serving) == (
        "qwen/qwen3-vl-235b",
        "qwen",
        "Qwen3 VL 235B",
        1700000000,
        "hosted",
    )
    assert (m.context_window, m.max_output_tokens) == (262144, 32768)
    assert m.pricing == Pricing(input=0.2, output=0.8, cache_read=None, cache_write=None)
    assert m.input_modalities == ("text", "image") and m.output_modalities == ("text",)
    assert (m.supports_vision, m.supports_tools, m.supports_schema, m.reasoning) == (
        True,
        True,
        True,
        True,
    )
    assert m.raw["specs"]["context_window"] == 262144


def test_minimal_record_is_conservative():
    m = ModelInfo.from_api({"id": "meta-llama/llama-3.1-8b"})
    assert m is not None and m.owned_by == "meta-llama"
    assert (m.supports_vision, m.supports_tools, m.supports_schema, m.reasoning) == (None,) * 4
    assert m.display_name is None and m.context_window is None


def test_capabilities_false_when_listed_without_them():
    m = ModelInfo.from_api(
        {
            "id": "x/y",
            "supported_parameters": ["temperature"],
            "specs": {"modalities": {"input": ["text"]}},
        }
    )
    assert (m.supports_vision, m.supports_tools, m.supports_schema, m.reasoning) == (
        False,
        False,
        False,
        False,
    )


@pytest.mark.parametrize(
    "params, schema",
    [
        (["structured_outputs"], True),
        (["response_format"], True),
        (["temperature", "structured_outputs", "tools"], True),
        (["temperature", "tools"], False),
    ],
)
def test_schema_support_from_either_parameter(params, schema):
    m = ModelInfo.from_api({"id": "x/y", "supported_parameters": params})
    assert m.supports_schema is schema


def test_reasoning_from_parameters_when_specs_silent():
    m = ModelInfo.from_api({"id": "x/y", "supported_parameters": ["reasoning_effort"]})
    assert m.reasoning is True


def test_garbage_fields_are_ignored():
    m = ModelInfo.from_api(
        {
            "id": "x",
            "owned_by": 7,
            "created": "soon",
            "specs": "big",
            "pricing": [1],
            "supported_parameters": "tools",
            "display_name": "",
        }
    )
    assert m is not None and m.owned_by == "x" and m.created is None
    assert m.supports_tools is None and m.display_name is None


def test_not_models():
    for obj in (None, "id", [], {"id": 5}, {"id": "  "}, {}):
        assert ModelInfo.from_api(obj) is None


@pytest.mark.parametrize(
    ("counts", "pricing", "cost"),
    [  # (input, output, cache read, cache write)
        ((100, 10, 0, 0), Pricing(input=1.0, output=2.0), 120e-6),
        ((100, 10, 40, 0), Pricing(input=1.0, output=2.0), 120e-6),  # cache at input: at most
        ((100, 10, 40, 0), Pricing(1.0, 2.0, cache_read=0.1), 84e-6),
        ((100, 10, 40, 50), Pricing(1.0, 2.0, cache_read=0.1, cache_write=3.0), 184e-6),
        ((100, 10, 0, 50), Pricing(1.0, 2.0), 120e-6),  # writes at input without their price
        ((100, 0, 0, 0), Pricing(input=1.0), 100e-6),  # no output: no output price needed
        ((100, 10, 0, 0), Pricing(input=1.0), None),
        ((100, 10, 0, 0), Pricing(output=1.0), None),
        ((0, 0, 0, 0), Pricing(), 0.0),
        ((10, 5, 50, 0), Pricing(1.0, 1.0, cache_read=0.0), 5e-6),  # cache <= input
        ((10, 5, 6, 50), Pricing(1.0, 1.0, cache_read=0.0, cache_write=0.0), 5e-6),
        ((1, 10, 0, 0), Pricing(input=1e308, output=1e308), None),  # past a float: no price
    ],
)
def test_the_price_of_a_usage(
    counts: tuple[int, int, int, int], pricing: Pricing, cost: float | None
) -> None:
    input_, output, read, write = counts
    found = pricing.cost_of(input_, output, cache_read=read, cache_write=write)
    assert found == (None if cost is None else pytest.approx(cost))


def test_cache_token_shapes() -> None:
    assert cache_tokens({}) == (0, 0)
    assert cache_tokens({"cache_read_input_tokens": 5, "cache_creation_input_tokens": 7}) == (5, 7)
    assert cache_tokens(
        {"prompt_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 4}}
    ) == (3, 4)
    assert cache_tokens({"prompt_cache_hit_tokens": 9}) == (9, 0)  # DeepSeek
    assert cache_tokens({"prompt_tokens_details": {"cached_tokens": "3"}}) == (0, 0)
    assert cache_tokens({"prompt_tokens_details": {"cached_tokens": -3}}) == (0, 0)


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


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(["id", "data", "models", "owned_by", "display_name", "name", "created",
                         "specs", "pricing", "context_window", "modalities", "input",
                         "supported_parameters", "input_usd_per_mtok", "supports_reasoning"])
        | st.text(max_size=6),
        inner, max_size=6),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(payload=JSON)
def test_any_json_is_models_with_valid_fields_or_no_list(payload: object) -> None:
    """Fuzzed: the list's extraction and parsing never raise, and every record they make
    holds what its type says (a non-blank id, text where text is, no negative counts, no
    negative or non-finite price)."""
    items = extract_model_list(payload)
    if items is None:
        return
    models, skipped = parse_models(items)
    assert len(models) + skipped == len(items)
    assert len({m.id for m in models}) == len(models)
    for model in models:
        assert isinstance(model.id, str) and model.id.strip()
        assert isinstance(model.owned_by, str) and model.owned_by
        for text in (model.display_name, model.serving):
            assert text is None or (isinstance(text, str) and text.strip())
        for count in (model.created, model.context_window, model.max_output_tokens):
            assert count is None or (type(count) is int and count >= 0)
        for price in astuple(model.pricing):
            assert price is None or (type(price) is float and 0 <= price < math.inf)
        for names in (model.input_modalities, model.output_modalities,
                      model.supported_parameters):  # fmt: skip
            assert all(isinstance(n, str) for n in names)
        assert model.supports_reasoning in (None, True, False)
        for flag in (model.supports_vision, model.supports_tools, model.supports_schema,
                     model.reasoning):  # fmt: skip
            assert flag in (None, True, False)
