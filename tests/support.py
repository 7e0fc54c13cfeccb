"""Small helpers shared by every kind of test; they live in `llm_pinference.testing`
(shared with the demo) and are re-exported here for the tests' imports."""

from __future__ import annotations

from llm_pinference.testing import free_port, in_ci

__all__ = ["free_port", "in_ci"]
