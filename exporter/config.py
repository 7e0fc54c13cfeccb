"""The exporter's configuration: one frozen object, built from defaults, a YAML file and flags.

Flags and config-file keys mirror each other (`--probe.interval` is `probe: {interval: ...}`):
`OPTIONS` below is the one table of both. Every bad value raises `ConfigError` with a
one-line message naming the flag or the file key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_pinference.client import DEFAULT_MAX_BYTES
from llm_pinference.settings import Settings, normalise_base_url
from llm_pinference.text import DURATION_UNITS, format_duration, os_reason, redact_url

if TYPE_CHECKING:
    from .webconfig import WebConfig

DEFAULT_LISTEN_ADDRESS = ":8795"
DEFAULT_TELEMETRY_PATH = "/metrics"
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_SAMPLE_SIZE = 2
DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_SERIES = 1000
DEFAULT_JITTER = 0.1
MAX_CONCURRENCY = 64
MIN_RESPONSE_BYTES = 1024
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")
RESERVED_PATHS = ("/", "/-/healthy", "/-/ready")


class ConfigError(ValueError):
    """A bad flag, config-file or web-config value; `str()` is the one-line message."""


# --- value parsers ------------------------------------------------------------------

# Prometheus' own duration syntax: integer amounts, units in this order, each at most once.
_DURATION_RE = re.compile("^" + "".join(rf"(?:(?P<{u}>\d+){u})?" for u, _ in DURATION_UNITS) + "$")


def parse_duration(text: object) -> float:
    """`500ms`, `30s`, `1m30s`, `2h` (Prometheus syntax) -> seconds; `0` is zero."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{text!r} is not a duration (use e.g. 500ms, 30s, 1m30s)")
    text = text.strip()
    if text == "0":
        return 0.0
    match = _DURATION_RE.match(text)
    if match is None:
        raise ConfigError(f"{text!r} is not a duration (use e.g. 500ms, 30s, 1m30s)")
    return sum(int(match[u]) * scale for u, scale in DURATION_UNITS if match[u])


@dataclass(frozen=True)
class ListenAddress:
    host: str  # "" means every interface
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen_address(text: object) -> ListenAddress:
    """`:8795` (all interfaces), `127.0.0.1:8795`, `[::1]:8795`, `localhost:0`."""
    if not isinstance(text, str):
        raise ConfigError(f"{text!r} is not a listen address like :8795 or 127.0.0.1:8795")
    value = text.strip()
    match = re.fullmatch(r"(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^\[\]:/\s]*)):(?P<port>\d+)",
                         value)  # fmt: skip
    if match is None or int(match["port"]) > 65535:
        raise ConfigError(f"{text!r} is not a listen address like :8795 or 127.0.0.1:8795")
    return ListenAddress(match["v6"] or match["host"] or "", int(match["port"]))


