"""`Exporter`: the prober, the state, the collector and the web server, wired together.

The in-process API for tests, the demo and benchmarks:

    exporter = Exporter(ExporterConfig(settings=Settings(base_url=url),
                                       listen_address="127.0.0.1:0")).start()
    exporter.url, exporter.metrics_url      # http://127.0.0.1:PORT, .../metrics
    exporter.run_probe_cycle()              # one synchronous cycle (with start(probe=False))
    exporter.scrape()                       # the exposition text, without HTTP
    exporter.stop()
"""

from __future__ import annotations

import threading

from prometheus_client import ProcessCollector, generate_latest
from prometheus_client.registry import CollectorRegistry

from llm_pinference.settings import Settings
from llm_pinference.text import redact_url

from .collector import PinferenceCollector
from .config import ExporterConfig
from .prober import Prober
from .state import ProbeState
from .web import ExporterApp, ExporterServer, PageInfo
from .webconfig import BasicAuth


class Exporter:
    def __init__(self, config: ExporterConfig) -> None:
        self.config = config.check()
        self.settings: Settings = config.account().settings
        self.state = ProbeState(max_series=config.max_series)
        self.registry = CollectorRegistry()
        self.registry.register(PinferenceCollector(self.state, config.probe_interval))
        ProcessCollector(registry=self.registry)
        self.prober = Prober(config, self.settings, self.state)
        web = config.web
        auth = (
            BasicAuth(web.users, web.check_hash)
            if web is not None and web.users and web.check_hash
            else None
        )
        self.app = ExporterApp(
            self.registry,
            self.state.snapshot,
            PageInfo(
                target=redact_url(self.settings.base_url),
                interval=config.probe_interval,
                timeout=config.timeout,
                telemetry_path=config.telemetry_path,
                watched=config.probe_models,
                sample_size=config.sample_size,
            ),
            auth,
        )
        self._server: ExporterServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def __repr__(self) -> str:
        url = self.url if self._server else "not started"
        return f"<Exporter {url} target={redact_url(self.settings.base_url)}>"

    # lifecycle

    def start(self, *, probe: bool = True) -> Exporter:
        """Listen (raises OSError if the address cannot be bound); probe in the background
        unless `probe=False`, for tests that drive cycles with `run_probe_cycle()`."""
        if self._stopped:
            raise RuntimeError("a stopped Exporter cannot start again: make a new one")
        if self._server is None:
            ssl_context = self.config.web.ssl_context if self.config.web else None
            self._server = ExporterServer(self.config.address, self.app, ssl_context)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},  # shutdown() waits at most this long
                name="pinference-exporter-web",
                daemon=True,
            )
            self._thread.start()
        if probe:
            self.prober.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop probing and serving; a request or probe in flight does not delay this."""
        self._stopped = True
        self.prober.stop(timeout)
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Exporter:
        # An exporter started already (e.g. with probe=False) is used as it is.
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # use

    def run_probe_cycle(self) -> bool:
        """One list probe plus the get probes, now; False if a 429 pause skipped it."""
        return self.prober.run_cycle()

    def scrape(self) -> str:
        """The metrics in the Prometheus text format, as a scrape would get them."""
        return generate_latest(self.registry).decode()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the exporter is not started")
        return self._server.port

    @property
    def url(self) -> str:
        """Where to reach the exporter from this machine (loopback for every-interface)."""
        if self._server is None:
            raise RuntimeError("the exporter is not started")
        host = self.config.address.host
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        if ":" in host:
            host = f"[{host}]"
        scheme = self.config.web.scheme if self.config.web else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return self.url + self.config.telemetry_path
