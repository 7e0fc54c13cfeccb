"""What the fake serves and how it misbehaves: ``FakeState``, behind one lock.

The request handler and the admin routes work on this state through its public methods;
``server.FakePinference`` adds the listening socket and its thread on top.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from .catalog import Model, default_catalog, validate_models
from .faults import Fault, is_number
from .recording import RecordedRequest
from .responses import dumps
from .routing import API_PREFIX, check_endpoint

MAX_BODY_BYTES = 10 * 1024 * 1024


class FakeState:
    """Models (public and per team), the required key, faults, latency and the request log.

    All public methods are thread-safe. ``reset()`` returns to the state given to the
    constructor.
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
    ) -> None:
        self._lock = threading.RLock()
        self._host = host
        self._port = port
        self.verbose = verbose
        self.max_body_bytes = max_body_bytes
        self._initial_models = default_catalog() if models is None else validate_models(models)
        self._initial_private = {
            str(team): validate_models(items) for team, items in (private_models or {}).items()
        }
        self._initial_key = require_key
        self._initial_latency = latency
        self._requests: deque[RecordedRequest] = deque(maxlen=10_000)
        self._restore()

    def _restore(self) -> None:
        with self._lock:
            self._set_models(copy.deepcopy(self._initial_models))
            self._private: dict[str, list[Model]] = copy.deepcopy(self._initial_private)
            self._require_key = self._initial_key
            self._faults: dict[str, list[Any]] = {}  # endpoint -> [Fault, remaining]
            self._latency: dict[str, float] = {"*": self._initial_latency}

    # address

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The configured port (the server reports the bound one while it runs)."""
        return self._port

    @property
    def scheme(self) -> str:
        """``http``; ``https`` for a server given a certificate."""
        return "http"

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:8099``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client uses as its base URL: ``http://127.0.0.1:PORT/api/v1``."""
        return self.url + API_PREFIX

    # catalog and accounts

    @property
    def models(self) -> list[Model]:
        with self._lock:
            return copy.deepcopy(self._models)

    def set_models(self, models: list[Model] | Mapping[str, Any]) -> None:
        """Replace the public catalog (a list, or an object with a ``data`` list)."""
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

    def find_model(self, model_id: str, team: str | None) -> Model | None:
        """The public model with this id, else the team's private one."""
        with self._lock:
            model = self._index.get(model_id)
            if model is None and team:
                model = next((m for m in self._private.get(team, []) if m["id"] == model_id), None)
            return model

    def list_body(self, team: str | None) -> bytes:
        """The JSON of GET /models as this team sees it."""
        with self._lock:
            private = self._private.get(team, []) if team else []
            if private:
                return dumps({"object": "list", "data": self._models + private})
            if self._list_cache is None:  # big generated catalogs: serialise once
                self._list_cache = dumps({"object": "list", "data": self._models})
            return self._list_cache

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
        check_endpoint(endpoint)
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

    def take_fault(self, endpoint: str | None) -> Fault | None:
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

    def set_latency(self, endpoint: str, seconds: float) -> None:
        """Delay every request of ``endpoint`` ("*" = default for all), faults or not."""
        check_endpoint(endpoint)
        if not is_number(seconds) or seconds < 0:
            raise ValueError("latency must be a number >= 0")
        with self._lock:
            self._latency[endpoint] = float(seconds)

    @property
    def latency(self) -> dict[str, float]:
        """The delay of each endpoint's answers ("*": the default)."""
        with self._lock:
            return dict(self._latency)

    def latency_for(self, endpoint: str | None) -> float:
        with self._lock:
            default = self._latency.get("*", 0.0)
            return self._latency.get(endpoint, default) if endpoint else default

    def reset(self) -> None:
        """Clear faults and recorded requests; restore catalog, keys and latency."""
        self._restore()
        self.clear_requests()

    # recording

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, endpoint: str | None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
