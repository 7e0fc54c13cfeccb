"""The on-disk model cache on its own (no llm process): a fake fetch function and a fake
clock; TTL, back-off, accounts, damaged files, concurrent writers, and the registration
records kept beside each list in the one file."""

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

import pytest

from llm_pinference import cache as catalog
from llm_pinference.cache import Catalog, cache_ttl
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.models import ModelInfo, parse_models
from llm_pinference.core.settings import Settings
from llm_pinference.registration import RECORDS
from pinference_fake import FakePinference, Fault, generate_catalog
from tests.plugin.helpers import Clock

KEY = "pit_catalog_secret_99"
BASE = "https://api.test/api/v1"


class Fetcher:
    """A stand-in for GET /models: returns `models` or raises `error`; counts calls."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.error: PinferenceError | None = None
        self.calls = 0

    def __call__(self, settings: Settings) -> list[ModelInfo]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return parse_models([{"id": i, "display_name": i.upper()} for i in self.ids])[0]


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
    assert lookup.source is catalog.Source.FETCHED and str(lookup.source) == "fetched"
    data = json.loads(path.read_text())
    assert data["accounts"][f"{BASE}|team="]["fetched_at"] == clock.now
    # No temp file left; the lock file stays (removing it would race with a locker).
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]


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
    assert entry["retry_at"] is None and entry["error"] is None


def test_failure_without_a_cache(path: Path) -> None:
    fetch, clock = Fetcher(["a/1"]), Clock()
    fetch.error = error(Reason.TIMEOUT)
    lookup = make(path, fetch, clock).get()
    assert (lookup.source, lookup.models, lookup.error) == ("none", (), fetch.error)
    assert make(path, fetch, clock).get() == catalog.Lookup((), "none")
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


def test_refresh_ignores_ttl_and_backoff_and_diffs(path: Path) -> None:
    fetch, clock = Fetcher(["a/1", "b/2", "c/3"]), Clock()
    first = make(path, fetch, clock).refresh()
    assert (first.added, first.removed, first.unchanged, first.had_cache) == (
        ["a/1", "b/2", "c/3"],
        [],
        0,
        False,
    )
    fetch.ids = ["b/2", "c/3", "d/4"]
    second = make(path, fetch, clock).refresh()
    assert (second.added, second.removed, second.unchanged) == (["d/4"], ["a/1"], 2)
    fetch.error = error()
    with pytest.raises(PinferenceError):
        make(path, fetch, clock).refresh()
    assert make(path, fetch, clock).get().source == "fresh"  # the list is kept


def test_accounts_are_separate(path: Path) -> None:
    clock = Clock()
    personal = Settings(api_key=KEY, base_url=BASE)
    team = Settings(api_key=KEY, team_id="t1", base_url=BASE)
    no_key_team = Settings(team_id="t1", base_url=BASE)  # a team without a key is no team
    other_url = Settings(api_key=KEY, base_url="http://127.0.0.1:9/api/v1")
    make(path, Fetcher(["public/1"]), clock, settings=personal).get()
    make(path, Fetcher(["public/1", "private/2"]), clock, settings=team).get()
    assert ids(make(path, Fetcher([]), clock, settings=team).get()) == ["public/1", "private/2"]
    assert ids(make(path, Fetcher([]), clock, settings=personal).get()) == ["public/1"]
    assert ids(make(path, Fetcher([]), clock, settings=no_key_team).get()) == ["public/1"]
    offline = Fetcher(["x"])
    offline.error = error()
    assert make(path, offline, clock, settings=other_url).get().models == ()


def test_old_accounts_are_pruned(path: Path) -> None:
    clock = Clock()
    for n in range(catalog.MAX_ACCOUNTS + 3):
        clock.now += 1
        make(path, Fetcher(["m"]), clock, settings=Settings(base_url=f"{BASE}/{n}")).get()
    accounts = json.loads(path.read_text())["accounts"]
    assert len(accounts) == catalog.MAX_ACCOUNTS
    assert (
        f"{BASE}/{catalog.MAX_ACCOUNTS + 2}|team=" in accounts and f"{BASE}/0|team=" not in accounts
    )


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"format": "other"}',
        b"null",
        b'"text"',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"format": "llm-pinference/models-cache", "version": 1, "accounts": ' + b"[" * 100_000,
    ],
    ids=["open", "binary", "list", "other", "null", "text", "nested", "nested-inside"],
)
def test_corrupt_file_is_ignored_then_replaced(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    fetch = Fetcher(["a/1"])
    assert make(path, fetch, Clock()).get().source == "fetched"
    assert json.loads(path.read_text())["format"] == catalog.FORMAT


def test_malformed_entries_are_tolerated(path: Path) -> None:
    path.parent.mkdir(parents=True)
    account = f"{BASE}|team="
    bad_models = [{"id": "ok/1"}, {"no": "id"}, 42, {"id": "ok/1"}, {"id": ""}]
    path.write_text(
        json.dumps(
            {
                "format": catalog.FORMAT,
                "version": catalog.VERSION,
                "accounts": {account: {"fetched_at": 1_800_000_000.0, "models": bad_models}},
            }
        )
    )
    lookup = make(path, Fetcher([]), Clock()).get()
    assert (lookup.source, ids(lookup)) == ("fresh", ["ok/1"])


def test_parsed_list_is_memoised_until_the_file_changes(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetch, clock = Fetcher(["a/1"]), Clock()
    make(path, fetch, clock).get()
    catalog.reset_process_state()
    reads = []
    real = catalog._decode
    monkeypatch.setattr(catalog, "_decode", lambda p: reads.append(p) or real(p))
    for _ in range(5):
        assert make(path, fetch, clock).get().source == "fresh"
    assert len(reads) == 1
    other = Catalog(path, Settings(base_url=BASE), fetch=Fetcher(["z/9"]), clock=clock, ttl=0)
    other.get()  # a write reads the file once, under the lock; the memo follows the write
    assert len(reads) == 2
    assert ids(make(path, fetch, clock).get()) == ["z/9"] and len(reads) == 2
    data = json.loads(path.read_text())
    data["accounts"][f"{BASE}|team="]["models"] = [{"id": "edited/1"}]
    path.write_text(json.dumps(data))  # changed behind our back: read again
    assert ids(make(path, fetch, clock).get()) == ["edited/1"] and len(reads) == 3


def test_unwritable_cache_still_answers(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = blocker / catalog.CACHE_FILENAME
    fetch, clock = Fetcher(["a/1"]), Clock()
    assert ids(make(path, fetch, clock).get()) == ["a/1"]
    assert make(path, fetch, clock).refresh().saved is False
    fetch.error = error()
    make(path, fetch, clock, ttl=0).get()
    make(path, fetch, clock, ttl=0).get()  # in-process back-off, though nothing was written
    assert fetch.calls == 3


def test_concurrent_writers_leave_a_whole_file(path: Path) -> None:
    # A reader reads while four writers write (big lists, so a write in place would be
    # caught half done); every read must be a whole cache file, and every writer must
    # finish without an error.
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
    assert sorted(accounts) == sorted(f"{BASE}/{n}|team=" for n in range(4))
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


WRITER = """
import json, sys, time
from pathlib import Path
from llm_pinference.cache import Catalog
from llm_pinference.core.models import parse_models
from llm_pinference.core.settings import Settings

