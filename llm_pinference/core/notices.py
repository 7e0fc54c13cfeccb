"""Say each thing once per process: llm runs the plugin's hooks, and so the settings
lookup, several times per command, and a long-lived process would repeat them forever."""

from __future__ import annotations

import threading

_said: set[str] = set()
_lock = threading.Lock()


def first_time(message: str) -> bool:
    """True the first time this exact message is seen in this process, False after."""
    with _lock:
        if message in _said:
            return False
        _said.add(message)
        return True


def forget() -> None:
    """Allow every message again (tests; a process that wants to repeat itself)."""
    with _lock:
        _said.clear()
