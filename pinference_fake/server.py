"""The fake Pinference server: ``FakePinference``, its state served on a loopback port.

Standard library only, so the demo, tests and benchmarks need nothing extra. The state
and its public API live in ``state.FakeState``; this adds a ``ThreadingHTTPServer`` in a
daemon thread. Every wait is on an Event so ``stop()`` is quick even mid-fault.

The rest lives beside it: ``handler`` (HTTP), ``routing``, ``responses``, ``faults``,
``recording``, ``catalog`` and ``admin`` (the ``/_admin/`` routes).
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

from .handler import FakeHTTPServer
from .state import FakeState


class FakePinference(FakeState):
    """A realistic fake of the Pinference API, served on a loopback port.

    Usable as a context manager. All public methods are thread-safe. ``reset()`` (and
    the admin reset) returns to the state given to the constructor.

    With ``certfile`` (PEM: the certificate, then any intermediates) and ``keyfile`` it
    serves HTTPS; a bad pair raises OSError (ssl.SSLError) here, before anything binds.
    """

    def __init__(
        self,
        *args: Any,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._ssl_context: ssl.SSLContext | None = None
        if certfile is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certfile, keyfile)
            self._ssl_context = context
        elif keyfile is not None:
            raise ValueError("a TLS key needs its certificate (certfile)")
        self._server: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        return "http" if self._ssl_context is None else "https"

    # lifecycle

    def start(self) -> FakePinference:
        """Bind and serve in a daemon thread; returns self."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("FakePinference is already running")
            server = FakeHTTPServer((self._host, self._port), self, self._ssl_context)
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
    def port(self) -> int:
        server = self._server
        return int(server.server_address[1]) if server else self._port

    @property
    def open_connections(self) -> int:
        """Client connections the server holds open right now (0 when stopped)."""
        server = self._server
        return len(server.connections) if server else 0
