import pytest

from llm_pinference.core.models import ModelInfo, Pricing, cache_tokens

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
