"""The on-disk model cache on its own: no llm, a fake fetch function and a fake clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llm_pinference import cache as catalog
from llm_pinference.cache import Catalog, cache_ttl
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.models import ModelInfo, parse_models
from llm_pinference.core.settings import Settings
from pinference_fake import FakePinference, Fault, generate_catalog

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


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_process() -> None:
    catalog.reset_process_state()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "llm" / catalog.CACHE_FILENAME


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


def test_key_is_never_written(path: Path) -> None:
    settings = Settings(api_key=KEY, team_id="t1", base_url=BASE)
    fetch = Fetcher(["a/1", f"echo/{KEY}"])
    lookup = make(path, fetch, Clock(), settings=settings).get()
    assert KEY not in repr(lookup) and KEY not in path.read_text()
    fetch.error = error(api_message=f"bad key {KEY}")
    make(path, fetch, Clock(), settings=settings, ttl=0).get()
    assert KEY not in path.read_text()


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
    models = json.loads(path.read_text())["accounts"].get(account, {}).get("models") or []
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
    assert {k: v["models"][0]["id"] for k, v in accounts.items()} == {
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
    assert len(json.loads(path.read_text())["accounts"][settings.account]["models"]) > 5


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
