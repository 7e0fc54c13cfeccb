"""The shared text rules on hostile input: terminal-safe text, one bounded line, redaction."""

from __future__ import annotations

import pytest

from llm_pinference.core.client import check_model_id
from llm_pinference.core.errors import InvalidModelId
from llm_pinference.core.text import one_line, printable, redact, url_secrets


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


def test_one_line_is_one_bounded_line() -> None:
    assert one_line("a\n\n b\t c") == "a b c"
    long = one_line("word " * 500)
    assert len(long) == 300 and long.endswith("...")


def test_redact_and_url_secrets() -> None:
    assert redact("key pit_abc123 and pit_abc123", ["pit_abc123", None, "ab"]) == "key *** and ***"
    assert url_secrets("https://u:p4ss@h/x") == ("u:p4ss", "p4ss", "u")
    assert url_secrets("https://h/x") == ()


def test_an_id_that_is_not_valid_unicode_is_refused() -> None:
    with pytest.raises(InvalidModelId) as info:
        check_model_id("team/\ud800model")
    str(info.value).encode("utf-8")  # the message itself can be printed
    assert "\\ud800" in str(info.value)
