"""TLS, basic auth and response headers for the web server, read from the exporter-toolkit
web config format, and re-read when its files change.

```yaml
tls_server_config:
  cert_file: server.crt            # relative paths: relative to this file
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
  client_ca_file: ca.crt
  min_version: TLS12               # TLS10..TLS13 (default TLS12)
  max_version: TLS13               # (default TLS13)
http_server_config:
  headers:                         # the headers exporter-toolkit allows, with its values
    X-Content-Type-Options: nosniff
basic_auth_users:
  prometheus: $2y$10$...           # bcrypt hashes, as with every Prometheus exporter
```

Basic auth checks the hashes with the `bcrypt` module (`pip install 'llm-pinference[basic-auth]'`);
without it, a config that sets `basic_auth_users` is refused with a one-line error.

Like exporter-toolkit, the files are read again when they change (the web config, the
certificate, its key and the client CA): a rotated certificate or password takes effect on
the next connection, without a restart. A change that does not load keeps the previous
config and is logged once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_pinference.core.text import os_reason

from .files import load_yaml, mapping, read_file
from .options import MAX_KEY_BYTES, ConfigError, shown

log = logging.getLogger("pinference_exporter.web")

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
# exporter-toolkit keys this exporter does not implement: refused by name, not as typos.
_TLS_UNSUPPORTED = {"cert", "key", "client_ca", "cipher_suites", "curve_preferences",
                    "prefer_server_cipher_suites", "client_allowed_sans"}  # fmt: skip
_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TOP_UNSUPPORTED = {"rate_limit"}
_HTTP_KEYS = {"headers", "http2"}
# The headers exporter-toolkit lets a web config set, and the values it allows (None: any).
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
# $2a$/$2b$/$2y$, a two-digit cost from 04 to 31, then 53 characters of salt and hash.
_BCRYPT_RE = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")

HashChecker = Callable[[bytes, str], bool]


@dataclass(frozen=True)
class WebSource:
    """Where a web config comes from: the toolkit file and/or the TLS flags."""

    path: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


Fingerprint = tuple[tuple[str, tuple[int, int, int, int] | None], ...]


@dataclass(frozen=True)
class WebConfig:
    ssl_context: ssl.SSLContext | None = None
    users: Mapping[str, str] = field(default_factory=dict, repr=False)  # user -> bcrypt hash
    check_hash: HashChecker | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    source: WebSource = WebSource()
    fingerprint: Fingerprint = ()  # the files as they were when read
    auth: BasicAuth | None = field(default=None, repr=False, compare=False)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"


def load_web_config(
    path: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> WebConfig | None:
    """Build the web config from the toolkit file and/or the TLS flags (flags win).

    None when neither is given (plain HTTP, nothing to watch).
    """
    if not (path or cert_file or key_file):
        return None
    source = WebSource(path, cert_file, key_file)
    files = [path] if path else []
    before = fingerprint(files)  # taken first: a change while reading is seen next time
    data = mapping(load_yaml(path, "web config"), path) if path else {}
    where = path or "--web.tls-cert-file"
    _refuse_unknown(data, _TOP_KEYS, _TOP_UNSUPPORTED, where, "key")
    base = Path(path).parent if path else Path()
    tls = mapping(data.get("tls_server_config"), f"{where}: tls_server_config")
    tls = {k: str(base / v) if k.endswith("_file") and isinstance(v, str) else v
           for k, v in tls.items()}  # fmt: skip
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise ConfigError("--web.tls-cert-file and --web.tls-key-file go together")
        tls.update(cert_file=cert_file, key_file=key_file)
    tls_files = [tls[k] for k in ("cert_file", "key_file", "client_ca_file") if tls.get(k)]
    before += fingerprint([f for f in tls_files if isinstance(f, str)])
    context = _ssl_context(tls, where) if tls else None
    headers = _headers(data.get("http_server_config"), where)
    users = _users(data.get("basic_auth_users"), where)
    checker = hash_checker() if users else None
    if users and checker is None:
        raise ConfigError(
            "basic_auth_users needs the bcrypt Python module "
            "(pip install 'llm-pinference[basic-auth]')"
        )
    auth = BasicAuth(users, checker) if users and checker else None
    return WebConfig(context, users, checker, headers, source, before, auth)


def fingerprint(paths: list[str]) -> Fingerprint:
    """What tells a changed file: inode, size, mtime and ctime (None when missing)."""
    marks = []
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate in the path
            marks.append((path, None))
            continue
        marks.append((path, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)))
    return tuple(marks)


def _refuse_unknown(
    data: Mapping[str, Any], known: set[str], unsupported: set[str], where: str, what: str
) -> None:
    names = set(data)
    if names & unsupported:
        listed = ", ".join(sorted(names & unsupported))
        raise ConfigError(f"{where}: {what}(s) {listed} not supported by pinference-exporter")
    if names - known:
        listed = ", ".join(map(shown, sorted(names - known)[:5]))
        raise ConfigError(
            f"{where}: unknown {what}(s) {listed} (known: {', '.join(sorted(known))})"
        )


def _ssl_context(tls: dict[str, Any], where: str) -> ssl.SSLContext:
    _refuse_unknown(tls, _TLS_KEYS, _TLS_UNSUPPORTED, f"{where}: tls_server_config", "key")
    cert, key = tls.get("cert_file"), tls.get("key_file")
    if not (isinstance(cert, str) and isinstance(key, str)):
        raise ConfigError(f"{where}: tls_server_config needs cert_file and key_file")
    low = _tls_version(tls.get("min_version", "TLS12"), where)
    high = _tls_version(tls.get("max_version", "TLS13"), where)
    if low > high:
        raise ConfigError(
            f"{where}: min_version {tls.get('min_version')} is above max_version "
            f"{tls.get('max_version', 'TLS13')}"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = low, high
    read_file(cert, "TLS certificate")  # a regular file of sane size: ssl reads it again
    read_file(key, "TLS key", MAX_KEY_BYTES)
    asked: list[bool] = []

    def no_passphrase() -> bytes:  # never a prompt on the terminal: refuse, and say why
        asked.append(True)
        raise ValueError("encrypted")

    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except (OSError, ssl.SSLError, ValueError) as exc:  # ValueError: no_passphrase
        reason = (
            "the key is encrypted (keys with a passphrase are not supported)"
            if asked
            else (os_reason(exc) if isinstance(exc, OSError) and exc.strerror else "not PEM?")
        )
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {reason}") from None
    auth = tls.get("client_auth_type", "NoClientCert")
    if not isinstance(auth, str) or auth not in CLIENT_AUTH:
        raise ConfigError(
            f"{where}: client_auth_type {shown(auth)} is not supported (use "
            f"{', '.join(CLIENT_AUTH)})"
        )
    context.verify_mode = CLIENT_AUTH[auth]
    ca = tls.get("client_ca_file")
    if context.verify_mode != ssl.CERT_NONE:
        if not isinstance(ca, str):
            raise ConfigError(f"{where}: client_auth_type {auth} needs client_ca_file")
        try:
            context.load_verify_locations(cadata=read_file(ca, "client CA file"))
        except ssl.SSLError:
            raise ConfigError(f"cannot load client CA file {ca}") from None
    elif ca is not None:
        raise ConfigError(f"{where}: client_ca_file needs a client_auth_type that checks it")
    return context


def _tls_version(value: object, where: str) -> ssl.TLSVersion:
    if not isinstance(value, str) or value not in TLS_VERSIONS:
        raise ConfigError(
            f"{where}: TLS version {shown(value)} is not one of {', '.join(TLS_VERSIONS)}"
        )
    return TLS_VERSIONS[value]


def _headers(value: object, where: str) -> tuple[tuple[str, str], ...]:
    http = mapping(value, f"{where}: http_server_config")
    _refuse_unknown(http, _HTTP_KEYS, set(), f"{where}: http_server_config", "key")
    if not isinstance(http.get("http2", True), bool):
        raise ConfigError(f"{where}: http_server_config: http2 must be true or false")
    headers = []
    for name, text in mapping(http.get("headers"), f"{where}: headers").items():
        if name not in ALLOWED_HEADERS:
            raise ConfigError(
                f"{where}: header {shown(name)} cannot be set (allowed: "
                f"{', '.join(ALLOWED_HEADERS)})"
            )
        allowed = ALLOWED_HEADERS[name]
        if not isinstance(text, str) or "\n" in text or "\r" in text:
            raise ConfigError(f"{where}: header {name}: {shown(text)} is not a one-line string")
        if allowed is not None and text not in allowed:
            raise ConfigError(
                f"{where}: header {name}: {shown(text)} is not one of {', '.join(allowed)}"
            )
        headers.append((name, text))
    return tuple(headers)


def _users(value: object, where: str) -> dict[str, str]:
    users = mapping(value, f"{where}: basic_auth_users")
    for user, hashed in users.items():
        if not user.isprintable() or ":" in user:
            raise ConfigError(f"{where}: basic_auth_users: bad user name {shown(user)}")
        if not isinstance(hashed, str) or not _BCRYPT_RE.fullmatch(hashed):
            raise ConfigError(
                f"{where}: basic_auth_users: {user}'s password is not a valid bcrypt hash"
            )
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


def bcrypt_cost(hashed: str) -> int:
    return int(hashed[4:6])


class BasicAuth:
    """Checks `Authorization: Basic` against the configured users.

    An unknown user's password is checked against a configured hash of the highest cost
    (and then refused), so that a wrong user name takes as long as a wrong password: timing
    does not tell which user names exist. bcrypt is slow by design; a successful check is
    remembered (as a SHA-256 of the credentials, never the password) so that each scrape
    does not pay for it again.
    """

    def __init__(self, users: Mapping[str, str], check_hash: HashChecker) -> None:
        self._users = dict(users)
        self._check = check_hash
        self._dummy = max(self._users.values(), key=bcrypt_cost, default="")
        self._good: set[bytes] = set()
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        credentials = _basic_credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user.decode("utf-8", "replace"))
        if hashed is None:
            self._check(password, self._dummy)  # the same work as a wrong password
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


def _basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except ValueError:
        return None
    return (user, password) if sep else None


class WebConfigWatcher:
    """The current web config, read again when one of its files changes.

    `current()` is called for each connection and request: it costs a few `stat` calls.
    A change that does not load (a half-written file, a bad hash, a switch between HTTP and
    HTTPS) keeps the previous config, is logged once and reported to `on_result`.
    """

    def __init__(
        self,
        config: WebConfig | None,
        on_result: Callable[[str | None], None] | None = None,
    ) -> None:
        self._config = config
        self._on_result = on_result
        self._failed: Fingerprint | None = None  # the files as they were when a load failed
        self._lock = threading.Lock()

    def current(self) -> WebConfig | None:
        config = self._config
        if config is None or not config.fingerprint:
            return config
        now = fingerprint([path for path, _ in config.fingerprint])
        if now in (config.fingerprint, self._failed):
            return config
        with self._lock:
            if self._config is not config:  # another thread has just reloaded
                return self._config
            try:
                fresh = load_web_config(**vars(config.source))
                check_same_scheme(config, fresh)
            except ConfigError as exc:
                self._failed = now
                log.error("web config changed but does not load; keeping the previous one",
                          extra={"kv": {"err": str(exc)}})  # fmt: skip
                if self._on_result:
                    self._on_result(str(exc))
                return config
            self._config, self._failed = fresh, None
        log.info("web config reloaded", extra={"kv": {"files": len(now)}})
        if self._on_result:
            self._on_result(None)
        return fresh

    def replace(self, config: WebConfig | None) -> None:
        """Use a config loaded (and checked with `check_same_scheme`) elsewhere: a reload."""
        with self._lock:
            self._config, self._failed = config, None


def check_same_scheme(old: WebConfig | None, new: WebConfig | None) -> None:
    """A running server cannot switch between HTTP and HTTPS: that needs a restart."""
    before = old.scheme if old else "http"
    after = new.scheme if new else "http"
    if before != after:
        raise ConfigError(f"switching from {before.upper()} to {after.upper()} needs a restart")
