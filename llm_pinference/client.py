"""A small requests-based client for the Pinference Models API.

`requests` is imported lazily: the llm plugin imports this module on every llm command,
and most commands never make a request.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import __version__
from .errors import (
    PinferenceError,
    Reason,
    error_body_message,
    parse_retry_after,
    reason_for_status,
)
from .models import ModelInfo, extract_model_list, parse_models
from .settings import Settings, resolve_settings
from .text import one_line, redact

if TYPE_CHECKING:
    import requests

DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
USER_AGENT = f"llm-pinference/{__version__}"
# RFC 3986 sub-delims and the like that are safe in a path segment; `/` and `:` kept as the
# real clients send them.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class ModelList:
    models: list[ModelInfo]
    skipped: int  # entries that were not objects with a string id (or repeated an id)
    status: int


def model_path(model_id: str) -> str:
    """`models/<id>` with the id quoted, keeping `/` and `:`; dot segments cannot escape."""
    if not model_id:
        raise ValueError("model id must not be empty")
    segments = quote(model_id, safe=_PATH_SAFE).split("/")
    segments = [s.replace(".", "%2E") if s in (".", "..") else s for s in segments]
    return "models/" + "/".join(segments)


class PinferenceClient:
    """`list_models()` and `get_model(id)`; every failure raises `PinferenceError`."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = resolve_settings() if settings is None else settings
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_bytes = max_bytes
        self._session = session

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

            self._session = requests.Session()
            self._session.headers["User-Agent"] = USER_AGENT
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def list_models(self) -> ModelList:
        status, payload = self.request_json("models")
        items = extract_model_list(payload)
        if items is None:
            raise self._error(
                Reason.INVALID_RESPONSE, "model list has no `data` or `models` array", status=status
            )
        models, skipped = parse_models(items)
        return ModelList(models=models, skipped=skipped, status=status)

    def get_model(self, model_id: str) -> ModelInfo:
        status, payload = self.request_json(model_path(model_id))
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

    def url(self, path: str) -> str:
        return f"{self.settings.base_url}/{path}"

    def request_json(self, path: str) -> tuple[int, Any]:
        """GET base_url/path; returns (status, decoded JSON) or raises PinferenceError."""
        import requests

        url = self.url(path)
        headers = {"Accept": "application/json", **self.settings.headers()}
        deadline = time.monotonic() + self.connect_timeout + self.read_timeout
        try:
            with self.session.get(
                url,
                headers=headers,
                timeout=(self.connect_timeout, self.read_timeout),
                stream=True,
            ) as response:
                body = self._read_capped(response, deadline)
                status = response.status_code
                if not 200 <= status < 300:
                    raise self._http_error(response, body)
        except PinferenceError:
            raise
        except (requests.Timeout, TimeoutError):
            raise self._error(
                Reason.TIMEOUT, f"no answer within {self.connect_timeout:g}s/{self.read_timeout:g}s"
            ) from None
        except requests.RequestException as exc:
            raise self._error(Reason.CONNECTION_ERROR, _describe(exc)) from None
        try:
            return status, json.loads(body)
        except ValueError:
            raise self._error(
                Reason.INVALID_RESPONSE, "response is not JSON", status=status
            ) from None

    def _read_capped(self, response: requests.Response, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large(response.status_code)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large(response.status_code)
            # The read timeout bounds each socket read; this bounds a slow drip as a whole.
            if time.monotonic() > deadline:
                raise self._error(Reason.TIMEOUT, "response took too long to arrive")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, status: int) -> PinferenceError:
        return self._error(
            Reason.INVALID_RESPONSE, f"response larger than {self.max_bytes} bytes", status=status
        )

    def _http_error(self, response: requests.Response, body: bytes) -> PinferenceError:
        status = response.status_code
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After")) if status == 429 else None
        )
        return self._error(
            reason_for_status(status),
            f"{response.reason or 'error'} from {self.settings.base_url}",
            status=status,
            api_message=api_error_message(body),
            retry_after=retry_after,
        )

    def _error(self, reason: Reason, message: str, **kwargs: Any) -> PinferenceError:
        secrets = (self.settings.api_key,)
        api_message = kwargs.pop("api_message", None)
        if api_message is not None:
            api_message = redact(one_line(api_message), secrets)
        return PinferenceError(
            reason,
            redact(one_line(message), secrets),
            api_message=api_message,
            url=self.settings.base_url,
            **kwargs,
        )


def api_error_message(body: bytes) -> str | None:
    """The API's own message from a JSON error body, if any."""
    try:
        return error_body_message(json.loads(body))
    except ValueError:
        return None


def _describe(exc: Exception) -> str:
    """A short, key-free description of a requests exception (no nested reprs)."""
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error talking to the API"
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ),
    ):
        return "invalid base URL (check PRIME_INFERENCE_URL)"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection closed before the response was complete"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot connect to the API"
    return f"request failed ({type(exc).__name__})"
