"""The fake Pinference server: routing, auth, team-private models, faults and recording.

Standard library only, so the demo, tests and benchmarks need nothing extra. One
``FakePinference`` owns the state (behind a lock) and a ``ThreadingHTTPServer`` in a
daemon thread; every wait is on an Event so ``stop()`` is quick even mid-fault.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import ipaddress
import json
import select
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import chat
from .catalogue import Model, default_catalogue, validate_models

API_PREFIX = "/api/v1"
ADMIN_PREFIX = "/_admin/"
ENDPOINTS = ("list", "get", "chat")
FAULT_MODES = frozenset({"malformed", "truncated", "wrong_shape", "huge", "drop", "empty", "hang"})
MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_HUGE_BYTES = 20 * 1024 * 1024
_WRITE_CHUNK = 64 * 1024
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)


@dataclass(frozen=True)
class Fault:
    """How to misbehave for one endpoint ("list", "get", "chat" or "*").

    Precedence: ``mode`` > ``body`` > ``html`` > ``status``. A fault answers before
    authentication, like a gateway in front of the API. ``delay`` is added to the
    endpoint's latency; a fault with only ``delay``/``retry_after`` answers normally.
    """

    status: int | None = None
    body: str | bytes | None = None
    html: bool = False
    retry_after: str | None = None
    delay: float = 0.0
    mode: str | None = None
    times: int | None = None
    huge_bytes: int = DEFAULT_HUGE_BYTES

    def __post_init__(self) -> None:
        if self.status is not None and (not _is_int(self.status) or not 200 <= self.status <= 599):
            raise ValueError("status must be an integer from 200 to 599")
        if self.body is not None and not isinstance(self.body, (str, bytes)):
            raise ValueError("body must be a string")
        if not isinstance(self.html, bool):
            raise ValueError("html must be a boolean")
        if self.retry_after is not None and not isinstance(self.retry_after, str):
            raise ValueError("retry_after must be a string")
        if not _is_number(self.delay) or self.delay < 0:
            raise ValueError("delay must be a number >= 0")
        if self.mode is not None and self.mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {sorted(FAULT_MODES)}")
        if self.times is not None and (not _is_int(self.times) or self.times < 1):
            raise ValueError("times must be an integer >= 1 or null")
        if not _is_int(self.huge_bytes) or self.huge_bytes < 1:
            raise ValueError("huge_bytes must be an integer >= 1")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a Fault from JSON (the admin route); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        values = {k: v for k, v in data.items() if v is not None}
        if isinstance(values.get("retry_after"), int):
            values["retry_after"] = str(values["retry_after"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if isinstance(self.body, bytes):
            data["body"] = self.body.decode("utf-8", "replace")
        return data


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (admin requests are not recorded)."""

    method: str
    path: str  # percent-decoded, without the query
    raw_path: str  # as sent on the request line
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    client: tuple[str, int]
    time: float
    endpoint: str | None  # "list" | "get" | "chat" | None (unknown route)

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        headers = (
            {k: _redact(k, v) for k, v in self.headers.items()} if redact else dict(self.headers)
        )
        return {
            "method": self.method,
            "path": self.path,
            "raw_path": self.raw_path,
            "query": self.query,
            "headers": headers,
            "body": self.body.decode("utf-8", "replace"),
            "json": self.json,
            "client": f"{self.client[0]}:{self.client[1]}",
            "time": self.time,
            "endpoint": self.endpoint,
        }


def _redact(name: str, value: str) -> str:
    if name not in _SECRET_HEADERS:
        return value
    scheme, sep, _ = value.partition(" ")
    return f"{scheme} ***" if sep and name.endswith("authorization") else "***"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; the admin routes need it."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def route(path: str) -> tuple[str | None, str | None, str | None]:
    """Map a decoded path to (endpoint, model id, allowed method)."""
    if not path.startswith(API_PREFIX + "/"):
        return None, None, None
    rest = path[len(API_PREFIX) :]
    if rest in ("/models", "/models/"):
        return "list", None, "GET"
    if rest.startswith("/models/"):
        return "get", rest[len("/models/") :], "GET"
    if rest in ("/chat/completions", "/chat/completions/"):
        return "chat", None, "POST"
    return None, None, None


# --- responses ---------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    body: bytes | Iterable[bytes] = b""
    content_type: str = _JSON
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None  # known length of an iterable body
    truncate: bool = False  # promise the full length, send half, close