def _positive_int(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    def parse(value: object) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if number is None or number < minimum or (maximum is not None and number > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(f"{value!r} is not an integer {bound}")
        return number

    return parse


def _choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise ConfigError(f"{value!r} is not one of {', '.join(choices)}")
        return value.strip().lower()

    return parse


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{value!r} is not a non-empty string")
    return value.strip()


def _path(value: object) -> str:
    return _text(value)


def _model_ids(value: object) -> tuple[str, ...]:
    """A list of model ids (a single string is one id); duplicates dropped, order kept."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(f"{value!r} is not a list of model ids")
    ids: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{item!r} is not a model id")
        if item.strip() not in ids:
            ids.append(item.strip())
    return tuple(ids)


def _base_url(value: object) -> str:
    url = normalise_base_url(_text(value))
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"{redact_url(url)!r} is not an http:// or https:// URL")
    return url


# --- the option table: flags and config-file keys ----------------------------------


@dataclass(frozen=True)
class Option:
    key: str  # section.name in the config file
    flag: str
    parse: Callable[[Any], Any]
    help: str
    metavar: str = "VALUE"
    repeat: bool = False  # a repeatable flag; a YAML list in the file
    is_path: bool = False  # relative paths in the config file are relative to the file


OPTIONS: tuple[Option, ...] = (
    Option("web.listen_address", "--web.listen-address", parse_listen_address,
           f"address to listen on, e.g. :8795 (all interfaces), 127.0.0.1:8795, [::1]:8795 "
           f"(default {DEFAULT_LISTEN_ADDRESS})", "ADDRESS"),
    Option("web.telemetry_path", "--web.telemetry-path", _text,
           f"path of the metrics endpoint (default {DEFAULT_TELEMETRY_PATH})", "PATH"),
    Option("web.config_file", "--web.config.file", _path,
           "exporter-toolkit web config (tls_server_config, basic_auth_users)", "FILE",
           is_path=True),
    Option("web.tls_cert_file", "--web.tls-cert-file", _path,
           "serve HTTPS with this certificate (PEM; needs --web.tls-key-file)", "FILE",
           is_path=True),
    Option("web.tls_key_file", "--web.tls-key-file", _path,
           "private key for --web.tls-cert-file (PEM)", "FILE", is_path=True),
    Option("probe.interval", "--probe.interval", parse_duration,
           "time between probe cycles, e.g. 30s, 1m30s (default 30s)", "DURATION"),
    Option("probe.timeout", "--probe.timeout", parse_duration,
           "timeout of one probe request; shorter than the interval "
           "(default 10s, or half the interval if that is shorter)", "DURATION"),
    Option("probe.models", "--probe.models", _model_ids,
           "a model to watch with GET /models/{id} (repeatable); exported as "
           "pinference_model_available", "MODEL", repeat=True),
    Option("probe.sample_size", "--probe.sample-size", _positive_int(0, 100),
           "without --probe.models: listed models to GET per cycle, rotating through the "
           f"catalogue (0 = none; default {DEFAULT_SAMPLE_SIZE})", "N"),
    Option("probe.concurrency", "--probe.concurrency", _positive_int(1, MAX_CONCURRENCY),
           f"GET probes running at once (default {DEFAULT_CONCURRENCY})", "N"),
    Option("probe.max_response_bytes", "--probe.max-response-bytes",
           _positive_int(MIN_RESPONSE_BYTES),
           f"largest API response accepted (default {DEFAULT_MAX_BYTES})", "BYTES"),
    Option("models.max_series", "--models.max-series", _positive_int(0),
           f"most pinference_model_info series, and pinference_models owners (default "
           f"{DEFAULT_MAX_SERIES})", "N"),
    Option("api.base_url", "--api.base-url", _base_url,
           "API base URL (default: PRIME_INFERENCE_URL, ~/.prime/config.json, "
           "https://api.pinference.ai/api/v1)", "URL"),
    Option("api.team_id", "--api.team-id", _text,
           "team id sent as X-Prime-Team-ID with the key (default: PRIME_TEAM_ID, "
           "~/.prime/config.json)", "ID"),
    Option("api.api_key_file", "--api-key-file", _path,
           "read the API key from this file, e.g. a mounted secret (default: PRIME_API_KEY, "
           "~/.prime/config.json)", "FILE", is_path=True),
    Option("log.level", "--log.level", _choice(LOG_LEVELS),
           "debug, info, warn or error (default info)", "LEVEL"),
    Option("log.format", "--log.format", _choice(LOG_FORMATS),
           "logfmt or json (default logfmt)", "FORMAT"),
)  # fmt: skip
OPTIONS_BY_KEY = {option.key: option for option in OPTIONS}


def parse_option(option: Option, value: object, where: str) -> Any:
    try:
        return option.parse(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# --- the config file ----------------------------------------------------------------


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read the YAML config file into parsed values keyed like `probe.interval`.

    Unknown sections and keys are errors (a typo must not silently fall back to a default).
    Relative file paths are resolved against the config file's directory.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {os_reason(exc)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (web, probe, models, api, log)")
    values: dict[str, Any] = {}
    sections = sorted({key.split(".")[0] for key in OPTIONS_BY_KEY})
    for section, body in data.items():
        if section not in sections:
            raise ConfigError(f"{path}: unknown section {section!r} (known: {', '.join(sections)})")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
        for name, value in body.items():
            key = f"{section}.{name}"
            option = OPTIONS_BY_KEY.get(key)
            if option is None:
                known = ", ".join(k.split(".")[1] for k in OPTIONS_BY_KEY if k.startswith(section))
                raise ConfigError(f"{path}: unknown key {key!r} (known in {section}: {known})")
            if value is None:
                continue
            parsed = parse_option(option, value, f"{path}: {key}")
            if option.is_path:
                parsed = str(path.parent / Path(parsed).expanduser())
            values[key] = parsed
    return values


def read_key_file(path: str) -> str:
    """The API key from a (mounted secret) file, whitespace stripped; empty is an error."""
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read API key file {path}: {os_reason(exc)}") from None
    if not key:
        raise ConfigError(f"API key file {path} is empty")
    if any(ch.isspace() for ch in key):
        raise ConfigError(f"API key file {path} holds more than one word")
    return key


# --- the configuration object -------------------------------------------------------


@dataclass(frozen=True)
class ExporterConfig:
    """Everything the exporter needs; `settings=None` resolves key/team/URL like the CLI."""

    settings: Settings | None = None
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    telemetry_path: str = DEFAULT_TELEMETRY_PATH
    probe_interval: float = DEFAULT_INTERVAL
    probe_timeout: float | None = None  # None: 10s, or half the interval if shorter
    probe_models: tuple[str, ...] = ()
    sample_size: int = DEFAULT_SAMPLE_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    max_series: int = DEFAULT_MAX_SERIES
    max_response_bytes: int = DEFAULT_MAX_BYTES
    jitter: float = DEFAULT_JITTER  # random extra delay per cycle, as a share of the interval
    web: WebConfig | None = None  # TLS and basic auth; None serves plain HTTP

    @property
    def timeout(self) -> float:
        if self.probe_timeout is not None:
            return self.probe_timeout
        return min(DEFAULT_TIMEOUT, self.probe_interval / 2)

    @property
    def address(self) -> ListenAddress:
        return parse_listen_address(self.listen_address)

    def check(self) -> ExporterConfig:
        """Raise ConfigError on an inconsistent value; returns self for chaining."""
        self.address  # noqa: B018 -- parses, raising ConfigError
        interval, timeout = self.probe_interval, self.timeout
        if not (math.isfinite(interval) and interval > 0):
            raise ConfigError("--probe.interval must be longer than 0s")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ConfigError("--probe.timeout must be longer than 0s")
        if timeout >= interval:
            raise ConfigError(
                f"--probe.timeout ({format_duration(timeout)}) must be shorter than "
                f"--probe.interval ({format_duration(interval)})"
            )
        path = self.telemetry_path
        if not path.startswith("/") or path in RESERVED_PATHS or any(c in path for c in "?# "):
            raise ConfigError(
                f"--web.telemetry-path: {path!r} must start with / and not be "
                f"{', '.join(RESERVED_PATHS)}"
            )
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ConfigError(f"--probe.concurrency must be from 1 to {MAX_CONCURRENCY}")
        if self.sample_size < 0 or self.max_series < 0:
            raise ConfigError("--probe.sample-size and --models.max-series must be >= 0")
        if self.max_response_bytes < MIN_RESPONSE_BYTES:
            raise ConfigError(f"--probe.max-response-bytes must be >= {MIN_RESPONSE_BYTES}")
        if not 0 <= self.jitter <= 0.5:
            raise ConfigError("jitter must be from 0 to 0.5 of the interval")
        if any(not isinstance(m, str) or not m for m in self.probe_models):
            raise ConfigError("--probe.models: model ids must be non-empty strings")
        return self
