"""A small requests-based client for the Pinference Models API.

`requests` is imported lazily: the llm plugin imports this module on every llm command,
and most commands never make a request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin

from .. import __version__
from .chatprobe import CHAT_PROBE_MAX_TOKENS, CHAT_PROBE_PROMPT, ChatProbeResult
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

    from .probes import PhaseClock, Phases
    from .tlsinfo import TLSInfo
    from .transport import Deadline

DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
# How much of a body that is not an event stream is kept for the API's message in it.
_HEAD_BYTES = 65536
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
    if not isinstance(model_id, str) or not model_id:
        raise InvalidModelId("model id must not be empty")
    if not model_id.isascii():
        try:
            model_id.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (JSON allows them): no URL for it
            raise InvalidModelId(
                f"invalid model id {_shown(model_id)}: not valid Unicode"
            ) from None
    decoded = model_id
    for _ in range(8):
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    for segment in re.split(r"[/\\]", unicodedata.normalize("NFKC", decoded)):
        core = "".join(c for c in segment.split(";", 1)[0] if c.isprintable() and not c.isspace())
        if core and core.strip(".") == "":
            raise InvalidModelId(
                f"invalid model id {_shown(model_id)}: a path segment is '.' or '..', "
                "which would leave /models/"
            )
    return model_id


def _shown(model_id: str, limit: int = 80) -> str:
    text = printable(model_id)
    return "'" + (text if len(text) <= limit else text[: limit - 3] + "...") + "'"


def model_path(model_id: str) -> str:
    """`models/<id>` with the id quoted, keeping `/` and `:`; raises InvalidModelId for ids
    that could leave `/models/` (see `check_model_id`)."""
    return "models/" + quote(check_model_id(model_id), safe=_PATH_SAFE)


class PinferenceClient:
    """`list_models()` and `get_model(id)`; every failure raises `PinferenceError`."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        total_timeout: float | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        session: requests.Session | None = None,
        ca_file: str | None = None,
    ) -> None:
        """`connect_timeout` bounds the connect, `read_timeout` each wait for data, and
        `total_timeout` (default: connect + read) the whole exchange. A `session` given here
        gets the deadline-aware adapter mounted for http and https. `ca_file`: a PEM bundle
        of the certificate authorities to trust instead of the default ones (TLS is always
        verified)."""
        self.settings = resolve_settings() if settings is None else settings
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = (
            connect_timeout + read_timeout if total_timeout is None else total_timeout
        )
        self.max_bytes = max_bytes
        self.ca_file = ca_file
        self._session = session
        if session is not None:
            from .transport import mount

            mount(session)

    def __repr__(self) -> str:
        return f"PinferenceClient({self.settings!r})"

    def __enter__(self) -> PinferenceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests

            from .transport import mount

            self._session = mount(requests.Session())
            self._session.headers["User-Agent"] = USER_AGENT
        return self._session

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
        status, payload, clock, ended = self._get_json("models", fresh=fresh)
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
        if clock is None:
            return ModelList(models=models, skipped=skipped, status=status)
        return ModelList(models, skipped, status, timing=clock.phases(ended), tls=clock.tls)

    def get_model(self, model_id: str) -> ModelInfo:
        status, payload, _, _ = self._get_json(model_path(model_id))
        # Some deployments wrap the object; accept {"data": {...}} as well as the bare object.
        if (
            isinstance(payload, dict)
            and "id" not in payload
            and isinstance(payload.get("data"), dict)
        ):
            payload = payload["data"]
        model = ModelInfo.from_api(payload)
        if model is None:
            raise self._error(
                Reason.INVALID_RESPONSE, "model response is not an object with an id", status=status
            )
        return model

    def chat_probe(
        self,
        model_id: str,
        *,
        max_tokens: int = CHAT_PROBE_MAX_TOKENS,
        prompt: str = CHAT_PROBE_PROMPT,
        total_timeout: float | None = None,
    ) -> ChatProbeResult:
        """Stream a tiny chat completion from `model_id` and time it (see `chatprobe`).

        The whole exchange, stream included, ends within `total_timeout` (default: the
        client's), and the stream is capped at `max_bytes`. Failures raise PinferenceError
        with the usual reasons: the HTTP status's, timeout (the deadline, or a stream that
        stalls past the read timeout), connection_error, and invalid_response for a stream
        that ends before `[DONE]`, breaks its JSON or carries an error.
        """
        from .chatprobe import ChatStream, EventStream, StreamError, chat_request

        if not isinstance(model_id, str) or not model_id:
            raise InvalidModelId("model id must not be empty")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError("max_tokens must be an integer >= 1")
        total = self.total_timeout if total_timeout is None else total_timeout
        body = json.dumps(chat_request(model_id, prompt, max_tokens)).encode()
        with self._exchange("POST", "chat/completions", total, body=body) as (response, watch):
            stream = ChatStream(time.monotonic())
            events = EventStream()
            head = b""  # the start of the body: the API's message if it is not a stream
            try:
                for piece in self._body(response, watch):
                    if len(head) < _HEAD_BYTES:
                        head += piece[: _HEAD_BYTES - len(head)]
                    now = time.monotonic()
                    for data in events.feed(piece):
                        stream.feed(data, now)
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
        return dataclasses.replace(
            result, finish_reason=None if reason is None else self._clean(reason)
        )

    def url(self, path: str) -> str:
        return f"{self.settings.base_url}/{path}"

    def _get_json(
        self, path: str, *, fresh: bool = False
    ) -> tuple[int, Any, PhaseClock | None, float]:
        """GET base_url/path: (status, decoded JSON without secrets, with `fresh` the
        exchange's clock, its end), or PinferenceError. The whole exchange ends within
        `total_timeout`, however slowly the server sends; see `transport`."""
        from .transport import phase_clock

        # The clock starts first: setting up the deadline is part of what the call costs.
        with (
            phase_clock(fresh=True) if fresh else contextlib.nullcontext() as clock,
            self._exchange("GET", path, self.total_timeout) as (response, watch),
        ):
            body = b"".join(self._body(response, watch))
            ended = time.monotonic()
        status = response.status_code
        try:
            payload = load_json(body)
        except JSONError as exc:
            message = f"response is {exc}"
            raise self._error(Reason.INVALID_RESPONSE, message, status=status) from None
        # Whatever the API sends back (names, ids, owners...) may echo the key or the URL's
        # credentials: both front ends get data with them already removed.
        return status, redact_data(payload, self.settings.secrets), clock, ended

    @contextlib.contextmanager
    def _exchange(
        self, method: str, path: str, total: float, *, body: bytes | None = None
    ) -> Iterator[tuple[requests.Response, Deadline]]:
        """One request to the configured origin under a `total` deadline, its 2xx response
        given to the block; anything else raises PinferenceError with its reason.

        Credentials go to the configured origin only: a redirect is not followed (requests
        would strip Authorization on the way to another host, but not the team header) and
        ~/.netrc is never read (requests would otherwise put its password in place of the
        key). requests' errors the block raises while reading are transport failures too."""
        import requests

        from .transport import deadline

        headers = {"Accept": "application/json" if body is None else "text/event-stream"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connect = min(self.connect_timeout, total)
        failure: PinferenceError | None = None
        with deadline(total) as watch:
            try:
                with self.session.request(
                    method,
                    self.url(path),
                    data=body,
                    headers={**headers, **self.settings.headers()},
                    timeout=(connect, self.read_timeout),
                    stream=True,
                    allow_redirects=False,
                    auth=_no_netrc,
                    **self._verify(),
                ) as response:
                    if 200 <= response.status_code < 300:
                        yield response, watch
                    else:
                        failure = self._http_error(response, watch)
            except PinferenceError as exc:
                failure = exc
            except (requests.RequestException, OSError, ValueError) as exc:
                # ValueError: requests decodes a redirect's Location as UTF-8 even when it
                # follows none (the answer is then not valid HTTP).
                failure = self._error(*self._transport_failure(exc, connect))
        if watch.expired:  # whatever the read returned, it was cut at the deadline
            failure = self._error(Reason.TIMEOUT, self._total_timeout_message(total))
        if failure is not None:
            raise failure

    def _verify(self) -> dict[str, Any]:
        # Only when set: requests then keeps its usual choice (the session's, or
        # REQUESTS_CA_BUNDLE) otherwise.
        return {"verify": self.ca_file} if self.ca_file else {}

    def _total_timeout_message(self, seconds: float) -> str:
        return f"no complete answer within {seconds:g}s (total deadline)"

    def _transport_failure(self, exc: Exception, connect: float) -> tuple[Reason, str]:
        import requests

        if isinstance(exc, requests.ConnectTimeout):
            return Reason.TIMEOUT, f"cannot connect within {connect:g}s (connect timeout)"
        from .transport import describe_failure, read_timed_out

        if isinstance(exc, (requests.Timeout, TimeoutError)) or read_timed_out(exc):
            return Reason.TIMEOUT, f"no data for {self.read_timeout:g}s (read timeout)"

        return describe_failure(exc)

    def _body(self, response: requests.Response, deadline: Deadline) -> Iterator[bytes]:
        """The body as it arrives, decompressed, capped at `max_bytes`: each read returns
        what is there (`read1`), so an event is seen when it comes, and urllib3 (2.6 and
        later) decompresses no more than the read asks for, so a compressed bomb stops at
        the cap having used about that much memory. urllib3's errors become requests'."""
        from requests import exceptions as rex
        from urllib3 import exceptions as u3

        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large(response.status_code)
        size = 0
        while True:
            try:
                piece = response.raw.read1(65536, decode_content=True)
            except u3.DecodeError as exc:
                raise rex.ContentDecodingError(exc) from exc
            except u3.ReadTimeoutError as exc:
                raise rex.ConnectionError(exc) from exc
            except u3.SSLError as exc:
                raise rex.SSLError(exc) from exc
            except u3.HTTPError as exc:  # ProtocolError and the like: the frame broke
                raise rex.ChunkedEncodingError(exc) from exc
            if not piece:
                return
            size += len(piece)
            if size > self.max_bytes:
                raise self._too_large(response.status_code)
            # The transport's watchdog ends a slow exchange; this check is for sessions
            # that do not have it (a SOCKS proxy).
            if time.monotonic() > deadline.at:
                raise self._error(Reason.TIMEOUT, self._total_timeout_message(deadline.seconds))
            yield piece

    def _too_large(self, status: int) -> PinferenceError:
        return self._error(
            Reason.INVALID_RESPONSE, f"response larger than {self.max_bytes} bytes", status=status
        )

    def _http_error(self, response: requests.Response, deadline: Deadline) -> PinferenceError:
        status = response.status_code
        if 300 <= status < 400:
            where = response.headers.get("Location", "")
            target = redact_url(urljoin(self.url(""), where)) if where else "nowhere"
            return self._error(
                Reason.INVALID_RESPONSE,
                f"redirect to {target} not followed (credentials go to "
                f"{self.settings.safe_base_url} only)",
                status=status,
            )
        body = b"".join(self._body(response, deadline))
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After")) if status == 429 else None
        )
        return self._error(
            reason_for_status(status),
            f"{response.reason or 'error'} from {self.settings.safe_base_url}",
            status=status,
            api_message=api_error_message(body),
            retry_after=retry_after,
        )

    def _error(self, reason: Reason, message: str, **kwargs: Any) -> PinferenceError:
        api_message = kwargs.pop("api_message", None)
        return PinferenceError(
            reason,
            self._clean(message),
            api_message=None if api_message is None else self._clean(api_message),
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
