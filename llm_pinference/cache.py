"""The plugin's model-list cache: one JSON file in llm's directory, an entry per account
(base URL + team, never the key), fresh for a TTL, with a back-off after a failed fetch
during which the stale list is served.

llm runs the hooks on every command, so a warm cache never touches the network, and the
file is read once per process while it is unchanged (mtime, size, inode). Each entry keeps
the API's model objects as JSON text (parsed only when a command needs a model's details)
and one registration record per model (registration.py), which is all the hooks read:

    {"format": "llm-pinference/models-cache", "version": 2,
     "accounts": {"<account>": {"fetched_at": float | null, "models": "<JSON text>",
                                "records": [[id, line, capabilities, options], ...],
                                "retry_at": float | null}}}

Change what a record holds and bump VERSION: a file of another version is not read, and
the next fetch replaces it. Writes replace the file whole (a reader never sees half of
it); two processes writing at the same instant may drop each other's entry, which that
account then fetches again. No llm import: the caller passes the path.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.errors import PinferenceError
from .core.settings import Settings

if TYPE_CHECKING:  # parsed only when a list is fetched or its models are needed
    from .core.models import ModelInfo

CACHE_FILENAME = "pinference_models.json"
FORMAT = "llm-pinference/models-cache"
VERSION = 2
TTL_ENV = "LLM_PINFERENCE_CACHE_TTL"
DEFAULT_TTL = 3600.0
#: After a failed fetch, no new attempt for this long (an offline machine must not pay a
#: timeout on every command). A longer Retry-After from a 429 is honoured up to MAX_BACKOFF.
DEFAULT_BACKOFF = 300.0
MAX_BACKOFF = 3600.0
#: Accounts kept in the file; the least recently written beyond this are dropped.
MAX_ACCOUNTS = 8
#: The plugin's fetch: a user is waiting for `llm` to start. At most 2 s to connect and
#: 5 s for the whole exchange, however slowly the server sends.
CONNECT_TIMEOUT = 2.0
TOTAL_TIMEOUT = 5.0

Fetcher = Callable[[Settings], "list[ModelInfo]"]


def cache_ttl(env: Mapping[str, str] = os.environ) -> float:
    """The TTL in seconds: LLM_PINFERENCE_CACHE_TTL when it is a number >= 0, else 1 hour."""
    try:
        ttl = float(env.get(TTL_ENV, ""))
    except ValueError:
        return DEFAULT_TTL
    return ttl if ttl >= 0 else DEFAULT_TTL  # NaN fails the comparison too


def fetch_models(settings: Settings) -> list[ModelInfo]:
    """GET /models with the plugin's short timeouts; raises PinferenceError."""
    from .core.client import PinferenceClient

    with PinferenceClient(
        settings,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=TOTAL_TIMEOUT,
        total_timeout=TOTAL_TIMEOUT,
    ) as client:
        return client.list_models().models


# Plain classes with __slots__, not dataclasses: llm imports this whenever it lists models,
# and a dataclass costs about ten times more to define.


class Entry:
    """One account's cached list (fetched_at None: no list, only a back-off)."""

    __slots__ = ("_models", "fetched_at", "records", "retry_at", "text")

    def __init__(
        self,
        fetched_at: float | None,
        text: str = "[]",
        records: list[Any] | None = None,
        retry_at: float | None = None,
        models: tuple[ModelInfo, ...] | None = None,
    ) -> None:
        self.fetched_at = fetched_at
        self.text = text  # the API's model objects, as JSON text
        self.records = records or []
        self.retry_at = retry_at
        self._models = models

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        if self._models is None:
            from .core.models import parse_models

            try:
                objects = json.loads(self.text)
            except (ValueError, RecursionError):
                objects = None
            self._models = tuple(parse_models(objects if isinstance(objects, list) else [])[0])
        return self._models


def _fetched(models: tuple[ModelInfo, ...], now: float) -> Entry:
    """A new list, with what is stored for it: each model's API object (kept by
    ModelInfo.from_api, so a later parser sees every field) and its record."""
    from .registration import record

    objects = [dict(m.raw) or {"id": m.id, "owned_by": m.owned_by} for m in models]
    return Entry(now, json.dumps(objects), [record(m) for m in models], models=models)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _entry(raw: Mapping[str, Any]) -> Entry:
    text, records, retry_at = raw.get("models"), raw.get("records"), _number(raw.get("retry_at"))
    if not (isinstance(text, str) and isinstance(records, list)):
        return Entry(None, retry_at=retry_at)
    return Entry(_number(raw.get("fetched_at")), text, records, retry_at)


class Lookup:
    """What a lookup found: the entry (None: no list), where it came from ("fresh": the
    cache within its TTL; "fetched"; "stale": the cache, a fetch failed or is backing off;
    "none"), the failure when a fetch was tried now, and the next attempt's time."""

    __slots__ = ("entry", "error", "retry_at", "source")

    def __init__(
        self,
        entry: Entry | None,
        source: str,
        error: PinferenceError | None = None,
        retry_at: float | None = None,
    ) -> None:
        self.entry, self.source, self.error, self.retry_at = entry, source, error, retry_at

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        return self.entry.models if self.entry else ()

    @property
    def records(self) -> list[Any]:
        return self.entry.records if self.entry else []

    @property
    def fetched_at(self) -> float | None:
        return self.entry.fetched_at if self.entry else None


