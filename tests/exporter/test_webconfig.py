"""The web config (exporter-toolkit's format): what loads, one-line errors for what does not,
basic auth, and a file edited at run time: the last good config kept, the reason logged once
per change."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import threading
from pathlib import Path

import pytest
from pinference_exporter import cli, webconfig
from pinference_exporter.config import ConfigError
from pinference_exporter.webconfig import BasicAuth, WebConfigWatcher, load_web_config

from tests.exporter.helpers import PW_HASH, bcrypt_hash, make_certificate

BAD_WEB_CONFIGS = {
    "unknown key": ("http_server_confg: {}\n", "unsupported key(s) 'http_server_confg' (known: "),
    "toolkit key not here": ("rate_limit: {burst: 1}\n", "unsupported key(s) 'rate_limit'"),
    "unknown tls key": (
        "tls_server_config: {cert_file: c, key_file: k, min_versoin: TLS12}\n",
        "tls_server_config: unknown or unsupported key(s) 'min_versoin'",
    ),
    "unknown http key": ("http_server_config: {header: {}}\n", "unsupported key(s) 'header'"),
    "http2 not a bool": ("http_server_config: {http2: maybe}\n", "http2 must be true or false"),
    "header not allowed": (
        "http_server_config:\n  headers: {X-Powered-By: me}\n",
        "header 'X-Powered-By' cannot be set",
    ),
    "header value not allowed": (
        "http_server_config:\n  headers: {X-Frame-Options: allow}\n",
        "header X-Frame-Options: 'allow' is not one of deny, sameorigin",
    ),
    "min above max": (
        "tls_server_config: {cert_file: c, key_file: k, min_version: TLS13,\n"
        "  max_version: TLS12}\n",
        "min_version TLS13 is above max_version TLS12",
    ),
    "client ca without client auth": (
        "tls_server_config:\n  {cert_file: c, key_file: k, client_ca_file: ca}\n",
        "cannot read TLS certificate",  # checked after the certificate: see the test below
    ),
    "no cert": ("tls_server_config:\n  key_file: k\n", "needs cert_file and key_file"),
    "not bcrypt": ("basic_auth_users:\n  prom: plain\n", "prom's password is not a valid bcrypt"),
    "truncated bcrypt": (
        f"basic_auth_users:\n  prom: '{PW_HASH[:-1]}'\n",
        "prom's password is not a valid bcrypt hash",
    ),
    "bcrypt cost out of range": (
        f"basic_auth_users:\n  prom: '{PW_HASH.replace('$05$', '$32$')}'\n",
        "prom's password is not a valid bcrypt hash",
    ),
    "bcrypt bad alphabet": (
        f"basic_auth_users:\n  prom: '{PW_HASH[:-1]}!'\n",
        "prom's password is not a valid bcrypt hash",
    ),
    "bad user": ("basic_auth_users:\n  'a:b': '$2y$05$x'\n", "bad user name"),
}


@pytest.mark.parametrize("name", list(BAD_WEB_CONFIGS))
def test_bad_web_configs_exit_2_with_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, message = BAD_WEB_CONFIGS[name]
    path = tmp_path / "web.yml"
    path.write_text(text)
    assert cli.main([f"--web.config.file={path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_unsupported_client_auth_type_is_refused(tmp_path: Path) -> None:
    make_certificate(tmp_path, "c")  # checked after the certificate loads: a real one
    (tmp_path / "c.key").rename(tmp_path / "k.pem")
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n"
        "  client_auth_type: RequestClientCert\n"
    )
    with pytest.raises(ConfigError, match="client_auth_type 'RequestClientCert' is not supported"):
        load_web_config(str(path))
    path.write_text(
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
    )
    with pytest.raises(ConfigError, match="needs client_ca_file"):
        load_web_config(str(path))
    path.write_text(
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS14\n"
    )
    with pytest.raises(ConfigError, match="min_version 'TLS14' is not supported"):
        load_web_config(str(path))


def test_basic_auth_without_any_bcrypt_is_a_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(webconfig, "bcrypt", None)
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prom: '{PW_HASH}'\n")
    assert cli.main([f"--web.config.file={path}"]) == 2
    assert "basic_auth_users needs the bcrypt Python module" in capsys.readouterr().err


def test_bcrypt_checks_and_a_credential_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    checkpw = webconfig.bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return checkpw(password, hashed)

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting)
    auth = BasicAuth({"prom": PW_HASH})

    def header(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    assert auth.allows(header("prom", "pw")) and auth.allows(header("prom", "pw"))
    assert calls == [b"pw"]  # the second check came from the cache
    assert not auth.allows(header("prom", "px"))
    assert not auth.allows(header("other", "pw"))
    assert not auth.allows("Basic !!!") and not auth.allows("Bearer x") and not auth.allows(None)


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    plain, key = key, tmp_path / "encrypted.key"
    command = ["openssl", "pkey", "-in", str(plain), "-out", str(key), "-aes256", "-passout",
               "pass:secret"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    found: list[BaseException] = []

    def load() -> None:  # a prompt would read the terminal: bounded by a thread
        try:
            load_web_config(None, str(cert), str(key))
        except Exception as exc:
            found.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "asked for a passphrase"
    assert "the key is encrypted (keys with a passphrase are not supported)" in str(found[0])


@pytest.mark.parametrize(
    ("text", "message"),
    [("tls_server_config: [a, b]\n", "tls_server_config: expected a mapping"),
     ("tls_server_config: {cert_file: c, key_file: k, min_version: [TLS12]}\n",
      "min_version ['TLS12'] is not supported"),
     ("http_server_config: {headers: {X-Frame-Options: [deny]}}\n", "is not a one-line string"),
     ("basic_auth_users: {[a]: b}\n", "not valid YAML"),
     ("basic_auth_users: {1: b}\n", "key 1 is not a name"),
     ("a: " + "[" * 100 + "]" * 100 + "\n", "nested more than 64 levels deep")],
)  # fmt: skip
def test_a_list_where_a_string_belongs_or_too_deep_is_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(path))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_edit_keeps_the_last_good_config_and_is_logged_once_per_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prom: '{bcrypt_hash('first')}'\n")
    results: list[str | None] = []
    watcher = WebConfigWatcher(load_web_config(str(path)), on_result=results.append)
    good = watcher.current()
    caplog.set_level(logging.INFO, logger="pinference_exporter.web")

    def edit(text: str) -> None:
        path.write_text(text)
        stat = path.stat()  # a new mtime even within the clock's resolution
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if "does not load" in r.getMessage()]

    edit("basic_auth_users:\n  prom: not-a-hash\n")
    for _ in range(50):  # a request each: read again only when the files change
        assert watcher.current() is good
    assert len(failures()) == 1 and len(results) == 1 and "not a valid bcrypt" in results[0]
    edit("basic_auth_users: [nested, [too, [deep]]]\n")
    for _ in range(50):
        assert watcher.current() is good
    assert len(failures()) == 2 and "expected a mapping" in str(results[-1])
    edit(f"basic_auth_users:\n  prom: '{bcrypt_hash('second')}'\n")
    fresh = watcher.current()
    assert fresh is not good and fresh is not None and fresh.auth is not None
    assert results[-1] is None and len(failures()) == 2


def test_the_cli_refuses_a_bad_web_config_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config: {min_version: {a: 1}}\n")
    assert cli.main([f"--web.config.file={path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tls_server_config" in err, err
