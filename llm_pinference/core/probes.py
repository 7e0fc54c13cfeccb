"""Where the time of one request went: the phases of a probe, named as blackbox_exporter
names them, and the clock that the transport's connections mark them on.

Standard library only (no requests): the client and the exporter import it cheaply.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import astuple, dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tlsinfo import TLSInfo

#: The phase names, in the order they happen (blackbox_exporter's `phase` label values).
PHASES: tuple[str, ...] = ("resolve", "connect", "tls", "processing", "transfer")


@dataclass(frozen=True)
class Phases:
    """Seconds spent in each phase of one request; they add up to `total`.

    resolve: from the start of the call until the host name is resolved (as with
    blackbox_exporter, it holds the client's own setup too: ~1 ms here);
    connect: the TCP connect; tls: the TLS handshake (0 for http);
    processing: until the response's head has arrived (the request sent, the server
    working); transfer: from then to the end of the body. On a reused connection resolve,
    connect and tls are 0.
    """

    resolve: float
    connect: float
    tls: float
    processing: float
    transfer: float

    @property
    def total(self) -> float:
        return sum(astuple(self))

    def items(self) -> tuple[tuple[str, float], ...]:
        """(phase, seconds) pairs in the order of `PHASES`."""
        return tuple((f.name, getattr(self, f.name)) for f in fields(self))


class PhaseClock:
    """The instants one exchange passes through, marked by the transport's connections.
    With `fresh`, a kept-alive connection is closed before the request, so that a new one
    is made."""

    def __init__(self, fresh: bool = False) -> None:
        self.fresh = fresh
        self.started = time.monotonic()
        self.resolved: float | None = None
        self.connected: float | None = None
        self.secured: float | None = None
        self.first_byte: float | None = None
        self.tls: TLSInfo | None = None

    def mark_resolved(self) -> None:
        if self.resolved is None:  # the first address tried; later ones are connect time
            self.resolved = time.monotonic()

    def mark_connected(self) -> None:
        if self.connected is None:
            self.connected = time.monotonic()

    def mark_secured(self, info: TLSInfo) -> None:
        self.secured = time.monotonic()
        self.tls = info

    def mark_first_byte(self) -> None:
        self.first_byte = time.monotonic()

    def phases(self, ended: float) -> Phases:
        """The phases from the start to `ended`. A missing mark (no new connection, no TLS)
        makes its phase 0; the phases always add up to `ended - started`."""
        marks = [self.started]
        for mark in (self.resolved, self.connected, self.secured, self.first_byte, ended):
            marks.append(marks[-1] if mark is None else max(marks[-1], mark))
        return Phases(*(after - before for before, after in itertools.pairwise(marks)))
