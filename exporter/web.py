"""The WSGI app (/, /logs, the telemetry path, /-/healthy, /-/ready, /-/reload) and the servers.

Metrics are prometheus_client's own `make_wsgi_app` (OpenMetrics and gzip negotiated, a
`name[]` filter). Every GET route answers HEAD too (the GET answer's headers, no body),
after the same basic auth. The server is wsgiref's with prometheus_client's thread per
connection, speaking HTTP/1.1 with keep-alive (a TLS scrape reuses its handshake); TLS
handshakes run in those threads too, so a slow client cannot stall the accept loop. The web
config is looked up for each connection and request: a rotated certificate or password
applies without a restart.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import sys
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler

from prometheus_client.exposition import ThreadingWSGIServer

from llm_pinference.core.text import one_line

from . import build
from .config import ExporterConfig
from .landing import View, landing_page, probe_log_page
from .options import ConfigError, ListenAddress
from .webconfig import WebConfigWatcher

log = logging.getLogger("pinference_exporter.web")

HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0  # an idle or trickling client gives up its thread after this
SERVER = f"pinference-exporter/{build.version()}"  # no runtime version in Server

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class ExporterApp:
    def __init__(
        self,
        metrics: Callable[[Environ, StartResponse], Iterable[bytes]],
        config: Callable[[], ExporterConfig],
        view: Callable[[], View],
        web: WebConfigWatcher,
        reload: Callable[[], None],
    ) -> None:
        """`config` is read for each request; `view` (every account's state) only by the
        pages that show it, not by scrapes."""
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
            if web and web.auth and not web.auth.allows(environ.get("HTTP_AUTHORIZATION")):
                return _text(respond, "401 Unauthorized", "Unauthorized\n", [(
                    "WWW-Authenticate", 'Basic realm="pinference-exporter", charset="UTF-8"'
                )])  # fmt: skip
            return self._route(environ, respond)
        except Exception:  # a bug must cost one 500, not a traceback per request on stderr
            log.exception("request failed", extra={"kv": {"path": environ.get("PATH_INFO")}})
            return _text(respond, "500 Internal Server Error", "internal error\n")

    def _route(  # noqa: PLR0911 (one return per answer)
        self, environ: Environ, respond: StartResponse
    ) -> Iterable[bytes]:
        config = self._config()
        path, method = environ.get("PATH_INFO") or "/", environ.get("REQUEST_METHOD")
        if path == "/-/reload":
            return self._reload_route(config, method, respond)
        if path not in (config.telemetry_path, "/", "/logs", "/-/healthy", "/-/ready"):
            return _text(respond, "404 Not Found", "Not Found\n")
        if method not in ("GET", "HEAD"):
            return _text(respond, "405 Method Not Allowed", "GET or HEAD only\n",
                         [("Allow", "GET, HEAD")])  # fmt: skip
        if path == config.telemetry_path:
            return self._metrics({**environ, "REQUEST_METHOD": "GET"}, respond)  # HEAD too
        if path == "/-/healthy":
            return _text(respond, "200 OK", "Healthy\n")
        view = self._view()
        if path == "/-/ready":  # every account's first list probe has finished
            if view.ready:
                return _text(respond, "200 OK", "Ready\n")
            return _text(respond, "503 Service Unavailable",
                         "Not ready: the first list probe has not finished\n")  # fmt: skip
        if path == "/":
            return _text(respond, "200 OK", landing_page(view), html=True)
        wanted = parse_qs(environ.get("QUERY_STRING") or "").get("id", [""])[0]
        record = view.recent.find(int(wanted)) if wanted.isdecimal() and len(wanted) < 20 else None
        if record is None:
            return _text(respond, "404 Not Found", "No such probe: only the recent ones are kept\n")
        return _text(respond, "200 OK", probe_log_page(record, view.secrets), html=True)

    def _reload_route(
        self, config: ExporterConfig, method: str | None, respond: StartResponse
    ) -> list[bytes]:
        if not config.enable_lifecycle:
            return _text(respond, "403 Forbidden",
                         "Lifecycle API is not enabled (--web.enable-lifecycle).\n")  # fmt: skip
        if method not in ("POST", "PUT"):  # as Prometheus accepts them
            return _text(respond, "405 Method Not Allowed", "POST or PUT only\n",
                         [("Allow", "POST, PUT")])  # fmt: skip
        try:
            self._reload()
        except ConfigError as exc:
            return _text(respond, "500 Internal Server Error",
                         f"failed to reload config: {one_line(str(exc))}\n")  # fmt: skip
        return _text(respond, "200 OK", "Reloaded\n")


def _text(
    respond: StartResponse,
    status: str,
    body: str,
    headers: list[tuple[str, str]] | None = None,
    html: bool = False,
) -> list[bytes]:
    data = body.encode()
    kind = "text/html" if html else "text/plain"
    respond(status, [("Content-Type", f"{kind}; charset=utf-8"),
                     ("Content-Length", str(len(data))), *(headers or [])])  # fmt: skip
    return [data]


# --- the servers --------------------------------------------------------------------


class _Answer(ServerHandler):
    """wsgiref's response writer, answering HTTP/1.1 (HEAD without the body); a response of
    unknown length closes the connection (its end is then the end of the body)."""

    http_version = "1.1"
    server_software = SERVER

    def cleanup_headers(self) -> None:
        super().cleanup_headers()  # a one-chunk body gets its Content-Length here
        handler = self.request_handler  # type: ignore[attr-defined]
        if "Content-Length" not in self.headers:
            handler.close_connection = True
        if handler.close_connection:
            self.headers["Connection"] = "close"

    def send_headers(self) -> None:
        super().send_headers()
        if self.environ["REQUEST_METHOD"] == "HEAD":
            self._write = lambda data: None  # type: ignore[method-assign]


class _Handler(WSGIRequestHandler):
    """Requests on one connection one after the other (keep-alive), until the client closes
    it, asks to, or stays idle for REQUEST_TIMEOUT."""

    protocol_version = "HTTP/1.1"
    server_version = SERVER
    timeout = REQUEST_TIMEOUT
    # Each answer leaves in one write, at once: on a kept-alive connection, a second small
    # write would wait for the client's delayed ACK (Nagle), ~40 ms a scrape.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    handle = BaseHTTPRequestHandler.handle  # the keep-alive loop (wsgiref's does one request)

    def version_string(self) -> str:
        return SERVER

    def handle_one_request(self) -> None:
        """wsgiref's handle() for one request, on a connection that may carry more."""
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # an error was sent
            return
        if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # a body the app may leave unread: no next request
        answer = _Answer(self.rfile, self.wfile, self.get_stderr(), self.get_environ(),
                         multithread=True)  # fmt: skip
        answer.request_handler = self  # type: ignore[attr-defined]
        answer.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"kv": {"client": self.client_address[0],
                                                 "request": format % args}})  # fmt: skip


