"""The exporter's configuration: frozen objects built from the option table's defaults, a
YAML file, the environment and flags.

Flags and config-file keys mirror each other (`--probe.interval` is `probe: {interval: ...}`);
`options.OPTIONS` is the one table of both. Every bad value raises `ConfigError` with a
one-line message naming the flag or the file key.

Accounts: flags, the environment and the file's `api`/`probe` sections describe one account,
`default`. A file may list `accounts` instead; each entry then says everything about its
account (nothing comes from the environment), and the one-account flags are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_pinference.core.settings import Settings, resolve_settings
from llm_pinference.core.text import format_duration, os_reason

from .options import (
    DEFAULT_JITTER,
    DEFAULT_TIMEOUT,
    MAX_CHAT_TOKENS,
    MAX_CONCURRENCY,
    MAX_INTERVAL,
    MIN_RESPONSE_BYTES,
    OPTIONS,
    OPTIONS_BY_KEY,
    RENAMED,
    ConfigError,
    ListenAddress,
    Option,
    Target,
    account_name,
    default,
    parse_duration,
    parse_listen_address,
    parse_option,
)
from .webconfig import WebConfig, load_web_config

__all__ = [
    "DEFAULT_ACCOUNT",
    "AccountConfig",
    "ConfigError",
    "ExporterConfig",
    "ListenAddress",
    "build_config",
    "load_config_file",
    "parse_duration",
    "parse_listen_address",
    "read_key_file",
]

DEFAULT_ACCOUNT = "default"
RESERVED_PATHS = ("/", "/-/healthy", "/-/ready", "/-/reload")
ACCOUNTS_KEY = "accounts"  # the config file's list of accounts
ACCOUNT_OPTIONS = tuple(o for o in OPTIONS if o.target is Target.ACCOUNT)


@dataclass(frozen=True)
class AccountConfig:
    """One account: a name (the `account` label), where to probe, as whom, which models."""

    name: str = DEFAULT_ACCOUNT
    base_url: str = default("api.base_url")
    team_id: str | None = None
    api_key: str | None = field(default=None, repr=False)
    key_file: str | None = None  # where api_key was read, if from a file
    probe_models: tuple[str, ...] = ()
    sample_size: int = default("probe.sample_size")
    ca_file: str | None = None  # certificate authorities to trust instead of the system's
    chat_models: tuple[str, ...] = ()  # none: no chat probe (it costs money)
    chat_interval: float = default("probe.chat.interval")
    chat_max_tokens: int = default("probe.chat.max_tokens")
    chat_max_per_hour: int = default("probe.chat.max_per_hour")

    @property
    def settings(self) -> Settings:
        return Settings(api_key=self.api_key, team_id=self.team_id, base_url=self.base_url)

    @classmethod
    def from_settings(cls, settings: Settings, **fields: Any) -> AccountConfig:
        return cls(base_url=settings.base_url, team_id=settings.team_id,
                   api_key=settings.api_key, **fields)  # fmt: skip

    def check(self) -> AccountConfig:
        account_name(self.name)
        if self.sample_size < 0:
            raise ConfigError(f"account {self.name}: sample size must be >= 0")
        if any(not isinstance(m, str) or not m for m in (*self.probe_models, *self.chat_models)):
            raise ConfigError(f"account {self.name}: model ids must be non-empty strings")
        if self.chat_models:
            self._check_chat()
        return self

    @property
    def chat_probes_per_hour(self) -> float:
        """How many chat probes an hour the schedule makes (every model, every interval)."""
        return len(self.chat_models) * 3600 / self.chat_interval if self.chat_models else 0.0

    def _check_chat(self) -> None:
        interval = self.chat_interval
        if not (math.isfinite(interval) and 0 < interval <= MAX_INTERVAL):
            raise ConfigError(f"account {self.name}: chat probe interval out of range")
        if not 1 <= self.chat_max_tokens <= MAX_CHAT_TOKENS:
            raise ConfigError(
                f"account {self.name}: chat max tokens must be from 1 to {MAX_CHAT_TOKENS}"
            )
        if self.chat_max_per_hour < 1:
            raise ConfigError(f"account {self.name}: chat probes per hour must be >= 1")
        # Refused rather than silently thinned out: the operator chose the models.
        if self.chat_probes_per_hour > self.chat_max_per_hour + 1e-9:
            raise ConfigError(
                f"account {self.name}: {len(self.chat_models)} chat model(s) every "
                f"{format_duration(interval)} make {self.chat_probes_per_hour:g} chat probes an "
                f"hour, above the cap of {self.chat_max_per_hour} (probe.chat.max_per_hour): "
                "probe fewer models, less often, or raise the cap"
            )


@dataclass(frozen=True)
class ExporterConfig:
    """Everything the exporter needs.

    `accounts` lists the accounts to probe. Without it, `settings`, `probe_models` and
    `sample_size` describe the one account `default` (`settings=None` resolves key, team
    and base URL from the environment, like the CLI).
    """

    settings: Settings | None = None
    listen_address: str | tuple[str, ...] = default("web.listen_address")
    telemetry_path: str = default("web.telemetry_path")
    probe_interval: float = default("probe.interval")
    probe_timeout: float | None = None  # None: DEFAULT_TIMEOUT, or half the interval if shorter
    probe_models: tuple[str, ...] = ()
    sample_size: int = default("probe.sample_size")
    concurrency: int = default("probe.concurrency")
    max_series: int = default("models.max_series")
    max_response_bytes: int = default("probe.max_response_bytes")
    jitter: float = DEFAULT_JITTER  # random extra delay per cycle, as a share of the interval
    web: WebConfig | None = None  # TLS, basic auth and headers; None serves plain HTTP
    accounts: tuple[AccountConfig, ...] = ()
    enable_lifecycle: bool = default("web.enable_lifecycle")
    log_level: str = default("log.level")
    log_format: str = default("log.format")

    @property
    def timeout(self) -> float:
        if self.probe_timeout is not None:
            return self.probe_timeout
        return min(DEFAULT_TIMEOUT, self.probe_interval / 2)

    @property
    def addresses(self) -> tuple[ListenAddress, ...]:
        given = self.listen_address
        return tuple(map(parse_listen_address, [given] if isinstance(given, str) else given))

    @property
    def address(self) -> ListenAddress:
        """The first listen address (the one `Exporter.url` points at)."""
        return self.addresses[0]

    def resolved_accounts(self) -> tuple[AccountConfig, ...]:
        """The accounts to probe; the one-account shorthand resolved (environment read now)."""
        if self.accounts:
            return self.accounts
        settings = self.settings if self.settings is not None else resolve_settings()
        return (
            AccountConfig.from_settings(
                settings, probe_models=self.probe_models, sample_size=self.sample_size
            ),
        )

    def check(self) -> ExporterConfig:
        """Raise ConfigError on an inconsistent value; returns self for chaining."""
        if not self.addresses:
            raise ConfigError("--web.listen-address: give at least one address")
        interval, timeout = self.probe_interval, self.timeout
        if not (math.isfinite(interval) and 0 < interval <= MAX_INTERVAL):
            longest = format_duration(MAX_INTERVAL)
            raise ConfigError(f"--probe.interval must be longer than 0s and at most {longest}")
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
        names = [account.check().name for account in self.accounts]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"account name {duplicates[0]!r} is used more than once")
        return self


# --- building it: flags over the file, over the environment and defaults -----------


@dataclass(frozen=True)
class Values:
    """Parsed option values keyed like `probe.interval`, and where each came from."""

    values: Mapping[str, Any] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)  # key -> flag or "FILE: key"
    accounts: tuple[Mapping[str, Any], ...] | None = None  # the file's list, parsed
    accounts_origin: str = ""

    def over(self, lower: Values) -> Values:
        """These values on top of `lower` (the file's list of accounts is kept)."""
        return Values(
            {**lower.values, **self.values},
            {**lower.origins, **self.origins},
            self.accounts if self.accounts is not None else lower.accounts,
            self.accounts_origin or lower.accounts_origin,
        )


def build_config(given: Values | Mapping[str, Any]) -> ExporterConfig:
    """The config from parsed values (flags over the file); reads key and web config files.

    Options that were not given keep the table's defaults; the default account's base URL
    and team fall back to the environment and ~/.prime/config.json through the core.
    """
    if not isinstance(given, Values):
        given = Values(dict(given))
    fields: dict[Target, dict[str, Any]] = {target: {} for target in Target}
    for option in OPTIONS:
        if option.key in given.values:
            fields[option.target][option.field] = given.values[option.key]
    if given.accounts is not None:
        for option in ACCOUNT_OPTIONS:
            if option.key in given.values:
                raise ConfigError(
                    f"{given.origins.get(option.key, option.key)} describes the one default "
                    f"account: with {ACCOUNTS_KEY} in {given.accounts_origin}, set "
                    f"{option.account_key} per account"
                )
        accounts = tuple(_listed_account(entry) for entry in given.accounts)
    else:
        accounts = (_default_account(fields[Target.ACCOUNT]),)
    return ExporterConfig(
        accounts=accounts, web=load_web_config(**fields[Target.WEB]), **fields[Target.EXPORTER]
    ).check()


def _default_account(given: dict[str, Any]) -> AccountConfig:
    """The `default` account: its options, else the environment through the core."""
    resolved = resolve_settings()
    for option in ACCOUNT_OPTIONS:
        if option.env and option.field not in given:
            given[option.field] = getattr(resolved, option.field)
    key_file = given.get("key_file")
    check_ca_file(given.get("ca_file"))
    return AccountConfig(api_key=read_key_file(key_file) if key_file else resolved.api_key,
                         **given)  # fmt: skip


def _listed_account(entry: Mapping[str, Any]) -> AccountConfig:
    key_file = entry.get("key_file")
    check_ca_file(entry.get("ca_file"))
    return AccountConfig(api_key=read_key_file(key_file) if key_file else None, **entry)


def load_config_file(path: str | Path) -> Values:
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
        return Values()
    sections = sorted({key.split(".")[0] for key in OPTIONS_BY_KEY} | {ACCOUNTS_KEY})
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(sections)})")
    values: dict[str, Any] = {}
    accounts: tuple[Mapping[str, Any], ...] | None = None
    for section, body in data.items():
        if section == ACCOUNTS_KEY:
            accounts = _accounts(body, path)
            continue
        if section not in sections:
            raise ConfigError(f"{path}: unknown section {section!r} (known: {', '.join(sections)})")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
        for name, value in _flattened(body, f"{section}.", OPTIONS_BY_KEY):
            key = f"{section}.{name}"
            option = OPTIONS_BY_KEY.get(key)
            if option is None:
                known = ", ".join(k.split(".", 1)[1] for k in OPTIONS_BY_KEY
                                  if k.startswith(f"{section}."))  # fmt: skip
                renamed = f"; renamed {RENAMED[key]}" if key in RENAMED else ""
                raise ConfigError(
                    f"{path}: unknown key {key!r} (known in {section}: {known}{renamed})"
                )
            if value is not None:
                values[key] = _file_value(option, value, path, f"{path}: {key}")
    origins = {key: f"{path}: {key}" for key in values}
    return Values(values, origins, accounts, str(path))


