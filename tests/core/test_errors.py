"""Edges of the typed errors (found by `make mutation`)."""

from __future__ import annotations

from llm_pinference.core.errors import InvalidModelId, PinferenceError, Reason


def test_the_repr_names_the_kind_of_error() -> None:
    """What a log line or a debugger shows: which error, not just its fields."""
    assert repr(InvalidModelId("empty model id")).startswith("InvalidModelId(reason='client_error'")
    error = PinferenceError(Reason.RATE_LIMITED, "slow down", status=429, retry_after=2.0)
    assert repr(error) == (
        "PinferenceError(reason='rate_limited', status=429, message='slow down', "
        "api_message=None, retry_after=2.0)"
    )