_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request", "Invalid request"),
    401: ("authentication_error", "invalid_api_key", "Invalid API key"),
    402: (
        "insufficient_quota",
        "insufficient_funds",
        "Insufficient balance: add funds to your account to continue",
    ),
    403: (
        "permission_error",
        "permission_denied",
        "This API key does not have the Inference permission",
    ),
    404: ("invalid_request_error", "not_found", "Not found"),
    405: ("invalid_request_error", "method_not_allowed", "Method not allowed"),
    413: ("invalid_request_error", "request_too_large", "Request body too large"),
    429: (
        "rate_limit_error",
        "rate_limit_exceeded",
        "Rate limit exceeded, please retry later",
    ),
    503: ("server_error", "service_unavailable", "The service is temporarily unavailable"),
}


def error_payload(
    status: int, message: str | None = None, *, model: str | None = None
) -> dict[str, Any]:
    """The OpenAI-style error object that fits ``status``."""
    if status == 404 and model is not None:
        return {
            "error": {
                "message": message or f"The model '{model}' does not exist",
                "type": "invalid_request_error",
                "code": "model_not_found",
            }
        }
    if status in _ERRORS:
        kind, code, default = _ERRORS[status]
    else:
        phrase = _phrase(status)
        kind = "server_error" if status >= 500 else "invalid_request_error"
        code = "server_error" if status >= 500 else phrase.lower().replace(" ", "_")
        default = (
            "The server had an error while processing your request" if status >= 500 else phrase
        )
    return {"error": {"message": message or default, "type": kind, "code": code}}


def _error(status: int, message: str | None = None, *, model: str | None = None) -> _Response:
    return _Response(status, _dumps(error_payload(status, message, model=model)))


def html_page(status: int) -> bytes:
    """An error page like the one a proxy in front of an API sends."""
    title = f"{status} {_phrase(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


_WRONG_SHAPES = {
    "list": b'{"data": "nope"}',
    "get": b"[1, 2]",
    "chat": b'{"choices": "nope"}',
}
_MALFORMED = b'{"object": "list", "data": [{"id": "meta-llama/llama-3.1-70b-instr'


