"""A requests session whose exchanges end at a total deadline.

requests' timeouts bound each socket operation (the connect, then every single read), not
the exchange: a server that sends its status line, headers or body one byte at a time, each
byte inside the read timeout, holds the caller for as long as it likes. Checking the clock
between body chunks is not enough either: headers are read before any body iteration, and a
small body arrives in one chunk.

So each exchange runs under a `Deadline`: the session's connections (urllib3 connection
classes mounted through `DeadlineAdapter`) hand their sockets to the deadline of the calling
thread, and a timer shuts those sockets down when the deadline passes. The blocked read then
returns at once (end of stream), whatever phase it was in, and the caller sees that the
deadline expired. Measured on loopback against a one-byte-per-0.2 s drip: the call ends
within ~20 ms of the deadline. The connect (TCP and TLS handshake) is bounded by giving it
no more than the time left. Name resolution is the one step a socket timeout cannot bound;
it is left to the system resolver.

The same connections note, for the thread's `PhaseClock` (`phase_clock()`), when the host
name was resolved, the TCP connection made, the TLS handshake done and the first byte of
the response read: the phases of a probe. With a `fresh` clock a kept-alive connection is
closed before the request is sent, and the request goes out on a new one.

Imported only when a request is made: it imports requests.
"""

from __future__ import annotations

import contextlib
import http.client
import io
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
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
)
from urllib3.util.ssl_ import create_urllib3_context

from .errors import Reason
from .probes import PhaseClock
from .tlsinfo import tls_info

_local = threading.local()


class Deadline:
    """The end of one exchange; sockets handed to it are shut down when it passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._closed = False
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True

    @property
    def expired(self) -> bool:
        """True once the deadline passed while the exchange was still running."""
        with self._lock:
            return self._expired

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut `sock` down when the deadline passes (at once if it already has)."""
        if sock is None:
            return
        with self._lock:
            if self._closed:
                return
            if not self._expired:
                if all(s is not sock for s in self._sockets):
                    self._sockets.append(sock)
                return
        _shutdown(sock)

    def start(self) -> None:
        self._timer.start()

    def close(self) -> None:
        """End the watch: no socket is shut down after this (`expired` stays as it was)."""
        with self._lock:
            self._closed = True
            self._sockets.clear()
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The base class's shutdown, also for TLS sockets: SSLSocket.shutdown would drop its
    # TLS state under the feet of the thread reading from it. A socket already closed
    # raises (its descriptor is -1, never another file's): nothing to do then.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[Deadline]:
    """Run the block's requests (made through a `DeadlineAdapter`) under one deadline."""
    current = Deadline(seconds)
    previous = getattr(_local, "deadline", None)
    _local.deadline = current
    current.start()
    try:
        yield current
    finally:
        current.close()
        _local.deadline = previous


def _current() -> Deadline | None:
    return getattr(_local, "deadline", None)


@contextlib.contextmanager
def phase_clock(fresh: bool = False) -> Iterator[PhaseClock]:
    """Note the phases of the block's request (made through a `DeadlineAdapter`) on a new
    `PhaseClock`; with `fresh`, on a connection of its own (see `PhaseClock`)."""
    clock = PhaseClock(fresh)
    previous = getattr(_local, "clock", None)
    _local.clock = clock
    try:
        yield clock
    finally:
        _local.clock = previous


def _clock() -> PhaseClock | None:
    return getattr(_local, "clock", None)


class _MarkWhenApplied(list):  # type: ignore[type-arg]
    """Socket options that note on the clock when urllib3 applies them: on each socket it
    makes, right after the host name is resolved and right before the TCP connect. The
    one hook between the two that urllib3 offers without copying its code."""

    def __init__(self, options: Any, clock: PhaseClock) -> None:
        super().__init__(options or ())
        self.clock = clock

    def __iter__(self) -> Any:
        self.clock.mark_resolved()
        return super().__iter__()


class _FirstByteReader(io.RawIOBase):
    """A socket's raw reader that notes on the clock when the first bytes arrive."""

    def __init__(self, raw: Any, clock: PhaseClock) -> None:
        super().__init__()
        self.raw = raw
        self.clock: PhaseClock | None = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        count = self.raw.readinto(buffer)
        if count and self.clock is not None:
            self.clock.mark_first_byte()
            self.clock = None
        return count  # type: ignore[no-any-return]

    def fileno(self) -> int:
        return int(self.raw.fileno())

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


class _SocketForResponse:
    """What http.client's response reads from: the socket, its reader timed."""

    def __init__(self, sock: Any, clock: PhaseClock) -> None:
        self.sock = sock
        self.clock = clock

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_FirstByteReader(self.sock.makefile(mode, 0), self.clock))


