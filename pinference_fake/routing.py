"""Routing of the fake API: the URL prefixes, the endpoint names and ``route()``."""

from __future__ import annotations

API_PREFIX = "/api/v1"
ADMIN_PREFIX = "/_admin/"
ENDPOINTS = ("list", "get", "chat")


def route(path: str) -> tuple[str | None, str | None, str | None]:
    """Map a decoded path to (endpoint, model id, allowed method)."""
    if not path.startswith(API_PREFIX + "/"):
        return None, None, None
    rest = path[len(API_PREFIX) :]
    if rest in ("/models", "/models/"):
        return "list", None, "GET"
    if rest.startswith("/models/"):
        return "get", rest[len("/models/") :], "GET"
    if rest in ("/chat/completions", "/chat/completions/"):
        return "chat", None, "POST"
    return None, None, None


def check_endpoint(endpoint: str) -> None:
    if endpoint not in (*ENDPOINTS, "*"):
        raise ValueError(f"endpoint must be one of {', '.join((*ENDPOINTS, '*'))}")
