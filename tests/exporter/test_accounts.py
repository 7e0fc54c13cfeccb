"""Several accounts in one exporter: the config file's `accounts` list, independent probing,
and reloads that add, change or remove accounts (in process; the CLI is covered by
test_exporter_reload.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pinference_exporter import cli
from pinference_exporter.config import AccountConfig, ConfigError, ExporterConfig

from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import SECRET, make_exporter, scrape, wait_for

WATCHED = "meta-llama/llama-3.1-70b-instruct"


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A base URL whose server accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/api/v1"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def test_config_file_accounts(
    config_from: Callable[[list[str]], ExporterConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRIME_API_KEY", "env-key-never-used")
    monkeypatch.setenv("PRIME_TEAM_ID", "env-team-never-used")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "team").write_text("team-key-1234\n")
    path = tmp_path / "exporter.yml"
    path.write_text(
        """
probe: {interval: 1m, concurrency: 2}
accounts:
  - name: personal
  - name: research_team-2
    base_url: http://team.example/api/v1/
    team_id: research
    key_file: secrets/team
    models: [a/one, b/two]
    sample_size: 0
"""
    )
    config = config_from([f"--config.file={path}", "--probe.timeout=5s"])
    personal, team = config.accounts
    assert personal == AccountConfig(name="personal")  # defaults; nothing from the environment
    assert team == AccountConfig(
        name="research_team-2", base_url="http://team.example/api/v1", team_id="research",
        api_key="team-key-1234", key_file=str(tmp_path / "secrets" / "team"),
        probe_models=("a/one", "b/two"), sample_size=0,
    )  # fmt: skip
    assert (config.probe_interval, config.timeout, config.concurrency) == (60, 5, 2)
    assert "team-key-1234" not in repr(config)


BAD_ACCOUNTS = {
    "not a list": ("accounts: {name: a}\n", "accounts must be a non-empty list"),
    "empty": ("accounts: []\n", "accounts must be a non-empty list"),
    "no name": ("accounts: [{team_id: x}]\n", "accounts[0]: every account needs a name"),
    "name with a space": (
        "accounts: [{name: 'my team'}]\n",
        "accounts[0]: 'my team' is not an account name",
    ),
    "name with a quote": ("accounts: [{name: 'a\"b'}]\n", "is not an account name"),
    "name too long": (f"accounts: [{{name: {'a' * 64}}}]\n", "is not an account name"),
    "name not a string": ("accounts: [{name: 12}]\n", "12 is not an account name"),
    "duplicate": ("accounts: [{name: a}, {name: a}]\n", "account name 'a' is used more than once"),
    "unknown key": ("accounts: [{name: a, team: x}]\n", "accounts[0]: unknown key 'team'"),
    "bad value": ("accounts: [{name: a, sample_size: -1}]\n", "accounts[0]: sample_size: -1"),
    "bad url": ("accounts: [{name: a, base_url: 'ftp://x'}]\n", "accounts[0]: base_url"),
    "missing key file": ("accounts: [{name: a, key_file: nope}]\n", "cannot read API key file"),
    "one-account key in the file": (
        "api: {team_id: x}\naccounts: [{name: a}]\n",
        "api.team_id describes the one default account: with accounts in",
    ),
}


@pytest.mark.parametrize("name", list(BAD_ACCOUNTS))
def test_bad_accounts_exit_2_with_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, message = BAD_ACCOUNTS[name]
    path = tmp_path / "exporter.yml"
    path.write_text(text)
    assert cli.main([f"--config.file={path}", "--config.check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(
    "flag", ["--api.base-url=http://x.example", "--api.team-id=t", "--api.key-file=k",
             "--probe.models=a/b", "--probe.sample-size=1"],
)  # fmt: skip
def test_one_account_flags_are_refused_with_a_list_of_accounts(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "exporter.yml"
    path.write_text("accounts: [{name: a}]\n")
    assert cli.main([f"--config.file={path}", flag, "--config.check"]) == 2
    err = capsys.readouterr().err
    assert f"{flag.split('=', maxsplit=1)[0]} describes the one default account" in err
    assert err.count("\n") == 1


def test_a_hanging_account_never_delays_another(fake: FakePinference, blackhole: str) -> None:
    """One account's requests hang until the timeout, cycle after cycle (six of them, one
    at a time: 2.4s a cycle); the other keeps its 0.5s interval meanwhile."""
    stuck = AccountConfig(name="stuck", base_url=blackhole, probe_models=tuple(
        f"m/{i}" for i in range(5)
    ))  # fmt: skip
    healthy = AccountConfig(name="healthy", base_url=fake.base_url, sample_size=0)
    with make_exporter(
        fake.base_url, accounts=(stuck, healthy), probe_interval=0.5, probe_timeout=0.4,
        concurrency=1,
    ) as exporter:  # fmt: skip
        exporter.start()
        # Compared with the stuck account's own cycles, not the clock: a loop shared with it
        # would list the healthy account at most once per stuck cycle.
        wait_for(lambda: len(fake.requests_for("list")) >= 4, timeout=60,
                 what="four list probes of the healthy account")  # fmt: skip
        stuck_lists = scrape(exporter).value("pinference_probes_total", account="stuck",
                                             endpoint="list")  # fmt: skip
        assert stuck_lists is not None and stuck_lists <= 2, stuck_lists
        s = scrape(exporter)
        assert s.value("pinference_up", account="healthy") == 1
        assert s.value("pinference_probes_total", account="stuck", endpoint="list") >= 1
        assert (
            s.value("pinference_probe_failures_total", account="stuck", endpoint="list",
                    reason="timeout") >= 1
        )  # fmt: skip


def test_reload_keeps_counters_replaces_changed_accounts_and_drops_removed_ones(
    fake: FakePinference,
) -> None:
    first = AccountConfig(name="first", base_url=fake.base_url, probe_models=(WATCHED,))
    second = AccountConfig(name="second", base_url=fake.base_url, sample_size=1)
    base = {"listen_address": "127.0.0.1:0", "probe_interval": 30.0, "probe_timeout": 10.0}
    with make_exporter(fake.base_url, accounts=(first, second)) as exporter:
        exporter.run_probe_cycle()
        exporter.run_probe_cycle()
        before = scrape(exporter)
        assert before.value("pinference_probes_total", account="first", endpoint="list") == 2
        kept_prober = exporter.prober_of("second")
        old_prober = exporter.prober_of("first")

        changed = AccountConfig(name="first", base_url=fake.base_url, probe_models=("a/b",))
        third = AccountConfig(name="third", base_url=fake.base_url)
        exporter.apply(ExporterConfig(accounts=(changed, second, third), **base))
        assert exporter.prober_of("second") is kept_prober  # unchanged: untouched
        assert exporter.prober_of("first") is not old_prober and not old_prober.running
        s = scrape(exporter)
        assert s.value("pinference_probes_total", account="first", endpoint="list") == 2
        assert s.value("pinference_probes_total", account="second", endpoint="get") == 2
        assert s.value("pinference_probes_total", account="third", endpoint="list") == 0
        # WATCHED is no longer watched: its availability series went with it.
        assert s.value("pinference_model_available", account="first", model=WATCHED) is None

        exporter.apply(ExporterConfig(accounts=(third,), **base))
        exporter.run_probe_cycle()
        s = scrape(exporter)
        assert {x["account"] for x in s.labelsets("pinference_up")} == {"third"}
        assert not kept_prober.running
        # A global probe setting (the timeout) gives every account a new prober.
        prober = exporter.prober_of("third")
        exporter.apply(ExporterConfig(accounts=(third,), **{**base, "probe_timeout": 5.0}))
        assert exporter.prober_of("third") is not prober
        assert scrape(exporter).value("pinference_probes_total", account="third",
                                      endpoint="list") == 1  # fmt: skip


def test_a_config_is_checked_when_it_is_made() -> None:
    """The in-process API gets the checks of what ties values together (the values
    themselves are the parsers' to check): an inconsistent config cannot exist."""
    account = AccountConfig(name="only")
    with pytest.raises(ConfigError, match="account name 'only' is used more than once"):
        ExporterConfig(accounts=(account, account))
    with pytest.raises(ConfigError, match=r"--probe.timeout \(3s\) must be shorter than"):
        ExporterConfig(probe_interval=2.0, probe_timeout=3.0)
    with pytest.raises(ConfigError, match="give at least one account"):
        ExporterConfig(accounts=())
    with pytest.raises(ConfigError, match="'a b' is not an account name"):
        AccountConfig(name="a b")
    with pytest.raises(ConfigError, match="above the cap of 6"):
        AccountConfig(chat_models=("a", "b"), chat_interval=600.0, chat_max_per_hour=6)
    assert ExporterConfig(listen_address="127.0.0.1:0").listen_address == ("127.0.0.1:0",)


def test_a_reload_keeps_the_retry_after_pause(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=429, retry_after="20"))
    with make_exporter(fake.base_url, probe_interval=5.0, probe_timeout=1.0) as exporter:
        exporter.run_probe_cycle()
        assert exporter.prober.pause_remaining() > 15
        requests_before = len(fake.requests)
        exporter.apply(ExporterConfig(accounts=exporter.accounts, listen_address="127.0.0.1:0",
                                      probe_interval=10.0, probe_timeout=1.0))  # fmt: skip
        assert exporter.prober.pause_remaining() > 15
        assert not exporter.run_probe_cycle()
        assert len(fake.requests) == requests_before


def test_the_landing_page_shows_every_account(fake: FakePinference) -> None:
    import requests

    accounts = (
        AccountConfig(name="alpha", base_url=fake.base_url, api_key=SECRET, team_id="t-1"),
        AccountConfig(name="beta", base_url="http://u:hunter2@127.0.0.1:1/api/v1"),
    )
    with make_exporter(fake.base_url, accounts=accounts) as exporter:
        page = requests.get(exporter.url, timeout=10).text
    assert "Account <code>alpha</code>" in page and "team <code>t-1</code>, with a key" in page
    assert "Account <code>beta</code>" in page and "with no key" in page
    assert "http://127.0.0.1:1/api/v1" in page
    assert "hunter2" not in page and SECRET not in page
