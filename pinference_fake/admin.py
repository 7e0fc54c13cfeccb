"""The ``/_admin/`` routes (runtime control from loopback clients), and the reference of
everything the fake serves, made from the same tables for ``--help`` and ``GET /_admin/``.

The routes change the fake's ``FakeState`` through its public API and only answer
loopback clients (``is_loopback``).
"""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from .chat import CHAT_RULES
from .faults import FAULT_MODES, Fault
from .routing import ADMIN_PREFIX, API_PREFIX, API_ROUTES, check_endpoint
from .state import FakeState

_AdminAction = Callable[[FakeState, dict[str, str], Any], Any]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; the admin routes need it."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def run_admin(
    app: FakeState, method: str, name: str, query: dict[str, list[str]], data: Any
) -> Any:
    """Run one admin command; None means unknown route, ValueError means bad input."""
    route = ADMIN_ROUTES.get((method, name))
    if route is None:
        return None
    first = {key: values[0] for key, values in query.items() if values}
    return route[0](app, first, data)


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object {what}")
    return data


def reference() -> dict[str, Any]:
    """What the fake serves and how to drive it, from the route, fault and chat tables:
    the index shows it as it is, ``--help`` under the titles of ``_TITLES``."""
    return {
        "api_routes": [f"{method} {API_PREFIX}{path}: {about}"
                       for _, method, path, about in API_ROUTES],
        "admin_routes": [f"{method} {ADMIN_PREFIX}{name}: {about}"
                         for (method, name), (_, about) in ADMIN_ROUTES.items()],
        "fault_modes": FAULT_MODES,
        "fault_fields": {f.name: f.default for f in fields(Fault)},
        "chat": list(CHAT_RULES),
    }  # fmt: skip


_TITLES = {
    "api_routes": "API routes",
    "admin_routes": "Admin routes (loopback clients only; JSON bodies)",
    "fault_modes": "Fault modes (the field mode)",
    "fault_fields": "Fault fields, with their defaults (mode > body > html > status; a "
    "fault answers before the key check)",
    "chat": "Chat completions",
}


def help_text(width: int = 88) -> str:
    """The reference as ``--help`` shows it."""
    lines = []
    for key, value in reference().items():
        if key == "fault_fields":
            items = [", ".join(f"{name}={default!r}" for name, default in value.items())]
        elif isinstance(value, dict):
            items = [f"{name}: {about}" for name, about in value.items()]
        else:
            items = value
        lines.append(textwrap.fill(f"{_TITLES[key]}:", width, subsequent_indent="  "))
        lines += [
            textwrap.fill(item, width, initial_indent="  ", subsequent_indent="      ")
            for item in items
        ]
        lines.append("")
    return "\n".join(lines)


def _index(app: FakeState, _query: dict[str, str], _data: Any) -> Any:
    return {
        **reference(),
        "state": {
            "base_url": app.base_url,
            "models": len(app.models),
            "private_models": {team: len(m) for team, m in app.private_models.items()},
            "require_key": app.require_key is not None,  # never the key itself
            "faults": {name: fault.to_dict() for name, fault in app.faults.items()},
            "latency": app.latency,
            "recorded_requests": len(app.requests),
        },
    }


def _set_fault(app: FakeState, _query: dict[str, str], data: Any) -> Any:
    spec = dict(_object(data, "describing the fault"))
    endpoint = str(spec.pop("endpoint", "*"))
    fault = Fault.from_dict(spec)
    app.set_fault(endpoint, fault)
    return {"endpoint": endpoint, "fault": fault.to_dict()}


def _clear_faults(app: FakeState, query: dict[str, str], data: Any) -> Any:
    endpoint = query.get("endpoint") or (data.get("endpoint") if isinstance(data, dict) else None)
    if endpoint is not None:
        check_endpoint(endpoint)
    app.clear_faults(endpoint)
    return {"cleared": endpoint or "all"}


def _reset(app: FakeState, _query: dict[str, str], _data: Any) -> Any:
    app.reset()
    return {"reset": True, "models": len(app.models)}


def _requests(app: FakeState, query: dict[str, str], _data: Any) -> Any:
    records = app.requests
    if "endpoint" in query:
        records = [r for r in records if r.endpoint == query["endpoint"]]
    limit = query.get("limit", "")
    if limit.isdigit():
        records = records[len(records) - int(limit) :] if int(limit) else []
    return [r.to_dict() for r in records]  # keys redacted


def _clear_requests(app: FakeState, _query: dict[str, str], _data: Any) -> Any:
    app.clear_requests()
    return {"cleared": True}


def _models(app: FakeState, _query: dict[str, str], data: Any) -> Any:
    app.set_models(data)
    return {"models": len(app.models)}


def _private_model(app: FakeState, _query: dict[str, str], data: Any) -> Any:
    spec = _object(data, 'like {"team_id": ..., "model": {...}}')
    team = spec.get("team_id")
    if not isinstance(team, str) or not team:
        raise ValueError("team_id must be a non-empty string")
    app.add_private_model(team, spec.get("model"))  # type: ignore[arg-type]
    return {"team_id": team, "models": len(app.private_models.get(team, []))}


def _require_key(app: FakeState, _query: dict[str, str], data: Any) -> Any:
    key = _object(data, 'like {"key": "..." or null}').get("key")
    if key is not None and not isinstance(key, str):
        raise ValueError("key must be a string or null")
    app.require_key = key
    return {"require_key": app.require_key is not None}  # never echo the key


def _latency(app: FakeState, _query: dict[str, str], data: Any) -> Any:
    spec = _object(data, 'like {"endpoint": "*", "seconds": 0.05}')
    endpoint, seconds = str(spec.get("endpoint", "*")), spec.get("seconds", 0.0)
    app.set_latency(endpoint, seconds)
    return {"endpoint": endpoint, "seconds": seconds}


#: (method, name under /_admin/) -> (action, what it does).
ADMIN_ROUTES: dict[tuple[str, str], tuple[_AdminAction, str]] = {
    ("GET", ""): (_index, "this index: the routes, fault modes and fields, chat rules, state"),
    ("POST", "fault"): (_set_fault, '{"endpoint": "list"|"get"|"chat"|"*", FIELD: VALUE...} '
                        "installs a fault (replacing that endpoint's)"),
    ("DELETE", "fault"): (_clear_faults, "clears the faults (?endpoint=NAME: that one only)"),
    ("POST", "latency"): (_latency, '{"endpoint": "*", "seconds": 0.5} delays the '
                    "endpoint's answers"),
    ("POST", "require-key"): (_require_key, '{"key": "..."} answers 401 without '
                              "'Authorization: Bearer KEY'; null: no key needed"),
    ("PUT", "models"): (_models, "replaces the catalog (a JSON list, or {\"data\": [...]})"),
    ("POST", "private-models"): (_private_model, '{"team_id": "T", "model": {"id": ...}} '
                                 "adds a model only team T sees"),
    ("GET", "requests"): (_requests, "the recorded API requests, keys redacted "
                          "(?endpoint=NAME, ?limit=N: the last N)"),
    ("DELETE", "requests"): (_clear_requests, "forgets the recorded requests"),
    ("POST", "reset"): (_reset, "back to the start: catalog, key, latency; no faults, no "
                        "recorded requests"),
}  # fmt: skip
