"""The parsed model record, built defensively: every field beyond `id` is optional."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pricing:
    """USD per million tokens; None where the API does not say."""

    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None

    def cost_of(
        self, input_tokens: int, output_tokens: int, *, cache_read: int = 0, cache_write: int = 0
    ) -> float | None:
        """USD for one usage at these prices: the one price of a usage, for the chat probe's
        estimate and the cost report alike. Cache reads and writes are part of
        `input_tokens` (as OpenAI reports them) and priced at the cache prices, at the input
        price where one is not listed (what they cost at most). None when a count that is
        not zero has no price, or the sum is past a float (absurd prices)."""
        read = min(cache_read, input_tokens)
        write = min(cache_write, input_tokens - read)
        parts = (
            (input_tokens - read - write, self.input),
            (read, self.input if self.cache_read is None else self.cache_read),
            (write, self.input if self.cache_write is None else self.cache_write),
            (output_tokens, self.output),
        )
        total = 0.0
        for tokens, price in parts:
            if tokens:
                if price is None:
                    return None
                total += tokens * price
        return total / 1_000_000 if math.isfinite(total) else None


@dataclass(frozen=True)
class ModelInfo:
    id: str
    owned_by: str
    display_name: str | None = None
    created: int | None = None
    serving: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    pricing: Pricing = field(default_factory=Pricing)
    input_modalities: tuple[str, ...] = ()
    output_modalities: tuple[str, ...] = ()
    supported_parameters: tuple[str, ...] = ()
    supports_reasoning: bool | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # Capabilities: None means "the API did not say", which callers treat conservatively.
    @property
    def supports_vision(self) -> bool | None:
        return "image" in self.input_modalities if self.input_modalities else None

    @property
    def supports_tools(self) -> bool | None:
        return "tools" in self.supported_parameters if self.supported_parameters else None

    @property
    def supports_schema(self) -> bool | None:
        if not self.supported_parameters:
            return None
        return bool({"response_format", "structured_outputs"} & set(self.supported_parameters))

    @property
    def reasoning(self) -> bool | None:
        if self.supports_reasoning is not None:
            return self.supports_reasoning
        if self.supported_parameters:
            return bool({"reasoning_effort", "reasoning"} & set(self.supported_parameters))
        return None

    @classmethod
    def from_api(cls, obj: object) -> ModelInfo | None:
        """Build from one API object; None if it is not an object with a non-empty string id."""
        if not isinstance(obj, Mapping):
            return None
        model_id = obj.get("id")
        if not isinstance(model_id, str) or not model_id.strip():
            return None
        specs = _mapping(obj.get("specs"))
        pricing = _mapping(obj.get("pricing"))
        modalities = _mapping(specs.get("modalities")) or _mapping(obj.get("modalities"))
        reasoning = specs.get("supports_reasoning", obj.get("supports_reasoning"))
        return cls(
            id=model_id,
            owned_by=_str(obj.get("owned_by")) or owner_from_id(model_id),
            display_name=_str(obj.get("display_name")) or _str(obj.get("name")),
            created=_int(obj.get("created")),
            serving=_str(obj.get("serving")),
            context_window=_int(
                specs.get("context_window")
                or obj.get("context_window")
                or obj.get("context_length")
            ),
            max_output_tokens=_int(specs.get("max_output_tokens") or obj.get("max_output_tokens")),
            pricing=Pricing(
                input=_float(pricing.get("input_usd_per_mtok")),
                output=_float(pricing.get("output_usd_per_mtok")),
                cache_read=_float(pricing.get("cache_read_usd_per_mtok")),
                cache_write=_float(pricing.get("cache_write_usd_per_mtok")),
            ),
            input_modalities=_strings(modalities.get("input")),
            output_modalities=_strings(modalities.get("output")),
            supported_parameters=_strings(obj.get("supported_parameters")),
            supports_reasoning=reasoning if isinstance(reasoning, bool) else None,
            raw=dict(obj),
        )


def owner_from_id(model_id: str) -> str:
    """`meta-llama/llama-3.1-70b` -> `meta-llama`; an id with no slash owns itself."""
    return model_id.split("/", 1)[0] if "/" in model_id else model_id


def extract_model_list(payload: object) -> list[object] | None:
    """The list of model objects under `data`, `models`, or a bare list; None if absent."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, Mapping):
        for key in ("data", "models"):
            value = payload.get(key)
            if isinstance(value, list):
                return value
    return None


def parse_models(items: list[object]) -> tuple[list[ModelInfo], int]:
    """Parse list items, skipping unusable ones (and duplicate ids); returns (models, skipped)."""
    models: list[ModelInfo] = []
    seen: set[str] = set()
    skipped = 0
    for item in items:
        model = ModelInfo.from_api(item)
        if model is None or model.id in seen:
            skipped += 1
            continue
        seen.add(model.id)
        models.append(model)
    return models, skipped


def cache_tokens(usage: Mapping[str, Any]) -> tuple[int, int]:
    """(read, write) cache tokens in a usage object: OpenAI's and OpenRouter's
    prompt_tokens_details (cached_tokens, cache_write_tokens or cache_creation_tokens),
    DeepSeek's prompt_cache_hit_tokens, or Anthropic's names; 0 where none is said."""
    details = _mapping(usage.get("prompt_tokens_details"))
    read = (
        token_count(details.get("cached_tokens"))
        or token_count(usage.get("prompt_cache_hit_tokens"))
        or token_count(usage.get("cache_read_input_tokens"))
    )
    write = (
        token_count(details.get("cache_write_tokens"))
        or token_count(details.get("cache_creation_tokens"))
        or token_count(usage.get("cache_creation_input_tokens"))
    )
    return read or 0, write or 0


def token_count(value: object) -> int | None:
    """A token count: a non-negative integer (a whole float too), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value >= 0 and value == int(value) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _int(value: object) -> int | None:
    """A count: a non-negative integer, finite float (cut) or string of an integer."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            return None
    number = _float(value)
    return None if number is None else int(number)


def _float(value: object) -> float | None:
    """A price: a non-negative finite number, or string of one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))
