"""The exporter's opt-in inference probe against the fake over loopback: what it exports on
success and for each failure reason, the time to first token it measures, what it costs,
its schedule (its own thread and interval, the hourly cap) and reloads."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pinference_exporter import Exporter, ExporterConfig
from pinference_exporter.config import AccountConfig, ConfigError, build_config, load_config_file
from pinference_exporter.state import CHAT_BUCKETS

from llm_pinference.core.errors import REASONS
from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import SECRET, Scrape, scrape, wait_for

PAID = "meta-llama/llama-3.1-70b-instruct"  # $0.40 / $0.40 per million tokens
FREE = "qwen/qwen3-coder:free"  # $0 / $0
UNPRICED = "mistralai/mistral-small-3.2-24b-instruct"  # listed without prices
# The fake counts words: the probe's prompt is 6, and it answers max_tokens (8) words.
PROMPT_TOKENS, OUTPUT_TOKENS = 6, 8
SLACK = 0.005  # how far the fake's sleep and the probe's clock may disagree


def chat_config(base_url: str, *models: str, **overrides: Any) -> ExporterConfig:
    account = {"chat_models": models, "chat_interval": 600.0, "api_key": SECRET,
               **overrides.pop("account", {})}  # fmt: skip
    options: dict[str, Any] = {"listen_address": "127.0.0.1:0", "probe_interval": 30.0,
                               "probe_timeout": 2.0, "jitter": 0.0}  # fmt: skip
    options.update(overrides)
    return ExporterConfig(
        accounts=(AccountConfig(base_url=base_url, sample_size=0, **account),), **options
    )


@pytest.fixture
def chat(fake: FakePinference) -> Iterator[Exporter]:
    """An exporter chat-probing the paid model; the test drives the cycles."""
    with Exporter(chat_config(fake.base_url, PAID)).start(probe=False) as exporter:
        exporter.run_probe_cycle()  # the list: the prices
        yield exporter


def chat_cycle(exporter: Exporter) -> Scrape:
    exporter.prober.chat.run_cycle()
    return scrape(exporter)


def value(scraped: Scrape, name: str, model: str = PAID, **labels: str) -> float | None:
    return scraped.value(name, model=model, **labels)


def failures(scraped: Scrape, model: str = PAID) -> dict[str, float]:
    samples = scraped.samples("pinference_chat_probe_failures_total")
    return {s.labels["reason"]: s.value for s in samples if s.labels["model"] == model}


# ------------------------------------------------------------------ off by default


def test_off_by_default(fake: FakePinference) -> None:
    account = AccountConfig(base_url=fake.base_url)
    config = ExporterConfig(listen_address="127.0.0.1:0", probe_interval=0.2,
                            probe_timeout=0.1, accounts=(account,))  # fmt: skip
    with Exporter(config).start() as exporter:
        wait_for(lambda: exporter.state.snapshot().cycles >= 3, what="three cycles")
        scraped = scrape(exporter)
        assert not exporter.prober.chat.running
    assert fake.requests_for("chat") == []
    assert scraped.samples("pinference_chat_probes_total") == []
    assert AccountConfig().chat_models == ()
    assert build_config({}).accounts[0].chat_models == ()


# ------------------------------------------------------------------ success


def test_every_series_starts_at_zero_with_every_reason(fake: FakePinference) -> None:
    with Exporter(chat_config(fake.base_url, PAID, FREE)).start(probe=False) as exporter:
        scraped = scrape(exporter)
    for model in (PAID, FREE):
        assert value(scraped, "pinference_chat_probes_total", model) == 0
        assert failures(scraped, model) == dict.fromkeys(REASONS, 0)
        for name in ("pinference_chat_probe_output_tokens_total",
                     "pinference_chat_probe_cost_usd_total",
                     "pinference_chat_probe_unpriced_total",
                     "pinference_chat_probe_ttft_seconds_count",
                     "pinference_chat_probe_duration_seconds_count"):  # fmt: skip
            assert value(scraped, name, model) == 0, name
    buckets = [s.labels["le"] for s in scraped.samples("pinference_chat_probe_ttft_seconds_bucket")
               if s.labels["model"] == PAID]  # fmt: skip
    assert len(buckets) == len(CHAT_BUCKETS) + 1 and buckets[-1] == "+Inf"


def test_a_successful_probe(chat: Exporter, fake: FakePinference) -> None:
    scraped = chat_cycle(chat)
    assert value(scraped, "pinference_chat_probes_total") == 1
    assert failures(scraped) == dict.fromkeys(REASONS, 0)
    assert value(scraped, "pinference_chat_probe_ttft_seconds_count") == 1
    assert value(scraped, "pinference_chat_probe_duration_seconds_count") == 1
    ttft = value(scraped, "pinference_chat_probe_ttft_seconds_sum")
    duration = value(scraped, "pinference_chat_probe_duration_seconds_sum")
    assert ttft is not None and duration is not None and 0 < ttft <= duration < 2
    assert value(scraped, "pinference_chat_probe_output_tokens_total") == OUTPUT_TOKENS
    # the usage the fake reports at the prices of the last list
    cost = value(scraped, "pinference_chat_probe_cost_usd_total")
    assert cost == pytest.approx((PROMPT_TOKENS * 0.4 + OUTPUT_TOKENS * 0.4) / 1e6)
    assert value(scraped, "pinference_chat_probe_unpriced_total") == 0
    (sent,) = fake.requests_for("chat")
    assert json.loads(sent.body)["max_tokens"] == 8 and json.loads(sent.body)["stream"] is True
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in scraped.text


def test_max_tokens_is_the_accounts(fake: FakePinference) -> None:
    config = chat_config(fake.base_url, PAID, account={"chat_max_tokens": 3})
    with Exporter(config).start(probe=False) as exporter:
        exporter.run_probe_cycle()
        scraped = chat_cycle(exporter)
    assert json.loads(fake.requests_for("chat")[0].body)["max_tokens"] == 3
    assert value(scraped, "pinference_chat_probe_output_tokens_total") == 3


# ------------------------------------------------------------------ failures

FAULTS = {
    "unauthorized": Fault(status=401),
    "payment_required": Fault(status=402),
    "forbidden": Fault(status=403),
    "not_found": Fault(status=404),
    "rate_limited": Fault(status=429),
    "client_error": Fault(status=400),
    "server_error": Fault(status=503),
    "timeout": Fault(ttft_delay=5.0),  # past the 2s probe timeout
    "connection_error": Fault(mode="drop"),
    "invalid_response": Fault(mode="stream_error"),
}


def test_every_reason_has_a_fault() -> None:
    assert set(FAULTS) == set(REASONS)


@pytest.mark.parametrize("reason", REASONS)
def test_each_failure_is_counted_under_its_reason(
    chat: Exporter, fake: FakePinference, reason: str
) -> None:
    fake.set_fault("chat", FAULTS[reason])
    scraped = chat_cycle(chat)
    assert value(scraped, "pinference_chat_probes_total") == 1
    assert failures(scraped) == {r: (1 if r == reason else 0) for r in REASONS}
    # a failed completion has no first token, duration, tokens or cost
    for name in ("pinference_chat_probe_ttft_seconds_count",
                 "pinference_chat_probe_duration_seconds_count",
                 "pinference_chat_probe_output_tokens_total",
                 "pinference_chat_probe_cost_usd_total",
                 "pinference_chat_probe_unpriced_total"):  # fmt: skip
        assert value(scraped, name) == 0, name
    assert scraped.value("pinference_up") == 1  # the list is not the chat


def test_a_stream_cut_before_done_is_an_invalid_response(
    chat: Exporter, fake: FakePinference
) -> None:
    fake.set_fault("chat", Fault(mode="stream_cut"))
    assert failures(chat_cycle(chat))["invalid_response"] == 1


def test_a_failure_logs_once_per_reason_without_the_key(
    chat: Exporter, fake: FakePinference, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter")
    fake.set_fault("chat", Fault(status=500, body=f'{{"error": {{"message": "no {SECRET}"}}}}'))
    chat_cycle(chat)
    chat_cycle(chat)
    fake.clear_faults()
    chat_cycle(chat)
    records = [r for r in caplog.records if r.name == "exporter.chat"]
    levels = [(r.getMessage(), r.levelname) for r in records]
    assert levels == [("chat probe failed", "WARNING"), ("chat probe failed", "DEBUG"),
                      ("chat probe recovered", "INFO")]  # fmt: skip
    assert SECRET not in caplog.text


# ------------------------------------------------------------------ what it measures


def test_an_injected_time_to_first_token_is_what_is_measured(
    chat: Exporter, fake: FakePinference
) -> None:
    """How close the measure comes (about 1 ms on loopback) is bench_probe_accuracy's; this
    holds on any machine: never short of the wait by more than the two clocks differ, and
    not some other wait (the whole answer, a retry)."""
    injected = 0.25
    fake.set_fault("chat", Fault(ttft_delay=injected))
    errors, total = [], 0.0
    for _ in range(3):
        scraped = chat_cycle(chat)
        measured = value(scraped, "pinference_chat_probe_ttft_seconds_sum") - total
        total += measured
        errors.append(measured - injected)
    assert all(e >= -SLACK for e in errors), errors
    assert min(errors) < 0.1, errors  # the least of three: a descheduled probe does not decide
    # ... and counted in the bucket it belongs to: (0.1, 0.25] or (0.25, 0.5]
    buckets = scraped.samples("pinference_chat_probe_ttft_seconds_bucket")
    le = {s.labels["le"]: s.value for s in buckets}
    assert le["0.1"] == 0 and le["0.5"] == 3


def test_a_slow_stream_shows_in_the_duration_not_the_first_token(
    chat: Exporter, fake: FakePinference
) -> None:
    fake.set_fault("chat", Fault(ttft_delay=0.05, token_interval=0.5))
    scraped = chat_cycle(chat)
    ttft = value(scraped, "pinference_chat_probe_ttft_seconds_sum")
    duration = value(scraped, "pinference_chat_probe_duration_seconds_sum")
    # the fake's sleep and the probe's clock differ by microseconds: a little below 0.05
    assert ttft >= 0.05 - 0.005
    # the three waits between the four chunks the fake sends the eight words in are in the
    # duration, and not in the first token (which would then be past 1.5 s)
    assert duration - ttft >= 3 * 0.5 - 0.005
    assert ttft < 1.0


# ------------------------------------------------------------------ cost


def test_a_free_model_costs_zero_and_an_unpriced_one_is_counted(fake: FakePinference) -> None:
    with Exporter(chat_config(fake.base_url, FREE, UNPRICED)).start(probe=False) as exporter:
        exporter.run_probe_cycle()
        scraped = chat_cycle(exporter)
    assert value(scraped, "pinference_chat_probe_cost_usd_total", FREE) == 0
    assert value(scraped, "pinference_chat_probe_unpriced_total", FREE) == 0
    assert value(scraped, "pinference_chat_probe_cost_usd_total", UNPRICED) == 0
    assert value(scraped, "pinference_chat_probe_unpriced_total", UNPRICED) == 1
    assert value(scraped, "pinference_chat_probe_output_tokens_total", UNPRICED) == OUTPUT_TOKENS


def test_without_a_list_or_a_reported_usage_the_cost_is_unknown(fake: FakePinference) -> None:
    with Exporter(chat_config(fake.base_url, PAID)).start(probe=False) as exporter:
        scraped = chat_cycle(exporter)  # no list yet: no prices
        assert value(scraped, "pinference_chat_probe_unpriced_total") == 1
        exporter.run_probe_cycle()
        done = 'data: {"choices": [{"delta": {"content": "ok"}}]}\n\ndata: [DONE]\n\n'
        fake.set_fault("chat", Fault(body=done))  # no usage: the prompt's count is unknown
        scraped = chat_cycle(exporter)
        assert value(scraped, "pinference_chat_probe_unpriced_total") == 2
        fake.clear_faults()
        scraped = chat_cycle(exporter)
    assert value(scraped, "pinference_chat_probe_unpriced_total") == 2
    assert value(scraped, "pinference_chat_probe_cost_usd_total") == pytest.approx(5.6e-6)


def test_prices_follow_the_last_list(fake: FakePinference) -> None:
    with Exporter(chat_config(fake.base_url, PAID)).start(probe=False) as exporter:
        exporter.run_probe_cycle()
        chat_cycle(exporter)
        models = [dict(m) for m in fake.models]
        for model in models:
            if model["id"] == PAID:
                model["pricing"] = {"input_usd_per_mtok": 10.0, "output_usd_per_mtok": 20.0}
        fake.set_models(models)
        exporter.run_probe_cycle()
        scraped = chat_cycle(exporter)
    first = (PROMPT_TOKENS * 0.4 + OUTPUT_TOKENS * 0.4) / 1e6
    second = (PROMPT_TOKENS * 10.0 + OUTPUT_TOKENS * 20.0) / 1e6
    assert value(scraped, "pinference_chat_probe_cost_usd_total") == pytest.approx(first + second)


# ------------------------------------------------------------------ schedule


def test_chat_probes_run_on_their_own_and_never_delay_the_list(fake: FakePinference) -> None:
    """Every chat probe hangs until its timeout; the list probes keep their interval."""
    fake.set_fault("chat", Fault(ttft_delay=5.0))
    config = chat_config(fake.base_url, PAID, FREE, probe_interval=0.5, probe_timeout=0.45,
                         account={"chat_interval": 0.1, "chat_max_per_hour": 72000})  # fmt: skip
    with Exporter(config).start() as exporter:
        wait_for(lambda: len(fake.requests_for("chat")) >= 2, what="chat probes in flight")
        started = time.monotonic()
        before = exporter.state.snapshot().endpoints["list"].probes
        time.sleep(2.0)
        made = exporter.state.snapshot().endpoints["list"].probes - before
        elapsed = time.monotonic() - started
        chat = scrape(exporter)
    assert made >= int(elapsed / 0.5) - 1, made  # 3 or 4 in 2 s at a 0.5 s interval
    assert failures(chat)["timeout"] >= 2


def test_the_loop_waits_for_the_first_list_then_keeps_its_interval(fake: FakePinference) -> None:
    config = chat_config(fake.base_url, PAID, probe_interval=0.3, probe_timeout=0.25,
                         account={"chat_interval": 0.4, "chat_max_per_hour": 9000})  # fmt: skip
    with Exporter(config).start():
        wait_for(lambda: len(fake.requests_for("chat")) >= 4, what="four chat probes")
        first_list = fake.requests_for("list")[0].time
    chats = [r.time for r in fake.requests_for("chat")]
    # The prices first; then cycle k starts k intervals after the first one (or later, on a
    # busy machine: lateness only moves a probe later, so this bound cannot flake).
    assert all(t >= first_list + k * 0.4 for k, t in enumerate(chats)), (first_list, chats)


def test_the_hourly_cap_holds_whatever_calls_the_cycles(
    fake: FakePinference, caplog: pytest.LogCaptureFixture
) -> None:
    # 2 models every 20 minutes: 6 an hour, the cap. Bursts of cycles (as reloads would
    # make) cannot go past it.
    config = chat_config(fake.base_url, PAID, FREE,
                         account={"chat_interval": 1200.0, "chat_max_per_hour": 6})  # fmt: skip
    with Exporter(config).start(probe=False) as exporter:
        made = [exporter.prober.chat.run_cycle() for _ in range(5)]
        scraped = scrape(exporter)
    assert made == [2, 2, 2, 0, 0]
    assert len(fake.requests_for("chat")) == 6
    assert value(scraped, "pinference_chat_probes_total") == 3
    assert value(scraped, "pinference_chat_probes_total", FREE) == 3
    capped = [r for r in caplog.records if "hourly cap" in r.getMessage()]
    assert len(capped) == 1  # said once, not for every skipped probe


def test_a_schedule_at_the_cap_is_never_capped(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 models every 20 minutes under a cap of 6 an hour, on a clock of the test's: the
    first cycle's first probe is slow (5 s), later ones are quick. A cycle an hour later
    must still make both probes (each counted at its cycle's start, not when it began)."""
    from types import SimpleNamespace

    from pinference_exporter import chatprober

    now = [1000.0]
    monkeypatch.setattr(chatprober, "time", SimpleNamespace(monotonic=lambda: now[0]))
    durations = iter([5.0] + [0.0] * 20)

    def probe(self: Any, model: str) -> None:
        now[0] += next(durations)

    monkeypatch.setattr(chatprober.ChatProber, "_probe", probe)
    config = chat_config(fake.base_url, PAID, FREE,
                         account={"chat_interval": 1200.0, "chat_max_per_hour": 6})  # fmt: skip
    with Exporter(config).start(probe=False) as exporter:
        made = []
        for _ in range(5):
            made.append(exporter.prober.chat.run_cycle())
            now[0] = 1000.0 + 1200.0 * len(made)  # the next cycle, when it is due
    assert made == [2, 2, 2, 2, 2]