Identity = tuple[int, int, int]
#: Per cache file: its identity when read, its accounts, and the entries parsed so far.
_memo: dict[str, tuple[Identity | None, dict[str, Any], dict[str, Entry]]] = {}
#: In-process back-off, so a cache file that cannot be written still stops retries.
_retry_at: dict[tuple[str, str], float] = {}


def reset_process_state() -> None:
    """Forget the in-process memo and back-off (tests, and long-lived processes)."""
    _memo.clear()
    _retry_at.clear()


def _identity(path: Path) -> Identity | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read(path: Path) -> dict[str, Any]:
    """The file's accounts; none if it is missing, corrupt or not ours."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or (data.get("format"), data.get("version")) != (FORMAT, VERSION):
        return {}
    accounts = data.get("accounts")
    return accounts if isinstance(accounts, dict) else {}


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
        """This account's entry, parsed once per version of the file; None if absent."""
        key, identity = str(self.path), _identity(self.path)
        memo = _memo.get(key)
        if memo is None or memo[0] != identity:
            memo = _memo[key] = (identity, _read(self.path) if identity else {}, {})
        raw, entries = memo[1].get(self.account), memo[2]
        if self.account not in entries and isinstance(raw, dict):
            entries[self.account] = _entry(raw)
        return entries.get(self.account)

    def get(self, *, fetch: bool = True, respect_backoff: bool = True) -> Lookup:
        """The list: cached if fresh, else fetched; on a failed fetch (or during the
        back-off) the stale list, if any, with the error. Without `fetch`: the cached list
        at any age, and no request."""
        entry, now = self.cached(), self.clock()
        listed = entry if entry is not None and entry.fetched_at is not None else None
        if listed is not None and 0 <= now - listed.fetched_at < self.ttl:
            return Lookup(listed, "fresh")  # a time from the future (clock change) is stale
        old = "stale" if listed else "none"
        if not fetch or (respect_backoff and self._backing_off(entry, now)):
            return Lookup(listed, old)
        try:
            fetched = _fetched(tuple(self.fetch(self.settings)), now)
        except PinferenceError as exc:
            retry_at = self._failed(exc, now)
            return Lookup(listed, old, exc, retry_at)
        self._write(fetched)
        return Lookup(fetched, "fetched")

    def refresh(self) -> tuple[tuple[ModelInfo, ...] | None, tuple[ModelInfo, ...], bool]:
        """Fetch now, whatever the TTL and back-off: the list before (None: there was
        none), the list now, and whether it was saved. Raises PinferenceError."""
        entry, now = self.cached(), self.clock()
        try:
            fetched = _fetched(tuple(self.fetch(self.settings)), now)
        except PinferenceError as exc:
            self._failed(exc, now)
            raise
        before = entry.models if entry is not None and entry.fetched_at is not None else None
        return before, fetched.models, self._write(fetched)

    def _backing_off(self, entry: Entry | None, now: float) -> bool:
        retry_at = _retry_at.get((str(self.path), self.account), 0.0)
        if entry is not None and entry.retry_at is not None:
            retry_at = max(retry_at, entry.retry_at)
        # A retry time further away than the longest back-off means the clock moved: ignore.
        return now < retry_at <= now + MAX_BACKOFF

    def _failed(self, exc: PinferenceError, now: float) -> float:
        retry_at = now + max(self.backoff, min(exc.retry_after or 0.0, MAX_BACKOFF))
        _retry_at[(str(self.path), self.account)] = retry_at
        self._write(None, retry_at)
        return retry_at

    def _write(self, entry: Entry | None, retry_at: float | None = None) -> bool:
        """Store this account's new list, or a back-off beside the list the file holds
        (read afresh: another process may have added its account); other accounts are
        kept, the least recently written dropped. False if the write failed."""
        if entry is not None:
            _retry_at.pop((str(self.path), self.account), None)
        accounts = _read(self.path)
        previous = accounts.pop(self.account, None)
        if entry is not None:
            stored = {
                "fetched_at": entry.fetched_at,
                "models": entry.text,
                "records": entry.records,
                "retry_at": None,
            }
        else:
            stored = {**(previous if isinstance(previous, dict) else {}), "retry_at": retry_at}
        accounts = dict(list(accounts.items())[1 - MAX_ACCOUNTS :])  # in order of writing
        accounts[self.account] = stored
        document = {"format": FORMAT, "version": VERSION, "accounts": accounts}
        try:
            _atomic_write(self.path, json.dumps(document, separators=(",", ":")).encode())
        except (OSError, ValueError, RecursionError):
            return False
        return True


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a temp file in the same directory, then os.replace it: readers never see half
    a file, and concurrent writers each leave a whole one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
