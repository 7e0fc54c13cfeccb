"""The fake's API routes: one table that ``route()``, ``--help`` and ``GET /_admin/`` read."""

from __future__ import annotations

API_PREFIX = "/api/v1"
ADMIN_PREFIX = "/_admin/"

#: (endpoint name, method, path under API_PREFIX, what it answers); ``{id}`` is the rest of
#: the path, slashes included.
API_ROUTES = (
    ("list", "GET", "/models", "the model list; with a Bearer key and X-Prime-Team-ID, "
     "that team's private models too"),
    ("get", "GET", "/models/{id}", "one model, or an OpenAI-style 404 (%3A in an id is a colon)"),
    ("chat", "POST", "/chat/completions", 'a deterministic chat completion; with "stream": true, '
     "server-sent events ending in [DONE]"),
)  # fmt: skip
ENDPOINTS = tuple(name for name, *_ in API_ROUTES)


def route(path: str) -> tuple[str | None, str | None, str | None]:
    """Map a decoded path to (endpoint, model id, allowed method)."""
    if not path.startswith(API_PREFIX + "/"):
        return None, None, None
    rest = path[len(API_PREFIX) :]
    for endpoint, method, template, _ in API_ROUTES:
        fixed, param, _ = template.partition("{")
        if rest in (fixed, fixed + "/") and not param:
            return endpoint, None, method
        if param and rest.startswith(fixed) and rest != fixed:
            return endpoint, rest[len(fixed) :], method
    return None, None, None


def check_endpoint(endpoint: str) -> None:
    if endpoint not in (*ENDPOINTS, "*"):
        raise ValueError(f"endpoint must be one of {', '.join((*ENDPOINTS, '*'))}")
