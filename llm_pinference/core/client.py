"""A small requests-based client for the Pinference API: the model list, one model, and
the chat probe.

`requests` is imported lazily: the llm plugin imports this module on every llm command,
and most commands never make a request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin

from .. import __version__
from .chatprobe import CHAT_PROBE_MAX_TOKENS, ChatProbeResult
from .errors import (
    InvalidModelId,
    PinferenceError,
    Reason,
    error_body_message,
    parse_retry_after,
    reason_for_status,
)
from .models import ModelInfo, extract_model_list, parse_models
from .settings import Settings, resolve_settings
from .text import JSONError, load_json, one_line, printable, redact, redact_data, redact_url

if TYPE_CHECKING:
    from collections.abc import Iterator

    import requests

    from .probes import Phases
    from .tlsinfo import TLSInfo
    from .transport import Deadline

DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
_HEAD_BYTES = 65536  # of a body that is not an event stream: kept for the API's message
USER_AGENT = f"llm-pinference/{__version__}"
# RFC 3986 sub-delims and the like that are safe in a path segment; `/` and `:` kept as the
# real clients send them.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class ModelList:
    models: list[ModelInfo]
    skipped: int  # entries that were not objects with a string id (or repeated an id)
    status: int
    #: With `list_models(fresh=True)`: where the request's time went, and the TLS details
    #: of its connection (None over http). None otherwise.
    timing: Phases | None = None
    tls: TLSInfo | None = None


def check_model_id(model_id: str) -> str:
    """`model_id` unchanged if it is safe to put under `/models/`, else InvalidModelId.

    Refused: an empty id, and any id with a path segment that is only dots once
    percent-decoded (repeatedly: some servers decode twice), NFKC-normalised (fullwidth dots),
    cut at `;` (path parameters) and stripped of blanks and controls, with `\\` taken as a
    separator too. RFC 3986 lets any proxy decode `%2E` and then resolve the dot segment,
    so no encoding of such a segment is safe to send. Every other id is sent quoted.
    """
    if not model_id:
        raise InvalidModelId("model id must not be empty")
    shown = "'" + one_line(printable(model_id), 80) + "'"
    try:
        model_id.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON allows them): no URL for it
        raise InvalidModelId(f"invalid model id {shown}: not valid Unicode") from None
    decoded = model_id
    for _ in range(8):
        decoded, previous = unquote(decoded), decoded
        if decoded == previous:
            break
    for segment in re.split(r"[/\\]", unicodedata.normalize("NFKC", decoded)):
        core = "".join(c for c in segment.split(";", 1)[0] if c.isprintable() and not c.isspace())
        if core and core.strip(".") == "":
            raise InvalidModelId(
                f"invalid model id {shown}: a path segment is '.' or '..', which would leave "
                "/models/"
            )
    return model_id


def model_path(model_id: str) -> str:
    """`models/<id>` with the id quoted, keeping `/` and `:`; raises InvalidModelId for ids
    that could leave `/models/` (see `check_model_id`)."""
    return "models/" + quote(check_model_id(model_id), safe=_PATH_SAFE)


class PinferenceClient:
    """`list_models()`, `get_model(id)` and `chat_probe(id)`; every failure raises
    `PinferenceError`."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        total_timeout: float | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ca_file: str | None = None,
    ) -> None:
        """`connect_timeout` bounds the connect, `read_timeout` each wait for data, and
        `total_timeout` (default: connect + read) the whole exchange. `ca_file`: a PEM
        bundle of the certificate authorities to trust instead of the default ones (TLS is
        always verified)."""
        self.settings = resolve_settings() if settings is None else settings
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = (
            connect_timeout + read_timeout if total_timeout is None else total_timeout
        )
        self.max_bytes = max_bytes
        self.ca_file = ca_file
        self._session: requests.Session | None = None

    def __repr__(self) -> str:
        return f"PinferenceClient({self.settings!r})"

    def __enter__(self) -> PinferenceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def list_models(self, *, fresh: bool = False) -> ModelList:
        """The model list. With `fresh`, the request goes out on a new connection and the
        result carries its phases (`timing`) and TLS details (`tls`).

        Why a new connection: a probe on a kept-alive connection sees neither the name
        resolution, nor the TCP connect, nor the TLS handshake; a DNS record gone wrong, a
        certificate expired or replaced, a load balancer refusing new connections would go
        unnoticed while the old connection lives. A fresh one fails as a new client would,
        and measures what a new client waits for. It stays in the pool afterwards, so the
        requests that follow (get probes) may reuse it.
        """
        status, payload, watch, ended = self._get_json("models", fresh=fresh)
        items = extract_model_list(payload)
        if items is None:
            raise self._error(
                Reason.INVALID_RESPONSE, "model list has no `data` or `models` array", status=status
            )
        models, skipped = parse_models(items)
        if items and not models:
            # Not an empty catalog: something that is not the API answered (and taking it
            # for one would wipe the cache and report the API up).
            raise self._error(
                Reason.INVALID_RESPONSE,
                f"none of the {len(items)} entries in the model list is a model with an id",
                status=status,
            )
        if not fresh:
            return ModelList(models, skipped, status)
        return ModelList(models, skipped, status, watch.clock.phases(ended), watch.clock.tls)

    def get_model(self, model_id: str) -> ModelInfo:
        status, payload, _, _ = self._get_json(model_path(model_id))
        # Some deployments wrap the object; accept {"data": {...}} as well as the bare object.
        if isinstance(payload, dict) and "id" not in payload and "data" in payload:
            payload = payload["data"]
        model = ModelInfo.from_api(payload)
        if model is None:
            raise self._error(
                Reason.INVALID_RESPONSE, "model response is not an object with an id", status=status
            )
        return model

    def chat_probe(
        self, model_id: str, *, max_tokens: int = CHAT_PROBE_MAX_TOKENS
    ) -> ChatProbeResult:
        """Stream a tiny chat completion from `model_id` and time it (see `chatprobe`).

        The whole exchange, stream included, ends within the total timeout and is capped at
        `max_bytes`. Failures raise PinferenceError with the usual reasons: the HTTP
        status's, timeout, connection_error, and invalid_response for a stream that ends
        before `[DONE]`, breaks its JSON or carries an error.
        """
        from .chatprobe import ChatStream, EventStream, StreamError, chat_request

        request = chat_request(model_id, max_tokens)
        with self._exchange("POST", "chat/completions", json=request) as (response, watch):
            stream = ChatStream(time.monotonic())
            events = EventStream()
            head = b""  # the start of the body: the API's message if it is not a stream
            try:
                for piece in self._body(response, watch):
                    head += piece[: _HEAD_BYTES - len(head)]
                    for data in events.feed(piece):
                        stream.feed(data, time.monotonic())
                    if stream.done is not None:
                        break  # what may follow [DONE] is not waited for
                else:
                    for data in events.end():
                        stream.feed(data, time.monotonic())
                if not stream.events:
                    raise StreamError(
                        "the answer is not an event stream (no `data:` events)",
                        api_error_message(head),
                    )
                result = stream.result(model_id, response.status_code)
            except StreamError as exc:
                raise self._error(
                    Reason.INVALID_RESPONSE,
                    exc.message,
                    status=response.status_code,
                    api_message=exc.api_message,
                ) from None
        reason = result.finish_reason  # the server's words: shown, so scrubbed
        return dataclasses.replace(result, finish_reason=reason and self._clean(reason))

    def _get_json(self, path: str, *, fresh: bool = False) -> tuple[int, Any, Deadline, float]:
        """GET base_url/path: (status, decoded JSON without secrets, the exchange's
        deadline and clock, its end), or PinferenceError."""
        with self._exchange("GET", path, fresh=fresh) as (response, watch):
            body = b"".join(self._body(response, watch))
            ended = time.monotonic()
        try:
            payload = load_json(body)
        except JSONError as exc:
            raise self._error(
                Reason.INVALID_RESPONSE, f"response is {exc}", status=response.status_code
            ) from None
        # Whatever the API sends back (names, ids, owners...) may echo the key or the URL's
        # credentials: both front ends get data with them already removed.
        return response.status_code, redact_data(payload, self.settings.secrets), watch, ended

    @contextlib.contextmanager
    def _exchange(
        self, method: str, path: str, *, json: object = None, fresh: bool = False
    ) -> Iterator[tuple[requests.Response, Deadline]]:
        """One request to the configured origin under the total deadline (see `transport`),
        its 2xx response given to the block; anything else raises PinferenceError.

        Credentials go to the configured origin only: a redirect is not followed (requests
        would strip Authorization on the way to another host, but not the team header) and
        ~/.netrc is never read (requests would otherwise put its password in place of the
        key). requests' errors the block raises while reading are transport failures too."""
        import requests
        from urllib3.exceptions import HTTPError

        from . import transport

        if self._session is None:
            self._session = transport.session()
        accept = "application/json" if json is None else "text/event-stream"
        headers = {"User-Agent": USER_AGENT, "Accept": accept, **self.settings.headers()}
        connect = min(self.connect_timeout, self.total_timeout)
        failure: PinferenceError | None = None
        with transport.deadline(self.total_timeout, fresh) as watch:
            try:
                with self._session.request(
                    method,
                    f"{self.settings.base_url}/{path}",
                    json=json,
                    headers=headers,
                    timeout=(connect, self.read_timeout),
                    stream=True,
                    allow_redirects=False,
                    auth=_no_netrc,
                    verify=self.ca_file or None,  # None: requests' own choice (certifi, env)
                ) as response:
                    if 200 <= response.status_code < 300:
                        yield response, watch
                    else:
                        failure = self._http_error(response, watch)
            except PinferenceError as exc:
                failure = exc
            except (requests.RequestException, HTTPError, OSError, ValueError) as exc:
                reason, message = transport.describe_failure(exc, connect, self.read_timeout)
                failure = self._error(reason, message)
        if watch.expired:  # whatever the read returned, it was cut at the deadline
            failure = self._error(
                Reason.TIMEOUT,
                f"no complete answer within {self.total_timeout:g}s (total deadline)",
            )
        if failure is not None:
            raise failure

    def _body(self, response: requests.Response, deadline: Deadline) -> Iterator[bytes]:
        """The body as it arrives, decompressed, capped at `max_bytes`: each read returns
        what is there (`read1`), so an event is seen when it comes, and urllib3 (2.6 and
        later) decompresses no more than the read asks for, so a compressed bomb stops at
        the cap having used about that much memory."""
        too_large = self._error(
            Reason.INVALID_RESPONSE,
            f"response larger than {self.max_bytes} bytes",
            status=response.status_code,
        )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large
        size = 0
        while piece := response.raw.read1(65536, decode_content=True):
            size += len(piece)
            if size > self.max_bytes:
                raise too_large
            if deadline.expired:  # through a SOCKS proxy, whose sockets are not watched
                return
            yield piece

    def _http_error(self, response: requests.Response, deadline: Deadline) -> PinferenceError:
        status, origin = response.status_code, self.settings.safe_base_url
        if 300 <= status < 400:
            where = urljoin(f"{self.settings.base_url}/", response.headers.get("Location", ""))
            return self._error(
                Reason.INVALID_RESPONSE,
                f"redirect to {redact_url(where)} not followed (credentials go to {origin} only)",
                status=status,
            )
        body = b"".join(self._body(response, deadline))
        return self._error(
            reason_for_status(status),
            f"{response.reason or 'error'} from {origin}",
            status=status,
            api_message=api_error_message(body),
            retry_after=parse_retry_after(response.headers.get("Retry-After"))
            if status == 429
            else None,
        )

    def _error(
        self, reason: Reason, message: str, *, api_message: str | None = None, **kwargs: Any
    ) -> PinferenceError:
        return PinferenceError(
            reason,
            self._clean(message),
            api_message=api_message and self._clean(api_message),
            url=self.settings.safe_base_url,
            **kwargs,
        )

    def _clean(self, text: str) -> str:
        """One printable line without secrets (redacted before it is cut to length, so no
        part of a secret survives the cut)."""
        return printable(one_line(redact(text, self.settings.secrets)))


def _no_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """An auth that leaves the request as it is: given, requests never looks in ~/.netrc."""
    return request


def api_error_message(body: bytes) -> str | None:
    """The API's own message from a JSON error body, if any."""
    try:
        return error_body_message(load_json(body))
    except JSONError:
        return None
