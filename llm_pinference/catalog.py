"""The plugin's on-disk model-list cache: per account, with a TTL, a failure back-off and
a stale fallback.

llm resolves models on every prompt and every `llm.get_model()`, so this module is on the
hot path: a warm cache never touches the network, and the parsed list is memoised in-process
keyed by the file's identity (mtime, size, inode) so repeated lookups do not re-read it.

File format (one file for every account; an account is base URL + team, never the key):

    {"format": "llm-pinference/models-cache", "version": 1,
     "accounts": {"<account>": {"fetched_at": 1700000000.0 | null,
                                "models": [<API model objects>],
                                "failed_at": float | null, "retry_at": float | null,
                                "error": "<one line>" | null}}}

This module does not import llm: the caller passes the cache path.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import PinferenceError
from .models import ModelInfo, parse_models
from .settings import Settings
from .text import one_line, redact, redact_data, redact_url, url_secrets

CACHE_FILENAME = "pinference_models.json"
#: Beside the cache file: `pinference_models.json.lock`, locked during each write.
LOCK_SUFFIX = ".lock"
FORMAT = "llm-pinference/models-cache"
VERSION = 1
TTL_ENV = "LLM_PINFERENCE_CACHE_TTL"
DEFAULT_TTL = 3600.0
#: After a failed fetch, no new attempt for this long (an offline machine must not pay a
#: timeout on every command). A longer Retry-After from a 429 is honoured up to MAX_BACKOFF.
DEFAULT_BACKOFF = 300.0
MAX_BACKOFF = 3600.0
#: Accounts kept in the file; the least recently used beyond this are dropped.
MAX_ACCOUNTS = 8
#: The plugin's fetch: a user is waiting for `llm` to start. At most 2 s to connect and
#: 5 s for the whole exchange, however slowly the server sends.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
TOTAL_TIMEOUT = 5.0

Fetcher = Callable[[Settings], list[ModelInfo]]


def cache_ttl(env: Mapping[str, str] | None = None) -> float:
    """The TTL in seconds: LLM_PINFERENCE_CACHE_TTL when it is a number >= 0, else 1 hour."""
    value = (os.environ if env is None else env).get(TTL_ENV, "").strip()
    if not value:
        return DEFAULT_TTL
    try:
        ttl = float(value)
    except ValueError:
        return DEFAULT_TTL
    return ttl if ttl >= 0 and not math.isnan(ttl) else DEFAULT_TTL


def fetch_models(settings: Settings) -> list[ModelInfo]:
    """GET /models with the plugin's short timeouts; raises PinferenceError."""
    from .client import PinferenceClient

    with PinferenceClient(
        settings,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        total_timeout=TOTAL_TIMEOUT,
    ) as client:
        return client.list_models().models


# NamedTuples, not dataclasses: llm imports this on every prompt, and a dataclass costs
# about ten times more to define.


class Entry(NamedTuple):
    """One account's cached list and its last failure (if any)."""

    models: tuple[ModelInfo, ...] = ()
    fetched_at: float | None = None
    failed_at: float | None = None
    retry_at: float | None = None
    error: str | None = None

    @property
    def has_list(self) -> bool:
        return self.fetched_at is not None


class Source(str, enum.Enum):
    """Where a lookup's models came from. A str: `source == "stale"` holds too."""

    FRESH = "fresh"  # the cache, within its TTL
    FETCHED = "fetched"  # the API, just now
    STALE = "stale"  # the cache past its TTL: a fetch failed or is backing off
    NONE = "none"  # nothing: no cache, and no fetch succeeded

    def __str__(self) -> str:
        return self.value


class Lookup(NamedTuple):
    """What the hooks get: the models to register and how they were obtained."""

    models: tuple[ModelInfo, ...]
    source: Source
    error: PinferenceError | None = None  # set only when a fetch was tried and failed
    fetched_at: float | None = None
    retry_at: float | None = None  # after a failure: no new attempt before this time


class Refresh(NamedTuple):
    before: tuple[ModelInfo, ...]
    after: tuple[ModelInfo, ...]
    had_cache: bool
    saved: bool

    @property
    def added(self) -> list[str]:
        old = {m.id for m in self.before}
        return [m.id for m in self.after if m.id not in old]

    @property
    def removed(self) -> list[str]:
        new = {m.id for m in self.after}
        return [m.id for m in self.before if m.id not in new]

    @property
    def unchanged(self) -> int:
        old = {m.id for m in self.before}
        return sum(1 for m in self.after if m.id in old)


class _FileState(NamedTuple):
    """One read of the cache file, memoised in-process while the file is unchanged."""

    identity: tuple[int, int, int] | None
    accounts: dict[str, dict[str, Any]]
    parsed: dict[str, Entry]  # accounts parsed so far


