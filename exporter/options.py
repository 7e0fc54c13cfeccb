"""The exporter's options: one table gives each its flag, config-file key, environment
variable, default, help text and parser. The CLI, the config file and the help are built
from it; nothing else describes an option.

Values are checked by parsers that raise `ConfigError` with a one-line message; the
caller adds where the value came from (a flag, or a key in a file).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from llm_pinference.core.client import DEFAULT_MAX_BYTES, check_model_id
from llm_pinference.core.errors import InvalidModelId
from llm_pinference.core.settings import (
    DEFAULT_BASE_URL,
    ENV_KEY,
    ENV_TEAM,
    ENV_URL,
    normalise_base_url,
)
from llm_pinference.core.text import (
    format_duration,
    printable,
    redact_url,
)
from llm_pinference.core.text import parse_duration as core_parse_duration

DEFAULT_TIMEOUT = 10.0  # or half the interval, if that is shorter
DEFAULT_JITTER = 0.1
MIN_INTERVAL = 1.0  # for flags and files; the in-process API allows faster probing (tests)
MAX_INTERVAL = 86400.0
MAX_CONCURRENCY = 64
MIN_RESPONSE_BYTES = 1024
# The chat probe costs money: its interval has a floor, and its rate a cap per hour.
MIN_CHAT_INTERVAL = 60.0
DEFAULT_CHAT_INTERVAL = 300.0
DEFAULT_CHAT_MAX_PER_HOUR = 60
DEFAULT_CHAT_MAX_TOKENS = 8
MAX_CHAT_TOKENS = 128
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")
PRIME_CONFIG = "~/.prime/config.json"  # the prime CLI's file, read by the core's settings
MAX_CONFIG_BYTES = 1 << 20  # config and web config files, certificates, CA bundles
MAX_KEY_BYTES = 64 << 10  # API keys and TLS private keys
MAX_YAML_NODES = 100_000  # values in a YAML document, each alias counted as what it stands for


class ConfigError(ValueError):
    """A bad flag, config-file or web-config value; `str()` is the one-line message, with
    controls and lone surrogates escaped whatever the value or path quoted in it."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 2, 60, 60


def shown(value: object) -> str:
    """A value as an error message quotes it: one line, bounded, whatever it holds."""
    try:
        return _SHOWN.repr(value)
    except ValueError:  # an integer of more digits than Python prints
        return f"a {type(value).__name__} too large to show"


# --- value parsers ------------------------------------------------------------------


def parse_duration(text: object) -> float:
    """`500ms`, `30s`, `1m30s`, `2h` (Prometheus syntax) -> seconds; `0` is zero."""
    try:
        return core_parse_duration(text if isinstance(text, str) else "")
    except ValueError:
        raise ConfigError(f"{shown(text)} is not a duration (use e.g. 500ms, 30s, 1m30s)") from None


@dataclass(frozen=True)
class ListenAddress:
    host: str  # "" means every interface
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_LISTEN_RE = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^\[\]:/\s]*)):(?P<port>[0-9]{1,5})", re.ASCII
)


def parse_listen_address(text: object) -> ListenAddress:
    """`:8795` (all interfaces), `127.0.0.1:8795`, `[::1]:8795`, `localhost:0`."""
    match = _LISTEN_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or int(match["port"]) > 65535:
        raise ConfigError(f"{shown(text)} is not a listen address like :8795 or 127.0.0.1:8795")
    return ListenAddress(match["v6"] or match["host"] or "", int(match["port"]))


