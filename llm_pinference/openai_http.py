"""The HTTP library of the installed openai client, for the plugin's chat transport.

openai 3 (llm 0.36) is built on `httpx2`; openai 1 and 2 (llm 0.26 to 0.3x) on `httpx`.
Both may be installed side by side, so the choice follows what openai's own default client
derives from, not what happens to be importable.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import openai

_CANDIDATES = ("httpx2", "httpx")


def _openai_http_library() -> ModuleType:
    for cls in openai.DefaultHttpxClient.__mro__:
        root = cls.__module__.partition(".")[0]
        if root in _CANDIDATES:
            return importlib.import_module(root)
    raise ImportError("cannot tell which HTTP library the installed openai package uses")


http_lib = _openai_http_library()
