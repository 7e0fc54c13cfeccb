"""The opt-in inference probe of one account: a tiny streamed chat completion of each chat
model, every chat interval, on a thread of its own.

It costs money, so it is off unless models are configured, its interval has a floor (1m
for flags and files), and at most `chat_max_per_hour` probes start in any rolling hour
(all models of the account together). The configuration is refused when its schedule
alone would exceed the cap; at run time the cap is a guard that holds whatever happens:
a reload hands the schedule and the hour's count to the prober that replaces this one,
so reloading never brings a probe forward. A restart of the process starts afresh.

The models are probed one after the other, so a cycle takes at most one probe timeout per
model. A 429 with Retry-After delays the next chat cycle (at most 10 chat intervals); the
list and get probes are not paused by it: inference may be limited apart from the catalog.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from llm_pinference.core.chatprobe import estimate_cost
from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.text import redact_url

from .clients import probe_client
from .config import AccountConfig, ExporterConfig
from .logs import kv
from .state import ChatOutcome, ProbeState

log = logging.getLogger("exporter.chat")

HOUR = 3600.0
MAX_RETRY_INTERVALS = 10


def failure(exc: BaseException, account: AccountConfig, **fields: object) -> tuple[str, int, str]:
    """(reason, status, one-line message) of a failed probe. An API failure's message names
    the base URL: shown without any user info it may carry. Anything else is a bug, not an
    API answer: logged with its type, and counted (as invalid_response) so it shows."""
    if isinstance(exc, PinferenceError):
        message = str(exc).replace(account.base_url, redact_url(account.base_url))
        return exc.reason.value, exc.status or 0, message
    message = f"unexpected {type(exc).__name__} while probing"
    log.error(message, exc_info=exc, extra=kv(account=account.name, **fields))
    return Reason.INVALID_RESPONSE.value, 0, message


def start_loop(
    name: str, stop: threading.Event, delay: Callable[[], float], cycle: Callable[[], object]
) -> threading.Thread:
    """A daemon thread that runs `cycle` whenever `delay()` (seconds) has run out, until
    `stop`; a crashed cycle is logged and the loop goes on."""

    def loop() -> None:
        while not stop.is_set():
            if (wait := delay()) > 0:
                if stop.wait(wait):
                    return
                continue  # due again? (a 429 may have moved it meanwhile)
            try:
                cycle()
            except Exception:  # keep probing whatever happened
                log.exception("probe cycle crashed", extra=kv(thread=name))

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


def changed(last: dict[str, str | None], key: str, reason: str | None) -> bool:
    """Note `reason` (None: a success) as `key`'s last; True if that changes it: a failure
    starting or changing reason warns, a recovery is news, repeats are debug."""
    before, last[key] = last.get(key), reason
    return before != reason


@dataclass
class ChatSchedule:
    """What a successor (after a reload) carries on with."""

    next_cycle: float | None = None  # time.monotonic(); None: at once (after the first list)
    started: deque[float] = field(default_factory=deque)  # the last hour's probes (their cycle)
    last_reason: dict[str, str | None] = field(default_factory=dict)  # per model, as logged

    def copy(self) -> ChatSchedule:
        return ChatSchedule(self.next_cycle, deque(self.started), dict(self.last_reason))


class ChatProber:
    def __init__(
        self,
        config: ExporterConfig,
        account: AccountConfig,
        state: ProbeState,
        stop: threading.Event,
    ) -> None:
        """`stop` is shared with the account's prober: stopping it stops both."""
        self.config = config
        self.account = account
        self.state = state
        self._stop = stop
        self._cycle_lock = threading.Lock()  # one cycle at a time (the loop, or a test)
        self._lock = threading.Lock()  # the schedule, briefly (a reload reads it)
        self._schedule = ChatSchedule()
        self._first_wait = time.monotonic() + config.timeout + 1  # see _delay
        self._capped = False  # the cap skipped the last probe (logged once)
        self._client: PinferenceClient | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.account.chat_models:
            name = f"pinference-chat-{self.account.name}"
            self._thread = start_loop(name, self._stop, self._delay, self.run_cycle)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop (the shared event is set by the caller); a probe in flight is dropped."""
        if self._thread is not None:
            self._thread.join(timeout)
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def handover(self) -> ChatSchedule:
        with self._lock:
            return self._schedule.copy()

    def take_over(self, schedule: ChatSchedule) -> None:
        with self._lock:
            self._schedule = schedule.copy()

    def next_cycle_in(self) -> float | None:
        """Seconds until the next cycle is due (None: at once, once the first list is in)."""
        with self._lock:
            due = self._schedule.next_cycle
        return None if due is None else max(0.0, due - time.monotonic())

    def _delay(self) -> float:
        # The first cycle waits for the first list (it gives the prices), a while at most.
        if self._first_wait > time.monotonic() and not self.state.snapshot().list_done:
            return 0.05
        return self.next_cycle_in() or 0.0

    def run_cycle(self) -> int:
        """One chat probe of each chat model, one after the other, now; the next cycle is
        due an interval after this one started. Returns how many probes were made (the
        hourly cap may skip some; a 429 ends the cycle)."""
        made = 0
        with self._cycle_lock:
            started = time.monotonic()
            with self._lock:
                self._schedule.next_cycle = started + self.account.chat_interval
            for model in self.account.chat_models:
                if self._stop.is_set() or not self._take_a_slot(started):
                    break
                made += 1
                if self._probe(model) == Reason.RATE_LIMITED.value:
                    break
        return made

    def _take_a_slot(self, cycle: float) -> bool:
        """Count one more probe in the rolling hour, if the cap leaves room for it. Each is
        counted at the start of its cycle: cycles start an interval apart at least, so a
        schedule at the cap never finds its slot of an hour ago still taken."""
        cap = self.account.chat_max_per_hour
        with self._lock:
            started = self._schedule.started
            while started and started[0] <= cycle - HOUR:
                started.popleft()
            if len(started) >= cap:
                warn, self._capped = not self._capped, True
            else:
                started.append(cycle)
                self._capped = False
                return True
        if warn:
            log.warning("chat probes skipped: hourly cap reached",
                        extra=kv(account=self.account.name, cap=cap))  # fmt: skip
        return False

    def _api(self) -> PinferenceClient:
        if self._client is None:
            self._client = probe_client(self.config, self.account)
        return self._client

    def _probe(self, model: str) -> str | None:
        """One chat probe, recorded; its failure reason (None for a success)."""
        started = time.monotonic()
        try:
            result = self._api().chat_probe(model, max_tokens=self.account.chat_max_tokens)
        except Exception as exc:
            if self._stop.is_set():
                return None
            reason = self._failed(model, started, exc)
            self.state.record_chat(model, ChatOutcome(reason=reason))
            return reason
        if self._stop.is_set():
            return None
        # Prices from the last list; unknown ones (not listed, not said) cost nothing here
        # and count as unpriced.
        pricing = self.state.price_of(model)
        cost = estimate_cost(result.usage, pricing) if pricing is not None else None
        self.state.record_chat(model, ChatOutcome(
            ttft=result.ttft, duration=result.duration,
            output_tokens=result.usage.output_tokens, cost_usd=cost,
        ))  # fmt: skip
        with self._lock:
            recovered = changed(self._schedule.last_reason, model, None)
        log.log(logging.INFO if recovered else logging.DEBUG,
                "chat probe recovered" if recovered else "chat probe succeeded",
                extra=kv(account=self.account.name, model=model,
                         ttft=None if result.ttft is None else round(result.ttft, 4),
                         duration=round(result.duration, 4),
                         tokens=result.usage.output_tokens, cost_usd=cost))  # fmt: skip
        return None

    def _failed(self, model: str, started: float, exc: BaseException) -> str:
        """Log a failed chat probe; returns its reason."""
        reason, _, message = failure(exc, self.account, model=model)
        with self._lock:
            news = changed(self._schedule.last_reason, model, reason)
            retry_after = getattr(exc, "retry_after", None)
            if reason == Reason.RATE_LIMITED.value and retry_after:
                wait = min(retry_after, MAX_RETRY_INTERVALS * self.account.chat_interval)
                later = time.monotonic() + wait
                self._schedule.next_cycle = max(self._schedule.next_cycle or 0.0, later)
        log.log(logging.WARNING if news else logging.DEBUG, "chat probe failed",
                extra=kv(account=self.account.name, model=model, reason=reason,
                         duration=round(time.monotonic() - started, 4), err=message))  # fmt: skip
        return reason