def _integer(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    def parse(value: object) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):
            number = int(value.strip())  # ASCII digits only: `²` is a digit to isdigit()
        if number is None or number < minimum or (maximum is not None and number > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(f"{shown(value)} is not an integer {bound}")
        return number

    return parse


def _choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise ConfigError(f"{shown(value)} is not one of {', '.join(choices)}")
        return value.strip().lower()

    return parse


def non_empty_string(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{shown(value)} is not a non-empty string")
    return value.strip()


def _word(value: object) -> str:
    """Printable ASCII without blanks: what an HTTP header or a label can carry as it is."""
    if not isinstance(value, str) or not re.fullmatch(r"[!-~]+", value.strip()):
        raise ConfigError(f"{shown(value)} is not one word of printable ASCII")
    return value.strip()


def _list_of(what: str, item: Callable[[object], Any]) -> Callable[[object], tuple[Any, ...]]:
    """A YAML list or a repeated flag (one string is a list of one); duplicates dropped."""

    def parse(value: object) -> tuple[Any, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{shown(value)} is not a list of {what}s")
        return tuple(dict.fromkeys(map(item, items)))

    return parse


def _model_id(value: object) -> str:
    try:
        return check_model_id(non_empty_string(value))
    except InvalidModelId as exc:
        raise ConfigError(exc.message) from None


def _listen_address(value: object) -> str:
    parse_listen_address(value)  # raises ConfigError
    return str(value).strip()


def _bounded_duration(minimum: float, maximum: float) -> Callable[[object], float]:
    def parse(value: object) -> float:
        seconds = parse_duration(value)
        if not minimum <= seconds <= maximum:
            raise ConfigError(
                f"{shown(value)} is outside {format_duration(minimum)} to "
                f"{format_duration(maximum)}"
            )
        return seconds

    return parse


def _switch(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{shown(value)} is not true or false")


ACCOUNT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def account_name(value: object) -> str:
    """A label-safe account name: letters, digits, `_` and `-`, at most 63 characters."""
    if not isinstance(value, str) or not ACCOUNT_NAME_RE.fullmatch(value):
        raise ConfigError(
            f"{shown(value)} is not an account name (letters, digits, _ and -; at most 63, "
            "starting with a letter or digit)"
        )
    return value


def _base_url(value: object) -> str:
    url = normalise_base_url(non_empty_string(value))
    if not re.match(r"https?://[^/\s]+", url) or not url.isprintable() or " " in url:
        raise ConfigError(f"{shown(redact_url(url))} is not an http:// or https:// URL")
    return url


RESERVED_PATHS = ("/", "/-/healthy", "/-/ready", "/-/reload")


def _telemetry_path(value: object) -> str:
    path = non_empty_string(value)
    if not re.fullmatch(r"/[!-~]*", path) or path in RESERVED_PATHS or any(c in path for c in "?#"):
        raise ConfigError(f"{shown(path)} must start with / and not be {', '.join(RESERVED_PATHS)}")
    return path


# --- the table ----------------------------------------------------------------------


class Target(Enum):
    """What an option's value configures (the field of that name in it)."""

    EXPORTER = "exporter"  # an ExporterConfig field
    ACCOUNT = "account"  # an AccountConfig field (the account's API and probes)
    WEB = "web"  # an argument of webconfig.load_web_config


@dataclass(frozen=True)
class Option:
    key: str  # `section.name` in the config file
    flag: str
    target: Target
    field: str  # the field (or argument) of the target that takes the value
    parse: Callable[[Any], Any]
    help: str  # what it does; the default is added from `default` or `default_help`
    default: Any = None
    default_help: str | None = None  # for a default that is not one value
    env: str | None = None  # the environment variable (resolved by the core's settings)
    metavar: str = "VALUE"
    repeat: bool = False  # a repeatable flag; a YAML list in the file
    switch: bool = False  # a flag without a value; true or false in the file
    is_path: bool = False  # relative paths in the config file are relative to the file
    show: Callable[[Any], str] = str  # the default as the help shows it
    account_key: str | None = None  # its key in an entry of the file's `accounts` list

    @property
    def full_help(self) -> str:
        if self.default_help is not None:
            default = self.default_help
        elif self.default is None:
            return self.help
        else:
            default = self.show(self.default)
        if self.env:
            default = f"${self.env}, else {PRIME_CONFIG}, else {default}"
        return f"{self.help} (default: {default})"


OPTIONS: tuple[Option, ...] = (
    Option("web.listen_address", "--web.listen-address", Target.EXPORTER, "listen_address",
           _list_of("listen address", _listen_address), "address to listen on, e.g. :8795 "
           "(all interfaces), 127.0.0.1:8795, [::1]:8795 (repeatable: listens on each)",
           default=(":8795",), show=", ".join, metavar="ADDRESS", repeat=True),
    Option("web.telemetry_path", "--web.telemetry-path", Target.EXPORTER, "telemetry_path",
           _telemetry_path, "path of the metrics endpoint", default="/metrics", metavar="PATH"),
    Option("web.config_file", "--web.config.file", Target.WEB, "path", non_empty_string,
           "exporter-toolkit web config (tls_server_config, http_server_config, "
           "basic_auth_users); read again when it changes",
           metavar="FILE", is_path=True),
    Option("web.tls_cert_file", "--web.tls-cert-file", Target.WEB, "cert_file",
           non_empty_string, "serve HTTPS with this certificate (PEM; needs "
           "--web.tls-key-file)", metavar="FILE", is_path=True),
    Option("web.tls_key_file", "--web.tls-key-file", Target.WEB, "key_file", non_empty_string,
           "private key for --web.tls-cert-file (PEM)", metavar="FILE", is_path=True),
    Option("web.enable_lifecycle", "--web.enable-lifecycle", Target.EXPORTER,
           "enable_lifecycle", _switch, "accept POST /-/reload (SIGHUP reloads in any case)",
           default=False, show=lambda _: "off", switch=True),
    Option("probe.interval", "--probe.interval", Target.EXPORTER, "probe_interval",
           _bounded_duration(MIN_INTERVAL, MAX_INTERVAL), "time between probe cycles, e.g. "
           f"30s, 1m30s; from {format_duration(MIN_INTERVAL)} to "
           f"{format_duration(MAX_INTERVAL)}", default=30.0,
           show=format_duration, metavar="DURATION"),
    Option("probe.timeout", "--probe.timeout", Target.EXPORTER, "probe_timeout",
           parse_duration, "timeout of one probe request; shorter than the interval",
           default_help=f"{format_duration(DEFAULT_TIMEOUT)}, or half the interval if that "
           "is shorter", metavar="DURATION"),
    Option("probe.models", "--probe.models", Target.ACCOUNT, "probe_models",
           _list_of("model id", _model_id), "a model to watch with GET /models/{id} "
           "(repeatable); exported as pinference_model_available", metavar="MODEL",
           repeat=True, account_key="models"),
    Option("probe.sample_size", "--probe.sample-size", Target.ACCOUNT, "sample_size",
           _integer(0, 100), "without --probe.models: listed models to GET per cycle, "
           "rotating through the catalog (0 = none)", default=2, metavar="N",
           account_key="sample_size"),
    Option("probe.concurrency", "--probe.concurrency", Target.EXPORTER, "concurrency",
           _integer(1, MAX_CONCURRENCY), "GET probes running at once", default=4,
           metavar="N"),
    Option("probe.max_response_bytes", "--probe.max-response-bytes", Target.EXPORTER,
           "max_response_bytes", _integer(MIN_RESPONSE_BYTES),
           "largest API response accepted", default=DEFAULT_MAX_BYTES, metavar="BYTES"),
    Option("models.max_series", "--models.max-series", Target.EXPORTER, "max_series",
           _integer(0), "most pinference_model_info series, and pinference_models owners",
           default=1000, metavar="N"),
    Option("api.base_url", "--api.base-url", Target.ACCOUNT, "base_url", _base_url,
           "API base URL", default=DEFAULT_BASE_URL, env=ENV_URL, metavar="URL",
           account_key="base_url"),
    Option("api.team_id", "--api.team-id", Target.ACCOUNT, "team_id", _word,
           "team id sent as X-Prime-Team-ID with the key", default_help="none", env=ENV_TEAM,
           metavar="ID", account_key="team_id"),
    Option("api.ca_file", "--api.ca-file", Target.ACCOUNT, "ca_file", non_empty_string,
           "PEM file of the certificate authorities to trust for the API instead of the "
           "system's (a private CA; re-read on reload)", default_help="the system's",
           metavar="FILE", is_path=True, account_key="ca_file"),
    Option("api.key_file", "--api.key-file", Target.ACCOUNT, "key_file", non_empty_string,
           "read the API key from this file, e.g. a mounted secret (re-read on reload)",
           default_help=f"the key in ${ENV_KEY}, else in {PRIME_CONFIG}", metavar="FILE",
           is_path=True, account_key="key_file"),
    Option("probe.chat.models", "--probe.chat.models", Target.ACCOUNT, "chat_models",
           _list_of("model id", _model_id), "a model to probe with a tiny streamed "
           "chat completion (repeatable). It costs money: no chat probe without it",
           default_help="none", metavar="MODEL", repeat=True, account_key="chat.models"),
    Option("probe.chat.interval", "--probe.chat.interval", Target.ACCOUNT, "chat_interval",
           _bounded_duration(MIN_CHAT_INTERVAL, MAX_INTERVAL), "time between chat probes "
           f"of each model, from {format_duration(MIN_CHAT_INTERVAL)} to "
           f"{format_duration(MAX_INTERVAL)}", default=DEFAULT_CHAT_INTERVAL,
           show=format_duration, metavar="DURATION", account_key="chat.interval"),
    Option("probe.chat.max_tokens", "--probe.chat.max-tokens", Target.ACCOUNT,
           "chat_max_tokens", _integer(1, MAX_CHAT_TOKENS), "most output tokens a chat "
           "probe asks for", default=DEFAULT_CHAT_MAX_TOKENS, metavar="N",
           account_key="chat.max_tokens"),
    Option("probe.chat.max_per_hour", "--probe.chat.max-per-hour", Target.ACCOUNT,
           "chat_max_per_hour", _integer(1, 3600), "most chat probes per hour of the "
           "account, all models together; more models than the interval allows is refused",
           default=DEFAULT_CHAT_MAX_PER_HOUR, metavar="N", account_key="chat.max_per_hour"),
    Option("log.level", "--log.level", Target.EXPORTER, "log_level", _choice(LOG_LEVELS),
           f"{', '.join(LOG_LEVELS)}", default="info", metavar="LEVEL"),
    Option("log.format", "--log.format", Target.EXPORTER, "log_format", _choice(LOG_FORMATS),
           f"{' or '.join(LOG_FORMATS)}", default="logfmt", metavar="FORMAT"),
)  # fmt: skip
OPTIONS_BY_KEY = {option.key: option for option in OPTIONS}


def default(key: str) -> Any:
    """The table's default for an option (the config dataclasses' defaults come from here)."""
    return OPTIONS_BY_KEY[key].default


def parse_option(option: Option, value: object, where: str) -> Any:
    try:
        return option.parse(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def markdown() -> str:
    """The table of docs/configuration.md (`python -m pinference_exporter.options`)."""

    def cell(text: str | None) -> str:
        return (text or "").replace("|", "\\|")

    def code(name: str | None) -> str:
        return f"`{name}`" if name else ""

    rows = [
        f"| `{o.flag}`{' (repeatable)' if o.repeat else ''} | `{o.key}` | "
        f"{code(o.account_key)} | {code(o.env)} | "
        f"{cell(o.default_help or ('' if o.default is None else o.show(o.default)))} | "
        f"{cell(o.help)} |"
        for o in OPTIONS
    ]
    return "\n".join([
        "| flag | file key | per-account key | environment | default | meaning |",
        "|---|---|---|---|---|---|",
        *rows,
        "| `--config.file` | | | | | the YAML file of these keys; read again on SIGHUP |",
        "| `--config.check` | | | | | check the flags and every file, print `ok`, exit |",
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    print(markdown(), end="")