def huge_body(endpoint: str | None, size: int) -> tuple[Iterator[bytes], int]:
    """A valid JSON document of about ``size`` bytes, produced in chunks, and its length."""
    if endpoint == "list":
        prefix, suffix = b'{"object":"list","data":[', b"]}"
        template = (
            '{"id":"huge/model-%08d","object":"model","owned_by":"huge",'
            '"display_name":"Huge model %08d","padding":"' + "x" * 160 + '"}'
        )
        item_len = len(template % (0, 0))
        count = max(1, (size - len(prefix) - len(suffix) + 1) // (item_len + 1))
        length = len(prefix) + len(suffix) + count * item_len + count - 1

        def items() -> Iterator[bytes]:
            yield prefix
            batch = max(1, _WRITE_CHUNK // (item_len + 1))
            for start in range(0, count, batch):
                stop = min(count, start + batch)
                yield ",".join(template % (i, i) for i in range(start, stop)).encode()
                if stop < count:
                    yield b","
            yield suffix

        return items(), length

    if endpoint == "chat":
        head, _, tail = _dumps(
            {
                "id": "chatcmpl-huge",
                "object": "chat.completion",
                "created": 0,
                "model": "huge",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "\0"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).partition(b"\\u0000")
    else:
        head, _, tail = _dumps({"id": "huge/model", "object": "model", "padding": "\0"}).partition(
            b"\\u0000"
        )
    pad = max(0, size - len(head) - len(tail))

    def padded() -> Iterator[bytes]:
        yield head
        block = b"x" * _WRITE_CHUNK
        for start in range(0, pad, _WRITE_CHUNK):
            yield block[: min(_WRITE_CHUNK, pad - start)]
        yield tail

    return padded(), len(head) + pad + len(tail)


# --- the server object --------------------------------------------------------------


class FakePinference:
    """A realistic fake of the Pinference API, served on a loopback port.

    Usable as a context manager. All public methods are thread-safe. ``reset()`` (and
    the admin reset) returns to the state given to the constructor.
    """

    def __init__(
        self,
        models: list[Model] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        require_key: str | None = None,
        *,
        private_models: Mapping[str, list[Model]] | None = None,
        latency: float = 0.0,
        verbose: bool = False,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_recorded: int = 10_000,
    ) -> None:
        self._lock = threading.RLock()
        self._host = host
        self._port = port
        self.verbose = verbose
        self.max_body_bytes = max_body_bytes
        self._initial_models = default_catalogue() if models is None else validate_models(models)
        self._initial_private = {
            str(team): validate_models(items) for team, items in (private_models or {}).items()
        }
        self._initial_key = require_key
        self._initial_latency = latency
        self._requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._restore()

    def _restore(self) -> None:
        with self._lock:
            self._set_models(copy.deepcopy(self._initial_models))
            self._private: dict[str, list[Model]] = copy.deepcopy(self._initial_private)
            self._require_key = self._initial_key
            self._faults: dict[str, list[Any]] = {}  # endpoint -> [Fault, remaining]
            self._latency: dict[str, float] = {"*": self._initial_latency}

    # lifecycle

    def start(self) -> FakePinference:
        """Bind and serve in a daemon thread; returns self."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("FakePinference is already running")
            server = _Server((self._host, self._port), self)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},  # shutdown() waits one poll at most
                name=f"pinference-fake:{server.server_address[1]}",
                daemon=True,
            )
            self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging and delayed requests are abandoned at once."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        server.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=2)

    def __enter__(self) -> FakePinference:
        return self.start() if not self.running else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:  # never shows the key
        return f"<FakePinference {self.base_url} running={self.running}>"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        server = self._server
        return int(server.server_address[1]) if server else self._port

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:8099``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client uses as its base URL: ``http://127.0.0.1:PORT/api/v1``."""
        return self.url + API_PREFIX

    # catalogue and accounts

    @property
    def models(self) -> list[Model]:
        with self._lock:
            return copy.deepcopy(self._models)

    def set_models(self, models: list[Model] | Mapping[str, Any]) -> None:
        """Replace the public catalogue (a list, or an object with a ``data`` list)."""
        checked = validate_models(models)
        with self._lock:
            self._set_models(checked)

    def _set_models(self, models: list[Model]) -> None:
        self._models = models
        self._index: dict[str, Model] = {}
        for model in models:
            self._index.setdefault(model["id"], model)
        self._list_cache: bytes | None = None

    @property
    def private_models(self) -> dict[str, list[Model]]:
        with self._lock:
            return copy.deepcopy(self._private)

    def add_private_model(self, team_id: str, model: Model) -> None:
        """Add a model seen only with a Bearer key and ``X-Prime-Team-ID: team_id``."""
        (checked,) = validate_models([model])
        with self._lock:
            self._private.setdefault(team_id, []).append(checked)

    def clear_private_models(self, team_id: str | None = None) -> None:
        with self._lock:
            if team_id is None:
                self._private.clear()
            else:
                self._private.pop(team_id, None)

    @property
    def require_key(self) -> str | None:
        with self._lock:
            return self._require_key

    @require_key.setter
    def require_key(self, key: str | None) -> None:
        with self._lock:
            self._require_key = key or None

    # faults and latency

    def set_fault(self, endpoint: str, fault: Fault) -> None:
        """Install ``fault`` for "list", "get", "chat" or "*" (replacing any previous)."""
        _check_endpoint(endpoint)
        with self._lock:
            self._faults[endpoint] = [fault, fault.times]

    def clear_faults(self, endpoint: str | None = None) -> None:
        with self._lock:
            if endpoint is None:
                self._faults.clear()
            else:
                self._faults.pop(endpoint, None)

    @property
    def faults(self) -> dict[str, Fault]:
        with self._lock:
            return {name: entry[0] for name, entry in self._faults.items()}

    def set_latency(self, endpoint: str, seconds: float) -> None:
        """Delay every request of ``endpoint`` ("*" = default for all), faults or not."""
        _check_endpoint(endpoint)
        if not _is_number(seconds) or seconds < 0:
            raise ValueError("latency must be a number >= 0")
        with self._lock:
            self._latency[endpoint] = float(seconds)

    def reset(self) -> None:
        """Clear faults and recorded requests; restore catalogue, keys and latency."""
        self._restore()
        self.clear_requests()

    # recording

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, endpoint: str | None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # used by the handler

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _latency_for(self, endpoint: str | None) -> float:
        with self._lock:
            default = self._latency.get("*", 0.0)
            return self._latency.get(endpoint, default) if endpoint else default

    def _take_fault(self, endpoint: str | None) -> Fault | None:
        """The fault for this request, counting down ``times`` (specific beats "*")."""
        with self._lock:
            for name in (endpoint, "*"):
                entry = self._faults.get(name) if name else None
                if entry is None:
                    continue
                fault, remaining = entry
                if remaining is not None:
                    if remaining <= 1:
                        del self._faults[name]
                    else:
                        entry[1] = remaining - 1
                return fault
        return None

    def _model_count(self) -> int:
        with self._lock:
            return len(self._models)

    def _find_model(self, model_id: str, team: str | None) -> Model | None:
        with self._lock:
            model = self._index.get(model_id)
            if model is None and team:
                model = next((m for m in self._private.get(team, []) if m["id"] == model_id), None)
            return model

    def _list_body(self, team: str | None) -> bytes:
        with self._lock:
            private = self._private.get(team, []) if team else []
            if private:
                return _dumps({"object": "list", "data": self._models + private})
            if self._list_cache is None:  # big generated catalogues: serialise once
                self._list_cache = _dumps({"object": "list", "data": self._models})
            return self._list_cache


def _check_endpoint(endpoint: str) -> None:
    if endpoint not in (*ENDPOINTS, "*"):
        raise ValueError(f"endpoint must be one of {', '.join((*ENDPOINTS, '*'))}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: FakePinference) -> None:
        self.app = app
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

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # disconnects are not news
            super().handle_error(request, client_address)


class _ClientGone(Exception):
    """The client closed the connection mid-request."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
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
        with contextlib.suppress(OSError):
            self._send(_error(code, message))

    # dispatch

    def _dispatch(self) -> None:
        started = time.monotonic()
        self._status = None
        try:
            split = urlsplit(self.path)
            path = unquote(split.path)
            query = parse_qs(split.query, keep_blank_values=True)
            if path.startswith(ADMIN_PREFIX):
                self._admin(path[len(ADMIN_PREFIX) :], query)
            else:
                self._api(path, query)
        except (OSError, _ClientGone):
            raise
        except Exception:  # a bug here must not kill the connection thread silently
            traceback.print_exc()
            self.close_connection = True
            if self._status is None:
                self._send(_error(500))
        finally:
            self._log(started)

    def _api(self, path: str, query: dict[str, list[str]]) -> None:
        app = self.server.app
        endpoint, model_id, method = route(path)
        body = self._read_body()
        headers = self._header_dict()
        app._record(
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
        fault = app._take_fault(endpoint)
        delay = app._latency_for(endpoint) + (fault.delay if fault else 0.0)
        if delay and self.server.stopping.wait(delay):
            self.close_connection = True
            return

        def normal() -> _Response:
            if not isinstance(body, bytes):
                return body
            return self._normal(endpoint, model_id, method, body, headers)

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
    ) -> _Response:
        app = self.server.app
        key = _bearer(headers)
        rejection = self._reject(endpoint, method, key)
        if rejection is not None:
            return rejection
        team = headers.get("x-prime-team-id", "").strip() if key else ""
        if endpoint == "list":
            return _Response(200, app._list_body(team or None))
        if endpoint == "get":
            model = app._find_model(model_id or "", team or None)
            if model is None:
                return _error(404, model=model_id or "")
            return _Response(200, _dumps(model))
        return self._chat(body, team or None)

    def _reject(self, endpoint: str | None, method: str | None, key: str) -> _Response | None:
        """404 for unknown routes, 401 for a wrong key, 405 for a wrong method."""
        if endpoint is None:
            return _error(404, f"Not found: {self.command} {urlsplit(self.path).path}")
        expected = self.server.app.require_key
        if expected is not None and not hmac.compare_digest(
            key.encode("utf-8", "replace"), expected.encode("utf-8", "replace")
        ):
            return _error(401)
        if self.command != method:
            response = _error(405, f"Method {self.command} not allowed here")
            response.headers["Allow"] = str(method)
            return response
        return None

    def _chat(self, raw: bytes, team: str | None) -> _Response:
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return _error(400, f"We could not parse the JSON body of your request: {exc}")
        try:
            model_id = chat.requested_model(body)
        except chat.ChatRequestError as exc:
            return _error(400, str(exc))
        if self.server.app._find_model(model_id, team) is None:
            return _error(404, model=model_id)
        reply = chat.build_reply(model_id, body)
        if body.get("stream") is True:
            return _Response(
                200,
                chat.stream_events(model_id, body, reply),
                content_type="text/event-stream; charset=utf-8",
                headers={"Cache-Control": "no-cache"},
            )
        return _Response(200, _dumps(chat.completion(model_id, body, reply)))

    def _apply_fault(
        self,
        fault: Fault,
        endpoint: str | None,
        model_id: str | None,
        body: bytes | _Response,
        normal: Callable[[], _Response],
    ) -> _Response | None:
        """The faulty response, or None when the connection should just close."""
        if fault.mode == "drop":
            return None
        if fault.mode == "hang":
            self._hang()
            return None
        if fault.mode is not None:
            response = _mode_response(fault, endpoint, normal)
        elif fault.body is not None:
            raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
            response = _Response(fault.status or 200, raw, _HTML if fault.html else _JSON)
        elif fault.html:
            status = fault.status or 502
            response = _Response(status, html_page(status), _HTML)
        elif fault.status is not None and fault.status >= 400:
            if endpoint == "chat" and isinstance(body, bytes):
                model_id = _model_hint(body)
            response = _error(fault.status, model=model_id)
        else:
            response = normal()
        if fault.status is not None:
            response.status = fault.status
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response

    def _hang(self) -> None:
        """Never answer: wait for stop() or for the client to go away."""
        sock = self.connection
        stopping = self.server.stopping
        while not stopping.is_set():
            try:
                readable, _, _ = select.select([sock], [], [], 0.1)
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
            self._send(_error(403, "The admin routes only answer loopback clients"))
            return
        body = self._read_body()
        if not isinstance(body, bytes):
            self._send(body)
            return
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            self._send(_error(400, "The admin request body is not valid JSON"))
            return
        try:
            result = _admin_action(self.server.app, self.command, name, query, data)
        except ValueError as exc:
            self._send(_error(400, str(exc)))
            return
        if result is None:
            self._send(_error(404, f"Unknown admin route: {self.command} /_admin/{name}"))
        else:
            self._send(_Response(200, _dumps(result)))

    # I/O helpers

    def _header_dict(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    def _read_body(self) -> bytes | _Response:
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
            return _error(400, "Invalid Content-Length header")
        if length > limit:
            self.close_connection = True
            return _error(413, f"Request body too large (limit {limit} bytes)")
        data = self.rfile.read(length)
        if len(data) < length:
            raise _ClientGone
        return data

    def _read_chunked(self, limit: int) -> bytes | _Response:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise _ClientGone
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                return _error(400, "Invalid chunked request body")
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                return _error(413, f"Request body too large (limit {limit} bytes)")
            data = self.rfile.read(size)
            if len(data) < size:
                raise _ClientGone
            parts.append(data)
            self.rfile.readline(3)

    def _send(self, response: _Response) -> None:
        self._status = response.status
        body = response.body
        no_body = response.status in (204, 304)
        chunked = False
        if response.truncate and not isinstance(body, bytes):
            body = b"".join(body)
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
        if response.truncate or (self.close_connection and not no_body):
            self.send_header("Connection", "close")
        self.end_headers()
        if no_body:
            return
        if isinstance(body, bytes):
            self.wfile.write(body[: len(body) // 2] if response.truncate else body)
            return
        for piece in body:
            if piece:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

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


def _mode_response(
    fault: Fault, endpoint: str | None, normal: Callable[[], _Response]
) -> _Response:
    """A 200 (unless ``fault.status`` says otherwise) that breaks the client's parser."""
    if fault.mode == "truncated":
        response = normal()
        response.truncate = True
        return response
    if fault.mode == "huge":
        chunks, length = huge_body(endpoint, fault.huge_bytes)
        return _Response(200, chunks, length=length)
    if fault.mode == "empty":
        return _Response(200, b'{"object":"list","data":[]}' if endpoint == "list" else b"")
    if fault.mode == "wrong_shape":
        return _Response(200, _WRONG_SHAPES.get(endpoint or "", b'{"unexpected":true}'))
    return _Response(200, _MALFORMED)


# --- admin routes: runtime control from demo scripts and benchmarks ------------------

_AdminAction = Callable[[FakePinference, dict[str, str], Any], Any]


def _admin_action(
    app: FakePinference, method: str, name: str, query: dict[str, list[str]], data: Any
) -> Any:
    """Run one admin command; None means unknown route, ValueError means bad input."""
    action = _ADMIN_ROUTES.get((method, name))
    if action is None:
        return None
    first = {key: values[0] for key, values in query.items() if values}
    return action(app, first, data)


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object {what}")
    return data


def _admin_set_fault(app: FakePinference, _query: dict[str, str], data: Any) -> Any:
    spec = dict(_object(data, "describing the fault"))
    endpoint = str(spec.pop("endpoint", "*"))
    fault = Fault.from_dict(spec)
    app.set_fault(endpoint, fault)
    return {"endpoint": endpoint, "fault": fault.to_dict()}


def _admin_clear_faults(app: FakePinference, query: dict[str, str], data: Any) -> Any:
    endpoint = query.get("endpoint") or (data.get("endpoint") if isinstance(data, dict) else None)
    if endpoint is not None:
        _check_endpoint(endpoint)
    app.clear_faults(endpoint)
    return {"cleared": endpoint or "all"}


def _admin_faults(app: FakePinference, _query: dict[str, str], _data: Any) -> Any:
    return {name: fault.to_dict() for name, fault in app.faults.items()}


def _admin_reset(app: FakePinference, _query: dict[str, str], _data: Any) -> Any:
    app.reset()
    return {"reset": True, "models": app._model_count()}


def _admin_requests(app: FakePinference, query: dict[str, str], _data: Any) -> Any:
    records = app.requests
    if "endpoint" in query:
        records = [r for r in records if r.endpoint == query["endpoint"]]
    limit = query.get("limit", "")
    if limit.isdigit():
        records = records[len(records) - int(limit) :] if int(limit) else []
    return [r.to_dict(redact=True) for r in records]  # never echo keys


def _admin_clear_requests(app: FakePinference, _query: dict[str, str], _data: Any) -> Any:
    app.clear_requests()
    return {"cleared": True}


def _admin_models(app: FakePinference, _query: dict[str, str], data: Any) -> Any:
    app.set_models(data)
    return {"models": app._model_count()}


def _admin_private_model(app: FakePinference, _query: dict[str, str], data: Any) -> Any:
    spec = _object(data, 'like {"team_id": ..., "model": {...}}')
    team = spec.get("team_id")
    if not isinstance(team, str) or not team:
        raise ValueError("team_id must be a non-empty string")
    app.add_private_model(team, spec.get("model"))  # type: ignore[arg-type]
    return {"team_id": team, "models": len(app.private_models.get(team, []))}


def _admin_require_key(app: FakePinference, _query: dict[str, str], data: Any) -> Any:
    key = _object(data, 'like {"key": "..." or null}').get("key")
    if key is not None and not isinstance(key, str):
        raise ValueError("key must be a string or null")
    app.require_key = key
    return {"require_key": app.require_key is not None}  # never echo the key


def _admin_latency(app: FakePinference, _query: dict[str, str], data: Any) -> Any:
    spec = _object(data, 'like {"endpoint": "*", "seconds": 0.05}')
    endpoint, seconds = str(spec.get("endpoint", "*")), spec.get("seconds", 0.0)
    app.set_latency(endpoint, seconds)
    return {"endpoint": endpoint, "seconds": seconds}


def _admin_status(app: FakePinference, _query: dict[str, str], _data: Any) -> Any:
    return {"base_url": app.base_url, "models": app._model_count(), "faults": sorted(app.faults)}


_ADMIN_ROUTES: dict[tuple[str, str], _AdminAction] = {
    ("POST", "fault"): _admin_set_fault,
    ("DELETE", "fault"): _admin_clear_faults,
    ("DELETE", "faults"): _admin_clear_faults,
    ("GET", "faults"): _admin_faults,
    ("POST", "reset"): _admin_reset,
    ("GET", "requests"): _admin_requests,
    ("DELETE", "requests"): _admin_clear_requests,
    ("PUT", "models"): _admin_models,
    ("POST", "private-models"): _admin_private_model,
    ("POST", "require-key"): _admin_require_key,
    ("POST", "latency"): _admin_latency,
    ("GET", "status"): _admin_status,
}


def _bearer(headers: Mapping[str, str]) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _model_hint(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
