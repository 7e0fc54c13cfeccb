"""The plugin's on-disk model-list cache: per account, with a TTL, a failure back-off and
a stale fallback.

llm resolves models on every prompt and every `llm.get_model()`, so this module is on the
hot path: a warm cache never touches the network, and what was read is memoised in-process
keyed by the file's identity (mtime, size, inode) so repeated lookups do not re-read it.

One file for every account (an account is base URL + team, never the key):

    {"format": "llm-pinference/models-cache", "version": 1,
     "accounts": {"<account>": {"fetched_at": 1700000000.0 | null,
                                "models": "<the API's model objects, as JSON text>",
                                "records": [<RecordFormat.version>, [<record>, ...]],
                                "failed_at": float | null, "retry_at": float | null,
                                "error": "<one line>" | null}}}

`records`, written when the caller gives a `RecordFormat` (the llm plugin does), holds
what registering each model needs, ready to use: the hooks read it and parse no API
object. Records of another version (another release of the plugin) are derived afresh
from the API objects in memory, until the next fetch writes them. The API objects are kept
as JSON text inside the file (a list, as written before, is read too): reading the file
then builds no object for them, a fifth of the cost of the file with them as JSON values.

This module does not import llm: the caller passes the cache path (and the record format).
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
from typing import TYPE_CHECKING, Any, NamedTuple

from .core.errors import PinferenceError
from .core.settings import Settings
from .core.text import one_line

if TYPE_CHECKING:  # parsed only when a list is fetched or its models are needed
    from .core.models import ModelInfo

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

Fetcher = Callable[[Settings], "list[ModelInfo]"]
Identity = tuple[int, int, int]


class RecordFormat:
    """What a front end keeps per model, ready for its hot path: `derive(model)` gives a
    model's record (JSON data) and `version` names that derivation (records of another
    version are derived afresh)."""

    __slots__ = ("derive", "version")

    def __init__(self, version: int, derive: Callable[[ModelInfo], list[Any]]) -> None:
        self.version = version
        self.derive = derive


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
    """GET /models with the plugin's short timeouts; raises PinferenceError. The client
    removes the key and the URL's credentials from what it returns (where data enters)."""
    from .core.client import PinferenceClient

    with PinferenceClient(
        settings,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        total_timeout=TOTAL_TIMEOUT,
    ) as client:
        return client.list_models().models


# Plain classes with __slots__ (and NamedTuples where callers compare or unpack them), not
# dataclasses: llm imports this whenever it lists models, and a dataclass costs about ten
# times more to define (a NamedTuple three times more than a plain class).


class Entry:
    """One account's cached list and its last failure (if any). The list is parsed on
    first use of `models`, from the API objects as stored."""

    __slots__ = (
        "_by_id",
        "_models",
        "_objects",
        "_records",
        "error",
        "failed_at",
        "fetched_at",
        "retry_at",
    )

    def __init__(
        self,
        models: tuple[ModelInfo, ...] = (),
        fetched_at: float | None = None,
        failed_at: float | None = None,
        retry_at: float | None = None,
        error: str | None = None,
        *,
        objects: list[Any] | str | None = None,
        records: Any = None,
    ) -> None:
        self.fetched_at = fetched_at
        self.failed_at = failed_at
        self.retry_at = retry_at
        self.error = error
        self._models: tuple[ModelInfo, ...] | None = None if objects is not None else models
        self._objects = objects  # the API objects as stored (JSON text, or a list)
        self._records = records  # [version, records] as stored, or as derived
        self._by_id: dict[str, ModelInfo] | None = None

    @property
    def has_list(self) -> bool:
        return self.fetched_at is not None

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        if self._models is None:
            from .core.models import parse_models

            self._models = tuple(parse_models(self.api_objects())[0])
        return self._models

    def model(self, model_id: str) -> ModelInfo | None:
        """One model of the list by id (the list is parsed once)."""
        if self._by_id is None:
            self._by_id = {m.id: m for m in self.models}
        return self._by_id.get(model_id)

    def api_objects(self) -> list[Any]:
        """What is stored for the list: the API's own objects, so a later parser sees every
        field (the stored ones as they are, without parsing them)."""
        if self._objects is None:
            self._objects = [_api_object(m) for m in self.models]
        elif isinstance(self._objects, str):
            try:
                objects = json.loads(self._objects)
            except (ValueError, RecursionError):
                objects = None
            self._objects = objects if isinstance(objects, list) else []
        return self._objects

    def records(self, fmt: RecordFormat) -> list[Any]:
        """One record per model: as stored when of this format's version, else derived now
        (and kept for this entry)."""
        stored = self._records
        if (
            isinstance(stored, list)
            and len(stored) == 2
            and stored[0] == fmt.version
            and isinstance(stored[1], list)
        ):
            return stored[1]
        derived = [fmt.derive(m) for m in self.models] if self.has_list else []
        self._records = [fmt.version, derived]
        return derived