class TimedResponse(http.client.HTTPResponse):
    """http.client's response; under a `phase_clock()` it notes the first byte read."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        clock = _clock()
        timed = sock if clock is None else _SocketForResponse(sock, clock)
        super().__init__(timed, *args, **kwargs)


class _WatchedConnection:
    """Mixed into urllib3's connection classes: sockets go to the thread's deadline, and
    the phases to the thread's clock."""

    timeout: Any
    sock: socket.socket | None
    socket_options: Any
    response_class = TimedResponse
    secure = False  # TLS is set up in connect()

    def _new_conn(self) -> socket.socket:
        watch = _current()
        if watch is not None:
            left = watch.remaining()
            if left <= 0:
                raise ConnectTimeoutError(self, "the total deadline passed before connecting")
            if isinstance(self.timeout, (int, float)):
                self.timeout = min(self.timeout, left)
        clock = _clock()
        options = self.socket_options
        if clock is not None:
            self.socket_options = _MarkWhenApplied(options, clock)
        try:
            sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        finally:
            self.socket_options = options
        if clock is not None:
            clock.mark_connected()
        if watch is not None:
            # The TLS handshake that follows reads with this timeout, as one whole: with
            # the time the TCP connect took taken off, the handshake ends by the deadline.
            current = sock.gettimeout()
            left = max(0.001, watch.remaining())
            sock.settimeout(left if current is None else min(current, left))
            watch.watch(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        watch = _current()
        if watch is not None:
            # The TLS socket, for HTTPS. urllib3 connects before request() (below) for
            # HTTPS today; http.client connects inside it, which this covers too.
            watch.watch(self.sock)
        clock = _clock()
        if clock is not None and self.secure:
            clock.mark_secured(tls_info(self.sock))

    def request(self, *args: Any, **kwargs: Any) -> Any:
        clock = _clock()
        if clock is not None and clock.fresh and self.sock is not None and not clock.has_connected:
            # Kept alive from an earlier exchange: a fresh probe wants what a new client
            # sees (name resolution, connect, handshake), so it closes this one; the
            # request below connects again (http.client opens a closed connection).
            self.close()  # type: ignore[attr-defined]
        watch = _current()
        if watch is not None:
            watch.watch(self.sock)  # a kept-alive connection (a new one connects below)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    secure = True

    def connect(self) -> None:
        # urllib3 makes a new SSL context for every new connection and loads the trusted
        # CA file into it inside the handshake's time: with certifi's ~150 authorities
        # (requests' default) that is ~25 ms of the client's own work in a probe's `tls`
        # phase. A context per CA file, loaded once (again when the file changes), does
        # the same verification without it.
        context = _shared_context(self)
        if context is None:
            super().connect()
            return
        trusted = self.ca_certs, self.ca_cert_dir
        self.ssl_context, self.ca_certs, self.ca_cert_dir = context, None, None
        try:
            super().connect()
        finally:  # requests sets the CA location on the connection for every request
            self.ssl_context = None
            self.ca_certs, self.ca_cert_dir = trusted


_contexts: dict[tuple[str | None, str | None], tuple[Any, ssl.SSLContext]] = {}
_contexts_lock = threading.Lock()


def _shared_context(conn: HTTPSConnection) -> ssl.SSLContext | None:
    """A verifying SSL context with `conn`'s CA file or folder loaded, shared by every
    connection that trusts the same one; None for what it does not cover (a context or
    CA data of the caller's, a client certificate, TLS version limits, no verification),
    left to urllib3 as it is, and when the file cannot be loaded (urllib3 then says why)."""
    if (
        conn.ssl_context is not None
        or conn.ca_cert_data
        or not (conn.ca_certs or conn.ca_cert_dir)
        or conn.cert_file
        or conn.ssl_version is not None
        or conn.ssl_minimum_version is not None
        or conn.ssl_maximum_version is not None
        or conn.assert_fingerprint
        or conn.assert_hostname is not None
        or conn.cert_reqs not in (None, "CERT_REQUIRED", ssl.CERT_REQUIRED)
    ):
        return None
    key = conn.ca_certs, conn.ca_cert_dir
    try:
        # Replaced or edited (a rotated bundle) is loaded again, as a new client would.
        version = tuple(
            (st.st_mtime_ns, st.st_size, st.st_ino)
            for st in (os.stat(path) for path in key if path)
        )
        with _contexts_lock:
            cached = _contexts.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
            context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
            context.load_verify_locations(cafile=key[0], capath=key[1])
            if len(_contexts) >= 8:  # a handful of CA files at most; never grows unbounded
                _contexts.clear()
            _contexts[key] = version, context
            return context
    except (OSError, ValueError):
        return None


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}
_STOCK_POOLS = {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}


