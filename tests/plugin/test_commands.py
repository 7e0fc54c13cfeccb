"""`llm pinference models | model | refresh` through llm's CLI, including every error path."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from click.testing import Result

from llm_pinference import cache as catalog
from llm_pinference import commands
from pinference_fake import FakePinference, Fault, default_catalogue, generate_catalogue
from tests.plugin.helpers import KEY, invoke, read_cache, set_cache_times
from tests.support import free_port as closed_port

pytestmark = pytest.mark.usefixtures("configured")


def one_line_error(result: Result, *parts: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException, not a crash
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Pinference "), result.stderr
    for part in parts:
        assert part in lines[0]
    assert "Traceback" not in result.output


# models


def test_models_table() -> None:
    result = invoke(["pinference", "models"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = "id serving in $/M out $/M cache rd $/M cache wr $/M context max out reasoning"
    assert lines[0].split() == header.split()
    assert len(lines) == 1 + len(default_catalogue())
    sonnet = next(line for line in lines if "claude-sonnet-4.5" in line)
    assert sonnet.split() == [
        "pinference/anthropic/claude-sonnet-4.5",
        "gateway",
        "$3",
        "$15",
        "$0.3",
        "$3.75",
        "200k",
        "64k",
        "yes",
    ]
    # Unknown cache prices are blank, in their own columns.
    r1 = next(line for line in lines if "deepseek-r1" in line)
    cache_column = lines[0].index("cache rd")
    assert r1[cache_column : lines[0].index("context")].strip() == ""
    assert r1.split()[1:] == ["hosted", "$0.5", "$2.15", "160k", "32k", "yes"]
    # A model with nothing but an id: blanks, not dashes.
    assert lines[-1] == "pinference/mistralai/mistral-small-3.2-24b-instruct"


def test_models_query_is_case_insensitive_and_repeatable_as_and() -> None:
    result = invoke(["pinference", "models", "-q", "QWEN", "-q", "instruct"])
    ids = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert ids == [
        "pinference/qwen/qwen3-30b-a3b-instruct-2507",
        "pinference/Qwen/Qwen3-235B-A22B-Instruct-2507",
    ]
    result = invoke(["pinference", "models", "-q", "qwen", "-q", "no-such-thing"])
    assert result.exit_code == 0 and result.stdout == ""
    assert "No models found matching the query" in result.stderr


def test_models_json() -> None:
    result = invoke(["pinference", "models", "--json", "-q", "gemini"])
    (model,) = json.loads(result.stdout)
    assert model["id"] == "google/gemini-2.5-flash"
    assert model["llm_model_id"] == "pinference/google/gemini-2.5-flash"
    assert model["context_window"] == 1048576
    assert model["pricing_usd_per_mtok"]["input"] == 0.3
    assert model["supports_vision"] is True and model["supports_reasoning"] is True


def test_models_uses_the_warm_cache(fake: FakePinference) -> None:
    first = invoke(["models"])
    assert first.exit_code == 0, first.output
    assert len(fake.requests_for("list")) == 1
    result = invoke(["pinference", "models"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    listed = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert listed == ["pinference/" + m["id"] for m in default_catalogue()]
    assert len(fake.requests_for("list")) == 1  # served from the cache the hooks filled


def test_models_shows_the_stale_list_when_the_fetch_fails(fake: FakePinference) -> None:
    invoke(["pinference", "refresh"])
    set_cache_times(fetched_at=time.time() - 7200)
    fake.set_fault("list", Fault(status=503))
    result = invoke(["pinference", "models"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1 + len(default_catalogue())
    assert result.stderr.startswith(
        "llm-pinference: showing the cached list: Pinference server_error"
    )
    assert len(fake.requests_for("list")) == 2


# model


def test_model_details(fake: FakePinference) -> None:
    result = invoke(["pinference", "model", "pinference/anthropic/claude-sonnet-4.5"])
    assert result.exit_code == 0, result.output
    assert "name:" in result.stdout and "Claude Sonnet 4.5" in result.stdout
    assert "context:           200,000 tokens" in result.stdout
    assert "vision:            yes" in result.stdout
    (request,) = fake.requests_for("get")
    assert request.path == "/api/v1/models/anthropic/claude-sonnet-4.5"


def test_model_json() -> None:
    result = invoke(["pinference", "model", "deepseek-chat", "--json"])
    data = json.loads(result.stdout)
    assert data["id"] == "deepseek-chat" and data["context_window"] == 65536


def test_model_not_found_is_one_line() -> None:
    result = invoke(["pinference", "model", "nobody/nothing"])
    one_line_error(result, "not_found (HTTP 404) for 'nobody/nothing'", "llm pinference models")


# refresh


def test_refresh_counts_added_removed_unchanged(fake: FakePinference) -> None:
    models = default_catalogue()
    fake.set_models(models[:5])
    result = invoke(["pinference", "refresh"])
    assert result.stdout.strip().splitlines()[-1] == (
        "5 added, 0 removed, 0 unchanged (no previous list); 5 models in total"
    )
    fake.set_models(models[2:8])  # drop 2, add 3, keep 3
    result = invoke(["pinference", "refresh"])
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "Added 3: " + ", ".join("pinference/" + m["id"] for m in models[5:8])
    assert lines[1] == "Removed 2: " + ", ".join("pinference/" + m["id"] for m in models[:2])
    assert lines[2] == "3 added, 2 removed, 3 unchanged; 6 models in total"


def test_refresh_reports_additions_only(fake: FakePinference) -> None:
    # llm-openrouter says "No changes" here; this must not.
    models = default_catalogue()
    fake.set_models(models[:3])
    invoke(["pinference", "refresh"])
    fake.set_models(models[:4])
    lines = invoke(["pinference", "refresh"]).stdout.strip().splitlines()
    assert lines == [
        f"Added 1: pinference/{models[3]['id']}",
        "1 added, 0 removed, 3 unchanged; 4 models in total",
    ]


def test_refresh_shows_a_few_ids_per_side_unless_verbose(fake: FakePinference) -> None:
    models = generate_catalogue(600)
    fake.set_models(models[:100])
    invoke(["pinference", "refresh"])
    fake.set_models(models[40:600])  # 40 removed, 500 added
    lines = invoke(["pinference", "refresh"]).stdout.strip().splitlines()
    added = ", ".join("pinference/" + m["id"] for m in models[100:105])
    removed = ", ".join("pinference/" + m["id"] for m in models[:5])
    assert lines == [
        f"Added 500: {added} and 495 more (--verbose lists them)",
        f"Removed 40: {removed} and 35 more (--verbose lists them)",
        "500 added, 40 removed, 60 unchanged; 560 models in total",
    ]
    assert max(len(line) for line in lines) < 300

    fake.set_models(models[:100])
    lines = invoke(["pinference", "refresh", "--verbose"]).stdout.strip().splitlines()
    assert lines[0] == "Added 40:" and lines[41] == "Removed 500:"
    assert lines[1:41] == ["  pinference/" + m["id"] for m in models[:40]]
    assert lines[-1] == "40 added, 500 removed, 60 unchanged; 100 models in total"


def test_refresh_ignores_ttl_and_backoff(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=503, times=1))
    invoke(["models"])  # fails, starts the back-off
    invoke(["models"])  # backing off: no request
    assert len(fake.requests_for("list")) == 1
    assert invoke(["pinference", "refresh"]).exit_code == 0
    assert len(fake.requests_for("list")) == 2
    entry = next(iter(read_cache()["accounts"].values()))
    assert entry["retry_at"] is None


# Every error path: one line, what to do, non-zero exit, no traceback

ERRORS = [
    (Fault(status=401), "unauthorized (HTTP 401)", "llm keys set pinference` or set PRIME_API_KEY"),
    (Fault(status=402), "payment_required (HTTP 402)", "out of credit"),
    (Fault(status=403), "forbidden (HTTP 403)", "Inference permission"),
    (Fault(status=404), "not_found (HTTP 404)", ""),
    (Fault(status=429, retry_after="17"), "rate_limited (HTTP 429)", "wait 17s and try again"),
    (Fault(status=500), "server_error (HTTP 500)", "try again later"),
    (Fault(status=503, html=True), "server_error (HTTP 503)", "try again later"),
    (Fault(mode="malformed"), "invalid_response", "check PRIME_INFERENCE_URL"),
    (Fault(mode="drop"), "connection_error", "check your network or PRIME_INFERENCE_URL"),
]


@pytest.mark.parametrize("fault, reason, advice", ERRORS, ids=lambda v: getattr(v, "status", v))
@pytest.mark.parametrize("command", ["models", "refresh", "model"])
def test_command_errors(
    fake: FakePinference, fault: Fault, reason: str, advice: str, command: str
) -> None:
    fake.set_fault("*", fault)
    args = ["pinference", command] + (["deepseek-chat"] if command == "model" else [])
    result = invoke([*args, "--key", KEY])
    if command == "model" and reason.startswith("not_found"):
        advice = "no such model"
    elif reason.startswith("not_found"):
        advice = "check PRIME_INFERENCE_URL"
    one_line_error(result, reason, advice)
    assert KEY not in result.output


def test_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/v1"
    monkeypatch.setenv("PRIME_INFERENCE_URL", url)
    for args in (["models"], ["refresh"], ["model", "x/y"]):
        result = invoke(["pinference", *args])
        one_line_error(result, "connection_error", f"cannot reach {url}")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback socket that listens but never accepts or answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_timeout(silent_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIME_INFERENCE_URL", f"http://127.0.0.1:{silent_port}/api/v1")
    monkeypatch.setattr(catalog, "TOTAL_TIMEOUT", 0.5)
    for name in ("MODEL_CONNECT_TIMEOUT", "MODEL_READ_TIMEOUT", "MODEL_TOTAL_TIMEOUT"):
        monkeypatch.setattr(commands, name, 0.5)
    for args in (["models"], ["refresh"], ["model", "x/y"]):
        result = invoke(["pinference", *args])
        one_line_error(result, "timeout", "no answer from http://127.0.0.1:")


@pytest.mark.parametrize("part", ["head", "body"])
def test_model_ends_at_its_total_deadline(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch, part: str
) -> None:
    # Every byte comes well inside the read timeout: only the total deadline ends this.
    monkeypatch.setattr(commands, "MODEL_CONNECT_TIMEOUT", 1.0)
    monkeypatch.setattr(commands, "MODEL_READ_TIMEOUT", 5.0)
    monkeypatch.setattr(commands, "MODEL_TOTAL_TIMEOUT", 1.0)
    fake.set_fault("get", Fault(mode="drip", drip_part=part, drip_interval=0.2))
    started = time.monotonic()
    result = invoke(["pinference", "model", "deepseek-chat"])
    elapsed = time.monotonic() - started
    one_line_error(result, "timeout", "no answer from http://127.0.0.1:")
    assert 0.9 <= elapsed < 1.0 + 2.0, elapsed  # not connect + read (6 s)


def test_the_model_timeouts() -> None:
    assert commands.MODEL_TOTAL_TIMEOUT <= 10.0
    assert commands.MODEL_CONNECT_TIMEOUT < commands.MODEL_TOTAL_TIMEOUT


@pytest.mark.parametrize(
    "model_id",
    [
        "../x",
        "..",
        "pinference/../../../admin/users",
        "a/./b",
        "a/%2e%2E/b",
        "a/%252e%252e/b",
        "a/..;x/b",
        "a\\..\\b",
        "x/\uff0e\uff0e/y",
    ],
)
def test_an_id_that_would_leave_models_is_refused_without_a_request(
    fake: FakePinference, model_id: str
) -> None:
    result = invoke(["pinference", "model", model_id])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    (line,) = result.stderr.strip().splitlines()
    shown = model_id.removeprefix("pinference/")
    assert line.startswith(f"Error: invalid model id '{shown}': a path segment is '.' or"), line
    assert line.endswith("which would leave /models/")
    assert fake.requests == []


def test_backoff_does_not_stop_an_explicit_models_command(fake: FakePinference) -> None:
    fake.set_fault("list", Fault(status=503, times=1))
    invoke(["models"])
    result = invoke(["pinference", "models"])
    assert result.exit_code == 0 and "claude-sonnet-4.5" in result.stdout
    assert len(fake.requests_for("list")) == 2


def test_the_models_table_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = invoke(["pinference", "models"]).stdout.splitlines()
    assert "cache wr $/M" in wide[0]  # not a terminal: every column
    monkeypatch.setenv("COLUMNS", "80")
    narrow = invoke(["pinference", "models"]).stdout.splitlines()
    assert max(map(len, narrow)) <= 80 < max(map(len, wide))
    assert narrow[0].startswith("id") and "in $/M" in narrow[0] and "cache" not in narrow[0]
    assert len(narrow) == len(wide)  # every model, fewer columns
    monkeypatch.setenv("COLUMNS", "20")
    tiny = invoke(["pinference", "models"]).stdout.splitlines()
    assert tiny[0].split() == ["id"]  # the id always stays


def test_the_help_says_what_serving_means() -> None:
    help_text = " ".join(invoke(["pinference", "models", "--help"]).stdout.split())
    assert "serving: how the API says the model is served, `hosted`" in help_text
