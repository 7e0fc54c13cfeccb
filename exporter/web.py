"""The WSGI app (/, the telemetry path, /-/healthy, /-/ready, /-/reload) and the servers.

Metrics are served pre-rendered by `exposition.Exposition` (OpenMetrics and gzip negotiated
as prometheus_client's `make_wsgi_app` does). Every GET route answers HEAD too (the same
headers, no body). The server is wsgiref's, one daemon thread per connection; TLS handshakes
run in those threads too, so a slow client cannot stall the accept loop. The web config (TLS
context, basic auth, headers) is looked up for each connection and request, so a rotated
certificate or password applies without a restart.
"""

from __future__ import annotations

import html
import logging
import math
import socket
import socketserver
import ssl
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from llm_pinference.core.text import format_duration, one_line, redact_url

from . import build
from .config import AccountConfig, ExporterConfig
from .options import ConfigError, ListenAddress
from .state import ENDPOINTS, Snapshot
from .webconfig import WebConfigWatcher

log = logging.getLogger("pinference_exporter.web")

HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0  # an idle or trickling client gives up its thread after this
GET_ONLY = ("GET", "HEAD")
RELOAD_METHODS = ("POST", "PUT")  # as Prometheus accepts them

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


@dataclass(frozen=True)
class AccountView:
    config: AccountConfig
    snapshot: Snapshot


@dataclass(frozen=True)
class View:
    """What a request reads: the config and every account's state, taken together."""

    config: ExporterConfig
    accounts: tuple[AccountView, ...]
    ready: bool  # every account has finished a list probe (once true, stays true)


