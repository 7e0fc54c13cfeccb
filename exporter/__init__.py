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
"""

from llm_pinference import __version__

from . import needs_extra  # noqa: F401  (first: a missing extra is one line, not a traceback)
from .app import Exporter
from .config import AccountConfig, ConfigError, ExporterConfig, parse_duration

__all__ = [
    "AccountConfig",
    "ConfigError",
    "Exporter",
    "ExporterConfig",
    "__version__",
    "parse_duration",
]
