"""The registration index beside the cache file, on its own (no llm process): it follows
every write, keeps the other accounts' records valid, and is only trusted while it matches
the cache file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_pinference import cache as catalog
from llm_pinference.cache import Catalog
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.models import ModelInfo, parse_models
from llm_pinference.core.settings import Settings
from llm_pinference.registration import RECORDS

NOW = 1_800_000_000.0


class Fetcher:
    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.error: PinferenceError | None = None

    def __call__(self, settings: Settings) -> list[ModelInfo]:
        if self.error is not None:
            raise self.error
        return parse_models([{"id": i, "display_name": i.upper()} for i in self.ids])[0]


@pytest.fixture(autouse=True)
def _fresh_process() -> None:
    catalog.reset_process_state()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "llm" / catalog.CACHE_FILENAME


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every API object parsed from now on."""
    seen: list[object] = []
    real = ModelInfo.from_api.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ModelInfo], obj: object) -> ModelInfo | None:
        seen.append(obj)
        return real(cls, obj)

    monkeypatch.setattr(ModelInfo, "from_api", classmethod(counting))
    return seen


def account(path: Path, url: str, fetch: Fetcher, **kwargs: Any) -> Catalog:
    kwargs.setdefault("ttl", 3600)
    return Catalog(
        path, Settings(base_url=url), fetch=fetch, clock=lambda: NOW, records=RECORDS, **kwargs
    )


def ids(listing: catalog.Listing) -> list[str]:
    return [r[0] for r in listing.records]


def index(path: Path) -> dict[str, Any]:
    return json.loads(catalog.index_path(path).read_text())


def test_every_write_writes_the_index_of_the_file_written(path: Path) -> None:
    account(path, "https://a.test/v1", Fetcher(["a/1", "a/2"])).get()
    stat = path.stat()
    data = index(path)
    assert data["cache"] == [stat.st_mtime_ns, stat.st_size, stat.st_ino]
    assert [r[0] for r in data["accounts"]["https://a.test/v1|team="]["models"]] == ["a/1", "a/2"]


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
    assert (listing.source, ids(listing)) == ("fresh", ["a/1", "a/2"])
    assert ids(account(path, "https://b.test/v1", Fetcher([])).listing()) == ["b/1"]
    assert parsed == []  # neither list was parsed: both records came from the index


def test_a_failure_keeps_the_list_and_its_records(path: Path, parsed: list[object]) -> None:
    fetch = Fetcher(["a/1"])
    account(path, "https://a.test/v1", fetch).get()
    fetch.error = PinferenceError(Reason.SERVER_ERROR, "HTTP 503", status=503)
    catalog.reset_process_state()
    parsed.clear()
    failed = account(path, "https://a.test/v1", fetch, ttl=0).listing()
    assert (failed.source, ids(failed), failed.error) == ("stale", ["a/1"], fetch.error)
    catalog.reset_process_state()
    backing_off = account(path, "https://a.test/v1", fetch, ttl=0).listing()
    assert (backing_off.source, ids(backing_off), backing_off.error) == ("stale", ["a/1"], None)
    assert backing_off.retry_at is None and parsed == []
    entry = index(path)["accounts"]["https://a.test/v1|team="]
    assert entry["retry_at"] == NOW + catalog.DEFAULT_BACKOFF


def test_without_fetch_the_list_is_used_at_any_age_and_nothing_is_sent(path: Path) -> None:
    fetch = Fetcher(["a/1"])
    account(path, "https://a.test/v1", fetch).get()
    fetch.error = PinferenceError(Reason.CONNECTION_ERROR, "cannot connect")
    old = account(path, "https://a.test/v1", fetch, ttl=0).listing(fetch=False)
    assert (old.source, ids(old), old.error) == ("stale", ["a/1"], None)
    none = account(path, "https://other.test/v1", fetch).listing(fetch=False)
    assert (none.source, none.records) == ("none", [])


def test_a_write_without_a_record_format_outdates_the_index(path: Path) -> None:
    account(path, "https://a.test/v1", Fetcher(["a/1"])).get()
    before = index(path)
    settings = Settings(base_url="https://a.test/v1")
    Catalog(path, settings, fetch=Fetcher(["a/9"]), ttl=0, clock=lambda: NOW).get()
    assert index(path) == before  # not rewritten: it names the file it was derived from
    catalog.reset_process_state()
    listing = account(path, "https://a.test/v1", Fetcher([])).listing()
    assert ids(listing) == ["a/9"]  # read from the cache file, not the outdated index
    assert index(path)["cache"] != before["cache"]  # and indexed again


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
    assert ids(listing.listing()) == ["a/1"]
