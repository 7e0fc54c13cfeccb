"""Helpers shared by the test suite and the demo (`scripts/demo.py`).

Loopback ports, waits with a deadline, child processes that are always reaped, the
project's file layout, and the pieces that start and query a real Prometheus and
Alertmanager. Nothing here is used by the plugin or the exporter at run time, and nothing
here imports pytest: the demo runs without it. It imports neither llm nor
prometheus_client.
"""

from __future__ import annotations

from .net import free_port, in_ci
from .process import Process, wait_until
from .project import ProjectFiles

__all__ = ["Process", "ProjectFiles", "free_port", "in_ci", "wait_until"]
