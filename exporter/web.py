"""The WSGI app (/, the telemetry path, /-/healthy, /-/ready) and the threaded server.

Metrics are served by prometheus_client's `make_wsgi_app`, which negotiates OpenMetrics
and gzip. The server is wsgiref's, one daemon thread per connection; TLS handshakes run
in those threads too, so a slow client cannot stall the accept loop.
"""

from __future__ import annotations

import html
import logging
import math
import socket
import socketserver
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from llm_pinference import __version__
from llm_pinference.text import format_duration

from .config import ListenAddress
from .state import ENDPOINTS, Snapshot
from .webconfig import BasicAuth

log = logging.getLogger("exporter.web")

HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0  # an idle or trickling client gives up its thread after this

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


@dataclass(frozen=True)
class PageInfo:
    """What the landing page shows besides the snapshot (nothing secret)."""

    target: str  # the API base URL without user info or query
    interval: float
    timeout: float
    telemetry_path: str
    watched: tuple[str, ...]
    sample_size: int


class ExporterApp:
    def __init__(
        self,
        registry: CollectorRegistry,
        snapshot: Callable[[], Snapshot],
        page: PageInfo,
        basic_auth: BasicAuth | None = None,
    ) -> None:
        self._metrics = make_wsgi_app(registry)
        self._snapshot = snapshot
        self.page = page
        self._auth = basic_auth

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._route(environ, start_response)
        except Exception:  # a bug must cost one 500, not a traceback per request on stderr
            log.exception("request failed", extra={"kv": {"path": environ.get("PATH_INFO")}})
            return _plain(start_response, "500 Internal Server Error", "internal error\n")

    def _route(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._auth is not None and not self._auth.allows(environ.get("HTTP_AUTHORIZATION")):
            return _plain(
                start_response,
                "401 Unauthorized",
                "Unauthorized\n",
                [("WWW-Authenticate", 'Basic realm="pinference-exporter", charset="UTF-8"')],
            )
        path = environ.get("PATH_INFO") or "/"
        if path == self.page.telemetry_path:
            return self._metrics(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "GET only\n",
                         [("Allow", "GET, HEAD")])  # fmt: skip
        routes = {"/": self._landing, "/-/healthy": self._healthy, "/-/ready": self._ready}
        route = routes.get(path)
        if route is None:
            return _plain(start_response, "404 Not Found", "Not Found\n")
        return route(start_response)

    def _landing(self, start_response: StartResponse) -> list[bytes]:
        body = self.landing_page(self._snapshot()).encode()
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _healthy(self, start_response: StartResponse) -> list[bytes]:
        return _plain(start_response, "200 OK", "Healthy\n")

    def _ready(self, start_response: StartResponse) -> list[bytes]:
        # Ready once a list probe has finished, whatever its outcome: the metrics are real.
        if self._snapshot().list_done:
            return _plain(start_response, "200 OK", "Ready\n")
        return _plain(start_response, "503 Service Unavailable",
                     "Not ready: the first list probe has not finished\n")  # fmt: skip

    def landing_page(self, snap: Snapshot) -> str:
        page, esc = self.page, html.escape
        now = time.time()
        if page.watched:
            gets = "watched models: " + ", ".join(f"<code>{esc(m)}</code>" for m in page.watched)
        elif page.sample_size:
            gets = f"a rotating sample of {page.sample_size} listed model(s) per cycle"
        else:
            gets = "no get probes (--probe.sample-size=0)"
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
        catalog = snap.catalog
        if catalog is None:
            models = "no successful list yet"
        else:
            models = f"{catalog.total} model(s) in the last successful list"
            if catalog.dropped:
                models += f" ({catalog.dropped} left out of pinference_model_info by the cap)"
        paused = ""
        if snap.paused_until is not None and snap.paused_until > now:
            paused = (
                f"<p><strong>Rate limited (429): probes paused for another "
                f"{format_duration(math.ceil(snap.paused_until - now))} (Retry-After).</strong></p>"
            )
        path = esc(page.telemetry_path)
        return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Pinference exporter</title></head>
<body>
<h1>Pinference exporter</h1>
<p>Version {esc(__version__)}. Probes <code>{esc(page.target)}</code> every
{format_duration(page.interval)} (timeout {format_duration(page.timeout)}): GET /models, then
{gets}. Scrapes read the latest results; they never trigger a probe.</p>
{paused}<table border="1" cellpadding="4">
<tr><th>endpoint</th><th>last result</th><th>HTTP status</th><th>last probe</th>
<th>last success</th><th>probes</th><th>failures</th></tr>
{"".join(rows)}
</table>
<p>Catalog: {models}. Probe cycles: {snap.cycles}.</p>
<p><a href="{path}">Metrics</a> &middot; <a href="/-/healthy">/-/healthy</a> &middot;
<a href="/-/ready">/-/ready</a></p>
</body></html>
"""


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


# --- the server ---------------------------------------------------------------------


class _Handler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"kv": {"client": self.client_address[0],
                                                 "request": format % args}})  # fmt: skip


class ExporterServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # in-flight requests never hold up shutdown
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self, address: ListenAddress, app: ExporterApp, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.ssl_context = ssl_context
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
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
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
        import sys

        exc = sys.exc_info()[1]
        log.debug("connection error", extra={"kv": {"client": client_address[0],
                                                    "err": repr(exc)}})  # fmt: skip

    @property
    def port(self) -> int:
        return int(self.server_address[1])


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
