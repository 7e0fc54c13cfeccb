"""Response building blocks: the response record, OpenAI-style errors, proxy HTML pages."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass
class Response:
    status: int
    body: bytes | Iterable[bytes] = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None  # known length of an iterable body
    truncate: bool = False  # promise the full length, send half, close
    reset: bool = False  # promise the full length, send half, reset the connection
    drip: Drip | None = None  # send slowly


@dataclass(frozen=True)
class Drip:
    """Send ``part`` ("head", "body" or "all") ``size`` bytes every ``interval`` seconds."""

    size: int
    interval: float
    part: str


_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request", "Invalid request"),
    401: ("authentication_error", "invalid_api_key", "Invalid API key"),
    402: (
        "insufficient_quota",
        "insufficient_funds",
        "Insufficient balance: add funds to your account to continue",
    ),
    403: (
        "permission_error",
        "permission_denied",
        "This API key does not have the Inference permission",
    ),
    404: ("invalid_request_error", "not_found", "Not found"),
    405: ("invalid_request_error", "method_not_allowed", "Method not allowed"),
    413: ("invalid_request_error", "request_too_large", "Request body too large"),
    429: (
        "rate_limit_error",
        "rate_limit_exceeded",
        "Rate limit exceeded, please retry later",
    ),
    503: ("server_error", "service_unavailable", "The service is temporarily unavailable"),
}


def error_payload(
    status: int, message: str | None = None, *, model: str | None = None
) -> dict[str, Any]:
    """The OpenAI-style error object that fits ``status``."""
    if status == 404 and model is not None:
        return {
            "error": {
                "message": message or f"The model '{model}' does not exist",
                "type": "invalid_request_error",
                "code": "model_not_found",
            }
        }
    if status in _ERRORS:
        kind, code, default = _ERRORS[status]
    else:
        phrase = _phrase(status)
        kind = "server_error" if status >= 500 else "invalid_request_error"
        code = "server_error" if status >= 500 else phrase.lower().replace(" ", "_")
        default = (
            "The server had an error while processing your request" if status >= 500 else phrase
        )
    return {"error": {"message": message or default, "type": kind, "code": code}}


def error_response(
    status: int, message: str | None = None, *, model: str | None = None
) -> Response:
    return Response(status, dumps(error_payload(status, message, model=model)))


def html_page(status: int) -> bytes:
    """An error page like the one a proxy in front of an API sends."""
    title = f"{status} {_phrase(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
