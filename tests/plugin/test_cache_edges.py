"""Edges of the on-disk model cache (found by `make mutation`): which account is dropped
when the file is full, when a back-off starts and ends, files it must leave alone, and
writes that cannot happen in place."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import net
from llm_pinference import cache as catalog
from llm_pinference.cache import Catalog
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.models import ModelInfo
from llm_pinference.core.settings import Settings

BASE = "https://api.test/api/v1"
START = 1_800_000_000.0


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


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_process() -> None:
    catalog.reset_process_state()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "llm" / catalog.CACHE_FILENAME


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
    entry = {"fetched_at": START, "models": [{"id": "future/1"}]}
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


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    with net.unaccepting_port() as port:
        yield port


def test_the_plugins_fetch_gives_up_connecting_after_2_seconds(unaccepting_port: int) -> None:
    """`llm` waits at most 2 s for an unreachable API, not the client's default 3 s."""
    started = time.monotonic()
    with pytest.raises(PinferenceError) as info:
        catalog.fetch_models(Settings(base_url=f"http://127.0.0.1:{unaccepting_port}/v1"))
    elapsed = time.monotonic() - started
    assert info.value.reason is Reason.TIMEOUT
    assert catalog.CONNECT_TIMEOUT - 0.05 <= elapsed <= catalog.CONNECT_TIMEOUT + 0.6, elapsed
