"""Probe outcomes, recorded by the prober and read by scrapes through immutable snapshots.

One lock guards everything; it is held only to update a few numbers or to copy them, so a
scrape never waits for a probe. Catalog data is built outside the lock and swapped in
whole (replaced, never mutated), so a snapshot can share it without copying.

What comes from the API is made safe to export where it enters (`record_catalog`,
`record_chat`): text encodable as UTF-8 (lone surrogates escaped; no id listed twice),
counts and amounts finite and non-negative. A scrape renders any stored value.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from llm_pinference.core.client import check_model_id
from llm_pinference.core.errors import REASONS, InvalidModelId
from llm_pinference.core.models import ModelInfo, Pricing
from llm_pinference.core.probes import Phases
from llm_pinference.core.tlsinfo import TLSInfo

ENDPOINTS = ("list", "get")
CHANGES = ("added", "removed")
# The contract's histogram buckets (docs/metrics.md); +Inf is implied.
# 5 to 25 ms resolve a fast API's percentiles (lower buckets leave the others' `le` as is).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The chat probe's (time to first token, duration): a completion takes longer than a list.
CHAT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)
OTHER_OWNERS = "(other)"  # pinference_models label for owners beyond the series cap
MAX_COUNT = 2**53  # the largest count a float (the exposition's number) holds exactly


@dataclass(frozen=True)
class Histogram:
    """Observations per bucket (+Inf last; not cumulative) and their sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds, (0,) * (len(bounds) + 1))

    def observed(self, value: float) -> Histogram:
        counts = list(self.counts)
        counts[bisect.bisect_left(self.bounds, value)] += 1
        return Histogram(self.bounds, tuple(counts), self.total + value)


@dataclass(frozen=True)
class EndpointStats:
    """What a scrape needs for one endpoint."""

    probes: int = 0
    failures: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    duration: Histogram = field(default_factory=lambda: Histogram.empty(BUCKETS))
    success: bool | None = None  # None before the first probe
    status_code: int = 0
    last_success: float | None = None
    last_probe: float | None = None
    last_error: str | None = None  # one line, key-free (PinferenceError's str)
    last_reason: str | None = None

    def recorded(
        self, duration: float, finished: float, status: int, reason: str | None, error: str | None
    ) -> EndpointStats:
        ok = reason is None
        return EndpointStats(
            probes=self.probes + 1,
            failures=_counted(self.failures, reason),
            duration=self.duration.observed(duration),
            success=ok,
            status_code=status,
            last_success=finished if ok else self.last_success,
            last_probe=finished,
            last_error=self.last_error if ok else error,
            last_reason=reason,
        )


@dataclass(frozen=True)
class ModelOutcome:
    """The last get probe of one model: its status, and the reason it failed (None: 200)."""

    status: int
    reason: str | None = None
    error: str | None = None


def _failing_first(item: tuple[str, ModelOutcome]) -> tuple[bool, str]:
    """The order in which a failing model speaks for the endpoint: any other failure before
    a 404 (a missing model has its own series), then by model id; stable across cycles."""
    model, outcome = item
    return outcome.reason == "not_found", model


@dataclass(frozen=True)
class Connection:
    """What the last successful list probe, made on a new connection, saw of it."""

    phases: Phases
    tls: TLSInfo | None  # None over http


@dataclass(frozen=True)
class ChatStats:
    """The chat probes of one model."""

    probes: int = 0
    failures: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    ttft: Histogram = field(default_factory=lambda: Histogram.empty(CHAT_BUCKETS))
    duration: Histogram = field(default_factory=lambda: Histogram.empty(CHAT_BUCKETS))
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0  # successful probes whose cost is unknown (no prices, or no usage)


@dataclass(frozen=True)
class ChatOutcome:
    """One chat probe, as the prober saw it: a success (reason None) or a failure."""

    reason: str | None = None
    ttft: float | None = None  # successes whose stream held a token
    duration: float = 0.0
    output_tokens: int = 0
    cost_usd: float | None = None  # None: unknown