class Source(str, enum.Enum):
    """Where a lookup's models came from. A str: `source == "stale"` holds too."""

    FRESH = "fresh"  # the cache, within its TTL
    FETCHED = "fetched"  # the API, just now
    STALE = "stale"  # the cache past its TTL: a fetch failed or is backing off
    NONE = "none"  # nothing: no cache, and no fetch succeeded

    def __str__(self) -> str:
        return self.value


class Lookup(NamedTuple):
    """What a lookup found: the models and how they were obtained."""

    models: tuple[ModelInfo, ...]
    source: Source
    error: PinferenceError | None = None  # set only when a fetch was tried and failed
    fetched_at: float | None = None
    retry_at: float | None = None  # after a failure: no new attempt before this time


class Listing:
    """What the hooks get: a lookup with each model's record instead of the model, and the
    entry they come from (its `model(id)` parses the list, when a model's details are
    wanted)."""

    __slots__ = ("entry", "error", "fetched_at", "records", "retry_at", "source")

    def __init__(
        self,
        records: list[Any],
        source: Source,
        error: PinferenceError | None = None,
        *,
        entry: Entry | None = None,
        fetched_at: float | None = None,
        retry_at: float | None = None,
    ) -> None:
        self.records = records
        self.source = source
        self.error = error  # set only when a fetch was tried and failed
        self.entry = entry
        self.fetched_at = fetched_at
        self.retry_at = retry_at  # after a failure: no new attempt before this time


class Refresh:
    """What `Catalog.refresh()` did: the list before and after, and whether it was saved."""

    __slots__ = ("after", "before", "had_cache", "saved")

    def __init__(
        self,
        before: tuple[ModelInfo, ...],
        after: tuple[ModelInfo, ...],
        had_cache: bool,
        saved: bool,
    ) -> None:
        self.before = before
        self.after = after
        self.had_cache = had_cache
        self.saved = saved

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


class _FileState:
    """One read of the cache file, memoised in-process while the file is unchanged."""

    __slots__ = ("accounts", "identity", "parsed")

    def __init__(self, identity: Identity | None, accounts: dict[str, dict[str, Any]]) -> None:
        self.identity = identity
        self.accounts = accounts
        self.parsed: dict[str, Entry] = {}  # accounts parsed so far

    def entry(self, account: str) -> Entry | None:
        """The account's entry, parsed once; None if absent."""
        with _lock:
            entry = self.parsed.get(account)
        raw = self.accounts.get(account)
        if entry is None and raw is not None:
            entry = _entry(raw)
            with _lock:
                self.parsed[account] = entry
        return entry


_lock = threading.Lock()
_memo: dict[str, _FileState] = {}
#: In-process back-off, so a cache file that cannot be written still stops retries.
_retry_at: dict[tuple[str, str], float] = {}


def reset_process_state() -> None:
    """Forget the in-process memo and back-off (tests, and long-lived processes)."""
    with _lock:
        _memo.clear()
        _retry_at.clear()


def _identity(path: Path) -> Identity | None:
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
    state = _FileState(identity, _decode(path) if identity is not None else {})
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
    return {k: v for k, v in data["accounts"].items() if isinstance(v, dict)}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _entry(raw: Mapping[str, Any]) -> Entry:
    items = raw.get("models")
    fetched_at = _number(raw.get("fetched_at"))
    if not isinstance(items, (list, str)):
        items = []
        fetched_at = None  # a list-less entry is only a failure record
    error = raw.get("error")
    return Entry(
        fetched_at=fetched_at,
        failed_at=_number(raw.get("failed_at")),
        retry_at=_number(raw.get("retry_at")),
        error=error if isinstance(error, str) else None,
        objects=items,
        records=raw.get("records"),
    )


def _api_object(model: ModelInfo) -> dict[str, Any]:
    """What is stored for a model: the API's own object (kept by ModelInfo.from_api), so a
    later parser sees every field."""
    return dict(model.raw) or {"id": model.id, "owned_by": model.owned_by}


