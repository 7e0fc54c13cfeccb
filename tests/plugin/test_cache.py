"""The model-list cache: on its own (a fake fetch function and a fake clock: TTL, back-off,
accounts, damaged files, concurrent writers, the registration records beside each list),
then as llm users meet it (`llm models` against the fake server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llm
import pytest

from llm_pinference import cache as catalog
from llm_pinference import registration
from llm_pinference.cache import Catalog, cache_ttl
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.models import ModelInfo, parse_models
from llm_pinference.core.settings import Settings
from pinference_fake import (
    FakePinference,
    Fault,
    default_catalogue,
    generate_catalog,
    generate_catalogue,
)
from tests.plugin.helpers import (
    KEY,
    PRIVATE_MODEL,
    TEAM,
    Clock,
    cache_file,
    invoke,
    pinference_ids,
    read_cache,
    reset_state,
    set_cache_times,
    user_dir,
)
from tests.support import free_port as closed_port

BASE = "https://api.test/api/v1"


class Fetcher:
    """A stand-in for GET /models: returns `ids` (or, given `lists`, the list named by the
    base URL's last part) or raises `error`; counts calls."""

    def __init__(self, ids: list[str], lists: dict[str, list[str]] | None = None) -> None:
        self.ids, self.lists = ids, lists
        self.error: PinferenceError | None = None
        self.calls = 0

    def __call__(self, settings: Settings) -> list[ModelInfo]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.lists is None:
            return parse_models([{"id": i, "display_name": i.upper()} for i in self.ids])[0]
        # Built without an API object, as another fetch function would.
        name = settings.base_url.rsplit("/", 1)[-1]
        return [ModelInfo(id=i, owned_by=i.split("/")[0]) for i in self.lists.get(name, [])]


pytestmark = pytest.mark.usefixtures("fresh_cache")


def make(path: Path, fetch: Fetcher, clock: Clock, **kwargs: Any) -> Catalog:
    settings = kwargs.pop("settings", Settings(base_url=BASE))
    return Catalog(path, settings, fetch=fetch, clock=clock, ttl=kwargs.pop("ttl", 3600), **kwargs)


def ids(lookup: catalog.Lookup) -> list[str]:
    return [m.id for m in lookup.models]


def error(reason: Reason = Reason.CONNECTION_ERROR, **kwargs: Any) -> PinferenceError:
    return PinferenceError(reason, "cannot connect to the API", url=BASE, **kwargs)


def test_first_lookup_fetches_and_writes(path: Path) -> None:
    fetch, clock = Fetcher(["a/1", "b/2"]), Clock()
    lookup = make(path, fetch, clock).get()
    assert (lookup.source, ids(lookup), lookup.error) == ("fetched", ["a/1", "b/2"], None)
    data = json.loads(path.read_text())
    assert data["accounts"][f"{BASE}|team="]["fetched_at"] == clock.now
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_fresh_within_ttl_then_one_refetch(path: Path) -> None:
    fetch, clock = Fetcher(["a/1"]), Clock()
    make(path, fetch, clock).get()
    clock.now += 3599
    assert make(path, fetch, clock).get().source == "fresh"
    assert fetch.calls == 1
    clock.now += 2
    fetch.ids = ["a/1", "c/3"]
    lookup = make(path, fetch, clock).get()
    assert (lookup.source, ids(lookup)) == ("fetched", ["a/1", "c/3"])
    assert make(path, fetch, clock).get().source == "fresh"
    assert fetch.calls == 2


def test_a_cache_from_the_future_is_stale(path: Path) -> None:
    fetch, clock = Fetcher(["a/1"]), Clock()
    make(path, fetch, clock).get()
    clock.now -= 86400  # the clock was set back
    assert make(path, fetch, clock).get().source == "fetched"


def test_failure_gives_stale_list_and_backs_off(path: Path) -> None:
    fetch, clock = Fetcher(["a/1"]), Clock()
    make(path, fetch, clock).get()
    clock.now += 7200
    fetch.error = error()
    lookup = make(path, fetch, clock).get()
    assert (lookup.source, ids(lookup)) == ("stale", ["a/1"])
    assert lookup.error is fetch.error and lookup.fetched_at == clock.now - 7200
    catalog.reset_process_state()  # another process: the file carries the back-off
    clock.now += 299
    lookup = make(path, fetch, clock).get()
    assert (lookup.source, lookup.error, fetch.calls) == ("stale", None, 2)
    clock.now += 2
    fetch.error = None
    assert make(path, fetch, clock).get().source == "fetched"
    entry = json.loads(path.read_text())["accounts"][f"{BASE}|team="]
    assert entry["retry_at"] is None


def test_failure_without_a_cache(path: Path) -> None:
    fetch, clock = Fetcher(["a/1"]), Clock()
    fetch.error = error(Reason.TIMEOUT)
    lookup = make(path, fetch, clock).get()
    assert (lookup.source, lookup.models, lookup.error) == ("none", (), fetch.error)
    assert make(path, fetch, clock).get().source == "none"
    assert fetch.calls == 1


def test_retry_after_lengthens_the_backoff_up_to_a_cap(path: Path) -> None:
    fetch, clock = Fetcher(["a/1"]), Clock()
    fetch.error = error(Reason.RATE_LIMITED, status=429, retry_after=900)
    make(path, fetch, clock).get()
    clock.now += 899
    make(path, fetch, clock).get()
    assert fetch.calls == 1
    clock.now += 2
    make(path, fetch, clock).get()
    assert fetch.calls == 2
    fetch.error = error(Reason.RATE_LIMITED, status=429, retry_after=10**9)
    clock.now += 901
    make(path, fetch, clock).get()
    assert fetch.calls == 3
    entry = json.loads(path.read_text())["accounts"][f"{BASE}|team="]
    assert entry["retry_at"] == clock.now + catalog.MAX_BACKOFF


def test_a_backoff_beyond_the_cap_means_the_clock_moved(path: Path) -> None:
    fetch, clock = Fetcher(["a/1"]), Clock()
    fetch.error = error()
    make(path, fetch, clock).get()
    catalog.reset_process_state()
    clock.now -= 86400
    make(path, fetch, clock).get()
    assert fetch.calls == 2


def test_refresh_ignores_ttl_and_backoff(path: Path) -> None:
    fetch, clock = Fetcher(["a/1", "b/2"]), Clock()
    before, after, saved = make(path, fetch, clock).refresh()
    assert (before, [m.id for m in after], saved) == (None, ["a/1", "b/2"], True)
    fetch.ids = ["b/2", "c/3"]
    before, after, _ = make(path, fetch, clock).refresh()
    assert ([m.id for m in before or ()], [m.id for m in after]) == (["a/1", "b/2"], ["b/2", "c/3"])
    fetch.error = error()
    with pytest.raises(PinferenceError):
        make(path, fetch, clock).refresh()
    assert make(path, fetch, clock).get().source == "fresh"  # the list is kept


def write_entry(path: Path, entry: dict[str, Any], account: str = f"{BASE}|team=") -> None:
    document = {"format": catalog.FORMAT, "version": catalog.VERSION, "accounts": {account: entry}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def test_malformed_entries_are_tolerated(path: Path) -> None:
    bad_models = [{"id": "ok/1"}, {"no": "id"}, 42, {"id": "ok/1"}, {"id": ""}]
    entry = {"fetched_at": 1_800_000_000.0, "models": json.dumps(bad_models), "records": []}
    write_entry(path, entry)
    lookup = make(path, Fetcher([]), Clock()).get()
    assert (lookup.source, ids(lookup)) == ("fresh", ["ok/1"])


def test_parsed_list_is_memoised_until_the_file_changes(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetch, clock = Fetcher(["a/1"]), Clock()
    make(path, fetch, clock).get()
    catalog.reset_process_state()
    reads = []
    real = catalog._read
    monkeypatch.setattr(catalog, "_read", lambda p: reads.append(p) or real(p))
    for _ in range(5):
        assert make(path, fetch, clock).get().source == "fresh"
    assert len(reads) == 1
    other = Catalog(path, Settings(base_url=BASE), fetch=Fetcher(["z/9"]), clock=clock, ttl=0)
    other.get()  # a write reads the file afresh, and changes it: the next lookup reads it
    assert ids(make(path, fetch, clock).get()) == ["z/9"] and len(reads) == 3
    assert ids(make(path, fetch, clock).get()) == ["z/9"] and len(reads) == 3
    data = json.loads(path.read_text())
    data["accounts"][f"{BASE}|team="]["models"] = json.dumps([{"id": "edited/1"}])
    path.write_text(json.dumps(data))  # changed behind our back: read again
    assert ids(make(path, fetch, clock).get()) == ["edited/1"] and len(reads) == 4


def test_unwritable_cache_still_answers(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = blocker / catalog.CACHE_FILENAME
    fetch, clock = Fetcher(["a/1"]), Clock()
    assert ids(make(path, fetch, clock).get()) == ["a/1"]
    assert make(path, fetch, clock).refresh()[2] is False
    fetch.error = error()
    make(path, fetch, clock, ttl=0).get()
    make(path, fetch, clock, ttl=0).get()  # in-process back-off, though nothing was written
    assert fetch.calls == 3


def test_concurrent_writers_leave_a_whole_file(path: Path) -> None:
    # A reader reads while four writers write (big lists, so a write in place would be
    # caught half done); every read must be a whole cache file, and every writer must
    # finish without an error. (Two writes at the same instant may drop each other's
    # account: that account fetches again.)
    big = [f"vendor/model-{i:05d}-{'x' * 60}" for i in range(1500)]
    done = threading.Event()
    errors: list[BaseException] = []
    reads: list[int] = []

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported by the test, not lost in a thread
                errors.append(exc)

        return run

    def write(n: int) -> None:
        for i in range(8):
            settings = Settings(base_url=f"{BASE}/{n}")
            Catalog(path, settings, fetch=Fetcher([f"m/{i}", *big]), ttl=0).get()

    def read() -> None:
        while not done.is_set():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            assert json.loads(data)["format"] == catalog.FORMAT, "a partial file was seen"
            reads.append(len(data))

    writers = [threading.Thread(target=guarded(lambda n=n: write(n))) for n in range(4)]
    reader = threading.Thread(target=guarded(read))
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    done.set()
    reader.join(timeout=30)
    assert errors == []
    assert len(reads) > 10  # the reader really read during the writes
    accounts = json.loads(path.read_text())["accounts"]
    assert set(accounts) <= {f"{BASE}/{n}|team=" for n in range(4)}
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "value, ttl",
    [
        (None, 3600.0),
        ("", 3600.0),
        ("60", 60.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-1", 3600.0),
        ("soon", 3600.0),
        ("nan", 3600.0),
    ],
)
def test_ttl_from_env(value: str | None, ttl: float) -> None:
    env = {} if value is None else {catalog.TTL_ENV: value}
    assert cache_ttl(env) == ttl


def test_fetch_models_against_the_fake() -> None:
    with FakePinference(models=generate_catalog(25)) as fake:
        models = catalog.fetch_models(Settings(base_url=fake.base_url))
    assert len(models) == 25


def test_an_all_unusable_list_keeps_the_cached_one(path: Path) -> None:
    with FakePinference() as fake:
        settings = Settings(base_url=fake.base_url)
        clock = Clock()
        first = Catalog(path, settings, clock=clock, ttl=60).get()
        assert first.source == "fetched" and len(first.models) > 5
        # A 200 list with entries, none of them usable: not an empty catalog.
        fake.set_fault("list", Fault(body='{"object": "list", "data": [{"id": ""}, {"x": 1}]}'))
        clock.now += 120
        lookup = Catalog(path, settings, clock=clock, ttl=60).get()
    assert lookup.source == "stale" and lookup.models == first.models
    assert lookup.error is not None and lookup.error.reason is Reason.INVALID_RESPONSE
    stored = json.loads(path.read_text())["accounts"][settings.account]["models"]
    assert len(json.loads(stored)) > 5


def test_a_lone_surrogate_from_the_api_is_cached_and_read_back(path: Path) -> None:
    def fetch(_: Settings) -> list[ModelInfo]:
        return parse_models([{"id": "a/\ud800", "display_name": "bad \udfff name é"}])[0]

    clock = Clock()
    first = Catalog(path, Settings(base_url=BASE), fetch=fetch, clock=clock).get()
    assert first.source == "fetched"
    catalog.reset_process_state()  # another process reads the file
    lookup = make(path, Fetcher([]), clock)
    (model,) = lookup.get().models
    assert (model.id, model.display_name) == ("a/\ud800", "bad \udfff name é")
    assert lookup.get().source == "fresh"


# Edges found by `make mutation`: which account is dropped when the file is full, when a
# back-off starts and ends, files it must leave alone, writes that cannot happen in place.


def Api(**lists: list[str]) -> Fetcher:
    """GET /models for several accounts: each base URL's last part names its list."""
    return Fetcher([], lists)


def cache(path: Path, api: Fetcher, clock: Clock, name: str = "main", **kwargs: Any) -> Catalog:
    return make(path, api, clock, settings=Settings(base_url=f"{BASE}/{name}"), **kwargs)


def accounts(path: Path) -> set[str]:
    names = json.loads(path.read_text())["accounts"]
    return {key.split("|")[0].rsplit("/", 1)[-1] for key in names}


def test_the_least_recently_used_account_is_dropped(path: Path) -> None:
    """Recency, not names, decides; a failed fetch is a use too; refreshing an account
    of a full file drops nobody."""
    assert catalog.MAX_ACCOUNTS == 8
    listed = ["b", "h", "a", "g", "c", "f", "d"]  # used in this order, names unsorted
    api, clock = Api(**{name: [f"{name}/m"] for name in [*listed, "z"]}), Clock()
    for name in listed:
        clock.now += 1
        cache(path, api, clock, name).get()
    clock.now += 1
    offline = Api()
    offline.error = error()
    cache(path, offline, clock, "e").get()  # e: no list ever, but used just now
    assert accounts(path) == {*listed, "e"}
    clock.now += 1
    cache(path, api, clock, "b").refresh()  # b is recent again: h is now the oldest
    assert accounts(path) == {*listed, "e"}
    clock.now += 1
    cache(path, api, clock, "z").get()
    assert accounts(path) == {*listed, "e", "z"} - {"h"}


def test_a_successful_refresh_ends_the_backoff(path: Path) -> None:
    """`llm pinference refresh` after an outage: lookups fetch again once the list ages."""
    api, clock = Api(main=["a/1"]), Clock()
    api.error = error()
    cache(path, api, clock, ttl=60).get()
    clock.now += 10
    api.error = None
    assert cache(path, api, clock, ttl=60).refresh()[2] is True
    clock.now += 100  # past the TTL, still within the old back-off
    assert cache(path, api, clock, ttl=60).get().source == "fetched"
    assert api.calls == 3


def test_the_backoff_ends_at_its_retry_time(path: Path) -> None:
    api, clock = Api(main=["a/1"]), Clock()
    api.error = error()
    lookup = cache(path, api, clock, backoff=300).get()
    assert lookup.retry_at == clock.now + 300
    clock.now += 299.5
    cache(path, api, clock, backoff=300).get()
    assert api.calls == 1
    clock.now = lookup.retry_at
    cache(path, api, clock, backoff=300).get()
    assert api.calls == 2


def test_the_longest_backoff_is_honoured_not_taken_for_a_clock_change(path: Path) -> None:
    api, clock = Api(main=["a/1"]), Clock()
    api.error = error(retry_after=catalog.MAX_BACKOFF * 2)
    cache(path, api, clock).get()
    catalog.reset_process_state()  # the next command: only the file remembers
    cache(path, api, clock).get()
    assert api.calls == 1


def test_a_cache_of_another_version_is_left_unread(path: Path) -> None:
    path.parent.mkdir(parents=True)
    entry = {"fetched_at": 1_800_000_000.0, "models": '[{"id": "future/1"}]', "records": []}
    document = {"format": catalog.FORMAT, "version": catalog.VERSION + 1}
    path.write_text(json.dumps({**document, "accounts": {f"{BASE}/main|team=": entry}}))
    lookup = cache(path, Api(main=["a/1"]), Clock()).get()
    assert (lookup.source, [m.id for m in lookup.models]) == ("fetched", ["a/1"])


def test_a_timestamp_that_is_not_a_number_is_no_list(path: Path) -> None:
    """json reads NaN; a list of unknown age is not offered as a fallback (its age would
    read `nan`)."""
    path.parent.mkdir(parents=True)
    entry = '{"fetched_at": NaN, "models": "[{\\"id\\": \\"old/1\\"}]", "records": []}'
    path.write_text(
        f'{{"format": "{catalog.FORMAT}", "version": {catalog.VERSION}, '
        f'"accounts": {{"{BASE}/main|team=": {entry}}}}}'
    )
    api = Api()
    api.error = error()
    assert cache(path, api, Clock()).get().source == "none"


def test_models_from_any_fetch_function_survive_the_cache(path: Path) -> None:
    """Models built without an API object (another fetch function) are stored and read back."""
    api, clock = Api(main=["a/1", "b/2"]), Clock()
    assert cache(path, api, clock).refresh()[2] is True
    catalog.reset_process_state()
    lookup = cache(path, api, clock).get()
    assert (lookup.source, [(m.id, m.owned_by) for m in lookup.models]) == (
        "fresh",
        [("a/1", "a"), ("b/2", "b")],
    )


def test_a_temporary_directory_on_another_filesystem_changes_nothing(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TMPDIR is often a tmpfs: the cache is still replaced whole, from its own directory."""
    shm = Path("/dev/shm")
    path.parent.mkdir(parents=True)
    if not shm.is_dir() or shm.stat().st_dev == path.parent.stat().st_dev:
        pytest.skip("no second filesystem for the temporary directory")
    monkeypatch.setattr(tempfile, "tempdir", tempfile.mkdtemp(dir=shm))
    api, clock = Api(main=["a/1"]), Clock()
    assert cache(path, api, clock).refresh()[2] is True
    assert "a/1" in path.read_text()


def test_a_directory_in_the_cache_files_place(path: Path) -> None:
    """The lookup still answers; the write fails cleanly, leaving no temporary file."""
    path.mkdir(parents=True)
    api, clock = Api(main=["a/1"]), Clock()
    assert [m.id for m in cache(path, api, clock).get().models] == ["a/1"]
    assert cache(path, api, clock).refresh()[2] is False
    assert os.listdir(path.parent) == [path.name]


def test_the_plugins_fetch_gives_up_connecting_after_2_seconds(unaccepting_port: int) -> None:
    """`llm` waits at most 2 s for an unreachable API, not the client's default 3 s."""
    started = time.monotonic()
    with pytest.raises(PinferenceError) as info:
        catalog.fetch_models(Settings(base_url=f"http://127.0.0.1:{unaccepting_port}/v1"))
    elapsed = time.monotonic() - started
    assert info.value.reason is Reason.TIMEOUT
    # Not the client's default 3 s.
    assert catalog.CONNECT_TIMEOUT - 0.05 <= elapsed < catalog.CONNECT_TIMEOUT + 0.95, elapsed


# The registration records beside each list (what the hooks read)

NOW = Clock().now


def account(path: Path, url: str, fetch: Fetcher, **kwargs: Any) -> Catalog:
    return make(path, fetch, Clock(), settings=Settings(base_url=url), **kwargs)


def record_ids(listing: catalog.Lookup) -> list[str]:
    return [r[0] for r in listing.records]


def test_a_refetched_account_gets_the_new_lists_records(path: Path, parsed: list[object]) -> None:
    fetch = Fetcher(["a/1", "a/2"])
    assert record_ids(account(path, "https://a.test/v1", fetch).get()) == ["a/1", "a/2"]
    fetch.ids = ["a/2", "a/3"]
    # The same process (its memo) and a new one (the file) both see the new list's records.
    assert record_ids(account(path, "https://a.test/v1", fetch, ttl=0).get()) == ["a/2", "a/3"]
    catalog.reset_process_state()
    assert record_ids(account(path, "https://a.test/v1", Fetcher([])).get()) == ["a/2", "a/3"]


def test_another_accounts_write_keeps_the_first_accounts_records(
    path: Path, parsed: list[object]
) -> None:
    account(path, "https://a.test/v1", Fetcher(["a/1", "a/2"])).get()
    catalog.reset_process_state()  # another process adds its account
    parsed.clear()
    account(path, "https://b.test/v1", Fetcher(["b/1"])).get()
    assert [o["id"] for o in parsed] == ["b/1"]  # the fetch: a's list was not parsed again
    parsed.clear()
    catalog.reset_process_state()  # a new process
    listing = account(path, "https://a.test/v1", Fetcher([])).get()
    assert (listing.source, record_ids(listing)) == ("fresh", ["a/1", "a/2"])
    assert record_ids(account(path, "https://b.test/v1", Fetcher([])).get()) == ["b/1"]
    assert parsed == []  # neither list was parsed: both records came from the file


def test_a_failure_keeps_the_list_and_its_records(path: Path, parsed: list[object]) -> None:
    fetch = Fetcher(["a/1"])
    account(path, "https://a.test/v1", fetch).get()
    fetch.error = PinferenceError(Reason.SERVER_ERROR, "HTTP 503", status=503)
    catalog.reset_process_state()
    parsed.clear()
    failed = account(path, "https://a.test/v1", fetch, ttl=0).get()
    assert (failed.source, record_ids(failed), failed.error) == ("stale", ["a/1"], fetch.error)
    catalog.reset_process_state()
    backing_off = account(path, "https://a.test/v1", fetch, ttl=0).get()
    assert backing_off.source == "stale" and backing_off.error is None
    assert record_ids(backing_off) == ["a/1"]
    assert backing_off.retry_at is None and parsed == []
    entry = json.loads(path.read_text())["accounts"]["https://a.test/v1|team="]
    assert entry["retry_at"] == NOW + catalog.DEFAULT_BACKOFF


def test_without_fetch_the_list_is_used_at_any_age_and_nothing_is_sent(path: Path) -> None:
    fetch = Fetcher(["a/1"])
    account(path, "https://a.test/v1", fetch).get()
    fetch.error = PinferenceError(Reason.CONNECTION_ERROR, "cannot connect")
    old = account(path, "https://a.test/v1", fetch, ttl=0).get(fetch=False)
    assert (old.source, record_ids(old), old.error) == ("stale", ["a/1"], None)
    none = account(path, "https://other.test/v1", fetch).get(fetch=False)
    assert (none.source, none.records) == ("none", [])


# As llm users meet it: `llm models` and the commands through llm's CLI, with a key for
# the fake server (the hooks fetch the list).

configured = pytest.mark.usefixtures("configured")
ALL_IDS = sorted(m["id"] for m in default_catalogue())
WARNING = "llm-pinference: could not refresh the model list"


def listed() -> list[str]:
    result = invoke(["models"])
    assert result.exit_code == 0, result.output
    return sorted(pinference_ids(result.stdout))


@configured
def test_cache_file_format() -> None:
    listed()
    data = read_cache()
    assert data["format"] == "llm-pinference/models-cache" and data["version"] == 2
    (account,) = data["accounts"]
    assert account == f"{os.environ['PRIME_INFERENCE_URL']}|team="
    entry = data["accounts"][account]
    assert sorted(m["id"] for m in json.loads(entry["models"])) == ALL_IDS  # JSON text
    assert abs(entry["fetched_at"] - time.time()) < 600
    assert entry["retry_at"] is None
    assert not [p.name for p in user_dir().iterdir() if p.name.endswith(".tmp")]


@configured
def test_the_records_the_hooks_read() -> None:
    listed()
    (entry,) = read_cache()["accounts"].values()
    by_id = {r[0]: r for r in entry["records"]}
    assert sorted(by_id) == ALL_IDS
    sonnet = by_id["anthropic/claude-sonnet-4.5"]
    assert sonnet[1] == (
        "Pinference: pinference/anthropic/claude-sonnet-4.5 (Claude Sonnet 4.5, 200k context)"
    )
    assert sonnet[2] == registration.VISION | registration.TOOLS | registration.SCHEMA
    assert "reasoning_effort" in registration.names_of(sonnet[3])
    assert [p.name for p in user_dir().iterdir() if p.name.startswith("pinference")] == [
        catalog.CACHE_FILENAME
    ]  # one cache file


@configured
def test_a_warm_cache_sends_no_request_and_parses_no_api_object(
    fake: FakePinference, parsed: list[object]
) -> None:
    listed()
    parsed.clear()
    assert listed() == ALL_IDS  # the same process: its memo
    for _ in range(2):
        reset_state()  # a new llm process
        assert listed() == ALL_IDS
        assert llm.get_model("pinference/deepseek-chat").supports_tools is not None
    assert parsed == []
    assert len(fake.requests_for("list")) == 1


@configured
def test_ttl_from_the_environment(fake: FakePinference, monkeypatch: pytest.MonkeyPatch) -> None:
    listed()
    set_cache_times(fetched_at=time.time() - 120)
    listed()
    assert len(fake.requests_for("list")) == 1  # 2 minutes old: fresh for the 1 h default
    monkeypatch.setenv("LLM_PINFERENCE_CACHE_TTL", "60")
    listed()
    assert len(fake.requests_for("list")) == 2


@configured
def test_stale_list_with_a_single_warning(
    fake: FakePinference, capsys: pytest.CaptureFixture[str]
) -> None:
    listed()
    set_cache_times(fetched_at=time.time() - 7200)
    fake.set_fault("list", Fault(status=500))
    result = invoke(["models"])
    assert sorted(pinference_ids(result.stdout)) == ALL_IDS
    warnings = [line for line in result.stderr.splitlines() if line.startswith(WARNING)]
    assert len(warnings) == 1, result.stderr
    assert "Using the list cached 2 h ago; next try in 5 min" in warnings[0]
    assert "server_error (HTTP 500)" in warnings[0]
    # Same process, more lookups: no second request (the back-off)...
    llm.get_model("pinference/deepseek-chat")
    result = invoke(["models"])
    assert WARNING not in result.stderr
    assert len(fake.requests_for("list")) == 2
    # ...and when the back-off is over and the same failure comes back, no second warning.
    set_cache_times(retry_at=time.time() - 1)
    catalog.reset_process_state()  # the in-process back-off and memo, not the notices
    capsys.readouterr()
    llm.get_model("pinference/deepseek-chat")
    result = invoke(["models"])
    assert len(fake.requests_for("list")) == 3  # it failed again
    assert sorted(pinference_ids(result.stdout)) == ALL_IDS
    assert WARNING not in capsys.readouterr().err + result.stderr


@configured
def test_backoff_stops_retries_and_warnings_across_processes(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=503))
    result = invoke(["models"])
    assert WARNING in result.stderr and "No Pinference models until then" in result.stderr
    assert pinference_ids(result.stdout) == []
    entry = next(iter(read_cache()["accounts"].values()))
    assert 250 < entry["retry_at"] - time.time() <= 300

    reset_state()  # a new llm process: only the file remembers
    result = invoke(["models"])
    assert result.exit_code == 0 and WARNING not in result.stderr
    assert len(fake.requests_for("list")) == 1

    fake.clear_faults()
    set_cache_times(retry_at=time.time() - 1)  # the back-off is over
    assert listed() == ALL_IDS
    assert len(fake.requests_for("list")) == 2


@configured
def test_backoff_honours_a_long_retry_after(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=429, retry_after="1200"))
    result = invoke(["models"])
    assert "wait 1200s and try again" in result.stderr and "next try in 20 min" in result.stderr
    entry = next(iter(read_cache()["accounts"].values()))
    assert 1100 < entry["retry_at"] - time.time() <= 1200


@configured
@pytest.mark.parametrize(
    "content",
    [
        b"this is not json",
        b"",
        b"\x00\xff\xfe\x89PNG\r\n\x1a\n" * 20,
        b'["a", "list"]',
        b'{"data": [{"id": "openrouter/model"}]}',  # someone else's cache format
        b'{"format": "llm-pinference/models-cache", "version": 1, "accounts": []}',
        b'{"format": "llm-pinference/models-cache", "version": 99, "accounts": {}}',
        b'{"format": "llm-pinference/models-cache", "version": 2, "accounts": {"ACCOUNT": '
        b'{"fetched_at": "yesterday", "models": "many"}}}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"format": "llm-pinference/models-cache", "version": 2, "accounts": ' + b"[" * 100_000,
    ],
)
def test_corrupt_or_foreign_cache_is_ignored_and_replaced(
    fake: FakePinference, content: bytes
) -> None:
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    account = f"{fake.base_url}|team=".encode()
    path.write_bytes(content.replace(b"ACCOUNT", account))
    result = invoke(["models"])
    assert result.exit_code == 0 and sorted(pinference_ids(result.stdout)) == ALL_IDS
    assert result.stderr == ""
    assert read_cache()["format"] == "llm-pinference/models-cache"  # replaced
    assert len(fake.requests_for("list")) == 1


@configured
def test_another_base_url_never_shows_the_other_list(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert listed() == ALL_IDS
    other_models = generate_catalogue(4)
    with FakePinference(models=other_models) as other:
        monkeypatch.setenv("PRIME_INFERENCE_URL", other.base_url)
        assert listed() == sorted(m["id"] for m in other_models)
        # Unreachable third URL, nothing cached for it: nothing shown, not the others' lists.
        monkeypatch.setenv("PRIME_INFERENCE_URL", f"http://127.0.0.1:{closed_port()}/api/v1")
        assert listed() == []
        monkeypatch.setenv("PRIME_INFERENCE_URL", fake.base_url)
        assert listed() == ALL_IDS  # back to the first account: from the cache
        assert len(other.requests_for("list")) == 1
    assert len(fake.requests_for("list")) == 1
    assert len(read_cache()["accounts"]) == 3


@configured
def test_another_team_never_shows_the_other_teams_models(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_private_model(TEAM, PRIVATE_MODEL)
    monkeypatch.setenv("PRIME_API_KEY", KEY)
    monkeypatch.setenv("PRIME_TEAM_ID", TEAM)
    assert PRIVATE_MODEL["id"] in listed()
    monkeypatch.setenv("PRIME_TEAM_ID", "team-other")
    assert listed() == ALL_IDS
    monkeypatch.delenv("PRIME_TEAM_ID")
    assert listed() == ALL_IDS
    assert len(fake.requests_for("list")) == 3
    monkeypatch.setenv("PRIME_TEAM_ID", TEAM)
    assert PRIVATE_MODEL["id"] in listed()  # cached per team
    assert len(fake.requests_for("list")) == 3


@configured
def test_a_hanging_server_costs_one_read_timeout_then_nothing(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "TOTAL_TIMEOUT", 0.5)
    fake.set_fault("list", Fault(mode="hang"))
    started = time.monotonic()
    result = invoke(["models"])
    assert time.monotonic() - started < 30  # generous: bounded by the timeout, not hung
    assert "timeout" in result.stderr and result.exit_code == 0
    invoke(["models"])
    assert len(fake.requests_for("list")) == 1


@configured
def test_the_key_is_in_no_output_and_no_file(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that echoes the key into model metadata must not get it written to disk.
    fake.set_models([*default_catalogue(), {"id": "echo/model", "display_name": f"key {KEY}"}])
    fake.add_private_model(TEAM, PRIVATE_MODEL)
    monkeypatch.setenv("PRIME_TEAM_ID", TEAM)
    outputs = []
    assert invoke(["keys", "set", "pinference", "--value", KEY]).exit_code == 0
    for args in (
        ["models"],
        ["pinference", "models", "--json"],
        ["pinference", "refresh"],
        ["pinference", "model", PRIVATE_MODEL["id"]],
        ["-m", "pinference/deepseek-chat", "hello"],
        ["logs", "--json"],
    ):
        result = invoke(args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    fake.set_fault("*", Fault(status=401))
    for args in (["pinference", "refresh"], ["pinference", "model", "deepseek-chat"]):
        outputs.append(invoke(args).output)
    set_cache_times(fetched_at=0)
    outputs.append(invoke(["models"]).output)
    assert all(KEY not in out for out in outputs)
    assert any(f"Bearer {KEY}" == r.header("authorization") for r in fake.requests)
    leaks = [
        path.name
        for path in user_dir().rglob("*")
        if path.is_file() and path.name != "keys.json" and KEY.encode() in path.read_bytes()
    ]
    assert leaks == []
    assert cache_file().exists() and KEY.encode() in (user_dir() / "keys.json").read_bytes()


# `llm models` against a list that arrives one byte every 0.5 s (each byte well inside the
# read timeout): the README's budget, measured in real llm processes against a no-fault
# baseline run in the same test.

LLM = str(Path(sys.executable).with_name("llm"))
#: What llm's start-up may vary by between two runs on a busy machine.
STARTUP_SLACK = 2.5


def run_llm(args: list[str], user_dir: Path, base_url: str) -> tuple[float, str, str]:
    env = {
        **os.environ,
        "LLM_LOAD_PLUGINS": "llm-pinference",
        "LLM_USER_PATH": str(user_dir),
        "PRIME_INFERENCE_URL": base_url,
        "PRIME_API_KEY": KEY,
    }
    started = time.monotonic()
    proc = subprocess.run(
        [LLM, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return time.monotonic() - started, proc.stdout, proc.stderr


@pytest.mark.integration
@configured
@pytest.mark.parametrize("part", ["head", "body"])
def test_llm_models_against_a_dripping_list_keeps_its_budget(
    fake: FakePinference, tmp_path: Path, part: str
) -> None:
    baseline, out, _ = run_llm(["models"], tmp_path / "baseline", fake.base_url)
    assert sorted(pinference_ids(out)) == ALL_IDS
    fake.set_fault("list", Fault(mode="drip", drip_part=part, drip_interval=0.5))
    fake.clear_requests()

    first, out, err = run_llm(["models"], tmp_path / "dripped", fake.base_url)
    budget = catalog.TOTAL_TIMEOUT  # the whole fetch, the 2 s connect included
    # at least most of the budget was spent waiting (a busy machine skews the baseline)
    assert budget - 1.5 <= first - baseline <= budget + STARTUP_SLACK, (first, baseline)
    (warning,) = err.strip().splitlines()
    assert warning.startswith(WARNING) and "timeout" in warning
    assert "OpenAI Chat: gpt-4o" in out and pinference_ids(out) == []

    second, out, err = run_llm(["models"], tmp_path / "dripped", fake.base_url)
    assert second - baseline <= STARTUP_SLACK, (second, baseline)  # backing off
    assert err == "" and "OpenAI Chat: gpt-4o" in out
    assert len(fake.requests_for("list")) == 1