@dataclass(frozen=True)
class ListedModels:
    """The last successful list, already shaped (and capped) for the metrics."""

    total: int
    owners: tuple[tuple[str, int], ...]  # (owned_by, count), capped; sums to total
    info: tuple[tuple[str, str, str, str], ...]  # (model, owned_by, display_name, serving)
    dropped: int
    ids: tuple[str, ...]  # sorted
    # The ids a get probe may request (sorted): the rotating sample walks through them. A
    # listed id that could leave /models/ (a dot segment) is never requested.
    sample_ids: tuple[str, ...]
    finished: float

    @classmethod
    def build(cls, models: Iterable[ModelInfo], max_series: int, finished: float) -> ListedModels:
        # (label, id as listed) per model: the label printable, and the first of equal ones
        by_label: dict[str, ModelInfo] = {}
        for model in models:
            by_label.setdefault(_text(model.id), model)
        ordered = sorted(by_label.items())  # a stable choice of which series survive
        counts = Counter(_text(m.owned_by) for _, m in ordered).most_common()
        owners = sorted(counts[:max_series])
        if len(counts) > max_series:
            owners.append((OTHER_OWNERS, sum(n for _, n in counts[max_series:])))
        info = tuple(
            (label, _text(m.owned_by), _text(m.display_name), _text(m.serving))
            for label, m in ordered[:max_series]
        )
        return cls(
            total=len(ordered),
            owners=tuple(owners),
            info=info,
            dropped=max(0, len(ordered) - max_series),
            ids=tuple(label for label, _ in ordered),
            sample_ids=tuple(m.id for _, m in ordered if _requestable(m.id)),
            finished=finished,
        )


@dataclass(frozen=True)
class Snapshot:
    endpoints: Mapping[str, EndpointStats]
    catalog: ListedModels | None  # None before the first successful list
    changes: Mapping[str, int]
    available: Mapping[str, int]  # watched model -> 1/0, once known
    list_done: bool  # a list probe has finished (success or failure): ready
    paused_until: float | None  # wall time until which 429 Retry-After pauses probing
    cycles: int
    connection: Connection | None = None  # of the last successful list probe
    chat: Mapping[str, ChatStats] = field(default_factory=dict)  # per chat-probed model


