"""The exporter's configuration: frozen objects built from the option table's defaults, a
YAML file, the environment and flags.

Flags and config-file keys mirror each other (`--probe.interval` is `probe: {interval: ...}`);
`options.OPTIONS` is the one table of both. Each value is checked once, by its parser, where
it is read (a flag, a file key, the environment); the objects check only what ties values
together, when they are made. Every bad value raises `ConfigError` with one line naming the
flag or the file key.

Accounts: one model, `AccountConfig`. Flags, the environment and the file's `api`/`probe`
sections describe the one account `default`; a file may list `accounts` instead, each entry
saying everything about its account (nothing comes from the environment), and then the
one-account flags are refused.
"""

from __future__ import annotations

import re
import ssl
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from llm_pinference.core.settings import ENV_KEY, Settings, resolve_settings
from llm_pinference.core.text import format_duration, redact_url

from .files import load_yaml, mapping, read_file
from .options import (
    DEFAULT_JITTER,
    DEFAULT_TIMEOUT,
    MAX_KEY_BYTES,
    OPTIONS,
    OPTIONS_BY_KEY,
    PRIME_CONFIG,
    ConfigError,
    ListenAddress,
    Option,
    Target,
    account_name,
    default,
    parse_listen_address,
    parse_option,
    shown,
)
from .webconfig import WebConfig, load_web_config

DEFAULT_ACCOUNT = "default"
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

    def __repr__(self) -> str:
        # The base URL may carry user info (a proxy's password): never in a repr or a log.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["base_url"] = redact_url(self.base_url)
        return f"AccountConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def __post_init__(self) -> None:
        account_name(self.name)
        if self.chat_models and not self.chat_interval > 0:
            raise ConfigError(f"account {self.name}: the chat probe interval must be above 0s")
        # Refused rather than silently thinned out: the operator chose the models.
        if self.chat_probes_per_hour > self.chat_max_per_hour + 1e-9:
            raise ConfigError(
                f"account {self.name}: {len(self.chat_models)} chat model(s) every "
                f"{format_duration(self.chat_interval)} make {self.chat_probes_per_hour:g} chat "
                f"probes an hour, above the cap of {self.chat_max_per_hour} "
                "(probe.chat.max_per_hour): probe fewer models, less often, or raise the cap"
            )

    @property
    def settings(self) -> Settings:
        return Settings(api_key=self.api_key, team_id=self.team_id, base_url=self.base_url)

    @property
    def chat_probes_per_hour(self) -> float:
        """How many chat probes an hour the schedule makes (every model, every interval)."""
        return len(self.chat_models) * 3600 / self.chat_interval if self.chat_models else 0.0


@dataclass(frozen=True)
class ExporterConfig:
    """Everything the exporter needs: the web server, the probe schedule, the accounts."""

    listen_address: str | tuple[str, ...] = default("web.listen_address")
    telemetry_path: str = default("web.telemetry_path")
    probe_interval: float = default("probe.interval")
    probe_timeout: float | None = None  # None: DEFAULT_TIMEOUT, or half the interval if shorter
    concurrency: int = default("probe.concurrency")
    max_series: int = default("models.max_series")
    max_response_bytes: int = default("probe.max_response_bytes")
    jitter: float = DEFAULT_JITTER  # random extra delay per cycle, as a share of the interval
    web: WebConfig | None = None  # TLS, basic auth and headers; None serves plain HTTP
    accounts: tuple[AccountConfig, ...] = (AccountConfig(),)
    enable_lifecycle: bool = default("web.enable_lifecycle")
    log_level: str = default("log.level")
    log_format: str = default("log.format")

    def __post_init__(self) -> None:
        if isinstance(self.listen_address, str):
            object.__setattr__(self, "listen_address", (self.listen_address,))
        if not self.listen_address:
            raise ConfigError("--web.listen-address: give at least one address")
        if not 0 < self.timeout < self.probe_interval:
            raise ConfigError(
                f"--probe.timeout ({format_duration(self.timeout)}) must be shorter than "
                f"--probe.interval ({format_duration(self.probe_interval)}), and above 0s"
            )
        if not self.accounts:
            raise ConfigError("give at least one account")
        name, count = Counter(a.name for a in self.accounts).most_common(1)[0]
        if count > 1:
            raise ConfigError(f"account name {name!r} is used more than once")

    @property
    def timeout(self) -> float:
        if self.probe_timeout is not None:
            return self.probe_timeout
        return min(DEFAULT_TIMEOUT, self.probe_interval / 2)

    @property
    def addresses(self) -> tuple[ListenAddress, ...]:
        return tuple(map(parse_listen_address, self.listen_address))

    @property
    def address(self) -> ListenAddress:
        """The first listen address (the one `Exporter.url` points at)."""
        return self.addresses[0]


# --- building it: flags over the file, over the environment and defaults -----------


