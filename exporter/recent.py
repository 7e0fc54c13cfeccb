"""The last probes across accounts, for the landing page's "Recent probes" and the debug
log of each (as blackbox_exporter keeps them), and each watched model's latest probe.

What is kept is what a person debugging needs and nothing secret: the URL without user info,
the request headers with the key replaced, the outcome, the phases of a list probe.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass

from llm_pinference.core.client import USER_AGENT, model_path
from llm_pinference.core.errors import InvalidModelId
from llm_pinference.core.probes import Phases
from llm_pinference.core.text import redact_url

from .config import AccountConfig

KEPT = 100  # probes, across accounts
REDACTED = "<secret>"


@dataclass(frozen=True)
class ProbeRecord:
    id: int
    finished: float  # wall time
    account: str
    endpoint: str
    model: str | None
    url: str  # without user info
    headers: tuple[tuple[str, str], ...]  # as sent, the key redacted
    duration: float
    status: int  # 0: no response
    reason: str | None  # None: success
    error: str | None
    phases: Phases | None  # list probes that succeeded (a new connection each)


class RecentProbes:
    """A bounded ring of probe records, thread-safe; newest first when read."""

    def __init__(self, size: int = KEPT) -> None:
        self._lock = threading.Lock()
        self._ring: deque[ProbeRecord] = deque(maxlen=size)
        self._latest: dict[tuple[str, str], ProbeRecord] = {}  # (account, model), watched only
        self._ids = itertools.count(1)

    def add(
        self,
        account: AccountConfig,
        endpoint: str,
        duration: float,
        finished: float,
        *,
        model: str | None = None,
        status: int = 0,
        reason: str | None = None,
        error: str | None = None,
        phases: Phases | None = None,
    ) -> None:
        sent = {"User-Agent": USER_AGENT, "Accept": "application/json",
                **account.settings.headers()}  # fmt: skip
        headers = tuple((k, f"Bearer {REDACTED}" if k == "Authorization" else v)
                        for k, v in sent.items())  # fmt: skip
        try:
            path = model_path(model) if model is not None else "models"
        except InvalidModelId:  # never requested: the client refused it
            path = "models/(refused id)"
        url = f"{redact_url(account.base_url)}/{path}"
        with self._lock:
            record = ProbeRecord(next(self._ids), finished, account.name, endpoint, model, url,
                                 headers, duration, status, reason, error, phases)  # fmt: skip
            self._ring.append(record)
            if model is not None and model in account.probe_models:
                self._latest[(account.name, model)] = record

    def recent(self) -> list[ProbeRecord]:
        with self._lock:
            return list(reversed(self._ring))

    def latest(self, account: str, model: str) -> ProbeRecord | None:
        with self._lock:
            return self._latest.get((account, model))

    def find(self, probe_id: int) -> ProbeRecord | None:
        with self._lock:
            kept = [*self._ring, *self._latest.values()]
        return next((r for r in kept if r.id == probe_id), None)
