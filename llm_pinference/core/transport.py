"""A requests session whose exchanges end at a total deadline and note the phases of a probe.

requests' timeouts bound each socket operation, not the exchange: a server that sends its
head or body one byte at a time, each byte inside the read timeout, holds the caller for as
long as it likes. So each exchange runs under a `Deadline`: the session's connections hand
their sockets to the calling thread's deadline, and a timer shuts them down when it passes;
the blocked read then returns at once (end of stream), whatever phase it was in. The connect
and the TLS handshake get no more than the time left. Name resolution is left to the
system resolver.

The same connections mark on the deadline's `PhaseClock` when the host name was resolved,
the TCP connection made, the TLS handshake done and the response's head read. With a
`fresh` deadline a kept-alive connection is closed first, so the request goes out on a new
one.

Imported only when a request is made: it imports requests.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from requests import exceptions as rex
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as u3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_ import create_urllib3_context

from .errors import Reason
from .probes import PhaseClock
from .tlsinfo import tls_info

_local = threading.local()


class Deadline:
    """The end of one exchange, and its phase clock; sockets given to `watch` are shut down
    when the deadline passes."""

    def __init__(self, seconds: float, fresh: bool = False) -> None:
        self.clock = PhaseClock(fresh)  # first: the deadline's setup is part of the call
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut `sock` down when the deadline passes (at once if it has)."""
        with self._lock:
            if sock is None or self._closed:
                return
            if not self.expired:
                self._sockets.append(sock)
                return
        _shutdown(sock)

    def close(self) -> None:
        """End the watch: a kept-alive socket must outlive the exchange."""
        with self._lock:
            self._closed = True
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.expired = True
        for sock in self._sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The base class's shutdown, also for TLS sockets: SSLSocket.shutdown would drop its
    # TLS state under the feet of the thread reading from it. A closed socket raises.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextlib.contextmanager
def deadline(seconds: float, fresh: bool = False) -> Iterator[Deadline]:
    """Run the block's request (made through `session()`) under one deadline."""
    current = _local.deadline = Deadline(seconds, fresh)
    try:
        yield current
    finally:
        current.close()
        _local.deadline = None


class _MarkWhenApplied(list):  # type: ignore[type-arg]
    """Socket options that mark the clock when urllib3 applies them: right after the host
    name is resolved, right before the TCP connect. The one hook between the two that
    urllib3 offers without copying its code."""

    def __init__(self, options: Any, clock: PhaseClock) -> None:
        super().__init__(options or ())
        self.clock = clock

    def __iter__(self) -> Any:
        self.clock.mark_resolved()
        return super().__iter__()


class _WatchedConnection:
    """Mixed into urllib3's connection classes: sockets go to the thread's deadline, and
    the phases to its clock."""

    timeout: float
    sock: socket.socket | None
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        watch: Deadline = _local.deadline
        if watch.at <= time.monotonic():
            raise u3.ConnectTimeoutError(self, "the total deadline passed before connecting")
        self.timeout = min(self.timeout, watch.at - time.monotonic())
        options = self.socket_options
        self.socket_options = _MarkWhenApplied(options, watch.clock)
        try:
            sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        finally:
            self.socket_options = options
        watch.clock.mark_connected()
        # The TLS handshake reads with this timeout as one whole, and its socket is not
        # watched until it is done: the time left bounds it.
        sock.settimeout(max(0.001, min(self.timeout, watch.at - time.monotonic())))
        watch.watch(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        watch: Deadline = _local.deadline
        watch.watch(self.sock)  # the TLS socket, for HTTPS
        if isinstance(self, HTTPSConnection):
            watch.clock.mark_secured(tls_info(self.sock))

    def request(self, *args: Any, **kwargs: Any) -> Any:
        watch: Deadline = _local.deadline
        if watch.clock.fresh and self.sock is not None and watch.clock.connected is None:
            # Kept alive from an earlier exchange: a fresh probe wants what a new client
            # sees, so it closes it (http.client connects a closed connection again).
            self.close()  # type: ignore[attr-defined]
        watch.watch(self.sock)
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self) -> Any:
        response = super().getresponse()  # type: ignore[misc]
        _local.deadline.clock.mark_first_byte()
        return response


class WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    def connect(self) -> None:
        # urllib3 makes an SSL context for every new connection and loads the trusted CA
        # file into it inside the handshake's time: with certifi's bundle (requests'
        # default) ~25 ms of the client's own work in a probe's `tls` phase. One context
        # per CA file (loaded again when the file changes) verifies the same without it.
        trusted = self.ca_certs, self.ca_cert_dir
        try:
            context = _context(*trusted, tuple(_stamp(path) for path in trusted))
        except (OSError, ValueError):  # unusable: urllib3 loads it and says why
            super().connect()
            return
        self.ssl_context, self.ca_certs, self.ca_cert_dir = context, None, None
        try:
            super().connect()
        finally:  # requests sets the CA location on the connection for every request
            self.ssl_context = None
            self.ca_certs, self.ca_cert_dir = trusted


