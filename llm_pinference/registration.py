"""What llm needs to register a model, derived once when the list is stored.

llm runs the plugin's register_models hook on every command that resolves models (every
prompt, `llm models`, `llm.get_model()`). Parsing every model's API object there each time
cost more than llm-openrouter's whole registration, so the cache file (cache.py) keeps,
beside each list, one compact record per model with what registration needs, ready to use:

    [id, line, capabilities, options]

- `line`: what `llm models` shows (and `llm models -q` searches), control characters
  already escaped;
- `capabilities`: VISION | TOOLS | SCHEMA, the bits for llm's constructor arguments;
- `options`: the `-o` options the model offers, one bit per name of OPTION_NAMES.

Change anything above (the line's wording, the option rules, the bit order) and bump
cache.VERSION: a cache of another version is not read. No llm import.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from .messages import model_line

if TYPE_CHECKING:
    from .core.models import ModelInfo

VISION = 1
TOOLS = 2
SCHEMA = 4
CAPABILITIES = VISION | TOOLS | SCHEMA

#: llm's option -> the `supported_parameters` entries that allow it (any one of them).
OPTION_PARAMETERS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "max_tokens": ("max_tokens",),
    # llm sends an option under its own name: a model that takes max_completion_tokens
    # is offered that name.
    "max_completion_tokens": ("max_completion_tokens",),
    "top_p": ("top_p",),
    "frequency_penalty": ("frequency_penalty",),
    "presence_penalty": ("presence_penalty",),
    "stop": ("stop",),
    "logit_bias": ("logit_bias",),
    "seed": ("seed",),
    "json_object": ("response_format",),  # sent as response_format {"type": "json_object"}
    "reasoning_effort": ("reasoning_effort", "reasoning"),
}
#: When the API does not say: llm's default set (reasoning_effort on reasoning models).
DEFAULT_OPTIONS = frozenset(OPTION_PARAMETERS) - {"reasoning_effort", "max_completion_tokens"}
#: Bit i of a record's options is OPTION_NAMES[i].
OPTION_NAMES: tuple[str, ...] = (
    *(name for name in OPTION_PARAMETERS if name != "max_completion_tokens"),
    "image_detail",
    "max_completion_tokens",
)


def option_names(info: ModelInfo) -> frozenset[str]:
    """The options a model offers: those its supported_parameters allow, else llm's
    defaults; image_detail only where images are accepted."""
    parameters = set(info.supported_parameters)
    if parameters:
        names = {name for name, need in OPTION_PARAMETERS.items() if parameters.intersection(need)}
    else:
        names = set(DEFAULT_OPTIONS)
        if info.reasoning:
            names.add("reasoning_effort")
    if info.supports_vision:
        names.add("image_detail")
    return frozenset(names)


def option_bits(names: frozenset[str]) -> int:
    return sum(1 << i for i, name in enumerate(OPTION_NAMES) if name in names)


#: Every valid options value is below this.
OPTIONS_LIMIT = 1 << len(OPTION_NAMES)


@functools.cache
def names_of(bits: int) -> frozenset[str]:
    """The option names a record's bits stand for."""
    return frozenset(name for i, name in enumerate(OPTION_NAMES) if bits >> i & 1)


def capabilities(info: ModelInfo) -> int:
    """An unknown capability counts as absent: llm then refuses the feature up front."""
    return (
        (VISION if info.supports_vision is True else 0)
        | (TOOLS if info.supports_tools is True else 0)
        | (SCHEMA if info.supports_schema is True else 0)
    )


def record(info: ModelInfo) -> list[Any]:
    """One model's registration record (see the module's docstring)."""
    return [info.id, model_line(info), capabilities(info), option_bits(option_names(info))]
