"""Key, team and base URL, resolved the way the Prime ecosystem does it.

Environment first (`PRIME_API_KEY`, `PRIME_TEAM_ID`, `PRIME_INFERENCE_URL`), then
`~/.prime/config.json` (`api_key`, `team_id`, `inference_url`), then defaults. The config
file belongs to the official `prime` CLI: it is only ever read here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .notices import first_time
from .text import REDACTED, redact, redact_url, url_secrets

DEFAULT_BASE_URL = "https://api.pinference.ai/api/v1"
ENV_KEY = "PRIME_API_KEY"
ENV_TEAM = "PRIME_TEAM_ID"
ENV_URL = "PRIME_INFERENCE_URL"
TEAM_HEADER = "X-Prime-Team-ID"

log = logging.getLogger("llm_pinference")


def _warn_once(message: str) -> None:
    if first_time(message):
        log.warning(message)


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
            headers["Authorization"] = f"Bearer {self.api_key}"
        if self.team:
            headers[TEAM_HEADER] = self.team
        return headers

    @property
    def account(self) -> str:
        """What decides which models are visible: base URL (without credentials) and team
        (only with a key). Used as the cache key: it holds no secret."""
        return f"{self.safe_base_url}|team={self.team or ''}"


def prime_config_path() -> Path:
    return Path.home() / ".prime" / "config.json"


def load_prime_config(path: Path | None = None) -> dict[str, object]:
    """The prime CLI's config as a dict; {} when missing. A bad file warns once, never raises."""
    path = prime_config_path() if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        _warn_once(f"llm-pinference: ignoring {path}: cannot read it ({type(exc).__name__})")
        return {}
    try:
        data = json.loads(text)
    except RecursionError:
        _warn_once(f"llm-pinference: ignoring {path}: not valid JSON (nested too deeply)")
        return {}
    except ValueError as exc:
        line = getattr(exc, "lineno", "?")
        _warn_once(f"llm-pinference: ignoring {path}: not valid JSON (line {line})")
        return {}
    if not isinstance(data, dict):
        _warn_once(f"llm-pinference: ignoring {path}: expected a JSON object")
        return {}
    return data


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
    key = _nonblank(env.get(ENV_KEY)) or _nonblank(config.get("api_key"))
    team = _nonblank(env.get(ENV_TEAM)) or _nonblank(config.get("team_id"))
    url = _nonblank(env.get(ENV_URL)) or _nonblank(config.get("inference_url")) or DEFAULT_BASE_URL
    return Settings(api_key=key, team_id=team, base_url=normalise_base_url(url))


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
    return replace(settings, api_key=key) if key else settings
