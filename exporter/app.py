"""`Exporter`: the probers, their states, the collector and the web servers, wired together,
and reloaded in place.

The in-process API for tests, the demo and benchmarks:

    exporter = Exporter(ExporterConfig(accounts=(AccountConfig(base_url=url),),
                                       listen_address="127.0.0.1:0")).start()
    exporter.url, exporter.metrics_url      # http://127.0.0.1:PORT, .../metrics
    exporter.run_probe_cycle()              # one synchronous cycle (with start(probe=False))
    exporter.scrape()                       # the exposition text, without HTTP
    exporter.apply(new_config)              # what a reload does, with a config built already
    exporter.stop()

A reload builds and checks the whole new config first (`loader`: the CLI re-reads its
files), then swaps it in at once: accounts that did not change keep their prober; changed
ones get a new prober on the same state (counters and histograms carry on); removed ones
stop and their series disappear. A config that does not load changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import ProcessCollector, generate_latest, make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from llm_pinference.core.text import redact_url

from .collector import PinferenceCollector, Reading
from .config import AccountConfig, ExporterConfig
from .landing import AccountView, View
from .logs import kv
from .options import ConfigError, ListenAddress
from .prober import Prober
from .recent import RecentProbes
from .state import ProbeState
from .web import ExporterApp, ExporterServer, listen
from .webconfig import WebConfigWatcher, check_same_scheme

log = logging.getLogger("exporter")

# ExporterConfig fields that every prober reads: a change replaces every prober.
PROBE_FIELDS = ("probe_interval", "probe_timeout", "concurrency", "max_response_bytes", "jitter")


@dataclass(frozen=True)
class _Account:
    config: AccountConfig
    state: ProbeState
    prober: Prober


@dataclass(frozen=True)
class _Current:
    """The config and the accounts built from it: replaced whole, never changed."""

    config: ExporterConfig
    accounts: dict[str, _Account]  # in config order


class Exporter:
    def __init__(
        self,
        config: ExporterConfig,
        *,
        loader: Callable[[], ExporterConfig] | None = None,
    ) -> None:
        """`loader` builds the config again from its sources, for `reload()`; without it,
        a reload re-applies the config given here."""
        self._loader = loader or (lambda: config)
        self._reload_lock = threading.Lock()  # one reload at a time
        self._after_reload: list[Callable[[ExporterConfig], None]] = []
        self._reload_result = (True, time.time())  # successful?, time of the last success
        self.web = WebConfigWatcher(config.web, on_result=self._record_reload)
        self.recent = RecentProbes()  # every account's last probes, for the landing page
        self._current = _Current(config, {})
        self._current = self._build(config)
        self._settle(self._current)
        self._ready = False
        self.registry = CollectorRegistry(auto_describe=True)  # names for a name[] filter
        self.registry.register(PinferenceCollector(self._reading))
        self.registry.register(ProcessCollector(registry=None))
        self.app = ExporterApp(
            make_wsgi_app(self.registry),
            lambda: self._current.config,
            self.view,
            self.web,
            self.reload,
        )
        self._servers: list[ExporterServer] = []
        self._listening: list[ListenAddress] = []  # what the servers were bound to
        self._threads: list[threading.Thread] = []
        self._probing = False

    def __repr__(self) -> str:
        url = self.url if self._servers else "not started"
        targets = " ".join(redact_url(a.config.base_url) for a in self._accounts.values())
        return f"<Exporter {url} target={targets}>"

    @property
    def config(self) -> ExporterConfig:
        return self._current.config

    @property
    def _accounts(self) -> dict[str, _Account]:
        return self._current.accounts

    @property
    def accounts(self) -> tuple[AccountConfig, ...]:
        return tuple(account.config for account in self._accounts.values())

    def prober_of(self, account: str) -> Prober:
        return self._accounts[account].prober

    @property
    def prober(self) -> Prober:
        """The first account's prober (the only one, without a list of accounts)."""
        return next(iter(self._accounts.values())).prober

    @property
    def state(self) -> ProbeState:
        return next(iter(self._accounts.values())).state

    def secrets(self) -> list[str]:
        """Every account's key and base-URL credentials: what logs must never show."""
        return [s for a in self._accounts.values() for s in a.config.settings.secrets]

    def view(self) -> View:
        current = self._current
        accounts = tuple(
            AccountView(a.config, a.state.snapshot()) for a in current.accounts.values()
        )
        if not self._ready and all(a.snapshot.list_done for a in accounts):
            self._ready = True  # then stays ready: a reload that adds an account keeps it
        return View(current.config, accounts, self._ready, self.recent, self.web.current(),
                    tuple(self.secrets()))  # fmt: skip

    def _record_reload(self, error: str | None) -> None:
        self._reload_result = (False, self._reload_result[1]) if error else (True, time.time())

    def _reading(self) -> Reading:
        current = self._current
        successful, when = self._reload_result
        accounts = [(name, a.state.snapshot()) for name, a in current.accounts.items()]
        return Reading(accounts, current.config.probe_interval, successful, when)

    def _build(self, config: ExporterConfig) -> _Current:
        """The accounts for `config`, reusing what the current ones can give."""
        old = self._current
        reprobe = any(getattr(old.config, f) != getattr(config, f) for f in PROBE_FIELDS)
        accounts: dict[str, _Account] = {}
        for account in config.accounts:
            previous = old.accounts.get(account.name)
            if previous is not None and previous.config == account and not reprobe:
                accounts[account.name] = previous
                continue
            state = previous.state if previous else ProbeState(config.max_series)
            prober = Prober(config, account, state, recent=self.recent)
            if previous is not None:
                prober.take_over(previous.prober)
            accounts[account.name] = _Account(account, state, prober)
        return _Current(config, accounts)

    @staticmethod
    def _settle(current: _Current) -> None:
        """Fit each account's state to its config (once the whole config has loaded)."""
        for account in current.accounts.values():
            account.state.max_series = current.config.max_series
            account.state.keep_available(account.config.probe_models)
            account.state.keep_chat_models(account.config.chat_models)

    def apply(self, config: ExporterConfig) -> None:
        """Switch to `config` at once (raises ConfigError, changing nothing, if it cannot)."""
        check_same_scheme(self.web.current(), config.web)
        if config.addresses != self.config.addresses:
            log.warning("web.listen_address changes need a restart; still listening on the "
                        "previous addresses")  # fmt: skip
        with self._reload_lock:
            old = self._current
            new = self._build(config)
            self._settle(new)
            self._current = new
            self.web.replace(config.web)
        kept = {id(a.prober) for a in new.accounts.values()}
        for account in old.accounts.values():
            if id(account.prober) not in kept:
                account.prober.stop(timeout=0)
        if self._probing:
            for account in new.accounts.values():
                account.prober.start()
        added = [n for n in new.accounts if n not in old.accounts]
        removed = [n for n in old.accounts if n not in new.accounts]
        fields = {"accounts": ",".join(new.accounts), "added": ",".join(added),
                  "removed": ",".join(removed)}  # fmt: skip
        log.info("configuration loaded", extra=kv(**{k: v for k, v in fields.items() if v}))

    def reload(self) -> None:
        """Load the config again (SIGHUP, POST /-/reload) and switch to it; a config that does
        not load keeps the current one, logs one line, sets the reload metric to 0 and
        raises ConfigError."""
        try:
            config = self._loader()
            self.apply(config)
        except ConfigError as exc:
            self._record_reload(str(exc))
            log.error("reload failed; keeping the previous configuration", extra=kv(err=str(exc)))
            raise
        self._record_reload(None)
        for hook in self._after_reload:
            hook(config)

    def after_reload(self, hook: Callable[[ExporterConfig], None]) -> None:
        """Call `hook(config)` after each successful reload (e.g. to apply log settings)."""
        self._after_reload.append(hook)

    def start(self, *, probe: bool = True) -> Exporter:
        """Listen on every address (raises ListenError, an OSError, if one cannot be bound);
        probe in the background unless `probe=False`, for tests that drive cycles with
        `run_probe_cycle()`."""
        if not self._servers:
            servers: list[ExporterServer] = []
            try:
                for address in self.config.addresses:
                    servers.append(listen(address, self.app, self.web))
            except OSError:
                for server in servers:
                    server.server_close()
                raise
            self._servers = servers
            self._listening = list(self.config.addresses)
            for server in servers:
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.1},  # shutdown() waits at most this long
                    name=f"pinference-exporter-web-{server.port}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        if probe:
            self._probing = True
            for account in self._accounts.values():
                account.prober.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop probing and serving; a request or probe in flight does not delay this."""
        self._probing = False
        for account in self._accounts.values():
            account.prober.stop(timeout)
        servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout)

    def __enter__(self) -> Exporter:
        # An exporter started already (e.g. with probe=False) is used as it is.
        return self if self._servers else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_probe_cycle(self) -> bool:
        """One list probe plus the get probes of every account, now (one account after the
        other); False if a 429 pause skipped one."""
        return all([account.prober.run_cycle() for account in self._accounts.values()])

    def scrape(self) -> str:
        """The metrics in the Prometheus text format, as a scrape gets them."""
        return generate_latest(self.registry).decode()

    @property
    def port(self) -> int:
        """The port of the first listen address."""
        return self._servers[0].port

    @property
    def urls(self) -> list[str]:
        """Where to reach each listener from this machine (loopback for every-interface)."""
        scheme = web.scheme if (web := self.web.current()) else "http"
        urls = []
        for address, server in zip(self._listening, self._servers, strict=True):
            host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(
                address.host, address.host
            )
            urls.append(f"{scheme}://{f'[{host}]' if ':' in host else host}:{server.port}")
        return urls

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def metrics_url(self) -> str:
        return self.url + self.config.telemetry_path
