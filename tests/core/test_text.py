"""The shared text rules: durations and ages as people read them, redaction, the one-line
rule and terminal-safe text, on ordinary and hostile input."""

from __future__ import annotations

import errno

import pytest

from llm_pinference.core.client import check_model_id
from llm_pinference.core.errors import InvalidModelId
from llm_pinference.core.text import (
    format_age,
    format_duration,
    one_line,
    os_reason,
    parse_duration,
    printable,
    redact,
    redact_data,
    redact_url,
    url_secrets,
)


@pytest.mark.parametrize(
    "seconds, shown",
    [
        (0, "0s"),
        (0.0004, "0s"),  # under a millisecond
        (-5, "0s"),
        (0.001, "1ms"),
        (0.5, "500ms"),
        (1, "1s"),
        (1.5, "1s500ms"),
        (59.999, "59s999ms"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (3661, "1h1m1s"),
        (86400, "1d"),
        (7 * 86400, "1w"),
        (365 * 86400 + 1, "1y1s"),
        (2 * 365 * 86400 + 8 * 86400, "2y1w1d"),
    ],
)
def test_durations_read_as_prometheus_writes_them(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


@pytest.mark.parametrize("seconds", [0.001, 0.25, 1, 29.5, 61, 3599.999, 90061, 31_622_400])
def test_a_shown_duration_reads_back_as_the_same_duration(seconds: float) -> None:
    """What the exporter prints (`--probe.interval=1m30s`) reads back as the same."""
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "seconds, shown",
    [
        (-3, "0s"),
        (0, "0s"),
        (45, "45s"),
        (119.4, "119s"),
        (120, "2 min"),
        (179, "3 min"),
        (7199, "120 min"),
        (7200, "2 h"),
        (172_799, "48 h"),
        (172_800, "2 days"),
        (30 * 86400, "30 days"),
    ],
)
def test_ages_change_unit_at_two_of_the_next(seconds: float, shown: str) -> None:
    assert format_age(seconds) == shown


def test_os_reasons_are_the_system_words_without_paths() -> None:
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/secret/path")
    assert os_reason(missing) == "No such file or directory"
    assert os_reason(PermissionError()) == "PermissionError"  # no strerror: the kind
    assert os_reason(ValueError("bad /secret/path")) == "ValueError"


def test_a_secret_of_the_shortest_length_is_still_hidden() -> None:
    assert redact("key abcd in text", ["abcd", "abc"]) == "key *** in text"
    assert redact_data({"abcd": ["abcd", "abc"]}, ["abcd"]) == {"***": ["***", "abc"]}


@pytest.mark.parametrize(
    "url, shown",
    [
        ("host:8080/v1?token=abc#frag", "host:8080/v1"),
        ("host/v1#frag?not-a-query", "host/v1"),
        ("host/v1?a=1?b=2", "host/v1"),
        ("/relative/path?key=k-1234", "/relative/path"),
        ("no-separator", "no-separator"),
    ],
)
def test_urls_without_a_scheme_lose_query_and_fragment(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_one_line_is_one_line_of_at_most_the_limit() -> None:
    assert one_line("a\n\n b\t c") == "a b c"
    exact = "x" * 300
    assert one_line(exact) == exact
    assert one_line("y" * 301) == "y" * 297 + "..."
    assert one_line("z" * 20, limit=10) == "z" * 7 + "..."


@pytest.mark.parametrize(
    "text, seconds",
    [("90m", 5400), ("24h", 86400), ("7d", 604800), ("2w", 1209600), ("1h30m", 5400),
     ("500ms", 0.5), ("1.5h", 5400), ("0", 0), (" 30s ", 30)],
)  # fmt: skip
def test_durations_in_prometheus_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1x", "m", "5 m", "-1h", "1s1m", "1m1m", "0s0"])
def test_what_is_not_a_duration_says_so(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration: .* \(examples: 500ms, "):
        parse_duration(text)


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("plain text, é, 模型", "plain text, é, 模型"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("a\rb\nc\td", "a\\x0db\\x0ac\\x09d"),
        ("nul\x00del\x7fcsi\x9b", "nul\\x00del\\x7fcsi\\x9b"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    printable(raw).encode("utf-8")  # always printable: no lone surrogate survives


def test_redact_and_url_secrets() -> None:
    assert redact("key pit_abc123 and pit_abc123", ["pit_abc123", None, "ab"]) == "key *** and ***"
    assert url_secrets("https://u:p4ss@h/x") == ("u:p4ss", "p4ss", "u")
    assert url_secrets("https://h/x") == ()
    colon = url_secrets("https://user:pa:ss@host/v1")  # a password with a colon: hidden whole
    assert redact("pa:ss leaked", colon) == "*** leaked"


def test_an_id_that_is_not_valid_unicode_is_refused() -> None:
    with pytest.raises(InvalidModelId) as info:
        check_model_id("team/\ud800model")
    str(info.value).encode("utf-8")  # the message itself can be printed
    assert "\\ud800" in str(info.value)
