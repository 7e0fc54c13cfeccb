"""Model catalogs for the fake server: an embedded realistic list, a generator, a loader.

The embedded list mirrors what the real service returns (see the API notes): most fields
are optional, ids carry slashes, dots, colons and upper case, one model has no slash and
one has nothing beyond ``id``/``object``, so clients must parse defensively.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

Model = dict[str, Any]

_BASIC = ["temperature", "top_p", "max_tokens", "stop", "seed"]
_TOOLS = ["tools", "tool_choice", "response_format"]
_REASONING = ["reasoning_effort", "include_reasoning"]


def _model(
    model_id: str,
    owned_by: str,
    created: int,
    display_name: str,
    serving: str,
    *,
    prices: tuple[float, ...],
    context: int,
    max_output: int,
    vision: bool = False,
    tools: bool = False,
    reasoning: bool = False,
) -> Model:
    pricing: dict[str, float] = {
        "input_usd_per_mtok": prices[0],
        "output_usd_per_mtok": prices[1],
    }
    if len(prices) == 4:
        pricing["cache_read_usd_per_mtok"] = prices[2]
        pricing["cache_write_usd_per_mtok"] = prices[3]
    params = list(_BASIC)
    if tools:
        params += _TOOLS
    if reasoning:
        params += _REASONING
    return {
        "id": model_id,
        "object": "model",
        "owned_by": owned_by,
        "created": created,
        "display_name": display_name,
        "serving": serving,
        "pricing": pricing,
        "specs": {
            "context_window": context,
            "max_output_tokens": max_output,
            "supports_reasoning": reasoning,
            "modalities": {
                "input": ["text", "image"] if vision else ["text"],
                "output": ["text"],
            },
        },
        "supported_parameters": params,
    }


#: The embedded catalog: id, owner, created, display name, serving, prices (input, output[,
#: cache read, cache write] USD per Mtok), context window, max output, capabilities.
# fmt: off
_DEFAULT_ROWS = (
    ("meta-llama/llama-3.1-70b-instruct", "meta", 1721692800, "Llama 3.1 70B Instruct",
     "hosted", (0.4, 0.4), 131072, 8192, "tools"),
    ("qwen/qwen3-30b-a3b-instruct-2507", "qwen", 1753660800, "Qwen3 30B A3B Instruct 2507",
     "hosted", (0.1, 0.3), 262144, 32768, "tools"),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507", "qwen", 1753142400, "Qwen3 235B A22B Instruct 2507",
     "hosted", (0.2, 0.6), 262144, 32768, "tools"),
    ("anthropic/claude-sonnet-4.5", "anthropic", 1759104000, "Claude Sonnet 4.5",
     "gateway", (3.0, 15.0, 0.3, 3.75), 200000, 64000, "vision tools reasoning"),
    ("openai/gpt-4.1-mini", "openai", 1744588800, "GPT-4.1 mini",
     "gateway", (0.4, 1.6, 0.1, 0.0), 1047576, 32768, "vision tools"),
    ("google/gemini-2.5-flash", "google", 1750118400, "Gemini 2.5 Flash",
     "gateway", (0.3, 2.5, 0.075, 0.3833), 1048576, 65535, "vision tools reasoning"),
    ("deepseek-chat", "deepseek", 1735689600, "DeepSeek V3 Chat",
     "gateway", (0.27, 1.1, 0.07, 0.0), 65536, 8192, "tools"),
    ("deepseek/deepseek-r1-0528", "deepseek", 1748390400, "DeepSeek R1 0528",
     "hosted", (0.5, 2.15), 163840, 32768, "reasoning"),
    ("internal/glm-5.2-fast", "prime-intellect", 1762387200, "GLM 5.2 Fast",
     "hosted", (0.35, 1.4), 131072, 16384, "tools reasoning"),
    ("qwen/qwen3-coder:free", "qwen", 1753228800, "Qwen3 Coder (free)",
     "gateway", (0.0, 0.0), 262144, 65536, "tools"),
)
# fmt: on
_DEFAULT: list[Model] = [
    *(
        _model(
            *row[:5],
            prices=row[5],
            context=row[6],
            max_output=row[7],
            **dict.fromkeys(row[8].split(), True),
        )
        for row in _DEFAULT_ROWS
    ),
    # Deliberately bare: the published docs promise no field beyond id/object.
    {"id": "mistralai/mistral-small-3.2-24b-instruct", "object": "model"},
]


def default_catalog() -> list[Model]:
    """Return a fresh copy of the embedded catalog (callers may mutate it)."""
    return copy.deepcopy(_DEFAULT)


def generate_catalog(n: int) -> list[Model]:
    """Return ``n`` deterministic, varied models (for load tests and benchmarks).

    Ids look like ``vendorK/model-N``; every 9th carries a dot version, every 11th a
    ``:beta`` tag and every 13th is upper case, so quoting and case are exercised at scale.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    models: list[Model] = []
    for i in range(n):
        k = i % 17
        model_id = f"vendor{k}/model-{i}"
        if i % 9 == 4:
            model_id += ".5"
        if i % 11 == 7:
            model_id += ":beta"
        if i % 13 == 5:
            model_id = f"Vendor{k}/Model-{i}"
        if i % 10 == 9:
            models.append({"id": model_id, "object": "model"})
            continue
        models.append(
            _model(
                model_id,
                f"vendor{k}",
                1700000000 + i * 3600,
                f"Vendor{k} Model {i}",
                "hosted" if i % 2 == 0 else "gateway",
                prices=(round(0.05 * (1 + i % 20), 2), round(0.15 * (1 + i % 20), 2)),
                context=2 ** (13 + i % 8),
                max_output=2 ** (11 + i % 5),
                vision=i % 7 == 0,
                tools=i % 3 != 2,
                reasoning=i % 5 == 0,
            )
        )
    return models


def validate_models(models: Any) -> list[Model]:
    """Check a catalog's shape and return a private deep copy.

    Accepts a list, or an object holding the list under ``data`` or ``models``.
    Raises ValueError with a one-line message on anything else.
    """
    if isinstance(models, dict):
        models = models.get("data", models.get("models"))
    if not isinstance(models, list):
        raise ValueError("catalog must be a JSON list or an object with a 'data' list")
    for index, model in enumerate(models):
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            raise ValueError(f"catalog item {index} is not an object with a string 'id'")
        if not model["id"]:
            raise ValueError(f"catalog item {index} has an empty 'id'")
    return copy.deepcopy(models)


def load_catalog(path: str | Path) -> list[Model]:
    """Load a catalog from a JSON file; raise ValueError with a one-line reason."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"{path} is not valid JSON: nested too deeply") from None
    try:
        return validate_models(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
