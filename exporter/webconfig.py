"""TLS, basic auth and response headers from the exporter-toolkit web config (keys in the
README), re-read when its files change.

Basic auth checks the bcrypt hashes with the `bcrypt` module (`pip install
'llm-pinference[basic-auth]'`); without it, a config that sets `basic_auth_users` is refused.
Like exporter-toolkit, the files (the web config, the certificate, its key, the client CA)
are read again when they change: a rotated certificate or password applies to the next
connection. A change that does not load keeps the previous config and is logged once.
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

from .files import load_yaml, mapping, read_file
from .options import MAX_KEY_BYTES, ConfigError, shown

try:
    import bcrypt
except ImportError:  # the basic-auth extra
    bcrypt = None

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
_KEYS = {
    "": ("tls_server_config", "http_server_config", "basic_auth_users"),
    "tls_server_config": ("cert_file", "key_file", "client_auth_type", "client_ca_file",
                          "min_version", "max_version"),
    "http_server_config": ("headers", "http2"),  # http2 accepted: the server speaks HTTP/1.1
}  # fmt: skip
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

Fingerprint = tuple[tuple[str, tuple[int, int, int, int] | None], ...]


@dataclass(frozen=True)
class WebConfig:
    ssl_context: ssl.SSLContext | None
    auth: BasicAuth | None = field(repr=False)
    headers: tuple[tuple[str, str], ...]
    source: tuple[str | None, str | None, str | None]  # load_web_config's arguments
    fingerprint: Fingerprint  # the files as they were when read

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"


def load_web_config(
    path: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> WebConfig | None:
    """The web config from the toolkit file and/or the TLS flags (flags win); None when
    neither is given (plain HTTP)."""
    if not (path or cert_file or key_file):
        return None
    before = fingerprint([path] if path else [])  # first: a change while reading shows next
    data = mapping(load_yaml(path, "web config"), path) if path else {}
    where = path or "--web.tls-cert-file"
    _check_keys(data, "", where)
    tls = mapping(data.get("tls_server_config"), f"{where}: tls_server_config")
    tls = {k: str(Path(path or "").parent / v) if k.endswith("_file") and isinstance(v, str)
           else v for k, v in tls.items()}  # fmt: skip
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise ConfigError("--web.tls-cert-file and --web.tls-key-file go together")
        tls.update(cert_file=cert_file, key_file=key_file)
    files = [v for k, v in tls.items() if k.endswith("_file") and isinstance(v, str)]
    before += fingerprint(files)
    context = _ssl_context(tls, f"{where}: tls_server_config") if tls else None
    users = mapping(data.get("basic_auth_users"), f"{where}: basic_auth_users")
    for user, hashed in users.items():
        if not user.isprintable() or ":" in user:
            raise ConfigError(f"{where}: basic_auth_users: bad user name {shown(user)}")
        if not isinstance(hashed, str) or not _BCRYPT_RE.fullmatch(hashed):
            raise ConfigError(
                f"{where}: basic_auth_users: {user}'s password is not a valid bcrypt hash"
            )
    if users and bcrypt is None:
        raise ConfigError("basic_auth_users needs the bcrypt Python module "
                          "(pip install 'llm-pinference[basic-auth]')")  # fmt: skip
    auth = BasicAuth(users) if users else None
    headers = _headers(data.get("http_server_config"), where)
    return WebConfig(context, auth, headers, (path, cert_file, key_file), before)


def fingerprint(paths: list[str]) -> Fingerprint:
    """What tells a changed file: inode, size, mtime and ctime (None when missing)."""
    marks = []
    for path in paths:
        try:
            st = os.stat(path)
            marks.append((path, (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)))
        except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate in the path
            marks.append((path, None))
    return tuple(marks)


def _check_keys(data: Mapping[str, Any], section: str, where: str) -> None:
    known = _KEYS[section]
    if unknown := sorted(set(data) - set(known)):
        raise ConfigError(
            f"{where}: unknown or unsupported key(s) {', '.join(map(shown, unknown[:5]))} "
            f"(known: {', '.join(known)})"
        )


def _ssl_context(tls: dict[str, Any], where: str) -> ssl.SSLContext:
    _check_keys(tls, "tls_server_config", where)
    cert, key = tls.get("cert_file"), tls.get("key_file")
    if not (isinstance(cert, str) and isinstance(key, str)):
        raise ConfigError(f"{where} needs cert_file and key_file")
    low = _choice(tls, "min_version", "TLS12", TLS_VERSIONS, where)
    high = _choice(tls, "max_version", "TLS13", TLS_VERSIONS, where)
    if low > high:
        raise ConfigError(f"{where}: min_version {tls['min_version']} is above max_version "
                          f"{tls.get('max_version', 'TLS13')}")  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = low, high
    read_file(cert, "TLS certificate")  # a regular file of sane size: ssl reads it again
    encrypted = "ENCRYPTED" in read_file(key, "TLS key", MAX_KEY_BYTES)
    try:  # a password given: OpenSSL never prompts on the terminal
        context.load_cert_chain(cert, key, password=b"")
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not PEM?"
        if encrypted:
            reason = "the key is encrypted (keys with a passphrase are not supported)"
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {reason}") from None
    context.verify_mode = _choice(tls, "client_auth_type", "NoClientCert", CLIENT_AUTH, where)
    ca = tls.get("client_ca_file")
    if context.verify_mode == ssl.CERT_NONE:
        if ca is not None:
            raise ConfigError(f"{where}: client_ca_file needs a client_auth_type that checks it")
    elif not isinstance(ca, str):
        raise ConfigError(f"{where}: client_auth_type {tls['client_auth_type']} needs "
                          "client_ca_file")  # fmt: skip
    else:
        try:
            context.load_verify_locations(cadata=read_file(ca, "client CA file"))
        except ssl.SSLError:
            raise ConfigError(f"cannot load client CA file {ca}") from None
    return context


def _choice(data: Mapping[str, Any], name: str, default: str, choices: Mapping[str, Any],
            where: str) -> Any:  # fmt: skip
    value = data.get(name, default)
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{where}: {name} {shown(value)} is not supported (use "
                          f"{', '.join(choices)})")  # fmt: skip
    return choices[value]


def _headers(value: object, where: str) -> tuple[tuple[str, str], ...]:
    http = mapping(value, f"{where}: http_server_config")
    _check_keys(http, "http_server_config", f"{where}: http_server_config")
    if not isinstance(http.get("http2", True), bool):
        raise ConfigError(f"{where}: http_server_config: http2 must be true or false")
    headers = mapping(http.get("headers"), f"{where}: headers")
    for name, text in headers.items():
        if name not in ALLOWED_HEADERS:
            raise ConfigError(f"{where}: header {shown(name)} cannot be set (allowed: "
                              f"{', '.join(ALLOWED_HEADERS)})")  # fmt: skip
        allowed = ALLOWED_HEADERS[name]
        if not isinstance(text, str) or not text.isprintable():
            raise ConfigError(f"{where}: header {name}: {shown(text)} is not a one-line string")
        if allowed is not None and text not in allowed:
            raise ConfigError(
                f"{where}: header {name}: {shown(text)} is not one of {', '.join(allowed)}"
            )
    return tuple(headers.items())


class BasicAuth:
    """Checks `Authorization: Basic` against the configured bcrypt hashes.

    An unknown user's password is checked against the costliest configured hash (and
    refused), so timing does not tell which user names exist. bcrypt is slow by design: a
    successful check is remembered (a SHA-256 of the credentials) so scrapes do not pay again.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)
        self._dummy = max(self.users.values(), key=lambda h: int(h[4:6]))
        self._good: set[bytes] = set()

    def allows(self, header: str | None) -> bool:
        scheme, _, encoded = (header or "").partition(" ")
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except ValueError:
            return False
        if scheme.lower() != "basic" or not sep:
            return False
        hashed = self.users.get(user.decode("utf-8", "replace"))
        if hashed is None:
            bcrypt.checkpw(password, self._dummy.encode())  # the same work as a wrong password
            return False
        digest = hashlib.sha256(b"\0".join((user, password, hashed.encode()))).digest()
        if digest in self._good:
            return True
        if not bcrypt.checkpw(password, hashed.encode()):
            return False
        if len(self._good) > 1000:  # set operations are atomic under the GIL
            self._good.clear()
        self._good.add(digest)
        return True