class ExporterServer(ThreadingWSGIServer):
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
        self.server_name, self.server_port = str(self.server_address[0]), self.port
        self.setup_environ()

    def finish_request(self, request: Any, client_address: Any) -> None:
        web = self.web.current()  # read per connection: certificate rotation applies now
        if web is None or web.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = web.ssl_context.wrap_socket(request, server_side=True)
        except OSError as exc:  # ssl.SSLError is an OSError
            log.debug("TLS handshake failed", extra={"kv": {"client": client_address[0],
                                                            "err": str(exc)}})  # fmt: skip
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Timeouts and resets from clients are routine: one debug line, not a traceback.
        log.debug("connection error", extra={"kv": {"client": client_address[0],
                                                    "err": repr(sys.exc_info()[1])}})  # fmt: skip

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def listen(address: ListenAddress, app: ExporterApp, web: WebConfigWatcher) -> ExporterServer:
    """A server bound to `address` (not serving yet); an OSError saying which if it cannot."""
    try:
        return ExporterServer(address, app, web)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror or exc}") from None


def _resolve(address: ListenAddress) -> tuple[socket.AddressFamily, tuple[str, int], bool]:
    """(family, bind address, dual stack?) for a listen address; "" is every interface."""
    if not address.host:
        if socket.has_dualstack_ipv6():
            return socket.AF_INET6, ("::", address.port), True
        return socket.AF_INET, ("0.0.0.0", address.port), False
    family, _, _, _, sockaddr = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return family, (str(sockaddr[0]), address.port), False
