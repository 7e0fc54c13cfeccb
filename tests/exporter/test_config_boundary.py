"""The promise at the config boundary: whatever the config file, the web config or a key
file holds (or whatever the path is: a FIFO, /dev/zero, a huge file), loading gives a valid
config or one ConfigError of one line; never another exception, never a hang."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pinference_exporter import cli
from pinference_exporter.config import ConfigError, build_config, load_config_file, read_key_file
from pinference_exporter.options import OPTIONS
from pinference_exporter.webconfig import load_web_config

from tests.exporter.helpers import PW_HASH

KEY = "sk-boundary-0123456789"
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


def outcome(load: Callable[[], object]) -> str | None:
    """None if it loaded; the message if ConfigError; any other exception fails the test.
    Run on a thread with a generous bound: a blocking open is a hang, not a slow test."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            load()
            result.append(None)
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert result, "loading hung"
    if result[0] is None:
        return None
    assert isinstance(result[0], ConfigError), repr(result[0])
    message = str(result[0])
    assert message and "\n" not in message and "\r" not in message, message
    assert KEY not in message
    return message


def load_file(path: Path) -> object:
    return build_config(load_config_file(path))


BAD_DOCUMENTS = {
    "unicode digit": ("probe:\n  sample_size: ²\n", "'²' is not an integer from 0 to 100"),
    "5,000 digits": ("probe:\n  sample_size: " + "9" * 5000 + "\n", "YAML cannot represent"),
    "hex of 5,000 digits": ("probe:\n  sample_size: 0x" + "f" * 5000 + "\n", "too large to show"),
    "deep": ("probe: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels deep"),
    "billion laughs": (
        "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "probe: {models: *i}\n",
        "expands to more than 100000 values",
    ),
    "merge-key bomb": (
        "a: &a {x: 1, y: 2}\n"
        + "".join(
            f"{c}: &{c} {{<<: [{', '.join([f'*{p}'] * 9)}]}}\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "web: *i\n",
        "expands to more than 100000 values",
    ),
    "comments only": ("# nothing\n", "expected a mapping of sections"),
    "blank": ("  \n\n", "is empty"),
    "not UTF-8": (b"probe: {interval: \xff}\n", "is not UTF-8 text"),
    "a list for a string": ("web: {telemetry_path: [a]}\n", "['a'] is not a non-empty string"),
    "a number key": ("probe: {1: 2}\n", "key 1 is not a name"),
    "a date that is not": ("probe: {interval: 2021-02-30}\n", "YAML cannot represent"),
    "a control in a path": ('api: {key_file: "a\\nb"}\n', "cannot read API key file"),
    "a NUL in a path": ('api: {key_file: "a\\0b"}\n', "cannot read API key file"),
}


@pytest.mark.parametrize("name", list(BAD_DOCUMENTS))
def test_bad_documents_are_one_line(name: str, tmp_path: Path) -> None:
    text, message = BAD_DOCUMENTS[name]
    path = tmp_path / "exporter.yml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    found = outcome(lambda: load_file(path))
    assert found is not None and message in found, found


def special_files(tmp_path: Path) -> dict[str, tuple[str, str]]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge"
    with huge.open("wb") as file:
        file.truncate(100 * 1024 * 1024)  # 100 MB of one line (sparse: nothing written)
    (tmp_path / "empty").write_text("")
    return {
        "a FIFO": (str(fifo), "is not a regular file"),
        "/dev/zero": ("/dev/zero", "is not a regular file"),
        "a directory": (str(tmp_path), "Is a directory"),
        "100 MB": (str(huge), "is larger than"),
        "empty": (str(tmp_path / "empty"), "is empty"),
        "missing": (str(tmp_path / "nope"), "No such file or directory"),
    }


@pytest.mark.parametrize("what", ["config", "web config", "key", "tls", "ca"])
def test_special_files_are_refused_without_blocking(what: str, tmp_path: Path) -> None:
    for path, message in special_files(tmp_path).values():
        load: Callable[[], object] = {
            "config": lambda p=path: load_config_file(p),
            "web config": lambda p=path: load_web_config(p),
            "key": lambda p=path: read_key_file(p),
            "tls": lambda p=path: load_web_config(None, p, p),
            "ca": lambda p=path: build_config({"api.ca_file": p}),
        }[what]
        found = outcome(load)
        assert found is not None and message in found and path in found, (path, found)


@pytest.mark.parametrize(
    "text", ["\ufeff" + KEY, KEY[:5] + "\u200b" + KEY[5:], KEY + " second", KEY + "\x00"]
)
def test_an_invisible_character_in_a_key_is_refused_naming_the_file_only(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "key"
    path.write_text(text, encoding="utf-8")
    assert cli.main([f"--api.key-file={path}", "--config.check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"API key file {path}: the key must be one word" in err
    assert KEY[:5] not in err


# --- fuzz ----------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["30s", "1m", "0", "²", "127.0.0.1:0", ":8795", "/metrics", "a/b", "..",
                     "https://x.example/v1", "ftp://x", "debug", "json", "TLS12", "\ud800",
                     "a\nb", "NoClientCert", "RequireAndVerifyClientCert"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{"probe.chat.models": x} as {"probe": {"chat": {"models": x}}}."""
    document: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, name = key.split(".")
        node = document
        for parent in parents:
            node = node.setdefault(parent, {}) if isinstance(node.get(parent, {}), dict) else {}
        node[name] = value
    return document


# Each key gets a value that may well be good (so that checks further on are reached), or
# anything at all.
good = st.sampled_from(
    [
        "30s",
        "2m",
        "0",
        "5",
        "100",
        "127.0.0.1:0",
        "/metrics",
        "a/b",
        ["a/b", "c/d"],
        "http://x.example/v1",
        "info",
        "json",
        True,
        3,
        "key",
    ]
)
# What parsers trip on: a unicode digit, too many digits, a container for a scalar, a lone
# surrogate, a newline, a number no float holds.
TRICKY = [
    "²",
    "٣s",
    "9" * 30,
    10**30,
    16**5000,
    ["x"],
    {"a": 1},
    [["x"]],
    "\ud800",
    "a\nb",
    -1,
    1e300,
    float("nan"),
    "",
    None,
    True,
]
tricky = st.sampled_from(TRICKY)
slot = st.one_of(good, tricky, values)
keys = st.sampled_from([o.key for o in OPTIONS if o.target.value != "web"] + ["probe.nope"])
flat = st.dictionaries(keys, slot, max_size=6)
account = st.dictionaries(
    st.sampled_from(["name", "models", "sample_size", "base_url", "team_id", "key_file",
                     "chat.models", "chat.interval", "chat.max_per_hour", "nope"]),
    st.sampled_from(["a", "b", "key"]) | slot, max_size=5,
).map(nested)  # fmt: skip
documents = (
    st.tuples(flat, st.none() | st.lists(account, max_size=3)).map(
        lambda pair: {**nested(pair[0]), **({} if pair[1] is None else {"accounts": pair[1]})}
    )
    | values
)


class Dumper(yaml.SafeDumper):
    """Writes integers too long for decimal text (Python's limit) in hex, as YAML allows."""


Dumper.add_representer(
    int, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:int", hex(value))
)


def dumped(document: Any) -> str:
    try:
        return yaml.dump(document, Dumper=Dumper, allow_unicode=True)
    except (yaml.YAMLError, UnicodeEncodeError):
        return repr(document)


@FUZZ
@given(document=documents)
def test_fuzz_config_files(document: Any, tmp_path: Path) -> None:
    path = tmp_path / "exporter.yml"
    path.write_text(dumped(document), encoding="utf-8", errors="surrogatepass")
    (tmp_path / "key").write_text(KEY)  # a key_file of "key" exists
    outcome(lambda: load_file(path))


def test_every_option_with_every_tricky_value(tmp_path: Path) -> None:
    """Each file key (and each key of an account) with each value parsers trip on."""
    path = tmp_path / "exporter.yml"
    for option in OPTIONS:
        for value in TRICKY:
            for document in (
                nested({option.key: value}),
                {"accounts": [nested({"name": "a", option.account_key or "nope": value})]},
            ):
                path.write_text(dumped(document), encoding="utf-8", errors="surrogatepass")
                outcome(lambda: load_file(path))


@FUZZ
@given(key=st.sampled_from([o.key for o in OPTIONS]), value=slot)
def test_fuzz_one_key(key: str, value: Any, tmp_path: Path) -> None:
    path = tmp_path / "exporter.yml"
    path.write_text(dumped(nested({key: value})), encoding="utf-8", errors="surrogatepass")
    outcome(lambda: load_file(path))


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_config_file_bytes(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "exporter.yml"
    path.write_bytes(raw)
    outcome(lambda: load_file(path))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.exporter.helpers import make_certificate

    folder = tmp_path_factory.mktemp("pki")
    make_certificate(folder)  # server.pem, server.key: relative paths in the web config
    return folder


tls = st.fixed_dictionaries(
    {"cert_file": st.sampled_from(["server.pem"]) | st.just("server.pem") | slot,
     "key_file": st.sampled_from(["server.key"]) | st.just("server.key") | slot},
    optional={
        "min_version": st.sampled_from(["TLS12", "TLS13"]) | slot,
        "max_version": st.sampled_from(["TLS12", "TLS13"]) | slot,
        "client_auth_type": st.sampled_from(["NoClientCert", "RequireAndVerifyClientCert",
                                             "RequestClientCert"]) | slot,
        "client_ca_file": st.just("server.pem") | slot,
        "nope": values,
    },
)  # fmt: skip
header_names = st.sampled_from(["X-Frame-Options", "X-Powered-By"]) | st.text(max_size=4)
http = st.fixed_dictionaries({}, optional={
    "headers": st.dictionaries(header_names, st.sampled_from(["deny"]) | slot, max_size=3) | slot,
    "http2": st.booleans() | slot,
})  # fmt: skip
users = st.dictionaries(st.text(max_size=5), st.just(PW_HASH) | slot, max_size=3)
web_documents = (
    st.fixed_dictionaries({}, optional={"tls_server_config": tls | tls | slot,
                                        "http_server_config": http | slot,
                                        "basic_auth_users": users | slot,
                                        "rate_limit": values})
    | values
)  # fmt: skip


@FUZZ
@given(document=web_documents)
def test_fuzz_web_config_files(document: Any, pki: Path) -> None:
    path = pki / "web.yml"
    path.write_text(dumped(document), encoding="utf-8", errors="surrogatepass")
    outcome(lambda: load_web_config(str(path)))


@FUZZ
@given(
    raw=st.binary(max_size=100)
    | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_fuzz_key_files(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(raw)
    found = outcome(lambda: read_key_file(str(path)))
    if found is None:  # what is accepted is one word of printable ASCII
        key = read_key_file(str(path))
        assert key.isascii() and key.isprintable() and " " not in key
