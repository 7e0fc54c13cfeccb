"""Key, team and base URL, resolved the way the Prime ecosystem does it.

Environment first (`PRIME_API_KEY`, `PRIME_TEAM_ID`, `PRIME_INFERENCE_URL`), then
`~/.prime/config.json` (`api_key`, `team_id`, `inference_url`), then defaults. The config
file belongs to the official `prime` CLI: it is only ever read here.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import InvalidSetting
from .notices import first_time
from .text import (
    REDACTED,
    JSONError,
    load_json,
    os_reason,
    printable,
    redact,
    redact_url,
    url_secrets,
)

DEFAULT_BASE_URL = "https://api.pinference.ai/api/v1"
ENV_KEY = "PRIME_API_KEY"
ENV_TEAM = "PRIME_TEAM_ID"
ENV_URL = "PRIME_INFERENCE_URL"
TEAM_HEADER = "X-Prime-Team-ID"

log = logging.getLogger("llm_pinference")


@dataclass(frozen=True)
class Settings:
    api_key: str | None = None
    team_id: str | None = None
    base_url: str = DEFAULT_BASE_URL

    def __repr__(self) -> str:
        key = REDACTED if self.api_key else None
        url = redact(self.base_url, url_secrets(self.base_url))
        return f"Settings(api_key={key!r}, team_id={self.team_id!r}, base_url={url!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be shown, logged, exported or stored: the key and any
        credentials in the base URL."""
        return tuple(s for s in (self.api_key, *url_secrets(self.base_url)) if s)

    @property
    def safe_base_url(self) -> str:
        """The base URL without credentials, query or fragment: fit for messages."""
        return redact_url(self.base_url)

    @property
    def team(self) -> str | None:
        """The team that applies: a team counts only together with a key (as the `prime`
        CLI sends it), for listing, prompting and cache accounts alike."""
        return self.team_id if self.api_key else None

    def headers(self) -> dict[str, str]:
        """Auth headers for every request (list, get, chat): Bearer when a key is set, and
        the team header when a team applies."""
        headers: dict[str, str] = {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {check_header_value(self.api_key, 'the API key')}"
        if self.team:
            headers[TEAM_HEADER] = check_header_value(self.team, "the team id")
        return headers

    @property
    def account(self) -> str:
        """What decides which models are visible: base URL (without credentials) and team
        (only with a key). Used as the cache key: it holds no secret."""
        return f"{self.safe_base_url}|team={self.team or ''}"


def prime_config_path() -> Path:
    return Path.home() / ".prime" / "config.json"


#: The prime CLI writes a few hundred bytes; anything past this is not its config.
MAX_CONFIG_BYTES = 1024 * 1024


def load_prime_config(path: Path | None = None) -> dict[str, object]:
    """The prime CLI's config as a dict; {} when missing. Only a regular file is read (a
    FIFO or a device there would block or never end); whatever is wrong with it is said
    once, on one line, and never raises."""
    path = prime_config_path() if path is None else path
    config: object = None
    try:
        found = path.stat()
        if not stat.S_ISREG(found.st_mode):
            why = "not a regular file"
        elif found.st_size > MAX_CONFIG_BYTES:
            why = f"larger than {MAX_CONFIG_BYTES} bytes"
        else:
            config = load_json(path.read_bytes())
            why = "expected a JSON object"
    except FileNotFoundError:
        return {}
    except OSError as exc:
        why = f"cannot read it ({os_reason(exc)})"
    except JSONError as exc:
        why = f"not valid JSON ({exc.detail})"
    return config if isinstance(config, dict) else _ignored(path, why)


def _ignored(path: Path, why: str) -> dict[str, object]:
    message = f"llm-pinference: ignoring {printable(str(path))}: {why}"
    if first_time(message):
        log.warning(message)
    return {}


def check_header_value(value: str, what: str) -> str:
    """`value` unchanged if HTTP can carry it in a header (Latin-1, no control character),
    else InvalidSetting naming `what` (where it came from), never the value."""
    if value.isprintable() and all(ord(c) < 256 for c in value):
        return value
    raise InvalidSetting(
        f"{what} holds a character an HTTP header cannot carry "
        "(outside Latin-1, or a control character)"
    )


def _nonblank(value: object) -> str | None:
    """A non-blank string setting, stripped; anything else counts as unset."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def normalise_base_url(url: str) -> str:
    return url.strip().rstrip("/")


def resolve_settings(
    env: Mapping[str, str] | None = None,
    config: Mapping[str, object] | None = None,
) -> Settings:
    """Resolve key, team and base URL. `config` defaults to reading ~/.prime/config.json."""
    env = os.environ if env is None else env
    if config is None:
        config = load_prime_config()

    def first(variable: str, field: str) -> str | None:
        for given, source in (
            (env.get(variable), variable),
            (config.get(field), f"`{field}` in {prime_config_path()}"),
        ):
            value = _nonblank(given)
            if value is not None:
                return value if field == "inference_url" else check_header_value(value, source)
        return None

    url = first(ENV_URL, "inference_url") or DEFAULT_BASE_URL
    return Settings(
        api_key=first(ENV_KEY, "api_key"),
        team_id=first(ENV_TEAM, "team_id"),
        base_url=normalise_base_url(url),
    )


def credentials(
    key: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config: Mapping[str, object] | None = None,
) -> Settings:
    """The credentials seam: key, team and base URL for listing, prompting and commands.

    `key` is what a front end's own key store found first (llm: `--key`, then `llm keys set
    pinference`); without one, the key comes from PRIME_API_KEY, then the config file.
    Team and base URL as resolve_settings. Request headers: `Settings.headers()`."""
    settings = resolve_settings(env=env, config=config)
    key = _nonblank(key)
    if key is None:
        return settings
    return replace(settings, api_key=check_header_value(key, "the key given to llm"))
