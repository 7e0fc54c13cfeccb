"""Text rules shared by the core and both front ends: redaction, one-line messages,
terminal-safe strings and durations as people read them.

Standard library only, cheap to import: llm imports the plugin (and so this) on every command.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

REDACTED = "***"
#: Secrets shorter than this are not searched for: replacing "ab" everywhere would mangle
#: messages and hide nothing (such a key is not a real one).
MIN_SECRET_LENGTH = 4

_URL = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?:(?P<userinfo>[^@/?#]*)@)?(?P<rest>[^?#]*)"
)
# C0 and C1 controls, DEL, and the escape introducer: what a terminal or log reader would act
# on; and lone surrogates (JSON can carry them), which no output stream can encode.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

# Units of Prometheus' duration syntax, largest first.
DURATION_UNITS: tuple[tuple[str, float], ...] = (
    ("y", 365 * 86400),
    ("w", 7 * 86400),
    ("d", 86400),
    ("h", 3600),
    ("m", 60),
    ("s", 1),
    ("ms", 0.001),
)


_DURATION = re.compile("".join(rf"(?:(?P<{u}>\d+(?:\.\d+)?){u})?" for u, _ in DURATION_UNITS))

#: API objects nest 6 levels deep; JSON past this is refused (nothing downstream, the cache
#: file or a re-encoding, then meets a structure that exhausts the stack).
MAX_JSON_DEPTH = 64


class JSONError(ValueError):
    """Data that is not JSON, or nested deeper than MAX_JSON_DEPTH: `str()` is `not JSON`
    or `nested too deeply`, `detail` where (`line 3`) or why (`nested too deeply`)."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def load_json(data: str | bytes) -> object:
    """Decoded JSON, or JSONError."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise JSONError("nested too deeply", "nested too deeply") from None
    except UnicodeDecodeError:
        raise JSONError("not JSON", "not UTF-8") from None
    except ValueError as exc:  # with no line: an integer past Python's 4300 digits
        line = getattr(exc, "lineno", None)
        raise JSONError("not JSON", f"line {line}" if line else "a number too long") from None
    todo: list[tuple[object, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    while todo:  # iterative: the depth of what decoded is still unknown
        item, depth = todo.pop()
        if depth > MAX_JSON_DEPTH:
            raise JSONError("nested too deeply", "nested too deeply")
        children = item.values() if isinstance(item, dict) else item
        todo.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))  # type: ignore[union-attr]
    return value


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each (non-trivial) secret in text."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, REDACTED)
    return text


def redact_data(value: object, secrets: Iterable[str | None]) -> object:
    """Decoded JSON (nested at most MAX_JSON_DEPTH) with every secret replaced in every
    string, keys included."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [redact_data(item, secrets) for item in value]
    if isinstance(value, dict):
        return {redact(str(k), secrets): redact_data(v, secrets) for k, v in value.items()}
    return value


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The credentials embedded in a URL (`https://user:pass@host/`), to redact elsewhere."""
    match = _URL.match(url or "")
    if match is None or match["userinfo"] is None:
        return ()
    user, _, password = match["userinfo"].partition(":")
    return tuple(part for part in (match["userinfo"], password, user) if part)


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to show, log and use as a key."""
    match = _URL.match(url)
    return match["scheme"] + match["rest"] if match else url.split("?", 1)[0].split("#", 1)[0]


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace so a message stays on one line, and bound its length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def printable(text: str) -> str:
    """`text` with control characters (ANSI escapes included) shown as `\\xNN` escapes, and
    lone surrogates as `\\uNNNN`: data from the API must not drive the user's terminal,
    forge log lines or make printing fail."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def format_duration(seconds: float) -> str:
    """Seconds in Prometheus' duration syntax: 90 -> `1m30s`, 0.5 -> `500ms`, 0 -> `0s`."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    parts = []
    for unit, scale in DURATION_UNITS:
        step = round(scale * 1000)
        if millis >= step:
            parts.append(f"{millis // step}{unit}")
            millis %= step
    return "".join(parts)


def parse_duration(text: str) -> float:
    """Prometheus' duration syntax -> seconds: `500ms`, `30s`, `1m30s`, `7d`, `0` (units
    largest first, each at most once; `1.5h` too). ValueError with a one-line message if
    not. The inverse of `format_duration`."""
    text = text.strip() if isinstance(text, str) else ""
    if text == "0":
        return 0.0
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 500ms, 30s, 1m30s, 24h, 7d)")
    return sum(float(match[unit]) * scale for unit, scale in DURATION_UNITS if match[unit])


def format_age(seconds: float) -> str:
    """A rough age for people: `45s`, `12 min`, `3 h`, `2 days`."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def os_reason(exc: BaseException) -> str:
    """A short reason for an OS-level failure (`No such file or directory`), no paths."""
    return getattr(exc, "strerror", None) or type(exc).__name__
