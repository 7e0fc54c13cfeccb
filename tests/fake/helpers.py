"""Helpers shared by the fake server's tests: requests to its routes, SSE parsing."""

from __future__ import annotations

import json
from typing import Any

import requests

from pinference_fake import FakePinference

TIMEOUT = 10  # seconds: only a hang reaches it
QUICK = 5.0  # seconds: what "at once" means in a test, against waits of a minute or more
KEY = "sk-test-secret-123"
MODEL = "meta-llama/llama-3.1-70b-instruct"
STREAM = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}


def get(fake: FakePinference, path: str, **kwargs: Any) -> requests.Response:
    timeout = kwargs.pop("timeout", TIMEOUT)
    return requests.get(fake.base_url + path, timeout=timeout, **kwargs)


def chat(fake: FakePinference, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    return requests.post(fake.base_url + "/chat/completions", json=body, timeout=TIMEOUT, **kwargs)


def admin(fake: FakePinference, method: str, name: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{fake.url}/_admin/{name}", timeout=TIMEOUT, **kwargs)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def sse_events(lines: Any) -> list[Any]:
    """The JSON events of an SSE body (a response, or its lines as bytes), the literal
    "[DONE]" kept as a string."""
    if isinstance(lines, requests.Response):
        lines = lines.iter_lines()
    events: list[Any] = []
    for line in lines:
        if line.startswith(b"data: "):
            data = line[len(b"data: ") :]
            events.append(data.decode() if data == b"[DONE]" else json.loads(data))
    return events


def contents(events: list[Any]) -> list[str]:
    """The text of each content chunk of a stream."""
    return [
        e["choices"][0]["delta"]["content"]
        for e in events
        if isinstance(e, dict) and e.get("choices") and e["choices"][0]["delta"].get("content")
    ]
