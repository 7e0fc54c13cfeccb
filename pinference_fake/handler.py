"""The HTTP side of the fake: the request handler and the threading server.

The handler routes, authenticates, applies faults and records; the state lives in the
``FakeState`` it reaches as ``self.server.app``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import select
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import chat
from .admin import is_loopback, run_admin
from .faults import Fault, mode_response, model_hint
from .recording import RecordedRequest
from .responses import HTML_TYPE, JSON_TYPE, Drip, Response, dumps, error_response, html_page
from .routing import ADMIN_PREFIX, route
from .state import FakeState

#: How long a client may take over the TLS handshake before its connection is dropped.
HANDSHAKE_TIMEOUT = 10.0


class FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        app: FakeState,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._connections_lock:
            if add:
                self.connections.add(conn)
            else:
                self.connections.discard(conn)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive sockets."""
        with self._connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection; over TLS, after the handshake (in the connection's own
        thread, so a slow client holds up no other)."""
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):  # a failed handshake (ssl.SSLError is an OSError)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # disconnects are not news
            super().handle_error(request, client_address)


class _ClientGone(Exception):
    """The connection is gone: closed by the client mid-request, or reset by a fault."""


class _Handler(BaseHTTPRequestHandler):
    server: FakeHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, chunked SSE, real Content-Length faults
    server_version = "pinference-fake/1.0"
    timeout = 120  # idle keep-alive connections do not hold a thread forever
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK add ~40 ms to every response on a reused connection.
    disable_nagle_algorithm = True

    _status: int | None = None

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, False)

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, _ClientGone):  # broken pipe, reset, closed by stop()
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet by default; _log writes one line per request when verbose

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer protocol-level errors (bad request line, 501...) in the API's style."""
        self.close_connection = True
        if self.command != "GET":  # an unreadable request line: answer with a status line
            self.request_version = "HTTP/1.0"  # (http.server assumes HTTP/0.9: a bare body)
        with contextlib.suppress(OSError):
            self._send(error_response(code, message))

    # dispatch

    def _dispatch(self) -> None:
        started = time.monotonic()
        self._status = None
        try:
            split = urlsplit(self.path)
            path = unquote(split.path)
            query = parse_qs(split.query, keep_blank_values=True)
            if path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/"):
                self._admin(path[len(ADMIN_PREFIX) :], query)
            else:
                self._api(path, query)
        except (OSError, _ClientGone):
            raise
        except Exception:  # a bug here must not kill the connection thread silently
            traceback.print_exc()
            self.close_connection = True
            if self._status is None:
                self._send(error_response(500))
        finally:
            self._log(started)

    def _api(self, path: str, query: dict[str, list[str]]) -> None:
        app = self.server.app
        endpoint, model_id, method = route(path)
        body = self._read_body()
        headers = self._header_dict()
        app.record(
            RecordedRequest(
                method=self.command,
                path=path,
                raw_path=self.path,
                query=query,
                headers=headers,
                body=body if isinstance(body, bytes) else b"",
                client=(str(self.client_address[0]), int(self.client_address[1])),
                time=time.time(),
                endpoint=endpoint,
            )
        )
        fault = app.take_fault(endpoint)
        delay = app.latency_for(endpoint) + (fault.delay if fault else 0.0)
        if delay and self.server.stopping.wait(delay):
            self.close_connection = True
            return

        def normal() -> Response:
            if not isinstance(body, bytes):
                return body
            return self._normal(endpoint, model_id, method, body, headers, fault=fault)

        response = self._apply_fault(fault, endpoint, model_id, body, normal) if fault else normal()
        if response is None:
            self.close_connection = True
            return
        self._send(response)

    def _normal(
        self,
        endpoint: str | None,
        model_id: str | None,
        method: str | None,
        body: bytes,
        headers: dict[str, str],
        *,
        fault: Fault | None = None,
    ) -> Response:
        app = self.server.app
        key = _bearer(headers)
        rejection = self._reject(endpoint, method, key)
        if rejection is not None:
            return rejection
        team = headers.get("x-prime-team-id", "").strip() if key else ""
        if endpoint == "list":
            return Response(200, app.list_body(team or None))
        if endpoint == "get":
            model = app.find_model(model_id or "", team or None)
            if model is None:
                return error_response(404, model=model_id or "")
            return Response(200, dumps(model))
        return self._chat(body, team or None, fault)

    def _reject(self, endpoint: str | None, method: str | None, key: str) -> Response | None:
        """404 for unknown routes, 401 for a wrong key, 405 for a wrong method."""
        if endpoint is None:
            return error_response(404, f"Not found: {self.command} {urlsplit(self.path).path}")
        expected = self.server.app.require_key
        if expected is not None and not hmac.compare_digest(
            key.encode("utf-8", "replace"), expected.encode("utf-8", "replace")
        ):
            return error_response(401)
        if self.command != method:
            response = error_response(405, f"Method {self.command} not allowed here")
            response.headers["Allow"] = str(method)
            return response
        return None

    def _chat(self, raw: bytes, team: str | None, fault: Fault | None = None) -> Response:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            return error_response(400, f"We could not parse the JSON body of your request: {exc}")
        try:
            model_id = chat.requested_model(body)
        except chat.ChatRequestError as exc:
            return error_response(400, str(exc))
        if self.server.app.find_model(model_id, team) is None:
            return error_response(404, model=model_id)
        reply = chat.build_reply(model_id, body)
        if body.get("stream") is True:
            pacing = None
            if fault is not None:
                pacing = chat.Pacing(
                    ttft_delay=fault.ttft_delay,
                    token_interval=fault.token_interval,
                    error=fault.mode == "stream_error",
                    cut=fault.mode == "stream_cut",
                )
            return Response(
                200,
                chat.stream_events(model_id, body, reply, pacing, self.server.stopping.wait),
                content_type="text/event-stream; charset=utf-8",
                headers={"Cache-Control": "no-cache"},
            )
        return Response(200, dumps(chat.completion(model_id, body, reply)))

    def _apply_fault(
        self,
        fault: Fault,
        endpoint: str | None,
        model_id: str | None,
        body: bytes | Response,
        normal: Callable[[], Response],
    ) -> Response | None:
        """The faulty response, or None when the connection should just close."""
        if fault.mode == "drop":
            return None
        if fault.mode == "hang":
            self._hang()
            return None
        if fault.shapes_the_body:
            response = mode_response(fault, endpoint, normal)
        elif fault.body is not None:
            raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
            response = Response(fault.status or 200, raw, HTML_TYPE if fault.html else JSON_TYPE)
        elif fault.html:
            status = fault.status or 502
            response = Response(status, html_page(status), HTML_TYPE)
        elif fault.status is not None and fault.status >= 400:
            if endpoint == "chat" and isinstance(body, bytes):
                model_id = model_hint(body)
            response = error_response(fault.status, model=model_id)
        else:
            response = normal()
        if fault.status is not None:
            response.status = fault.status
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        if fault.mode == "drip":
            response.drip = Drip(fault.drip_bytes, fault.drip_interval, fault.drip_part)
        response.reset = fault.mode == "reset"
        return response

    def _hang(self) -> None:
        """Never answer: wait for stop() or for the client to go away."""
        sock = self.connection
        stopping = self.server.stopping
        while not stopping.is_set():
            try:
                readable, _, _ = select.select([sock], [], [], 0.1)
                # Over TLS recv() refuses flags (ValueError, below): the hang then ends at
                # the first bytes from the client, its close included.
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    return  # orderly close from the client
            except (OSError, ValueError):
                return
            if readable:
                stopping.wait(0.1)  # pipelined bytes: keep hanging without spinning

    # admin

    def _admin(self, name: str, query: dict[str, list[str]]) -> None:
        if not is_loopback(str(self.client_address[0])):
            self.close_connection = True
            self._send(error_response(403, "The admin routes only answer loopback clients"))
            return
        body = self._read_body()
        if not isinstance(body, bytes):
            self._send(body)
            return
        try:
            data = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            self._send(error_response(400, "The admin request body is not valid JSON"))
            return
        try:
            result = run_admin(self.server.app, self.command, name, query, data)
        except ValueError as exc:
            self._send(error_response(400, str(exc)))
            return
        if result is None:
            self._send(error_response(404, f"Unknown admin route: {self.command} /_admin/{name}"))
        else:
            self._send(Response(200, dumps(result)))

    # I/O helpers

    def _header_dict(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    def _read_body(self) -> bytes | Response:
        """The request body, or an error response (the connection then closes)."""
        limit = self.server.app.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError:
            self.close_connection = True
            return error_response(400, "Invalid Content-Length header")
        if length > limit:
            return self._too_large(limit)
        data = self.rfile.read(length)
        if len(data) < length:
            raise _ClientGone
        return data

    def _too_large(self, limit: int) -> Response:
        self.close_connection = True  # the rest of the body is still on the wire
        return error_response(413, f"Request body too large (limit {limit} bytes)")

    def _read_chunked(self, limit: int) -> bytes | Response:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise _ClientGone
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise ValueError(line)
            except ValueError:
                self.close_connection = True
                return error_response(400, "Invalid chunked request body")
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                return self._too_large(limit)
            data = self.rfile.read(size)
            if len(data) < size:
                raise _ClientGone
            parts.append(data)
            self.rfile.readline(3)

    def _send(self, response: Response) -> None:
        self._status = response.status
        body = response.body
        no_body = response.status in (204, 304)
        cut = response.truncate or response.reset
        if (cut or response.drip) and not isinstance(body, bytes):
            body = b"".join(body)
        chunked = self._buffer_head(response, body, no_body)
        if response.drip is not None:
            self._send_dripping(response.drip, b"" if no_body else body)  # type: ignore[arg-type]
            return
        self.end_headers()
        if no_body:
            return
        if isinstance(body, bytes):
            self.wfile.write(body[: len(body) // 2] if cut else body)
            if response.reset:
                self._reset()
            return
        for piece in body:
            if piece:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _buffer_head(
        self, response: Response, body: bytes | Iterable[bytes], no_body: bool
    ) -> bool:
        """Status line and headers into the send buffer; True if the body goes chunked."""
        chunked = False
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if isinstance(body, bytes) or response.length is not None:
            length = len(body) if isinstance(body, bytes) else response.length
            self.send_header("Content-Length", "0" if no_body else str(length))
        elif self.request_version == "HTTP/1.1":
            chunked = True
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True  # HTTP/1.0: the end of the stream is the close
        if response.truncate or response.reset or (self.close_connection and not no_body):
            self.send_header("Connection", "close")
        return chunked

    def _send_dripping(self, drip: Drip, body: bytes) -> None:
        """The buffered status line and headers, then the body, each part at once or slowly."""
        self._headers_buffer.append(b"\r\n")  # what end_headers() adds before flushing
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        for part, data in (("head", head), ("body", body)):
            if drip.part not in (part, "all"):
                self.wfile.write(data)
                continue
            for start in range(0, len(data), drip.size):
                if start and self.server.stopping.wait(drip.interval):
                    raise _ClientGone
                self.wfile.write(data[start : start + drip.size])
                self.wfile.flush()

    def _reset(self) -> None:
        """Abort the connection: with SO_LINGER 0 the close sends RST, not FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The files made from the socket hold it open: close them all for the RST to go now.
        for stream in (self.wfile, self.rfile, self.connection):
            with contextlib.suppress(OSError):
                stream.close()
        raise _ClientGone

    def _log(self, started: float) -> None:
        if not self.server.app.verbose:
            return
        status = self._status if self._status is not None else "-"
        elapsed = (time.monotonic() - started) * 1000
        path = urlsplit(self.path).path
        sys.stderr.write(
            f'{self.client_address[0]} "{self.command} {path}" {status} {elapsed:.1f}ms\n'
        )
        sys.stderr.flush()


def _bearer(headers: Mapping[str, str]) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
