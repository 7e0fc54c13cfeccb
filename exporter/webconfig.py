"""TLS and basic auth for the web server, read from the exporter-toolkit web config format.

```yaml
tls_server_config:
  cert_file: server.crt            # relative paths: relative to this file
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
  client_ca_file: ca.crt
  min_version: TLS12               # TLS10..TLS13
  max_version: TLS13
basic_auth_users:
  prometheus: $2y$10$...           # bcrypt hashes, as with every Prometheus exporter
```

Basic auth checks the hashes with the `bcrypt` module (`pip install 'llm-pinference[basic-auth]'`);
without it, a config that sets `basic_auth_users` is refused at start-up with a one-line error.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_pinference.text import os_reason

from .options import ConfigError

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's tls.ClientAuthType names. Python cannot request a certificate without verifying it,
# so RequestClientCert and RequireAnyClientCert are refused rather than weakened.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
             "max_version"}  # fmt: skip
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")

HashChecker = Callable[[bytes, str], bool]


@dataclass(frozen=True)
class WebConfig:
    ssl_context: ssl.SSLContext | None = None
    users: Mapping[str, str] = field(default_factory=dict, repr=False)  # user -> bcrypt hash
    check_hash: HashChecker | None = field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"


def load_web_config(
    path: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> WebConfig | None:
    """Build the web config from the toolkit file and/or the TLS flags (flags win)."""
    data: dict[str, Any] = _read_yaml(path) if path else {}
    base = Path(path).parent if path else Path()
    unknown = sorted(set(data) - {"tls_server_config", "basic_auth_users"})
    if unknown:
        raise ConfigError(f"{path}: unsupported key(s) {', '.join(unknown)}")
    tls = _mapping(data.get("tls_server_config"), f"{path}: tls_server_config")
    tls = {k: str(base / v) if k.endswith("_file") and isinstance(v, str) else v
           for k, v in tls.items()}  # fmt: skip
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise ConfigError("--web.tls-cert-file and --web.tls-key-file go together")
        tls.update(cert_file=cert_file, key_file=key_file)
    context = _ssl_context(tls, path or "--web.tls-cert-file") if tls else None
    users = _users(data.get("basic_auth_users"), path)
    checker = hash_checker() if users else None
    if users and checker is None:
        raise ConfigError(
            "basic_auth_users needs the bcrypt Python module "
            "(pip install 'llm-pinference[basic-auth]')"
        )
    if context is None and not users:
        return None
    return WebConfig(ssl_context=context, users=users, check_hash=checker)


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read web config {path}: {os_reason(exc)}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML") from None
    return _mapping(data, path)


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    return dict(value)


def _ssl_context(tls: dict[str, Any], where: str) -> ssl.SSLContext:
    unknown = sorted(set(tls) - _TLS_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unsupported tls_server_config key(s) {', '.join(unknown)}")
    cert, key = tls.get("cert_file"), tls.get("key_file")
    if not (isinstance(cert, str) and isinstance(key, str)):
        raise ConfigError(f"{where}: tls_server_config needs cert_file and key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _tls_version(tls.get("min_version", "TLS12"), where)
    if "max_version" in tls:
        context.maximum_version = _tls_version(tls["max_version"], where)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) and exc.strerror else "not PEM?"
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {reason}") from None
    auth = tls.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH:
        raise ConfigError(
            f"{where}: client_auth_type {auth!r} is not supported (use {', '.join(CLIENT_AUTH)})"
        )
    context.verify_mode = CLIENT_AUTH[auth]
    ca = tls.get("client_ca_file")
    if context.verify_mode != ssl.CERT_NONE:
        if not isinstance(ca, str):
            raise ConfigError(f"{where}: client_auth_type {auth} needs client_ca_file")
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError):
            raise ConfigError(f"cannot load client CA file {ca}") from None
    return context


def _tls_version(value: object, where: str) -> ssl.TLSVersion:
    if value not in TLS_VERSIONS:
        raise ConfigError(f"{where}: TLS version {value!r} is not one of {', '.join(TLS_VERSIONS)}")
    return TLS_VERSIONS[str(value)]


def _users(value: object, where: str | None) -> dict[str, str]:
    users = _mapping(value, f"{where}: basic_auth_users")
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise ConfigError(f"{where}: basic_auth_users: bad user name {user!r}")
        if not isinstance(hashed, str) or not hashed.startswith(_BCRYPT_PREFIXES):
            raise ConfigError(f"{where}: basic_auth_users: {user}'s password is not a bcrypt hash")
    return users


def hash_checker() -> HashChecker | None:
    """A bcrypt verifier from the `bcrypt` module (extra `basic-auth`), or None without it."""
    try:
        import bcrypt
    except ImportError:
        return None

    def check(password: bytes, hashed: str) -> bool:
        try:
            return bool(bcrypt.checkpw(password, hashed.encode()))
        except ValueError:
            return False

    return check


class BasicAuth:
    """Checks `Authorization: Basic` against the configured users.

    bcrypt is slow by design; a successful check is remembered (as a SHA-256 of the
    credentials, never the password) so that each scrape does not pay for it again.
    """

    def __init__(self, users: Mapping[str, str], check_hash: HashChecker) -> None:
        self._users = dict(users)
        self._check = check_hash
        self._good: set[bytes] = set()
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except ValueError:
            return False
        hashed = self._users.get(user.decode("utf-8", "replace"))
        if not sep or hashed is None:
            return False
        digest = hashlib.sha256(user + b"\0" + password + b"\0" + hashed.encode()).digest()
        with self._lock:
            if digest in self._good:
                return True
        if not self._check(password, hashed):
            return False
        with self._lock:
            if len(self._good) > 1000:
                self._good.clear()
            self._good.add(digest)
        return True
