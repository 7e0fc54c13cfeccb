"""The Pinference Prometheus exporter (console script: pinference-exporter).

It imports the core (`llm_pinference.core.settings`, `.client`, `.models`) and never `llm`.

    from pinference_exporter import AccountConfig, Exporter, ExporterConfig

    config = ExporterConfig(
        accounts=(AccountConfig(name="default", base_url=url),),
        listen_address="127.0.0.1:0",
        probe_interval=1.0,
    )
    with Exporter(config) as exporter:
        print(exporter.metrics_url)

`Exporter` is imported on first use: the rest of the package (the config, `--help`,
`--version`, the assets) works without the exporter's extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llm_pinference import __version__

from . import needs_extra
from .config import AccountConfig, ExporterConfig
from .options import ConfigError, parse_duration

if TYPE_CHECKING:
    from .app import Exporter

__all__ = [
    "AccountConfig",
    "ConfigError",
    "Exporter",
    "ExporterConfig",
    "__version__",
    "parse_duration",
]


def __getattr__(name: str) -> Any:
    if name == "Exporter":
        needs_extra.require()
        from .app import Exporter

        return Exporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