path, n, rounds, go = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
account = f"https://api.test/{n}|team="
while not go.exists():
    time.sleep(0.001)
lost = 0
for i in range(rounds):
    ids = [f"m/{n}/{i}"] + [f"pad/{k}" for k in range(200)]
    Catalog(path, Settings(base_url=f"https://api.test/{n}"),
            fetch=lambda s: parse_models([{"id": x} for x in ids])[0], ttl=0).get()
    # Nobody else may have dropped (or rolled back) this account's entry since.
    stored = json.loads(path.read_text())["accounts"].get(account, {})
    models = json.loads(stored.get("models") or "[]")
    lost += not models or models[0]["id"] != f"m/{n}/{i}"
print(lost)
"""


def test_processes_refreshing_at_once_never_lose_an_account(path: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(n), "40", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    go.touch()  # all start together, so their writes interleave
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outcomes
    assert [int(out) for out, _ in outcomes] == [0] * 4, outcomes
    accounts = json.loads(path.read_text())["accounts"]
    assert {k: json.loads(v["models"])[0]["id"] for k, v in accounts.items()} == {
        f"https://api.test/{n}|team=": f"m/{n}/39" for n in range(4)
    }


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


def test_catalog_does_not_import_llm() -> None:
    code = (
        "import sys, llm_pinference.cache; print('llm' in sys.modules, 'requests' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ},
    )
    assert out.stdout.split() == ["False", "False"], out.stderr


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


class Api:
    """GET /models for several accounts: each base URL has its own list, or fails."""

    def __init__(self, **lists: list[str]) -> None:
        self.lists = lists
        self.error: PinferenceError | None = None
        self.calls = 0

    def __call__(self, settings: Settings) -> list[ModelInfo]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        name = settings.base_url.rsplit("/", 1)[-1]
        return [ModelInfo(id=i, owned_by=i.split("/")[0]) for i in self.lists.get(name, [])]


def cache(path: Path, api: Api, clock: Clock, name: str = "main", **kwargs: Any) -> Catalog:
    settings = Settings(base_url=f"{BASE}/{name}")
    return Catalog(path, settings, fetch=api, clock=clock, ttl=kwargs.pop("ttl", 3600), **kwargs)


def accounts(path: Path) -> set[str]:
    names = json.loads(path.read_text())["accounts"]
    return {key.split("|")[0].rsplit("/", 1)[-1] for key in names}


def failure(**kwargs: Any) -> PinferenceError:
    return PinferenceError(Reason.CONNECTION_ERROR, "cannot connect to the API", **kwargs)


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
    offline.error = failure()
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
    api.error = failure()
    cache(path, api, clock, ttl=60).get()
    clock.now += 10
    api.error = None
    assert cache(path, api, clock, ttl=60).refresh().saved is True
    clock.now += 100  # past the TTL, still within the old back-off
    assert cache(path, api, clock, ttl=60).get().source == "fetched"
    assert api.calls == 3


def test_the_backoff_ends_at_its_retry_time(path: Path) -> None:
    api, clock = Api(main=["a/1"]), Clock()
    api.error = failure()
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
    api.error = failure(retry_after=catalog.MAX_BACKOFF * 2)
    cache(path, api, clock).get()
    catalog.reset_process_state()  # the next command: only the file remembers
    cache(path, api, clock).get()
    assert api.calls == 1


def test_a_cache_of_another_version_is_left_unread(path: Path) -> None:
    path.parent.mkdir(parents=True)
    entry = {"fetched_at": 1_800_000_000.0, "models": [{"id": "future/1"}]}
    document = {"format": catalog.FORMAT, "version": catalog.VERSION + 1}
    path.write_text(json.dumps({**document, "accounts": {f"{BASE}/main|team=": entry}}))
    lookup = cache(path, Api(main=["a/1"]), Clock()).get()
    assert (lookup.source, [m.id for m in lookup.models]) == ("fetched", ["a/1"])


def test_a_timestamp_that_is_not_a_number_is_no_list(path: Path) -> None:
    """json reads NaN; a list of unknown age is not offered as a fallback (its age would
    read `nan`)."""
    path.parent.mkdir(parents=True)
    entry = '{"fetched_at": NaN, "models": [{"id": "old/1"}]}'
    path.write_text(
        f'{{"format": "{catalog.FORMAT}", "version": {catalog.VERSION}, '
        f'"accounts": {{"{BASE}/main|team=": {entry}}}}}'
    )
    api = Api()
    api.error = failure()
    assert cache(path, api, Clock()).get().source == "none"


def test_models_from_any_fetch_function_survive_the_cache(path: Path) -> None:
    """Models built without an API object (another fetch function) are stored and read back."""
    api, clock = Api(main=["a/1", "b/2"]), Clock()
    assert cache(path, api, clock).refresh().saved is True
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
    assert cache(path, api, clock).refresh().saved is True
    assert "a/1" in path.read_text()


def test_a_directory_in_the_cache_files_place(path: Path) -> None:
    """The lookup still answers; the write fails cleanly, leaving no temporary file."""
    path.mkdir(parents=True)
    api, clock = Api(main=["a/1"]), Clock()
    assert [m.id for m in cache(path, api, clock).get().models] == ["a/1"]
    assert cache(path, api, clock).refresh().saved is False
    assert sorted(os.listdir(path.parent)) == [path.name, path.name + catalog.LOCK_SUFFIX]


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

NOW = 1_800_000_000.0


def account(path: Path, url: str, fetch: Fetcher, **kwargs: Any) -> Catalog:
    kwargs.setdefault("ttl", 3600)
    return Catalog(
        path, Settings(base_url=url), fetch=fetch, clock=lambda: NOW, records=RECORDS, **kwargs
    )


def record_ids(listing: catalog.Listing) -> list[str]:
    return [r[0] for r in listing.records]


def test_every_list_is_written_with_its_records(path: Path) -> None:
    account(path, "https://a.test/v1", Fetcher(["a/1", "a/2"])).get()
    stored = json.loads(path.read_text())["accounts"]["https://a.test/v1|team="]
    version, records = stored["records"]
    assert version == RECORDS.version
    assert (
        [r[0] for r in records] == [m["id"] for m in json.loads(stored["models"])] == ["a/1", "a/2"]
    )


def test_a_refetched_account_gets_the_new_lists_records(path: Path, parsed: list[object]) -> None:
    fetch = Fetcher(["a/1", "a/2"])
    assert record_ids(account(path, "https://a.test/v1", fetch).listing()) == ["a/1", "a/2"]
    fetch.ids = ["a/2", "a/3"]
    # The same process (its memo) and a new one (the file) both see the new list's records.
    assert record_ids(account(path, "https://a.test/v1", fetch, ttl=0).listing()) == ["a/2", "a/3"]
    catalog.reset_process_state()
    assert record_ids(account(path, "https://a.test/v1", Fetcher([])).listing()) == ["a/2", "a/3"]


def test_records_of_another_version_are_derived_again(path: Path) -> None:
    account(path, "https://a.test/v1", Fetcher(["a/1"])).get()
    data = json.loads(path.read_text())
    (stored,) = data["accounts"].values()
    stored["records"] = [RECORDS.version + 1, [["ghost/model", "Ghost", 0, 0]]]
    path.write_text(json.dumps(data))
    catalog.reset_process_state()
    assert record_ids(account(path, "https://a.test/v1", Fetcher([])).listing()) == ["a/1"]


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
    listing = account(path, "https://a.test/v1", Fetcher([])).listing()
    assert (listing.source, record_ids(listing)) == ("fresh", ["a/1", "a/2"])
    assert record_ids(account(path, "https://b.test/v1", Fetcher([])).listing()) == ["b/1"]
    assert parsed == []  # neither list was parsed: both records came from the file


def test_a_failure_keeps_the_list_and_its_records(path: Path, parsed: list[object]) -> None:
    fetch = Fetcher(["a/1"])
    account(path, "https://a.test/v1", fetch).get()
    fetch.error = PinferenceError(Reason.SERVER_ERROR, "HTTP 503", status=503)
    catalog.reset_process_state()
    parsed.clear()
    failed = account(path, "https://a.test/v1", fetch, ttl=0).listing()
    assert (failed.source, record_ids(failed), failed.error) == ("stale", ["a/1"], fetch.error)
    catalog.reset_process_state()
    backing_off = account(path, "https://a.test/v1", fetch, ttl=0).listing()
    assert backing_off.source == "stale" and backing_off.error is None
    assert record_ids(backing_off) == ["a/1"]
    assert backing_off.retry_at is None and parsed == []
    entry = json.loads(path.read_text())["accounts"]["https://a.test/v1|team="]
    assert entry["retry_at"] == NOW + catalog.DEFAULT_BACKOFF


def test_without_fetch_the_list_is_used_at_any_age_and_nothing_is_sent(path: Path) -> None:
    fetch = Fetcher(["a/1"])
    account(path, "https://a.test/v1", fetch).get()
    fetch.error = PinferenceError(Reason.CONNECTION_ERROR, "cannot connect")
    old = account(path, "https://a.test/v1", fetch, ttl=0).listing(fetch=False)
    assert (old.source, record_ids(old), old.error) == ("stale", ["a/1"], None)
    none = account(path, "https://other.test/v1", fetch).listing(fetch=False)
    assert (none.source, none.records) == ("none", [])


def test_a_models_details_come_from_the_cached_list(path: Path) -> None:
    account(path, "https://a.test/v1", Fetcher(["a/1", "a/2"])).get()
    catalog.reset_process_state()
    listing = account(path, "https://a.test/v1", Fetcher([])).listing()
    assert listing.entry is not None
    model = listing.entry.model("a/2")
    assert model is not None and model.display_name == "A/2"
    assert listing.entry.model("nope") is None


def test_an_unwritable_directory_still_lists(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    listing = account(blocker / catalog.CACHE_FILENAME, "https://a.test/v1", Fetcher(["a/1"]))
    assert record_ids(listing.listing()) == ["a/1"]