def _file_value(option: Option, value: object, path: Path, where: str) -> Any:
    parsed = parse_option(option, value, where)
    if option.is_path:
        parsed = str(path.parent / Path(parsed).expanduser())
    return parsed


def _accounts(body: object, path: Path) -> tuple[Mapping[str, Any], ...]:
    """The `accounts` list: each entry's keys are those of ACCOUNT_OPTIONS, and `name`."""
    if not isinstance(body, list) or not body:
        raise ConfigError(f"{path}: {ACCOUNTS_KEY} must be a non-empty list of accounts")
    by_key = {o.account_key: o for o in ACCOUNT_OPTIONS if o.account_key}
    known = ", ".join(["name", *by_key])
    entries: list[Mapping[str, Any]] = []
    for index, entry in enumerate(body):
        where = f"{path}: {ACCOUNTS_KEY}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping ({known})")
        if "name" not in entry:
            raise ConfigError(f"{where}: every account needs a name")
        try:
            fields: dict[str, Any] = {"name": account_name(entry["name"])}
        except ConfigError as exc:
            raise ConfigError(f"{where}: name: {exc}") from None
        where = f"{path}: {ACCOUNTS_KEY}[{fields['name']}]"
        for name, value in _flattened(entry, "", by_key):
            if name == "name":
                continue
            option = by_key.get(name)
            if option is None:
                raise ConfigError(f"{where}: unknown key {name!r} (known: {known})")
            if value is not None:
                fields[option.field] = _file_value(option, value, path, f"{where}: {name}")
        entries.append(fields)
    return tuple(entries)


def _flattened(
    body: Mapping[str, Any], prefix: str, known: Mapping[str, object]
) -> list[tuple[str, Any]]:
    """The (name, value) pairs of a section, a nested mapping that holds options of its
    own (`chat: {models: [...]}`) spelled out as `chat.models`."""
    pairs: list[tuple[str, Any]] = []
    for name, value in body.items():
        nested = f"{prefix}{name}."
        if isinstance(value, dict) and any(key.startswith(nested) for key in known):
            pairs += [(f"{name}.{inner}", v) for inner, v in _flattened(value, nested, known)]
        else:
            pairs.append((str(name), value))
    return pairs


def check_ca_file(path: str | None) -> None:
    """A CA file must hold at least one certificate OpenSSL can load; ConfigError if not."""
    if not path:
        return
    import ssl

    try:
        context = ssl.create_default_context(cafile=path)
    except ssl.SSLError:  # an OSError too: first
        raise ConfigError(f"CA file {path} holds no PEM certificate") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read CA file {path}: {os_reason(exc)}") from None
    if not context.cert_store_stats().get("x509"):
        raise ConfigError(f"CA file {path} holds no PEM certificate")


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
