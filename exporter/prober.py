"""The probe loop of one account: one list probe, then the get probes, every interval
(jittered). Each account has its own prober, thread and workers: a slow or failing
account never delays another.

The list probe goes out on a new connection every cycle (`list_models(fresh=True)`): a
probe on a kept-alive connection sees neither the name resolution, nor the TCP connect,
nor the TLS handshake, so a DNS record gone wrong, a certificate expired or replaced, or a
load balancer refusing new connections would go unnoticed for as long as the old
connection lives. A new connection fails as a new client would, and its phases
(blackbox_exporter's resolve, connect, tls, processing, transfer) and certificate are what
a new client meets. The get probes of the cycle may reuse it.

Chat probes (opt-in: they cost money) are a `ChatProber`'s, on a thread and an interval of
their own, so a slow completion never delays the list and get probes.

Cycles never overlap (one thread runs them, under a lock that `run_cycle()` shares). Get
probes run on a fixed set of daemon worker threads, each with its own API client (a
`requests.Session` is not thread-safe), so an in-flight request never delays shutdown.
A 429 with Retry-After pauses all probing until then (capped at 10 intervals); nothing is
counted while paused. A stopped prober (the account was removed or reconfigured by a
reload) records nothing more, even from a probe that was in flight.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.text import format_duration

from .chatprober import ChatProber, ChatSchedule, changed, failure, start_loop
from .clients import probe_client
from .config import AccountConfig, ExporterConfig
from .logs import kv
from .recent import RecentProbes
from .state import Connection, ProbeState

log = logging.getLogger("pinference_exporter.prober")

MAX_PAUSE_INTERVALS = 10


class _Workers:
    """A fixed pool of daemon threads (unlike ThreadPoolExecutor's, which exit waits for)."""

    def __init__(self, size: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[tuple[Callable[[], None], queue.SimpleQueue[None]] | None]
        self._tasks = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            job, done = task
            try:
                job()
            except Exception:  # a bug in one probe must not kill the worker
                log.exception("get probe crashed")
            finally:
                done.put(None)

    def run_all(self, jobs: list[Callable[[], None]], stop: threading.Event) -> None:
        """Run the jobs and wait for them all, or until `stop` is set."""
        done: queue.SimpleQueue[None] = queue.SimpleQueue()
        for job in jobs:
            self._tasks.put((job, done))
        for _ in jobs:
            while True:
                try:
                    done.get(timeout=0.1)
                    break
                except queue.Empty:
                    if stop.is_set():
                        return

    def close(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)


@dataclass
class Handover:
    """What a prober's successor (after a reload) carries on with."""

    pause_deadline: float = 0.0  # time.monotonic() until which a 429 pauses probing
    cursor: int = 0  # place in the sample rotation
    last_reason: dict[str, str | None] = field(default_factory=dict)  # last logged, per key
    chat: ChatSchedule = field(default_factory=ChatSchedule)


class Prober:
    def __init__(
        self,
        config: ExporterConfig,
        account: AccountConfig,
        state: ProbeState,
        *,
        rng: random.Random | None = None,
        recent: RecentProbes | None = None,
    ) -> None:
        self.config = config
        self.account = account
        self.settings = account.settings
        self.state = state
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not secrets
        self.recent = recent if recent is not None else RecentProbes()  # the landing page's
        self._stop = threading.Event()
        self._cycle_lock = threading.Lock()
        self._local = threading.local()
        self._clients: list[PinferenceClient] = []
        self._clients_lock = threading.Lock()
        self._workers: _Workers | None = None
        self._thread: threading.Thread | None = None
        self._cursor = 0
        self._pause_deadline = 0.0  # time.monotonic() until which probing is paused
        self._next_due = 0.0  # time.monotonic(); the first cycle runs at once (readiness)
        self._last_reason: dict[str, str | None] = {}
        self._watched = frozenset(account.probe_models)
        self.chat = ChatProber(config, account, state, self._stop)

    # lifecycle

    def start(self) -> Prober:
        if self._thread is None:
            delay = lambda: max(self._next_due - time.monotonic(), self.pause_remaining())  # noqa: E731
            name = f"pinference-prober-{self.account.name}"
            self._thread = start_loop(name, self._stop, delay, self._timed_cycle)
        self.chat.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop probing; waits at most `timeout` for a cycle in flight (daemon threads)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.chat.stop(timeout)
        if self._workers is not None:
            self._workers.close()
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def take_over(self, previous: Prober) -> Prober:
        """Carry on where the prober this one replaces stopped (after a reload): keep its
        429 pause, its place in the sample rotation, what it last logged, and its chat
        schedule (a reload never brings a chat probe forward, nor resets the hourly cap)."""
        given = previous.handover()
        self._pause_deadline, self._cursor = given.pause_deadline, given.cursor
        self._last_reason = dict(given.last_reason)
        self.chat.take_over(given.chat)
        return self

    def handover(self) -> Handover:
        """What a successor takes over (see `take_over`)."""
        return Handover(self._pause_deadline, self._cursor, self._last_reason,
                        self.chat.handover())  # fmt: skip

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pause_remaining(self) -> float:
        return max(0.0, self._pause_deadline - time.monotonic())

    # the loop

    def _timed_cycle(self) -> None:
        """One cycle; the next is due an interval (jittered) after this one started."""
        interval = self.config.probe_interval
        started = time.monotonic()
        self._next_due = started + interval + self._rng.uniform(0, self.config.jitter * interval)
        self.run_cycle()
        if (elapsed := time.monotonic() - started) > interval:
            log.warning("probe cycle took longer than the interval",
                        extra=kv(account=self.account.name, took=round(elapsed, 3),
                                 interval=format_duration(interval)))  # fmt: skip

    def run_cycle(self) -> bool:
        """One list probe and the get probes, synchronously; False if paused by a 429."""
        with self._cycle_lock:
            if self.pause_remaining() > 0 or self._stop.is_set():
                return False
            self._probe_list()
            targets = self._targets()
            self.state.keep_get_models(
                self.account.probe_models if self._watched else self.state.sample_ids()
            )
            if targets and self.pause_remaining() == 0:
                jobs = [self._get_job(model, watched) for model, watched in targets]
                if len(jobs) == 1:
                    jobs[0]()
                else:
                    self._get_workers().run_all(jobs, self._stop)
            if not self._stop.is_set():
                self.state.count_cycle()
            return True

    def _targets(self) -> list[tuple[str, bool]]:
        """Watched models, or else a rotating sample of the last listed catalog."""
        if self._watched:
            return [(model, True) for model in self.account.probe_models]
        ids = self.state.sample_ids()
        size = min(self.account.sample_size, len(ids))
        if not size:
            return []
        start = self._cursor % len(ids)
        self._cursor = start + size
        return [(ids[(start + i) % len(ids)], False) for i in range(size)]

    def _get_workers(self) -> _Workers:
        if self._workers is None:
            self._workers = _Workers(self.config.concurrency, f"pinference-get-{self.account.name}")
        return self._workers

    # probes

    def _client(self) -> PinferenceClient:
        """The calling thread's client (a requests.Session is not thread-safe)."""
        client: PinferenceClient | None = getattr(self._local, "client", None)
        if client is None:
            client = probe_client(self.config, self.account)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _probe_list(self) -> None:
        started = time.monotonic()
        try:
            result = self._client().list_models(fresh=True)  # a new connection: see above
        except Exception as exc:
            if not self._stop.is_set():
                self._failed("list", started, exc)
            return
        finished = time.time()
        # The phases add up to the duration: both are what the request took, the client's
        # own setup included; parsing the list after it is not.
        timing = result.timing
        duration = timing.total if timing is not None else time.monotonic() - started
        if self._stop.is_set():
            return
        added, removed = self.state.record_catalog(result.models, finished)
        connection = Connection(timing, result.tls) if timing is not None else None
        self.state.record("list", duration, finished, status=result.status, connection=connection)
        self.recent.add(self.account, "list", duration, finished, status=result.status,
                        phases=timing)  # fmt: skip
        self._succeeded("list", duration, models=len(result.models), skipped=result.skipped)
        if added or removed:
            log.info("catalog changed", extra=kv(account=self.account.name, added=added,
                                                 removed=removed))  # fmt: skip

    def _get_job(self, model: str, watched: bool) -> Callable[[], None]:
        def job() -> None:
            # Skip what a 429 from a sibling probe, or shutdown, has made pointless.
            if self._stop.is_set() or self.pause_remaining() > 0:
                return
            self._probe_get(model, watched)

        return job

    def _probe_get(self, model: str, watched: bool) -> None:
        started = time.monotonic()
        try:
            self._client().get_model(model)
        except Exception as exc:
            if self._stop.is_set():
                return
            if watched and isinstance(exc, PinferenceError) and exc.reason is Reason.NOT_FOUND:
                self.state.set_available(model, 0)
            self._failed("get", started, exc, model=model)
            return
        duration = time.monotonic() - started
        if self._stop.is_set():
            return
        if watched:
            self.state.set_available(model, 1)
        self.state.record("get", duration, finished := time.time(), status=200, model=model)
        self.recent.add(self.account, "get", duration, finished, model=model, status=200)
        self._succeeded("get", duration, model=model)

    def _succeeded(self, endpoint: str, duration: float, model: str | None = None,
                   **fields: object) -> None:  # fmt: skip
        recovered = changed(self._last_reason, f"{endpoint} {model}", None)
        if model is not None:
            fields["model"] = model
        log.log(
            logging.INFO if recovered else logging.DEBUG,
            "probe recovered" if recovered else "probe succeeded",
            extra=kv(account=self.account.name, endpoint=endpoint, duration=round(duration, 4),
                     **fields),
        )  # fmt: skip

    def _failed(self, endpoint: str, started: float, exc: BaseException,
                model: str | None = None) -> None:  # fmt: skip
        """Record a failed probe; log it, and warn when it starts or changes reason (per
        model for get probes: models that disagree log only their own changes)."""
        duration = time.monotonic() - started
        fields = {"model": model} if model else {}
        reason, status, message = failure(exc, self.account, endpoint=endpoint, **fields)
        self.state.record(endpoint, duration, finished := time.time(), status=status,
                          reason=reason, error=message, model=model)  # fmt: skip
        self.recent.add(self.account, endpoint, duration, finished, status=status, reason=reason,
                        error=message, model=model)  # fmt: skip
        news = changed(self._last_reason, f"{endpoint} {model}", reason)
        log.log(logging.WARNING if news else logging.DEBUG, "probe failed",
                extra=kv(account=self.account.name, endpoint=endpoint, reason=reason,
                         duration=round(duration, 4), err=message, **fields))  # fmt: skip
        retry_after = getattr(exc, "retry_after", None)
        if reason == Reason.RATE_LIMITED.value and retry_after:
            self._pause(retry_after)

    def _pause(self, retry_after: float) -> None:
        wait = min(retry_after, MAX_PAUSE_INTERVALS * self.config.probe_interval)
        self._pause_deadline = max(self._pause_deadline, time.monotonic() + wait)
        until = time.time() + self.pause_remaining()
        self.state.set_paused_until(until)
        log.warning(
            "rate limited: probes paused until Retry-After",
            extra=kv(
                account=self.account.name, retry_after=round(retry_after, 3), wait=round(wait, 3)
            ),
        )
