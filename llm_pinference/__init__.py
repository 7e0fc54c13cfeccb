"""llm-pinference: Prime Intellect's inference API for `llm`, and a Prometheus exporter for it.

This package's import must stay cheap and must not pull in `llm` or `prometheus_client`:
the exporter uses the core (settings, client, models) without either.
"""

__version__ = "0.1.0"
