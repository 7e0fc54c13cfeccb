"""Options per model: `-o` offers what a model's supported_parameters allow (llm's
defaults when the API does not say), image_detail only on vision models, and llm refuses
the rest before any request. Option classes are shared: one per distinct set."""

from __future__ import annotations

import llm
import pytest

from llm_pinference import plugin, registration
from llm_pinference.core.models import ModelInfo, parse_models
from llm_pinference.core.settings import Settings
from pinference_fake import FakePinference, generate_catalogue
from tests.plugin.helpers import invoke

SAMPLING = {"temperature", "top_p", "max_tokens", "stop", "seed"}  # the fake's basic set
LLM_DEFAULTS = {
    "temperature",
    "max_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "logit_bias",
    "seed",
    "json_object",
}
#: llm 0.26 has no image_detail option to offer (build_options_class brought it).
IMAGE_DETAIL = {"image_detail"} & plugin.known_options()


pytestmark = pytest.mark.usefixtures("configured")


def options(model_id: str) -> set[str]:
    return set(llm.get_model("pinference/" + model_id).Options.model_fields)


def test_options_follow_supported_parameters() -> None:
    # vision, tools (response_format), reasoning: no penalties, no logit_bias
    assert options("anthropic/claude-sonnet-4.5") == SAMPLING | IMAGE_DETAIL | {
        "json_object",
        "reasoning_effort",
    }
    assert options("meta-llama/llama-3.1-70b-instruct") == SAMPLING | {"json_object"}
    assert options("deepseek/deepseek-r1-0528") == SAMPLING | {"reasoning_effort"}
    # The API says nothing: llm's usual set (no image_detail without images).
    assert options("mistralai/mistral-small-3.2-24b-instruct") == LLM_DEFAULTS


def test_llm_models_options_lists_only_those(fake: FakePinference) -> None:
    result = invoke(["models", "--options", "-m", "pinference/deepseek/deepseek-r1-0528"])
    assert result.exit_code == 0, result.output
    assert "env_var: PRIME_API_KEY" in result.stdout
    for name in ("temperature", "reasoning_effort", "seed"):
        assert f"    {name}:" in result.stdout
    for name in ("frequency_penalty", "logit_bias", "json_object", "image_detail"):
        assert name not in result.stdout
    assert fake.requests_for("chat") == []


@pytest.mark.parametrize(
    "model, option, value",
    [
        ("deepseek/deepseek-r1-0528", "frequency_penalty", "0.5"),
        ("deepseek/deepseek-r1-0528", "logit_bias", '{"1": 5}'),
        ("deepseek/deepseek-r1-0528", "json_object", "1"),
        ("meta-llama/llama-3.1-70b-instruct", "image_detail", "low"),
        ("meta-llama/llama-3.1-70b-instruct", "reasoning_effort", "low"),
        ("anthropic/claude-sonnet-4.5", "presence_penalty", "1"),
    ],
)
def test_unsupported_options_are_refused_before_any_request(
    fake: FakePinference, model: str, option: str, value: str
) -> None:
    result = invoke(["-m", "pinference/" + model, "hi", "-o", option, value])
    assert result.exit_code != 0
    assert option in result.output and "Extra inputs are not permitted" in result.output
    assert fake.requests_for("chat") == []


def test_supported_options_reach_the_request(fake: FakePinference) -> None:
    args = ["-o", "reasoning_effort", "high", "-o", "seed", "7"]
    args += ["-o", "image_detail", "low"] if IMAGE_DETAIL else []
    result = invoke(["-m", "pinference/anthropic/claude-sonnet-4.5", "hi", *args])
    assert result.exit_code == 0, result.output
    (body,) = [r.json for r in fake.requests_for("chat")]
    assert body["reasoning_effort"] == "high" and body["seed"] == 7
    assert "image_detail" not in body  # llm uses it for image parts, not as a parameter


def test_llms_own_validation_still_applies(fake: FakePinference) -> None:
    fake.set_models([{"id": "x/biased", "supported_parameters": ["logit_bias", "temperature"]}])
    result = invoke(["-m", "pinference/x/biased", "hi", "-o", "logit_bias", '{"42": 5}'])
    assert result.exit_code == 0, result.output
    assert fake.requests_for("chat")[0].json["logit_bias"] == {"42": 5}
    for option, value, message in [
        ("logit_bias", "{nope", "Invalid JSON in logit_bias string"),
        ("temperature", "3", "less than or equal to 2"),
    ]:
        result = invoke(["-m", "pinference/x/biased", "hi", "-o", option, value])
        assert result.exit_code != 0 and message in result.output
    assert len(fake.requests_for("chat")) == 1


def test_one_class_per_distinct_option_set_at_5000_models() -> None:
    infos = parse_models(generate_catalogue(5000))[0]
    plugin.options_class.cache_clear()
    settings = Settings(base_url="http://x/v1")
    built = [plugin.model_builder(settings)(registration.record(info)) for info in infos]
    classes = {id(m.Options) for pair in built for m in pair}
    option_sets = {registration.option_names(info) & plugin.known_options() for info in infos}
    assert len(classes) == len(option_sets) <= 16
    assert plugin.options_class.cache_info().currsize == len(option_sets)


def test_models_with_the_same_options_share_one_class() -> None:
    a = ModelInfo.from_api({"id": "a/1", "supported_parameters": ["temperature", "tools"]})
    b = ModelInfo.from_api({"id": "b/2", "supported_parameters": ["tools", "temperature"]})
    assert a is not None and b is not None
    settings = Settings(base_url="http://x/v1")
    (a_sync, a_async), (b_sync, _) = (
        plugin.model_builder(settings)(registration.record(a)),
        plugin.model_builder(settings)(registration.record(b)),
    )
    assert a_sync.Options is b_sync.Options is a_async.Options
    assert set(a_sync.Options.model_fields) == {"temperature"}


def test_a_model_that_takes_max_completion_tokens_offers_that_name(
    fake: FakePinference,
) -> None:
    fake.set_models(
        [
            *fake.models,
            {"id": "o/new", "object": "model", "supported_parameters": ["max_completion_tokens"]},
            {"id": "o/old", "object": "model", "supported_parameters": ["max_tokens"]},
        ]
    )
    assert options("o/new") == {"max_completion_tokens"}
    assert options("o/old") == {"max_tokens"}
    result = invoke(["-m", "pinference/o/new", "hi", "-o", "max_completion_tokens", "5"])
    assert result.exit_code == 0, result.output
    assert fake.requests_for("chat")[-1].json["max_completion_tokens"] == 5
    result = invoke(["-m", "pinference/o/new", "hi", "-o", "max_tokens", "5"])
    assert result.exit_code != 0 and "max_tokens" in result.output
