"""The shared core: settings, the API client and its transport, typed errors, model records.

It imports neither llm nor prometheus_client; the llm plugin and the exporter both build on it."""