_lock = threading.Lock()
_memo: dict[str, _FileState] = {}
#: In-process back-off, so a cache file that cannot be written still stops retries.
_retry_at: dict[tuple[str, str], float] = {}


def reset_process_state() -> None:
    """Forget the in-process memo and back-off (tests, and long-lived processes)."""
    with _lock:
        _memo.clear()
        _retry_at.clear()


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _load_file(path: Path) -> _FileState:
    """The file's accounts, or none if it is missing, corrupt or not ours (never raises)."""
    key = str(path)
    identity = _identity(path)
    with _lock:
        state = _memo.get(key)
        if state is not None and state.identity == identity:
            return state
    accounts: dict[str, dict[str, Any]] = {}
    if identity is not None:
        accounts = _decode(path)
    state = _FileState(identity, accounts, {})
    with _lock:
        _memo[key] = state
    return state


def _decode(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON: start afresh
        return {}
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or data.get("version") != VERSION
        or not isinstance(data.get("accounts"), dict)
    ):
        return {}
    accounts: dict[str, dict[str, Any]] = {}
    for key, value in data["accounts"].items():
        if isinstance(value, dict):
            _add_account(accounts, key, value)
    return accounts


def _add_account(accounts: dict[str, dict[str, Any]], key: str, raw: dict[str, Any]) -> None:
    """Keep an entry under its account key. Keys written before URL credentials were left
    out of them (`https://user:pass@host/...|team=`) are renamed, the credentials removed
    from the entry's error too; of two entries for one account the latest is kept."""
    url, sep, team = key.rpartition("|team=")
    if sep and redact_url(url) != url:
        key = f"{redact_url(url)}|team={team}"
        raw = dict(raw)
        if isinstance(raw.get("error"), str):
            raw["error"] = redact(raw["error"], url_secrets(url))
    if key not in accounts or _last_used(raw) >= _last_used(accounts[key]):
        accounts[key] = raw


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _entry(raw: Mapping[str, Any]) -> Entry:
    items = raw.get("models")
    fetched_at = _number(raw.get("fetched_at"))
    models: tuple[ModelInfo, ...] = ()
    if isinstance(items, list):
        models = tuple(parse_models(items)[0])
    else:
        fetched_at = None  # a list-less entry is only a failure record
    error = raw.get("error")
    return Entry(
        models=models,
        fetched_at=fetched_at,
        failed_at=_number(raw.get("failed_at")),
        retry_at=_number(raw.get("retry_at")),
        error=error if isinstance(error, str) else None,
    )


def _api_object(model: ModelInfo) -> dict[str, Any]:
    """What is stored for a model: the API's own object (kept by ModelInfo.from_api), so a
    later parser sees every field."""
    return dict(model.raw) or {"id": model.id, "owned_by": model.owned_by}