@pytest.mark.parametrize(("retry_after", "wait"), [("900", 900), ("86400", 6000)])
def test_a_429_delays_the_chat_probes_only(
    chat: Exporter, fake: FakePinference, retry_after: str, wait: float
) -> None:
    """Retry-After, not the 600s interval; capped at 10 intervals (a day would blind it)."""
    fake.set_fault("chat", Fault(status=429, retry_after=retry_after))
    chat_cycle(chat)
    waiting = chat.prober.chat.next_cycle_in()
    assert waiting is not None and wait - 10 < waiting <= wait
    assert chat.prober.pause_remaining() == 0
    assert chat.run_probe_cycle() is True  # the list goes on


def test_the_landing_page_shows_the_schedule_and_each_models_probes(
    fake: FakePinference,
) -> None:
    import requests

    config = chat_config(fake.base_url, PAID, UNPRICED, account={"chat_max_tokens": 5})
    with Exporter(config).start(probe=False) as exporter:
        page = requests.get(exporter.url + "/", timeout=10).text
        assert "every 10m, at most 60 an hour, 5 token(s) each" in page
        assert f"<td><code>{PAID}</code></td><td>0</td><td>none</td><td>0</td>" in page
        exporter.run_probe_cycle()
        fake.set_fault("chat", Fault(status=503, times=1))
        exporter.prober.chat.run_cycle()  # PAID fails (503), then UNPRICED succeeds
        exporter.prober.chat.run_cycle()  # both succeed
        page = requests.get(exporter.url + "/", timeout=10).text
    paid = (PROMPT_TOKENS * 0.4 + 5 * 0.4) / 1e6
    assert f"<td><code>{PAID}</code></td><td>2</td><td>server_error 1</td><td>5</td>" in page
    assert f"<td>${paid:.6f}</td>" in page
    assert f"<td><code>{UNPRICED}</code></td><td>2</td><td>none</td><td>10</td>" in page
    assert "<td>$0.000000 (+ unpriced)</td>" in page
    assert SECRET not in page