class WebConfigWatcher:
    """The current web config, read again when one of its files changes.

    `current()` is called for each connection and request: it costs a few `stat` calls.
    A change that does not load (a half-written file, a bad hash, a switch between HTTP and
    HTTPS) keeps the previous config, is logged once and reported to `on_result`.
    """

    def __init__(self, config: WebConfig | None, on_result: Callable[[str | None], None]) -> None:
        self._config = config
        self._on_result = on_result
        self._failed: Fingerprint | None = None  # the files as they were when a load failed
        self._lock = threading.Lock()

    def current(self) -> WebConfig | None:
        config = self._config
        if config is None:
            return config
        now = fingerprint([path for path, _ in config.fingerprint])
        if now in (config.fingerprint, self._failed):
            return config
        with self._lock:
            if self._config is not config:  # another thread has just reloaded
                return self._config
            try:
                fresh = load_web_config(*config.source)
                check_same_scheme(config, fresh)
            except ConfigError as exc:
                self._failed = now
                log.error("web config changed but does not load; keeping the previous one",
                          extra={"kv": {"err": str(exc)}})  # fmt: skip
                self._on_result(str(exc))
                return config
            self._config, self._failed = fresh, None
        log.info("web config reloaded", extra={"kv": {"files": len(now)}})
        self._on_result(None)
        return fresh

    def replace(self, config: WebConfig | None) -> None:
        """Use a config loaded (and checked with `check_same_scheme`) elsewhere: a reload."""
        with self._lock:
            self._config, self._failed = config, None


def check_same_scheme(old: WebConfig | None, new: WebConfig | None) -> None:
    """A running server cannot switch between HTTP and HTTPS: that needs a restart."""
    before, after = (c.scheme if c else "http" for c in (old, new))
    if before != after:
        raise ConfigError(f"switching from {before.upper()} to {after.upper()} needs a restart")