class ProbeState:
    """Thread-safe record of every probe outcome."""

    def __init__(self, max_series: int = 1000) -> None:
        self.max_series = max_series
        self._lock = threading.Lock()
        self._endpoints = {endpoint: EndpointStats() for endpoint in ENDPOINTS}
        self._catalog: ListedModels | None = None
        self._changes = dict.fromkeys(CHANGES, 0)
        self._available: dict[str, int] = {}
        self._models: dict[str, ModelOutcome] = {}  # the last get probe of each model
        self._list_done = False
        self._paused_until: float | None = None
        self._cycles = 0
        self._connection: Connection | None = None
        self._chat: dict[str, ChatStats] = {}
        self._prices: dict[str, Pricing] = {}  # chat-probed models' prices in the last list

    def record(
        self,
        endpoint: str,
        duration: float,
        finished: float,
        *,
        status: int = 0,
        reason: str | None = None,
        error: str | None = None,
        connection: Connection | None = None,
        model: str | None = None,
    ) -> None:
        """Count one probe; `reason=None` is a success. `connection`: what a successful
        probe on a new connection saw (phases, TLS); it replaces the previous one, and a
        failure leaves that in place (the last known phases and certificate). `model`: the
        model of a get probe, whose outcome the endpoint's state keeps (see `_judge_get`)."""
        with self._lock:
            previous = self._endpoints[endpoint]
            self._endpoints[endpoint] = previous.recorded(duration, finished, status, reason, error)
            if model is not None:
                self._models[model] = ModelOutcome(status, reason, error)
                self._judge_get()
            if endpoint == "list":
                self._list_done = True
            if connection is not None:
                self._connection = connection

    def keep_chat_models(self, models: Iterable[str]) -> None:
        """The chat-probed models: new ones start at 0 (every reason pre-set), those no
        longer probed are forgotten (their series disappear), the others carry on."""
        with self._lock:
            self._chat = {m: self._chat.get(m) or ChatStats() for m in models}
            self._prices = {m: p for m, p in self._prices.items() if m in self._chat}

    def record_chat(self, model: str, outcome: ChatOutcome) -> None:
        """Count one chat probe of a model that is chat-probed (others are ignored: a
        probe that was in flight when a reload removed its model)."""
        cost = _amount(outcome.cost_usd)
        with self._lock:
            stats = self._chat.get(model)
            if stats is None:
                return
            failures = _counted(stats.failures, outcome.reason)
            stats = replace(stats, probes=stats.probes + 1, failures=failures)
            if outcome.reason is not None:
                self._chat[model] = stats
                return
            self._chat[model] = replace(
                stats,
                ttft=stats.ttft if outcome.ttft is None else stats.ttft.observed(outcome.ttft),
                duration=stats.duration.observed(outcome.duration),
                output_tokens=stats.output_tokens + _count(outcome.output_tokens),
                cost_usd=stats.cost_usd + (cost or 0.0),
                unpriced=stats.unpriced + (cost is None),
            )

    def price_of(self, model: str) -> Pricing | None:
        """The model's prices in the last successful list (None: not listed, or not yet)."""
        with self._lock:
            return self._prices.get(model)

    def record_catalog(self, models: Iterable[ModelInfo], finished: float) -> tuple[int, int]:
        """Store a successful list; returns (added, removed) since the previous one (the
        first list is a baseline, not a change)."""
        models = list(models)
        catalog = ListedModels.build(models, self.max_series, finished)
        # Only the prober records, one cycle at a time: `previous` stays current.
        previous = set(self._catalog.ids if self._catalog else catalog.ids)
        added, removed = len(set(catalog.ids) - previous), len(previous - set(catalog.ids))
        with self._lock:
            self._catalog = catalog
            self._prices = {m.id: m.pricing for m in models if m.id in self._chat}
            self._changes["added"] += added
            self._changes["removed"] += removed
        return added, removed

    def set_available(self, model: str, value: int) -> None:
        with self._lock:
            self._available[model] = value

    def keep_available(self, models: Iterable[str]) -> None:
        """Forget availability of models no longer watched (their series disappear)."""
        keep = set(models)
        with self._lock:
            self._available = {m: v for m, v in self._available.items() if m in keep}

    def keep_get_models(self, models: Iterable[str]) -> None:
        """The models get probes may request now (the watched ones, or the listed ones a
        sample rotates through): the outcomes of others are forgotten."""
        keep = set(models)
        with self._lock:
            self._models = {m: o for m, o in self._models.items() if m in keep}
            self._judge_get()

    def _judge_get(self) -> None:
        """The get endpoint's state from the last probe of every model (under the lock): a
        success if each answered 200, else the first failing model's status and reason
        (`_failing_first`). Watched models that disagree, probes finishing in any order, or
        a sample rotating through the catalog leave it unchanged from cycle to cycle; the
        counters and timestamps still count every probe."""
        stats = self._endpoints["get"]
        failing = sorted((i for i in self._models.items() if i[1].reason), key=_failing_first)
        if failing:
            outcome = failing[0][1]
            stats = replace(stats, success=False, status_code=outcome.status,
                            last_reason=outcome.reason, last_error=outcome.error)  # fmt: skip
        elif self._models and stats.success is not None:
            stats = replace(stats, success=True, status_code=200, last_reason=None)
        self._endpoints["get"] = stats

    def set_paused_until(self, until: float | None) -> None:
        """Wall time until which probing waits for a 429's Retry-After (for display)."""
        with self._lock:
            self._paused_until = until

    def count_cycle(self) -> None:
        with self._lock:
            self._cycles += 1

    def sample_ids(self) -> tuple[str, ...]:
        with self._lock:
            catalog = self._catalog
        return catalog.sample_ids if catalog else ()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                endpoints=MappingProxyType(dict(self._endpoints)),
                catalog=self._catalog,
                changes=MappingProxyType(dict(self._changes)),
                available=MappingProxyType(dict(self._available)),
                list_done=self._list_done,
                paused_until=self._paused_until,
                cycles=self._cycles,
                connection=self._connection,
                chat=MappingProxyType(dict(self._chat)),
            )


def _counted(failures: Mapping[str, int], reason: str | None) -> Mapping[str, int]:
    """The failure counts with one more of `reason` (None: a success, counted elsewhere)."""
    if reason is None:
        return failures
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}")
    return {**failures, reason: failures[reason] + 1}


def _text(value: object) -> str:
    """API text as a label value: what UTF-8 cannot encode (a lone surrogate, which JSON
    allows) escaped as `\\udXXX`; the rest is prometheus_client's to escape. Not text:
    empty."""
    return value.encode("utf-8", "backslashreplace").decode() if isinstance(value, str) else ""


def _count(value: object) -> int:
    """An API count (usage tokens): an integer from 0 to MAX_COUNT, else 0 (unknown)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT
    return value if ok else 0  # type: ignore[return-value]


def _amount(value: object) -> float | None:
    """A cost: a finite amount from 0 to MAX_COUNT, else None (unknown)."""
    try:
        amount = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return amount if 0 <= amount <= MAX_COUNT else None


def _requestable(model_id: str) -> bool:
    try:
        check_model_id(model_id)
    except InvalidModelId:
        return False
    return True