def _use_watched_pools(manager: Any) -> Any:
    # Only stock pools are swapped: a SOCKS proxy manager keeps its own classes (its
    # exchanges then rely on the caller's between-chunk check alone).
    classes = getattr(manager, "pool_classes_by_scheme", None)
    if isinstance(classes, dict) and all(classes.get(k) is v for k, v in _STOCK_POOLS.items()):
        manager.pool_classes_by_scheme = dict(_POOLS)
    return manager


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter with connections that obey `deadline()`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_watched_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        return _use_watched_pools(super().proxy_manager_for(proxy, **kwargs))


def mount(session: requests.Session) -> requests.Session:
    """Make `session`'s http and https exchanges obey `deadline()`."""
    adapter = DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_LOST = "connection closed before the response was complete"
_NO_CA_BUNDLE = "Could not find a suitable TLS CA certificate bundle"
_NO_CA_PATH = "invalid path: "


def describe_failure(exc: Exception) -> tuple[Reason, str]:
    """The reason and a short, key-free description of a transport failure (no nested
    reprs): whether the connection was never made, or was lost or garbled after it was.
    The first matching rule wins."""
    causes = _causes(exc)

    def wraps(*types: type[BaseException]) -> bool:
        return any(isinstance(c, types) for c in causes)

    refused = " (connection refused)" if wraps(ConnectionRefusedError) else ""
    rules: list[tuple[bool, Reason, str]] = [
        (
            isinstance(exc, rex.SSLError),
            Reason.CONNECTION_ERROR,
            "TLS error talking to the API" + _tls_detail(causes),
        ),
        (
            # requests' own check, before connecting (a CA file or REQUESTS_CA_BUNDLE).
            type(exc) is OSError and _NO_CA_BUNDLE in str(exc),
            Reason.CONNECTION_ERROR,
            "TLS error: the CA bundle to trust cannot be found"
            + (f" ({str(exc).split(_NO_CA_PATH, 1)[1]})" if _NO_CA_PATH in str(exc) else ""),
        ),
        (
            isinstance(exc, (rex.InvalidURL, rex.MissingSchema, rex.InvalidSchema)),
            Reason.CONNECTION_ERROR,
            "invalid base URL (check PRIME_INFERENCE_URL)",
        ),
        (
            isinstance(exc, rex.ContentDecodingError),
            Reason.INVALID_RESPONSE,
            "the response body cannot be decoded",
        ),
        (
            wraps(NameResolutionError, socket.gaierror),
            Reason.CONNECTION_ERROR,
            "cannot connect to the API (host name not resolved)",
        ),
        (
            isinstance(exc, rex.ProxyError) or wraps(ProxyError),
            Reason.CONNECTION_ERROR,
            "cannot connect to the API through the proxy",
        ),
        (wraps(NewConnectionError), Reason.CONNECTION_ERROR, f"cannot connect to the API{refused}"),
        (
            # A number in the frame that is none, or past a C integer (a chunk size):
            # http.client raises these from int() and from reads of that size.
            wraps(ValueError, OverflowError),
            Reason.INVALID_RESPONSE,
            "the answer is not valid HTTP",
        ),
        (
            wraps(http.client.RemoteDisconnected, http.client.IncompleteRead),
            Reason.CONNECTION_ERROR,
            _LOST,
        ),
        (wraps(http.client.HTTPException), Reason.INVALID_RESPONSE, "the answer is not valid HTTP"),
        # Connected, then the peer closed or reset before the answer was whole.
        (
            isinstance(exc, (requests.ConnectionError, rex.ChunkedEncodingError, OSError)),
            Reason.CONNECTION_ERROR,
            _LOST,
        ),
    ]
    for matched, reason, message in rules:
        if matched:
            return reason, message
    return Reason.CONNECTION_ERROR, f"request failed ({type(exc).__name__})"


def _tls_detail(causes: list[BaseException]) -> str:
    """What went wrong in TLS, from OpenSSL's own words: `: certificate verify failed
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


def read_timed_out(exc: Exception) -> bool:
    """True if `exc` comes from a read that waited longer than the read timeout: requests
    raises those met while reading the body as a ConnectionError, not as a Timeout."""
    return any(isinstance(c, (ReadTimeoutError, TimeoutError)) for c in _causes(exc))


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: requests and urllib3 nest the socket error in args, in
    `reason` and in the exception chain."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(found) < 32:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is f for f in found):
            continue
        found.append(item)
        todo += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    return found
