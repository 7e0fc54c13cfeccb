"""Log lines in the Prometheus ecosystem's style: logfmt (default) or JSON, on stderr.

    ts=2025-01-02T03:04:05.678Z level=warn logger=exporter.prober msg="probe failed" endpoint=list

Structured fields go in `extra=kv(...)`. Every formatted line passes through a redaction
of the API keys: defence in depth, as nothing logged should contain one in the first place.
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

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip
_NAMES = {number: name for name, number in LEVELS.items()} | {logging.CRITICAL: "error"}
_BARE = re.compile(r"[^\s\"=\\]+")


def kv(**fields: Any) -> dict[str, Any]:
    """`log.info("msg", extra=kv(endpoint="list"))`: fields rendered after msg."""
    return {"kv": fields}


class Formatter(logging.Formatter):
    def __init__(self, as_json: bool, secrets: Callable[[], Iterable[str | None]]) -> None:
        super().__init__()
        self._json = as_json
        self._secrets = secrets  # asked on every line: a reload may bring new keys

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": _NAMES.get(record.levelno, record.levelname.lower()),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "kv", {}),
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]  # one line, never a multi-line traceback
            data["err"] = f"{type(exc).__name__}: {exc}"
        if self._json:
            line = json.dumps(data, default=str, ensure_ascii=False)
        else:
            line = " ".join(f"{key}={_logfmt(value)}" for key, value in data.items())
        return redact(line, self._secrets())


def _logfmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = "" if value is None else str(value)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)  # quoted, with \" \\ \n \r \t escaped


def setup_logging(
    level: str,
    fmt: str,
    secrets: Callable[[], Iterable[str | None]],
    stream: TextIO | None = None,
) -> None:
    """Send every logger's records (ours, the core's, urllib3's) to one formatted handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(Formatter(fmt == "json", secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # urllib3's connection chatter is noise even at debug; its warnings still show.
    logging.getLogger("urllib3").setLevel(max(LEVELS[level], logging.INFO))
