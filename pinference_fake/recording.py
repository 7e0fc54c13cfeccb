"""What the fake records of each request, with secrets redacted on the way out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (admin requests are not recorded)."""

    method: str
    path: str  # percent-decoded, without the query
    raw_path: str  # as sent on the request line
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    client: tuple[str, int]
    time: float
    endpoint: str | None  # "list" | "get" | "chat" | None (unknown route)

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None."""
        try:
            return json.loads(self.body) if self.body else None
        except (ValueError, RecursionError):
            return None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def to_dict(self) -> dict[str, Any]:
        """As the admin route shows it: secret headers redacted."""
        headers = {k: _redact(k, v) for k, v in self.headers.items()}
        return {
            "method": self.method,
            "path": self.path,
            "raw_path": self.raw_path,
            "query": self.query,
            "headers": headers,
            "body": self.body.decode("utf-8", "replace"),
            "json": self.json,
            "client": f"{self.client[0]}:{self.client[1]}",
            "time": self.time,
            "endpoint": self.endpoint,
        }


def _redact(name: str, value: str) -> str:
    if name not in _SECRET_HEADERS:
        return value
    scheme, sep, _ = value.partition(" ")
    return f"{scheme} ***" if sep and name.endswith("authorization") else "***"