class ExporterApp:
    def __init__(
        self,
        metrics: Callable[[Environ, StartResponse], Iterable[bytes]],
        config: Callable[[], ExporterConfig],
        view: Callable[[], View],
        web: WebConfigWatcher,
        reload: Callable[[], None],
    ) -> None:
        """`metrics` answers GET on the telemetry path; `config` is read for each request;
        `view` (every account's state) only by the pages that show it, not by scrapes."""
        self._metrics = metrics
        self._config = config
        self._view = view
        self._web = web
        self._reload = reload

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        web = self._web.current()
        extra = list(web.headers) if web is not None else []

        def respond(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, [*headers, *extra], *exc)

        try:
            auth = web.auth if web is not None else None
            if auth is not None and not auth.allows(environ.get("HTTP_AUTHORIZATION")):
                return _plain(respond, "401 Unauthorized", "Unauthorized\n", [(
                    "WWW-Authenticate", 'Basic realm="pinference-exporter", charset="UTF-8"'
                )])  # fmt: skip
            if environ.get("REQUEST_METHOD") == "HEAD":
                return self._head(environ, respond)
            return self._route(environ, respond)
        except Exception:  # a bug must cost one 500, not a traceback per request on stderr
            log.exception("request failed", extra={"kv": {"path": environ.get("PATH_INFO")}})
            return _plain(respond, "500 Internal Server Error", "internal error\n")

    def _head(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        """The GET answer's status and headers, Content-Length included, without the body."""
        answer: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            answer[:] = [status, list(headers)]
            return lambda data: None

        body = self._route({**environ, "REQUEST_METHOD": "GET"}, capture)
        size = sum(len(chunk) for chunk in body)
        if hasattr(body, "close"):
            body.close()
        status, headers = answer
        if not any(name.lower() == "content-length" for name, _ in headers):
            headers.append(("Content-Length", str(size)))
        start_response(status, headers)
        return []

    def _route(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        config = self._config()
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD")
        if path == "/-/reload":
            return self._reload_route(config, method, start_response)
        routes = {"/": self._landing, "/-/healthy": self._healthy, "/-/ready": self._ready}
        if path != config.telemetry_path and path not in routes:
            return _plain(start_response, "404 Not Found", "Not Found\n")
        if method not in GET_ONLY:
            return _plain(start_response, "405 Method Not Allowed", "GET or HEAD only\n",
                          [("Allow", ", ".join(GET_ONLY))])  # fmt: skip
        if path == config.telemetry_path:
            return self._metrics(environ, start_response)
        return routes[path](start_response)

    def _reload_route(
        self, config: ExporterConfig, method: str | None, start_response: StartResponse
    ) -> list[bytes]:
        if not config.enable_lifecycle:
            return _plain(start_response, "403 Forbidden",
                          "Lifecycle API is not enabled (--web.enable-lifecycle).\n")  # fmt: skip
        if method not in RELOAD_METHODS:
            return _plain(start_response, "405 Method Not Allowed", "POST or PUT only\n",
                          [("Allow", ", ".join(RELOAD_METHODS))])  # fmt: skip
        try:
            self._reload()
        except ConfigError as exc:
            return _plain(start_response, "500 Internal Server Error",
                          f"failed to reload config: {one_line(str(exc))}\n")  # fmt: skip
        return _plain(start_response, "200 OK", "Reloaded\n")

    def _landing(self, start_response: StartResponse) -> list[bytes]:
        body = landing_page(self._view()).encode()
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _healthy(self, start_response: StartResponse) -> list[bytes]:
        return _plain(start_response, "200 OK", "Healthy\n")

    def _ready(self, start_response: StartResponse) -> list[bytes]:
        # Ready once every account's list probe has finished, whatever its outcome: the
        # metrics are real.
        if self._view().ready:
            return _plain(start_response, "200 OK", "Ready\n")
        return _plain(start_response, "503 Service Unavailable",
                      "Not ready: the first list probe has not finished\n")  # fmt: skip


def landing_page(view: View) -> str:
    config, esc = view.config, html.escape
    now = time.time()
    sections = "\n".join(_account_section(account, now) for account in view.accounts)
    path = esc(config.telemetry_path)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Pinference exporter</title></head>
<body>
<h1>Pinference exporter</h1>
<p>Version {esc(build.version())}. Probes {len(view.accounts)} account(s) every
{format_duration(config.probe_interval)} (timeout {format_duration(config.timeout)}): GET
/models, then the get probes; chat probes, where an account has them, on their own schedule.
Scrapes read the latest results; they never trigger a probe.</p>
{sections}
<p><a href="{path}">Metrics</a> &middot; <a href="/-/healthy">/-/healthy</a> &middot;
<a href="/-/ready">/-/ready</a></p>
</body></html>
"""


def _account_section(account: AccountView, now: float) -> str:
    config, snap, esc = account.config, account.snapshot, html.escape
    if config.probe_models:
        gets = "watched models: " + ", ".join(f"<code>{esc(m)}</code>" for m in config.probe_models)
    elif config.sample_size:
        gets = f"a rotating sample of {config.sample_size} listed model(s) per cycle"
    else:
        gets = "no get probes (sample size 0)"
    team = f", team <code>{esc(config.team_id)}</code>" if config.team_id else ""
    auth = "a key" if config.api_key else "no key"
    rows = []
    for endpoint in ENDPOINTS:
        stats = snap.endpoints[endpoint]
        if stats.success is None:
            result = "not probed yet"
        elif stats.success:
            result = "ok"
        else:
            result = f"failed: {esc(stats.last_error or stats.last_reason or '')}"
        rows.append(
            f"<tr><td>{endpoint}</td><td>{result}</td><td>{stats.status_code or '-'}</td>"
            f"<td>{_ago(stats.last_probe, now)}</td><td>{_ago(stats.last_success, now)}</td>"
            f"<td>{stats.probes}</td><td>{sum(stats.failures.values())}</td></tr>"
        )
    listed = snap.catalog
    if listed is None:
        models = "no successful list yet"
    else:
        models = f"{listed.total} model(s) in the last successful list"
        if listed.dropped:
            models += f" ({listed.dropped} left out of pinference_model_info by the cap)"
    paused = ""
    if snap.paused_until is not None and snap.paused_until > now:
        paused = (
            f"<p><strong>Rate limited (429): probes paused for another "
            f"{format_duration(math.ceil(snap.paused_until - now))} (Retry-After).</strong></p>"
        )
    return f"""<h2>Account <code>{esc(config.name)}</code></h2>
<p><code>{esc(redact_url(config.base_url))}</code>{team}, with {auth}; {gets}.</p>
{paused}<table border="1" cellpadding="4">
<tr><th>endpoint</th><th>last result</th><th>HTTP status</th><th>last probe</th>
<th>last success</th><th>probes</th><th>failures</th></tr>
{"".join(rows)}
</table>
<p>Catalog: {models}. Probe cycles: {snap.cycles}.</p>{_chat_section(account)}"""


def _chat_section(account: AccountView) -> str:
    config, chat, esc = account.config, account.snapshot.chat, html.escape
    if not config.chat_models:
        return ""
    rows = []
    for model in config.chat_models:
        stats = chat.get(model)
        if stats is None:  # not yet in the state (a reload in progress)
            continue
        failed = ", ".join(f"{reason} {n}" for reason, n in stats.failures.items() if n)
        rows.append(
            f"<tr><td><code>{esc(model)}</code></td><td>{stats.probes}</td>"
            f"<td>{esc(failed) or 'none'}</td><td>{stats.output_tokens}</td>"
            f"<td>${stats.cost_usd:.6f}{' (+ unpriced)' if stats.unpriced else ''}</td></tr>"
        )
    schedule = (
        f"every {format_duration(config.chat_interval)}, at most {config.chat_max_per_hour} "
        f"an hour, {config.chat_max_tokens} token(s) each"
    )
    return f"""
<p>Chat probes (billed inference): {schedule}.</p>
<table border="1" cellpadding="4">
<tr><th>model</th><th>probes</th><th>failures</th><th>output tokens</th><th>cost</th></tr>
{"".join(rows)}
</table>"""


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
    return f"{stamp} ({format_duration(max(0.0, now - when))} ago)"


def _plain(
    start_response: StartResponse,
    status: str,
    body: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = body.encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data))),
         *(headers or [])],
    )  # fmt: skip
    return [data]


# --- the servers --------------------------------------------------------------------


class _Handler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"kv": {"client": self.client_address[0],
                                                 "request": format % args}})  # fmt: skip


class ListenError(OSError):
    """An address that cannot be listened on; `str()` says which and why."""

    def __init__(self, address: ListenAddress, exc: OSError) -> None:
        reason = exc.strerror or type(exc).__name__
        super().__init__(exc.errno, f"cannot listen on {address}: {reason}")
        self.address = address


class ExporterServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # in-flight requests never hold up shutdown
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: ListenAddress, app: ExporterApp, web: WebConfigWatcher) -> None:
        self.web = web
        self.address_family, sockaddr, self._dual_stack = _resolve(address)
        super().__init__(sockaddr, _Handler)
        self.set_app(app)

    def server_bind(self) -> None:
        if self._dual_stack:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # TCPServer's bind, skipping HTTPServer's getfqdn() (a reverse DNS lookup).
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def finish_request(self, request: Any, client_address: Any) -> None:
        web = self.web.current()  # read per connection: certificate rotation applies now
        if web is None or web.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = web.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake failed", extra={"kv": {"client": client_address[0],
                                                            "err": str(exc)}})  # fmt: skip
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Timeouts and resets from clients are routine: one debug line, not a traceback.
        exc = sys.exc_info()[1]
        log.debug("connection error", extra={"kv": {"client": client_address[0],
                                                    "err": repr(exc)}})  # fmt: skip

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def listen(address: ListenAddress, app: ExporterApp, web: WebConfigWatcher) -> ExporterServer:
    """A server bound to `address` (not serving yet); ListenError if it cannot bind."""
    try:
        return ExporterServer(address, app, web)
    except OSError as exc:
        raise ListenError(address, exc) from None


def _resolve(address: ListenAddress) -> tuple[socket.AddressFamily, tuple[str, int], bool]:
    """(family, bind address, dual stack?) for a listen address; "" is every interface."""
    if not address.host:
        if socket.has_dualstack_ipv6():
            return socket.AF_INET6, ("::", address.port), True
        return socket.AF_INET, ("0.0.0.0", address.port), False
    infos = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), address.port), False
