"""Log lines in the Prometheus ecosystem's style: logfmt (default) or JSON, on stderr.

    ts=2025-01-02T03:04:05.678Z level=warn logger=exporter.prober msg="probe failed" endpoint=list

Structured fields go in `extra=kv(...)`. Every formatted line passes through a redaction
of the API key: defence in depth, as nothing logged should contain it in the first place.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from llm_pinference.core.text import redact

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
          logging.ERROR: "error", logging.CRITICAL: "error"}  # fmt: skip
_BARE = re.compile(r"^[^\s\"=\\]+$")


def kv(**fields: Any) -> dict[str, Any]:
    """`log.info("msg", extra=kv(endpoint="list"))`: fields rendered after msg."""
    return {"kv": fields}


Secrets = Iterable[str | None] | Callable[[], Iterable[str | None]]


class _Formatter(logging.Formatter):
    def __init__(self, secrets: Secrets = ()) -> None:
        super().__init__()
        # A callable is asked on every line: a reload may bring new keys.
        self._secrets = secrets if callable(secrets) else tuple(secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        found = self._secrets() if callable(self._secrets) else self._secrets
        return tuple(s for s in found if s)

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": _NAMES.get(record.levelno, record.levelname.lower()),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(getattr(record, "kv", {}) or {})
        if record.exc_info and record.exc_info[1] is not None:
            # One line: the exception type and message, never a multi-line traceback.
            exc = record.exc_info[1]
            data["err"] = f"{type(exc).__name__}: {exc}"
        return data

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.render(self.fields(record)), self.secrets)

    def render(self, data: dict[str, Any]) -> str:
        raise NotImplementedError


class LogfmtFormatter(_Formatter):
    def render(self, data: dict[str, Any]) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in data.items())


class JsonFormatter(_Formatter):
    def render(self, data: dict[str, Any]) -> str:
        return json.dumps(data, default=str, ensure_ascii=False)


def _logfmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = "" if value is None else str(value)
    if _BARE.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def setup_logging(
    level: str = "info",
    fmt: str = "logfmt",
    secrets: Secrets = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every logger's records (ours, the core's, urllib3's) to one formatted handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter = JsonFormatter(secrets) if fmt == "json" else LogfmtFormatter(secrets)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # urllib3's connection chatter is noise even at debug; its warnings still show.
    logging.getLogger("urllib3").setLevel(max(LEVELS[level], logging.INFO))
    return handler
