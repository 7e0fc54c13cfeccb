"""The exporter's configuration: frozen objects built from the option table's defaults, a
YAML file, the environment and flags.

Flags and config-file keys mirror each other (`--probe.interval` is `probe: {interval: ...}`);
`options.OPTIONS` is the one table of both. Every bad value raises `ConfigError` with a
one-line message naming the flag or the file key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_pinference.settings import Settings, resolve_settings
from llm_pinference.text import format_duration, os_reason

from .options import (
    DEFAULT_JITTER,
    DEFAULT_TIMEOUT,
    MAX_CONCURRENCY,
    MIN_RESPONSE_BYTES,
    OPTIONS,
    OPTIONS_BY_KEY,
    ConfigError,
    ListenAddress,
    Target,
    default,
    parse_duration,
    parse_listen_address,
    parse_option,
)
from .webconfig import WebConfig, load_web_config

__all__ = [
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

RESERVED_PATHS = ("/", "/-/healthy", "/-/ready")


@dataclass(frozen=True)
class AccountConfig:
    """One account: where to probe, as whom, and which models."""

    base_url: str = default("api.base_url")
    team_id: str | None = None
    api_key: str | None = field(default=None, repr=False)
    key_file: str | None = None  # where api_key was read, if from a file
    probe_models: tuple[str, ...] = ()
    sample_size: int = default("probe.sample_size")

    @property
    def settings(self) -> Settings:
        return Settings(api_key=self.api_key, team_id=self.team_id, base_url=self.base_url)

    @classmethod
    def from_settings(cls, settings: Settings, **fields: Any) -> AccountConfig:
        return cls(settings.base_url, settings.team_id, settings.api_key, **fields)


@dataclass(frozen=True)
class ExporterConfig:
    """Everything the exporter needs.

    `settings`, `probe_models` and `sample_size` describe its one account (`settings=None`
    resolves key, team and base URL from the environment, like the CLI).
    """

    settings: Settings | None = None
    listen_address: str = default("web.listen_address")
    telemetry_path: str = default("web.telemetry_path")
    probe_interval: float = default("probe.interval")
    probe_timeout: float | None = None  # None: DEFAULT_TIMEOUT, or half the interval if shorter
    probe_models: tuple[str, ...] = ()
    sample_size: int = default("probe.sample_size")
    concurrency: int = default("probe.concurrency")
    max_series: int = default("models.max_series")
    max_response_bytes: int = default("probe.max_response_bytes")
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

    def account(self) -> AccountConfig:
        """The account to probe; without `settings`, resolved from the environment now."""
        settings = self.settings if self.settings is not None else resolve_settings()
        return AccountConfig.from_settings(
            settings, probe_models=self.probe_models, sample_size=self.sample_size
        )

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


# --- building it: file, then flags, over the environment and defaults ---------------


def build_config(values: Mapping[str, Any]) -> ExporterConfig:
    """The config from parsed values keyed like `probe.interval` (flags over the file).

    Options that were not given keep their defaults; the account's base URL and team fall
    back to the environment and ~/.prime/config.json through the core's settings.
    """
    given = {key: value for key, value in values.items() if key in OPTIONS_BY_KEY}
    fields: dict[Target, dict[str, Any]] = {target: {} for target in Target}
    for option in OPTIONS:
        if option.key in given:
            fields[option.target][option.field] = given[option.key]
    account = _account(fields[Target.ACCOUNT])
    return ExporterConfig(
        settings=account.settings,
        probe_models=account.probe_models,
        sample_size=account.sample_size,
        web=load_web_config(**fields[Target.WEB]),
        **fields[Target.EXPORTER],
    ).check()


def _account(given: dict[str, Any]) -> AccountConfig:
    """The account from its options, the environment (through the core) for the rest."""
    resolved = resolve_settings()
    for option in OPTIONS:
        if option.env and option.field not in given:
            given[option.field] = getattr(resolved, option.field)
    key_file = given.get("key_file")
    return AccountConfig(api_key=read_key_file(key_file) if key_file else resolved.api_key,
                         **given)  # fmt: skip


def log_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `logs.setup_logging` (the table's defaults where not given)."""
    return {o.field: values.get(o.key, o.default) for o in OPTIONS if o.target is Target.LOG}


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
    sections = sorted({key.split(".")[0] for key in OPTIONS_BY_KEY})
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(sections)})")
    values: dict[str, Any] = {}
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
