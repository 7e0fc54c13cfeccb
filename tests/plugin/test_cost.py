"""`llm pinference cost`: logged usage priced with the cached list, checked against sums
computed by hand on a logs database this test builds with llm's own schema."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import sqlite_utils
from llm.migrations import migrate

from llm_pinference import cost
from pinference_fake import FakePinference, Fault
from tests.plugin.helpers import invoke, user_dir

NOW = datetime.datetime.now(datetime.timezone.utc)


def ago(**delta: float) -> datetime.datetime:
    return NOW - datetime.timedelta(**delta)


# Prices (USD per million tokens) in the fake's list:
#   deepseek-chat            in 0.27  out 1.1   cache read 0.07  cache write 0
#   anthropic/claude-sonnet-4.5  in 3  out 15   cache read 0.3   cache write 3.75
#   deepseek/deepseek-r1-0528    in 0.5  out 2.15 (no cache prices: cached at the input price)
#   mistralai/mistral-small-3.2-24b-instruct: no prices
TURNS = [
    # (model, input, output, token_details, when) -> hand-computed cost in USD
    # 600 x 0.27 + 400 x 0.07 + 500 x 1.1 = 162 + 28 + 550 = 740 -> 0.000740
    ("deepseek-chat", 1000, 500, {"prompt_tokens_details": {"cached_tokens": 400}}, ago(hours=1)),
    # 2000 x 0.27 = 540 -> 0.000540
    ("deepseek-chat", 2000, None, None, ago(days=2)),
    # 1000 x 3 + 6000 x 0.3 + 3000 x 3.75 + 2000 x 15 = 3000 + 1800 + 11250 + 30000 = 46050
    (
        "anthropic/claude-sonnet-4.5",
        10000,
        2000,
        {"prompt_tokens_details": {"cached_tokens": 6000, "cache_write_tokens": 3000}},
        ago(minutes=30),
    ),
    # 200 x 0.5 + 100 x 0.5 (no cache price) = 150 -> 0.000150
    (
        "deepseek/deepseek-r1-0528",
        300,
        0,
        {"prompt_tokens_details": {"cached_tokens": 100}},
        ago(minutes=10),
    ),
    ("mistralai/mistral-small-3.2-24b-instruct", 10, 10, None, ago(hours=3)),  # no price
    ("gone/model", 5, 5, None, ago(hours=4)),  # not in the list: no price
    ("deepseek-chat", None, None, None, ago(hours=5)),  # no usage
]
LEGACY = [
    # Written by an older llm: naive UTC time. 300 x 0.5 + 700 x 2.15 = 1655 -> 0.001655
    ("r-old", "deepseek/deepseek-r1-0528", 300, 700, ago(days=3).replace(tzinfo=None)),
]


pytestmark = pytest.mark.usefixtures("configured")


def build_logs(path: Path) -> None:
    db = sqlite_utils.Database(path)
    migrate(db)  # llm's own schema: the turns table and the legacy responses table
    for i, (model, input_, output, details, when) in enumerate(TURNS):
        db["turns"].insert(
            {
                "id": f"t{i}",
                "model": f"pinference/{model}",
                "input_tokens": input_,
                "output_tokens": output,
                "token_details": json.dumps(details) if details else None,
                "datetime_utc": when.isoformat(),
            }
        )
    db["turns"].insert({"id": "openai", "model": "gpt-4o", "input_tokens": 9, "output_tokens": 9})
    for rid, model, input_, output, when in LEGACY:
        db["responses"].insert(
            {
                "id": rid,
                "model": f"pinference/{model}",
                "input_tokens": input_,
                "output_tokens": output,
                "datetime_utc": when.isoformat(),
            }
        )
    # A legacy row that was migrated into turns is counted once, from turns.
    db["responses"].insert(
        {
            "id": "t0",
            "model": "pinference/deepseek-chat",
            "input_tokens": 1000,
            "output_tokens": 500,
        }
    )


def cost_json(*args: str) -> dict:
    logs = user_dir() / "logs.db"
    if not logs.exists():
        logs.parent.mkdir(parents=True, exist_ok=True)
        build_logs(logs)
    result = invoke(["pinference", "cost", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def by_model(report: dict) -> dict[str, dict]:
    return {m["model"].removeprefix("pinference/"): m for m in report["models"]}


def test_costs_per_model_and_total() -> None:
    report = cost_json()
    models = by_model(report)
    assert models["deepseek-chat"]["cost_usd"] == pytest.approx(0.000740 + 0.000540)
    assert models["deepseek-chat"]["responses"] == 2
    assert models["deepseek-chat"]["input_tokens"] == 3000
    assert models["deepseek-chat"]["cache_read_tokens"] == 400
    assert models["anthropic/claude-sonnet-4.5"]["cost_usd"] == pytest.approx(0.046050)
    assert models["anthropic/claude-sonnet-4.5"]["cache_write_tokens"] == 3000
    assert models["deepseek/deepseek-r1-0528"]["cost_usd"] == pytest.approx(0.000150 + 0.001655)
    assert models["deepseek/deepseek-r1-0528"]["responses"] == 2  # turn + legacy row
    assert report["total"]["cost_usd"] == pytest.approx(0.049135)
    assert report["total"]["responses"] == 7
    # Rounded to twelve decimals: the JSON says 0.049135, not the float sum's noise.
    assert (report["total"]["cost_usd"], models["deepseek-chat"]["cost_usd"]) == (0.049135, 0.00128)
    assert report["total"]["output_tokens"] == 500 + 2000 + 0 + 10 + 5 + 700
    assert report["no_price"] == {
        "responses": 2,
        "models": ["pinference/gone/model", "pinference/mistralai/mistral-small-3.2-24b-instruct"],
    }
    assert report["no_usage"] == {"responses": 1, "models": ["pinference/deepseek-chat"]}
    assert "gpt-4o" not in json.dumps(report)


def test_since() -> None:
    report = cost_json("--since", "1d")
    models = by_model(report)
    assert set(models) == {
        "deepseek-chat",
        "anthropic/claude-sonnet-4.5",
        "deepseek/deepseek-r1-0528",
        "mistralai/mistral-small-3.2-24b-instruct",
        "gone/model",
    }
    assert report["total"]["cost_usd"] == pytest.approx(0.000740 + 0.046050 + 0.000150)
    assert cost_json("--since", "45m")["total"]["cost_usd"] == pytest.approx(0.046050 + 0.000150)
    assert cost_json("--since", "1h30m")["total"]["responses"] == 3


def test_one_model() -> None:
    for name in ("deepseek-chat", "pinference/deepseek-chat"):
        report = cost_json("--model", name)
        assert list(by_model(report)) == ["deepseek-chat"]
        assert report["total"]["cost_usd"] == pytest.approx(0.001280)
        assert report["no_usage"]["responses"] == 1
    assert cost_json("-m", "DeepSeek-Chat")["models"] == []  # ids are case-sensitive


def test_the_text_report() -> None:
    cost_json()  # builds the database
    result = invoke(["pinference", "cost"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "Pinference usage in all of llm's logs, priced with the cached model list (USD):"
    )
    assert lines[1].split() == [
        "model",
        "responses",
        "input",
        "cache",
        "read",
        "cache",
        "write",
        "output",
        "cost",
    ]
    sonnet = next(line for line in lines if "claude-sonnet" in line)
    assert sonnet.split() == [
        "pinference/anthropic/claude-sonnet-4.5",
        "1",
        "10,000",
        "6,000",
        "3,000",
        "2,000",
        "$0.04605",
    ]
    assert "no price" in next(line for line in lines if "gone/model" in line)
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[1] == "7" and total.split()[-1] == "$0.049135"
    assert lines[-2].startswith("2 response(s) with no price")
    assert lines[-1] == (
        "1 response(s) logged without token usage, not counted: pinference/deepseek-chat"
    )


def test_real_prompts_are_priced(fake: FakePinference) -> None:
    """End to end: prompts through llm, logged by llm, priced by the command."""
    for prompt in ("hello there", "one two three four"):
        assert invoke(["-m", "pinference/deepseek-chat", prompt]).exit_code == 0
    logged = cost.logged_usage(user_dir() / "logs.db")
    assert sorted((u.model, u.input_tokens) for u in logged) == [
        ("pinference/deepseek-chat", 2),
        ("pinference/deepseek-chat", 4),
    ]
    report = invoke(["pinference", "cost", "--json", "--since", "5m"])
    (model,) = json.loads(report.stdout)["models"]
    output = sum(u.output_tokens or 0 for u in logged)
    assert model["input_tokens"] == 6 and model["output_tokens"] == output
    assert model["cost_usd"] == pytest.approx((6 * 0.27 + output * 1.1) / 1e6)


def test_no_logs_no_list_and_bad_input(fake: FakePinference, tmp_path: Path) -> None:
    result = invoke(["pinference", "cost"])
    assert result.exit_code == 1 and "No log database found at" in result.stderr
    empty = tmp_path / "empty.db"
    migrate(sqlite_utils.Database(empty))
    result = invoke(["pinference", "cost", "-d", str(empty)])
    assert result.stdout.strip() == "No logged responses for pinference/* in all of llm's logs."
    assert fake.requests == []  # nothing to price: no list fetched
    result = invoke(["pinference", "cost", "-d", str(empty), "-m", "nope"])
    assert result.stdout.strip() == (
        "No logged responses for model pinference/nope in all of llm's logs."
    )
    result = invoke(["pinference", "cost", "--since", "yesterday"])
    assert result.exit_code == 2 and "not a duration: 'yesterday'" in result.stderr
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    result = invoke(["pinference", "cost", "-d", str(tmp_path / "junk.db")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot read the logs database")
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_a_cached_list_it_is_fetched_once_and_failures_leave_no_price(
    fake: FakePinference,
) -> None:
    fake.set_fault("list", Fault(status=503))
    report = cost_json()
    assert report["total"]["cost_usd"] == 0
    assert report["no_price"]["responses"] == 7
    assert len(fake.requests_for("list")) == 1
    fake.clear_faults()
    assert cost_json()["total"]["cost_usd"] == pytest.approx(0.049135)


def test_hostile_rows_count_as_unknown_usage(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "hostile.db"
    db = sqlite_utils.Database(logs)
    migrate(db)
    rows = [
        ("deepseek-chat", -1000, -5, None),  # negative: unknown
        ("deepseek-chat", "many", 2.5, None),  # text and real: unknown
        ("deepseek-chat", 100, -1, "{[not json"),  # the input counts, the output does not
        ("deepseek-chat", 0, 0, json.dumps({"prompt_tokens_details": {"cached_tokens": -9}})),
        ("deepseek-chat", 2**63 - 1, 0, None),  # sqlite's largest integer
    ]
    for i, (model, input_, output, details) in enumerate(rows):
        db["turns"].insert({"id": f"h{i}", "model": f"pinference/{model}",
                            "input_tokens": input_, "output_tokens": output,
                            "token_details": details, "datetime_utc": NOW.isoformat()})  # fmt: skip
    entries = cost.logged_usage(logs)
    assert [(e.input_tokens, e.output_tokens) for e in entries] == [
        (None, None), (None, None), (100, None), (0, 0), (2**63 - 1, 0)
    ]  # fmt: skip
    result = invoke(["pinference", "cost", "--json", "-d", str(logs)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (model,) = report["models"]
    assert (model["responses"], model["input_tokens"], model["output_tokens"]) == (
        3, 100 + 2**63 - 1, 0)  # fmt: skip
    assert model["cost_usd"] == pytest.approx((100 + 2**63 - 1) * 0.27 / 1e6)
    assert report["no_usage"] == {"responses": 2, "models": ["pinference/deepseek-chat"]}
