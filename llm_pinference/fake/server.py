"""The fake Pinference server: ``FakePinference``, its state and its public API.

Standard library only, so the demo, tests and benchmarks need nothing extra. One
``FakePinference`` owns the state (behind a lock) and a ``ThreadingHTTPServer`` in a
daemon thread; every wait is on an Event so ``stop()`` is quick even mid-fault.

The rest lives beside it: ``handler`` (HTTP), ``routing``, ``responses``, ``faults``,
``recording`` and ``admin`` (the ``/_admin/`` routes).
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from .admin import is_loopback
from .catalogue import Model, default_catalogue, validate_models
from .faults import Fault, _is_number
from .handler import _Server
from .recording import RecordedRequest
from .responses import _dumps
from .routing import API_PREFIX, _check_endpoint

__all__ = ["MAX_BODY_BYTES", "FakePinference", "Fault", "RecordedRequest", "is_loopback"]

MAX_BODY_BYTES = 10 * 1024 * 1024


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