class Catalog:
    """The cached model list of one account (settings.account) in one cache file. With
    `records`, every list written carries its registration records, and `listing()` reads
    them."""

    def __init__(
        self,
        path: Path | str,
        settings: Settings,
        *,
        fetch: Fetcher = fetch_models,
        ttl: float | None = None,
        backoff: float = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
        records: RecordFormat | None = None,
    ) -> None:
        self.path = Path(path)
        self.settings = settings
        self.account = settings.account
        self.fetch = fetch
        self.ttl = cache_ttl() if ttl is None else ttl
        self.backoff = backoff
        self.clock = clock
        self.records = records

    def cached(self) -> Entry | None:
        """This account's entry in the file, parsed once per file version; None if absent."""
        return _load_file(self.path).entry(self.account)

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
        entry, source, error, retry_at = self._resolve(self.cached(), respect_backoff)
        if entry is None:
            return Lookup((), source, error, retry_at=retry_at)
        return Lookup(entry.models, source, error, entry.fetched_at, retry_at)

    def listing(self, *, fetch: bool = True) -> Listing:
        """What `get()` finds, as records of this catalog's format (no API object is parsed
        while the stored records are of this version). Without `fetch`: the cached list at
        any age, and no request."""
        fmt = self.records
        if fmt is None:
            raise ValueError("a listing needs a record format")
        entry = self.cached()
        if fetch:
            entry, source, error, retry_at = self._resolve(entry, respect_backoff=True)
        else:
            error, retry_at = None, None
            if entry is None or not entry.has_list:
                entry, source = None, Source.NONE
            else:
                fresh = self.is_fresh(entry, self.clock())
                source = Source.FRESH if fresh else Source.STALE
        if entry is None:
            return Listing([], source, error, retry_at=retry_at)
        return Listing(
            entry.records(fmt),
            source,
            error,
            entry=entry,
            fetched_at=entry.fetched_at,
            retry_at=retry_at,
        )

    def _resolve(
        self, entry: Entry | None, respect_backoff: bool
    ) -> tuple[Entry | None, Source, PinferenceError | None, float | None]:
        """The entry to use (None: no list), where it came from, the failure if a fetch
        failed, and when the next attempt may be made."""
        now = self.clock()
        if self.is_fresh(entry, now):
            return entry, Source.FRESH, None, None
        if respect_backoff and self.backing_off(entry, now):
            return self._fallback(entry, None, None)
        try:
            models = tuple(self.fetch(self.settings))
        except PinferenceError as exc:
            retry_at = self._record_failure(exc, now)
            return self._fallback(entry, exc, retry_at)
        fetched = Entry(models=models, fetched_at=now)
        self._store(fetched)
        return fetched, Source.FETCHED, None, None

    def refresh(self) -> Refresh:
        """Fetch now, whatever the TTL and back-off; raises PinferenceError on failure."""
        entry = self.cached()
        now = self.clock()
        try:
            models = tuple(self.fetch(self.settings))
        except PinferenceError as exc:
            self._record_failure(exc, now)
            raise
        saved = self._store(Entry(models=models, fetched_at=now))
        before = entry.models if entry is not None and entry.has_list else ()
        return Refresh(
            before=before,
            after=models,
            had_cache=entry is not None and entry.has_list,
            saved=saved,
        )

    @staticmethod
    def _fallback(
        entry: Entry | None, error: PinferenceError | None, retry_at: float | None
    ) -> tuple[Entry | None, Source, PinferenceError | None, float | None]:
        if entry is not None and entry.has_list:
            return entry, Source.STALE, error, retry_at
        return None, Source.NONE, error, retry_at

    def _record_failure(self, exc: PinferenceError, now: float) -> float:
        wait = max(self.backoff, min(exc.retry_after or 0.0, MAX_BACKOFF))
        with _lock:
            _retry_at[(str(self.path), self.account)] = now + wait
        self._store(None, failure=(now, now + wait, one_line(str(exc))))
        return now + wait

    def _store(
        self, entry: Entry | None, *, failure: tuple[float, float, str] | None = None
    ) -> bool:
        """Write this account's new list, or a failure (failed_at, retry_at, error) beside
        the list the file holds; other accounts are kept. False if the write failed."""
        from .filelock import locked  # writes only: lookups of a warm cache never need it

        if failure is None:
            with _lock:
                _retry_at.pop((str(self.path), self.account), None)
        with locked(self.path.with_name(self.path.name + LOCK_SUFFIX)):
            # Read afresh under the lock (not through the memo): another process may have
            # added its account a moment ago.
            accounts = _decode(self.path)
            previous = accounts.pop(self.account, None)
            accounts = _prune(accounts, MAX_ACCOUNTS - 1)
            if entry is not None:
                stored: dict[str, Any] = {
                    "fetched_at": entry.fetched_at,
                    "models": json.dumps(entry.api_objects()) if entry.has_list else None,
                    "failed_at": entry.failed_at,
                    "retry_at": entry.retry_at,
                    "error": entry.error,
                }
                if self.records is not None and entry.has_list:
                    stored["records"] = [self.records.version, entry.records(self.records)]
            else:
                assert failure is not None
                stored = dict(previous or {"fetched_at": None, "models": None})
                stored["failed_at"], stored["retry_at"], stored["error"] = failure
                entry = _entry(stored)
            accounts[self.account] = stored
            document = {"format": FORMAT, "version": VERSION, "accounts": accounts}
            try:
                text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
                # A lone surrogate (JSON from the API may hold one) has no UTF-8 form:
                # written as `\udXXX`, which inside a JSON string is that very character.
                identity = _atomic_write(self.path, text.encode("utf-8", "backslashreplace"))
            except (OSError, ValueError, RecursionError):
                return False
        state = _FileState(identity, accounts)
        state.parsed[self.account] = entry
        with _lock:
            _memo[str(self.path)] = state
        return True


def _last_used(raw: Mapping[str, Any]) -> float:
    return max(_number(raw.get("fetched_at")) or 0.0, _number(raw.get("failed_at")) or 0.0)


def _prune(accounts: dict[str, dict[str, Any]], keep: int) -> dict[str, dict[str, Any]]:
    if len(accounts) <= keep:
        return accounts
    ranked = sorted(accounts.items(), key=lambda item: _last_used(item[1]), reverse=True)
    return dict(ranked[: max(keep, 0)])


def _atomic_write(path: Path, data: bytes) -> Identity | None:
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
