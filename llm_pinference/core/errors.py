"""Typed API errors: every failure maps to one reason of a closed set."""

from __future__ import annotations

import email.utils
import enum
import math
import time


class Reason(str, enum.Enum):
    UNAUTHORIZED = "unauthorized"
    PAYMENT_REQUIRED = "payment_required"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    INVALID_RESPONSE = "invalid_response"

    def __str__(self) -> str:
        return self.value


#: Every reason, in a stable order (metric label values, docs).
REASONS: tuple[str, ...] = tuple(r.value for r in Reason)

_STATUS_REASONS = {
    401: Reason.UNAUTHORIZED,
    402: Reason.PAYMENT_REQUIRED,
    403: Reason.FORBIDDEN,
    404: Reason.NOT_FOUND,
    429: Reason.RATE_LIMITED,
}


def reason_for_status(status: int) -> Reason:
    """The reason for a non-2xx HTTP status."""
    if status in _STATUS_REASONS:
        return _STATUS_REASONS[status]
    if 400 <= status < 500:
        return Reason.CLIENT_ERROR
    if status >= 500:
        return Reason.SERVER_ERROR
    # 1xx/3xx reaching us means the exchange did not produce an API answer.
    return Reason.INVALID_RESPONSE


def error_body_message(data: object) -> str | None:
    """The API's own message from a decoded error body: OpenAI-style `{"error": {"message"}}`,
    the inner error object (as the openai library keeps it), `{"error": "..."}`,
    `{"message"}`, FastAPI's `{"detail"}`, or a bare string."""
    if isinstance(data, str):
        return data if data.strip() else None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    for candidate in (
        error.get("message") if isinstance(error, dict) else error,
        data.get("message"),
        data.get("detail"),
    ):
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date. None if absent/invalid."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, OverflowError):  # a zone or year past datetime's
            return None
        seconds = when - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


class PinferenceError(Exception):
    """A failed API call. `str()` is one line and never contains the API key."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        status: int | None = None,
        api_message: str | None = None,
        retry_after: float | None = None,
        url: str | None = None,
    ) -> None:
        self.reason = Reason(reason)
        self.status = status
        self.api_message = api_message
        self.retry_after = retry_after
        self.url = url
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        status = "" if self.status is None else f" (HTTP {self.status})"
        text = f"{self.reason.value}{status}: {self.message}"
        if self.api_message and self.api_message not in self.message:
            text += f": {self.api_message}"
        if self.retry_after is not None:
            text += f" (retry after {self.retry_after:g}s)"
        return text


class InvalidInput(PinferenceError, ValueError):
    """Input refused before any request. Reason `client_error`, no status; also a
    ValueError, for configuration checks (`.message` is the text without the reason)."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.CLIENT_ERROR, message)


class InvalidModelId(InvalidInput):
    """A model id that is empty, or has a path segment that is `.` or `..` in some spelling
    (`%2e%2E`, `..;x`, fullwidth dots) that a server or proxy on the way could resolve,
    sending the request (and the key) outside `/models/`."""


class InvalidSetting(InvalidInput):
    """A key or team id that HTTP cannot carry in a header; the message names where it
    came from, never the value."""
