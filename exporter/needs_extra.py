"""Say what to install, in one line, when the exporter was installed without its extra.

`pip install llm-pinference` (what `llm install` does for the plugin) leaves out
prometheus_client and PyYAML; `pip install 'llm-pinference[exporter]'` brings them. Only
what needs them checks: running the exporter (the command says this line and exits 2) and
`from pinference_exporter import Exporter` (an ImportError with the same text). `--help`,
`--version` and `python -m pinference_exporter.assets` work without them.
"""

from __future__ import annotations

from importlib import import_module

NEEDS = ("prometheus_client", "yaml")
MISSING = "the exporter needs its extra: pip install 'llm-pinference[exporter]'"


def missing() -> str | None:
    """The one-line message when a module of the extra cannot be imported, else None."""
    try:
        for name in NEEDS:
            import_module(name)
    except ImportError:
        return MISSING
    return None


def require() -> None:
    if message := missing():
        raise ImportError(message)