def _stamp(path: str | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


@functools.lru_cache(maxsize=8)
def _context(cafile: str | None, capath: str | None, stamp: object) -> ssl.SSLContext:
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_verify_locations(cafile=cafile, capath=capath)
    return context


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        # A SOCKS manager keeps its own connections: its exchanges rely on the client's
        # check between body reads alone.
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


def session() -> requests.Session:
    """A session whose http and https exchanges obey `deadline()`."""
    new = requests.Session()
    adapter = _DeadlineAdapter()
    new.mount("http://", adapter)
    new.mount("https://", adapter)
    return new


def describe_failure(exc: Exception, connect: float, read: float) -> tuple[Reason, str]:
    """The reason and a short, key-free description of a transport failure (no nested
    reprs): a timeout, a connection never made, or one lost or garbled after it was. The
    first rule that `exc` or an error it wraps matches wins."""
    causes = _causes(exc)
    no_bundle = "Could not find a suitable TLS CA certificate bundle, invalid path: "
    if type(exc) is OSError and str(exc).startswith(no_bundle):  # requests' own check
        where = str(exc)[len(no_bundle) :]
        return (
            Reason.CONNECTION_ERROR,
            f"TLS error: the CA bundle to trust cannot be found ({where})",
        )
    refused = any(isinstance(c, ConnectionRefusedError) for c in causes)
    lost = "connection closed before the response was complete"
    not_http = "the answer is not valid HTTP"
    rules: list[tuple[tuple[type[BaseException], ...], Reason, str]] = [
        # A connect timeout wraps a TimeoutError too; requests reports a read that times
        # out mid-body as a ConnectionError.
        ((requests.ConnectTimeout,),
         Reason.TIMEOUT, f"cannot connect within {connect:g}s (connect timeout)"),
        ((requests.Timeout, u3.ReadTimeoutError, TimeoutError),
         Reason.TIMEOUT, f"no data for {read:g}s (read timeout)"),
        ((rex.SSLError, u3.SSLError),
         Reason.CONNECTION_ERROR, "TLS error talking to the API" + _tls_detail(causes)),
        ((rex.InvalidURL, rex.MissingSchema, rex.InvalidSchema),
         Reason.CONNECTION_ERROR, "invalid base URL (check PRIME_INFERENCE_URL)"),
        ((u3.DecodeError,),
         Reason.INVALID_RESPONSE, "the response body cannot be decoded"),
        ((u3.NameResolutionError, socket.gaierror),
         Reason.CONNECTION_ERROR, "cannot connect to the API (host name not resolved)"),
        ((rex.ProxyError, u3.ProxyError),
         Reason.CONNECTION_ERROR, "cannot connect to the API through the proxy"),
        ((u3.NewConnectionError,),
         Reason.CONNECTION_ERROR, "cannot connect to the API" + " (connection refused)" * refused),
        # A number in the frame that is none, or past a C integer (a chunk size); a
        # redirect's Location that is not UTF-8 (requests decodes it even when not following).
        ((ValueError, OverflowError), Reason.INVALID_RESPONSE, not_http),
        ((http.client.RemoteDisconnected, http.client.IncompleteRead),
         Reason.CONNECTION_ERROR, lost),
        ((http.client.HTTPException,), Reason.INVALID_RESPONSE, not_http),
        # Connected, then the peer closed or reset before the answer was whole.
        ((requests.RequestException, u3.HTTPError, OSError), Reason.CONNECTION_ERROR, lost),
    ]  # fmt: skip
    for types, reason, message in rules:
        if any(isinstance(c, types) for c in causes):
            return reason, message
    return Reason.CONNECTION_ERROR, f"request failed ({type(exc).__name__})"


def _tls_detail(causes: list[BaseException]) -> str:
    """What went wrong in TLS, in OpenSSL's words: `: certificate verify failed
    (certificate has expired)`, `: wrong version number`; "" when nothing says."""
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            why = cause.verify_message
            return ": certificate verify failed" + (f" ({why})" if why else "")
    for cause in causes:
        reason = getattr(cause, "reason", None) if isinstance(cause, ssl.SSLError) else None
        if isinstance(reason, str) and reason:
            return ": " + reason.lower().replace("_", " ")
    return ""


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: requests and urllib3 nest the socket error in args, in
    `reason` and in the exception chain."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(found) < 32:
        item = todo.pop()
        if isinstance(item, BaseException) and all(item is not f for f in found):
            found.append(item)
            todo += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    return found