@dataclass(frozen=True)
class Values:
    """Parsed option values keyed like `probe.interval`, and where each came from."""

    values: Mapping[str, Any] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)  # key -> flag or "FILE: key"
    accounts: tuple[tuple[str, dict[str, Any]], ...] | None = None  # the file's, parsed
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
        accounts = tuple(_account(entry, where) for where, entry in given.accounts)
    else:
        accounts = (_account(_with_environment(fields[Target.ACCOUNT])),)
    return ExporterConfig(
        accounts=accounts, web=load_web_config(**fields[Target.WEB]), **fields[Target.EXPORTER]
    )


def _with_environment(given: dict[str, Any]) -> dict[str, Any]:
    """The default account's options, else the environment's through the core (checked by
    the same parsers as a flag)."""
    resolved = resolve_settings()
    for option in ACCOUNT_OPTIONS:
        value = getattr(resolved, option.field) if option.env else None
        if value is not None and option.field not in given:
            given[option.field] = parse_option(option, value, f"${option.env} or {PRIME_CONFIG}")
    if "key_file" not in given and resolved.api_key:
        given["api_key"] = _key(resolved.api_key, f"${ENV_KEY} or {PRIME_CONFIG}")
    return given


def _account(entry: dict[str, Any], where: str = "") -> AccountConfig:
    key_file, ca_file = entry.get("key_file"), entry.get("ca_file")
    if ca_file:
        check_ca_file(ca_file)
    api_key = read_key_file(key_file) if key_file else entry.pop("api_key", None)
    try:
        return AccountConfig(api_key=api_key, **entry)
    except ConfigError as exc:
        if not where:
            raise
        raise ConfigError(f"{where}: {exc}") from None


def load_config_file(path: str | Path) -> Values:
    """Read the YAML config file into parsed values keyed like `probe.interval`; relative
    file paths are relative to the file's directory."""
    path = Path(path)
    data = load_yaml(path, "config file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (api, log, models, probe, "
                          f"web, {ACCOUNTS_KEY})")  # fmt: skip
    accounts = _accounts(data.pop(ACCOUNTS_KEY), path) if ACCOUNTS_KEY in data else None
    values = {o.key: v for o, v in _read_options(data, OPTIONS_BY_KEY, path, str(path)).items()}
    origins = {key: f"{path}: {key}" for key in values}
    return Values(values, origins, accounts, str(path))


def _accounts(body: object, path: Path) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The `accounts` list: each entry's keys are those of ACCOUNT_OPTIONS, and `name`."""
    if not isinstance(body, list) or not body:
        raise ConfigError(f"{path}: {ACCOUNTS_KEY} must be a non-empty list of accounts")
    by_key = {o.account_key: o for o in ACCOUNT_OPTIONS if o.account_key}
    entries = []
    for index, entry in enumerate(body):
        where = f"{path}: {ACCOUNTS_KEY}[{index}]"
        given = mapping(entry, where)
        if "name" not in given:
            raise ConfigError(f"{where}: every account needs a name")
        name = given.pop("name")
        fields = {o.field: v for o, v in _read_options(given, by_key, path, where).items()}
        entries.append((where, {"name": name, **fields}))
    return tuple(entries)


def _read_options(
    body: object, known: Mapping[str, Option], path: Path, where: str
) -> dict[Option, Any]:
    """The parsed options of a mapping keyed like `known`, nested mappings spelled out
    (`probe: {chat: {models: [...]}}` is `probe.chat.models`). Unknown keys are errors: a
    typo must not silently fall back to a default."""
    found: dict[Option, Any] = {}

    def walk(body: object, prefix: str) -> None:
        for name, value in mapping(body, where).items():
            key = prefix + name
            if any(k.startswith(f"{key}.") for k in known):
                if value is not None and not isinstance(value, dict):
                    raise ConfigError(f"{where}: {shown(key)} must be a mapping")
                walk(value, f"{key}.")
            elif key not in known:
                siblings = ", ".join(k for k in known if k.startswith(prefix))
                raise ConfigError(f"{where}: unknown key {shown(key)} (known: {siblings})")
            elif value is not None:
                option, parsed = known[key], parse_option(known[key], value, f"{where}: {key}")
                if option.is_path:
                    parsed = str(path.parent / Path(parsed).expanduser())
                found[option] = parsed

    walk(body, "")
    return found


def check_ca_file(path: str) -> None:
    """A CA file must hold at least one certificate OpenSSL can load; ConfigError if not."""
    try:
        context = ssl.create_default_context(cadata=read_file(path, "CA file"))
    except ssl.SSLError:
        raise ConfigError(f"CA file {path} holds no PEM certificate") from None
    if not context.cert_store_stats().get("x509"):
        raise ConfigError(f"CA file {path} holds no PEM certificate")


def read_key_file(path: str) -> str:
    """The API key from a (mounted secret) file, whitespace around it stripped."""
    return _key(read_file(path, "API key file", MAX_KEY_BYTES), f"API key file {path}")


def _key(text: str, where: str) -> str:
    # A BOM, a zero-width space or a second word would be sent as part of the key, and fail
    # as `unauthorized`; the message names the file, never the key.
    key = text.strip()
    if not re.fullmatch(r"[!-~]+", key):
        raise ConfigError(
            f"{where}: the key must be one word of printable ASCII (no BOM, zero-width or "
            "other invisible character)"
        )
    return key
