"""The ``/_admin/`` routes: runtime control from demo scripts and benchmarks.

They change the fake's ``FakeState`` through its public API and only answer loopback
clients (``is_loopback``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from .faults import Fault
from .routing import check_endpoint
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
    action = _ADMIN_ROUTES.get((method, name))
    if action is None:
        return None
    first = {key: values[0] for key, values in query.items() if values}
    return action(app, first, data)


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object {what}")
    return data


def _admin_set_fault(app: FakeState, _query: dict[str, str], data: Any) -> Any:
    spec = dict(_object(data, "describing the fault"))
    endpoint = str(spec.pop("endpoint", "*"))
    fault = Fault.from_dict(spec)
    app.set_fault(endpoint, fault)
    return {"endpoint": endpoint, "fault": fault.to_dict()}


def _admin_clear_faults(app: FakeState, query: dict[str, str], data: Any) -> Any:
    endpoint = query.get("endpoint") or (data.get("endpoint") if isinstance(data, dict) else None)
    if endpoint is not None:
        check_endpoint(endpoint)
    app.clear_faults(endpoint)
    return {"cleared": endpoint or "all"}


def _admin_faults(app: FakeState, _query: dict[str, str], _data: Any) -> Any:
    return {name: fault.to_dict() for name, fault in app.faults.items()}


def _admin_reset(app: FakeState, _query: dict[str, str], _data: Any) -> Any:
    app.reset()
    return {"reset": True, "models": app.model_count()}


def _admin_requests(app: FakeState, query: dict[str, str], _data: Any) -> Any:
    records = app.requests
    if "endpoint" in query:
        records = [r for r in records if r.endpoint == query["endpoint"]]
    limit = query.get("limit", "")
    if limit.isdigit():
        records = records[len(records) - int(limit) :] if int(limit) else []
    return [r.to_dict(redact=True) for r in records]  # never echo keys


def _admin_clear_requests(app: FakeState, _query: dict[str, str], _data: Any) -> Any:
    app.clear_requests()
    return {"cleared": True}


def _admin_models(app: FakeState, _query: dict[str, str], data: Any) -> Any:
    app.set_models(data)
    return {"models": app.model_count()}


def _admin_private_model(app: FakeState, _query: dict[str, str], data: Any) -> Any:
    spec = _object(data, 'like {"team_id": ..., "model": {...}}')
    team = spec.get("team_id")
    if not isinstance(team, str) or not team:
        raise ValueError("team_id must be a non-empty string")
    app.add_private_model(team, spec.get("model"))  # type: ignore[arg-type]
    return {"team_id": team, "models": len(app.private_models.get(team, []))}


def _admin_require_key(app: FakeState, _query: dict[str, str], data: Any) -> Any:
    key = _object(data, 'like {"key": "..." or null}').get("key")
    if key is not None and not isinstance(key, str):
        raise ValueError("key must be a string or null")
    app.require_key = key
    return {"require_key": app.require_key is not None}  # never echo the key


def _admin_latency(app: FakeState, _query: dict[str, str], data: Any) -> Any:
    spec = _object(data, 'like {"endpoint": "*", "seconds": 0.05}')
    endpoint, seconds = str(spec.get("endpoint", "*")), spec.get("seconds", 0.0)
    app.set_latency(endpoint, seconds)
    return {"endpoint": endpoint, "seconds": seconds}


def _admin_status(app: FakeState, _query: dict[str, str], _data: Any) -> Any:
    return {"base_url": app.base_url, "models": app.model_count(), "faults": sorted(app.faults)}


_ADMIN_ROUTES: dict[tuple[str, str], _AdminAction] = {
    ("POST", "fault"): _admin_set_fault,
    ("DELETE", "fault"): _admin_clear_faults,
    ("DELETE", "faults"): _admin_clear_faults,
    ("GET", "faults"): _admin_faults,
    ("POST", "reset"): _admin_reset,
    ("GET", "requests"): _admin_requests,
    ("DELETE", "requests"): _admin_clear_requests,
    ("PUT", "models"): _admin_models,
    ("POST", "private-models"): _admin_private_model,
    ("POST", "require-key"): _admin_require_key,
    ("POST", "latency"): _admin_latency,
    ("GET", "status"): _admin_status,
}