def test_the_start_up_log_says_which_accounts_are_chat_probed(fake: FakePinference) -> None:
    from tests.exporter.helpers import exporter_process

    args = ["--web.listen-address=127.0.0.1:0", f"--api.base-url={fake.base_url}",
            "--probe.interval=1m", "--probe.chat.models", PAID,
            "--probe.chat.interval=15m"]  # fmt: skip
    with exporter_process(args) as proc:
        wait_for(lambda: "msg=account" in proc.stderr, what="the account line")
        proc.terminate()
    (line,) = [x for x in proc.stderr.splitlines() if "msg=account" in x]
    assert "chat_models=1 chat_interval=15m" in line
    with exporter_process(args[:3]) as proc:
        wait_for(lambda: "msg=account" in proc.stderr, what="the account line")
        proc.terminate()
    assert "chat_" not in proc.stderr


# ------------------------------------------------------------------ configuration


def test_the_flags_and_their_floors(fake: FakePinference) -> None:
    from pinference_exporter.cli import build_parser, resolve_values

    args = build_parser().parse_args([
        "--probe.chat.models", PAID, "--probe.chat.models", FREE,
        "--probe.chat.interval", "2m", "--probe.chat.max-tokens", "4",
        "--probe.chat.max-per-hour", "90",
    ])  # fmt: skip
    (account,) = build_config(resolve_values(args)).accounts
    assert account.chat_models == (PAID, FREE)
    assert (account.chat_interval, account.chat_max_tokens, account.chat_max_per_hour) == (
        120.0, 4, 90)  # fmt: skip
    args = build_parser().parse_args(["--probe.chat.models", PAID])
    defaults = build_config(resolve_values(args))
    assert (defaults.accounts[0].chat_interval, defaults.accounts[0].chat_max_tokens,
            defaults.accounts[0].chat_max_per_hour) == (300.0, 8, 60)  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--probe.chat.interval=59s"], "--probe.chat.interval: '59s' is outside 1m to 1d"),
        (["--probe.chat.max-tokens=0"], "--probe.chat.max-tokens: '0' is not an integer from 1"),
        (["--probe.chat.max-tokens=129"], "from 1 to 128"),
        (["--probe.chat.models", PAID, "--probe.chat.models", FREE, "--probe.chat.interval=1m"],
         "2 chat model(s) every 1m make 120 chat probes an hour, above the cap of 60"),
        (["--probe.chat.models", PAID, "--probe.chat.interval=10m",
          "--probe.chat.max-per-hour=5"], "make 6 chat probes an hour, above the cap of 5"),
    ],
)  # fmt: skip
def test_bad_values_exit_2_with_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pinference_exporter.cli import main

    assert main(["--config.check", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


def test_the_file_nests_the_chat_settings(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yml"
    path.write_text(f"probe:\n  interval: 30s\n  chat:\n    models: [{PAID}]\n    interval: 10m\n"
                    "    max_tokens: 4\n    max_per_hour: 12\n")  # fmt: skip
    (account,) = build_config(load_config_file(path)).accounts
    assert (account.chat_models, account.chat_interval, account.chat_max_tokens,
            account.chat_max_per_hour) == ((PAID,), 600.0, 4, 12)  # fmt: skip
    path.write_text(f"accounts:\n  - name: team\n    chat:\n      models: [{PAID}, {FREE}]\n"
                    "      interval: 15m\n  - name: quiet\n")  # fmt: skip
    team, quiet = build_config(load_config_file(path)).accounts
    assert (team.chat_models, team.chat_interval) == ((PAID, FREE), 900.0)
    assert quiet.chat_models == ()
    for bad, says in [
        ("probe:\n  chat:\n    modles: [x]\n", "unknown key 'probe.chat.modles'"),
        ("accounts:\n  - name: a\n    chat:\n      every: 5m\n", "unknown key 'chat.every'"),
        ("accounts:\n  - name: a\n    chat:\n      interval: 10s\n", "chat.interval: '10s'"),
    ]:
        path.write_text(bad)
        with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace("[", r"\[")):
            build_config(load_config_file(path))


def test_one_account_chat_flags_are_refused_with_a_list_of_accounts(tmp_path: Path) -> None:
    from pinference_exporter.cli import build_parser, resolve_values

    path = tmp_path / "exporter.yml"
    path.write_text("accounts:\n  - name: a\n")
    args = build_parser().parse_args([f"--config.file={path}", "--probe.chat.models", PAID])
    with pytest.raises(ConfigError, match=r"set chat\.models per account"):
        build_config(resolve_values(args))


# ------------------------------------------------------------------ reload


def test_a_reload_keeps_the_counters_and_the_schedule(fake: FakePinference) -> None:
    with Exporter(chat_config(fake.base_url, PAID, FREE)).start(probe=False) as exporter:
        exporter.run_probe_cycle()
        exporter.prober.chat.run_cycle()
        due = exporter.prober.chat.next_cycle_in()
        # FREE no longer probed, UNPRICED added, max tokens changed: a new prober
        exporter.apply(chat_config(fake.base_url, PAID, UNPRICED, account={"chat_max_tokens": 4}))
        assert exporter.prober.chat.account.chat_max_tokens == 4
        # the schedule is carried over: no probe brought forward by the reload
        assert exporter.prober.chat.next_cycle_in() == pytest.approx(due, abs=0.5)
        scraped = scrape(exporter)
        assert value(scraped, "pinference_chat_probes_total") == 1
        assert value(scraped, "pinference_chat_probe_output_tokens_total") == OUTPUT_TOKENS
        assert value(scraped, "pinference_chat_probes_total", UNPRICED) == 0
        assert value(scraped, "pinference_chat_probes_total", FREE) is None
        exporter.prober.chat.run_cycle()
        scraped = scrape(exporter)
    assert value(scraped, "pinference_chat_probes_total") == 2
    assert value(scraped, "pinference_chat_probe_output_tokens_total") == OUTPUT_TOKENS + 4


def test_a_reload_does_not_reset_the_hourly_cap(fake: FakePinference) -> None:
    config = chat_config(fake.base_url, PAID, account={"chat_interval": 1200.0,
                                                      "chat_max_per_hour": 3})  # fmt: skip
    with Exporter(config).start(probe=False) as exporter:
        assert [exporter.prober.chat.run_cycle() for _ in range(3)] == [1, 1, 1]
        exporter.apply(chat_config(fake.base_url, PAID, account={
            "chat_interval": 1200.0, "chat_max_per_hour": 3, "chat_max_tokens": 2}))  # fmt: skip
        assert exporter.prober.chat.run_cycle() == 0
    assert len(fake.requests_for("chat")) == 3


def test_a_probe_in_flight_when_its_model_is_removed_is_dropped(fake: FakePinference) -> None:
    fake.set_fault("chat", Fault(ttft_delay=0.5))
    with Exporter(chat_config(fake.base_url, PAID)).start(probe=False) as exporter:
        old = exporter.prober
        thread = threading.Thread(target=old.chat.run_cycle)
        thread.start()
        wait_for(lambda: fake.requests_for("chat"), what="the chat probe in flight")
        exporter.apply(chat_config(fake.base_url, FREE))
        thread.join(5)
        scraped = scrape(exporter)
    assert value(scraped, "pinference_chat_probes_total") is None
    assert value(scraped, "pinference_chat_probes_total", FREE) == 0