class Catalog:
    """The cached model list of one account (settings.account) in one cache file."""

    def __init__(
        self,
        path: Path | str,
        settings: Settings,
        *,
        fetch: Fetcher = fetch_models,
        ttl: float | None = None,
        backoff: float = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.settings = settings
        self.account = settings.account
        self.fetch = fetch
        self.ttl = cache_ttl() if ttl is None else ttl
        self.backoff = backoff
        self.clock = clock

    def cached(self) -> Entry | None:
        """This account's entry in the file, parsed once per file version; None if absent."""
        state = _load_file(self.path)
        with _lock:
            entry = state.parsed.get(self.account)
        if entry is not None:
            return entry
        raw = state.accounts.get(self.account)
        if raw is None:
            return None
        entry = _entry(raw)
        with _lock:
            state.parsed[self.account] = entry
        return entry

    def is_fresh(self, entry: Entry | None, now: float) -> bool:
        if entry is None or entry.fetched_at is None:
            return False
        age = now - entry.fetched_at
        return 0 <= age < self.ttl  # a timestamp from the future (clock change) is stale

    def backing_off(self, entry: Entry | None, now: float) -> bool:
        retry_at = _retry_at.get((str(self.path), self.account))
        if entry is not None and entry.retry_at is not None:
            retry_at = max(retry_at or 0.0, entry.retry_at)
        # A retry time further away than the longest back-off means the clock moved: ignore.
        return retry_at is not None and now < retry_at <= now + MAX_BACKOFF

    def get(self, *, respect_backoff: bool = True) -> Lookup:
        """The models for this account: cached if fresh, else fetched; on a failed fetch the
        stale list (maybe empty) with the error. Raises only for unexpected bugs."""
        entry = self.cached()
        now = self.clock()
        if self.is_fresh(entry, now):
            assert entry is not None
            return Lookup(entry.models, Source.FRESH, fetched_at=entry.fetched_at)
        if respect_backoff and self.backing_off(entry, now):
            return self._fallback(entry, None)
        try:
            models = self._scrub(self.fetch(self.settings))
        except PinferenceError as exc:
            retry_at = self._record_failure(entry, exc, now)
            return self._fallback(entry, exc)._replace(retry_at=retry_at)
        self._store(Entry(models=models, fetched_at=now))
        return Lookup(models, Source.FETCHED, fetched_at=now)

    def refresh(self) -> Refresh:
        """Fetch now, whatever the TTL and back-off; raises PinferenceError on failure."""
        entry = self.cached()
        now = self.clock()
        try:
            models = self._scrub(self.fetch(self.settings))
        except PinferenceError as exc:
            self._record_failure(entry, exc, now)
            raise
        saved = self._store(Entry(models=models, fetched_at=now))
        before = entry.models if entry is not None and entry.has_list else ()
        return Refresh(
            before=before,
            after=models,
            had_cache=entry is not None and entry.has_list,
            saved=saved,
        )

    def _scrub(self, models: list[ModelInfo]) -> tuple[ModelInfo, ...]:
        """Models without the key or the URL's credentials in their data. The client has
        already removed them; this also holds for any other fetch function."""
        scrubbed = []
        for model in models:
            raw = _api_object(model)
            clean = redact_data(raw, self.settings.secrets)
            scrubbed.append((ModelInfo.from_api(clean) or model) if clean != raw else model)
        return tuple(scrubbed)

    def _fallback(self, entry: Entry | None, error: PinferenceError | None) -> Lookup:
        if entry is not None and entry.has_list:
            return Lookup(entry.models, Source.STALE, error, fetched_at=entry.fetched_at)
        return Lookup((), Source.NONE, error)

    def _record_failure(self, entry: Entry | None, exc: PinferenceError, now: float) -> float:
        wait = max(self.backoff, min(exc.retry_after or 0.0, MAX_BACKOFF))
        with _lock:
            _retry_at[(str(self.path), self.account)] = now + wait
        old = entry or Entry()
        self._store(
            Entry(
                models=old.models,
                fetched_at=old.fetched_at,
                failed_at=now,
                retry_at=now + wait,
                error=one_line(str(exc)),
            )
        )
        return now + wait

    def _store(self, entry: Entry) -> bool:
        """Write this account's entry (keeping other accounts); False if the write failed."""
        from .filelock import locked  # writes only: lookups of a warm cache never need it

        if entry.error is None:
            with _lock:
                _retry_at.pop((str(self.path), self.account), None)
        with locked(self.path.with_name(self.path.name + LOCK_SUFFIX)):
            return self._merge_and_write(entry)

    def _merge_and_write(self, entry: Entry) -> bool:
        # Read afresh under the lock (not through the memo): another process may have
        # added its account a moment ago.
        accounts = _decode(self.path)
        accounts.pop(self.account, None)
        accounts = _prune(accounts, MAX_ACCOUNTS - 1)
        accounts[self.account] = {
            "fetched_at": entry.fetched_at,
            "models": [_api_object(m) for m in entry.models] if entry.has_list else None,
            "failed_at": entry.failed_at,
            "retry_at": entry.retry_at,
            "error": entry.error,
        }
        document = {"format": FORMAT, "version": VERSION, "accounts": accounts}
        try:
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
            # Belt and braces: nothing we store should hold a secret, but make sure of it.
            text = redact(text, self.settings.secrets)
            # A lone surrogate (JSON from the API may hold one) has no UTF-8 form: written
            # as `\udXXX`, which inside a JSON string is that very character again.
            identity = _atomic_write(self.path, text.encode("utf-8", "backslashreplace"))
        except (OSError, ValueError, RecursionError):
            return False
        new_state = _FileState(identity, accounts, {})
        new_state.parsed[self.account] = entry
        with _lock:
            _memo[str(self.path)] = new_state
        return True


def _last_used(raw: Mapping[str, Any]) -> float:
    return max(_number(raw.get("fetched_at")) or 0.0, _number(raw.get("failed_at")) or 0.0)


def _prune(accounts: dict[str, dict[str, Any]], keep: int) -> dict[str, dict[str, Any]]:
    if len(accounts) <= keep:
        return accounts
    ranked = sorted(accounts.items(), key=lambda item: _last_used(item[1]), reverse=True)
    return dict(ranked[: max(keep, 0)])


def _atomic_write(path: Path, data: bytes) -> tuple[int, int, int] | None:
    """Write via a temp file in the same directory and os.replace: readers never see half
    a file, and concurrent writers each leave a whole one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return _identity(path)
