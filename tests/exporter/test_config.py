"""Flags, the config file, their precedence, and one-line errors with exit status 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pinference_exporter import cli
from pinference_exporter.config import ExporterConfig
from pinference_exporter.options import (
    ConfigError,
    ListenAddress,
    parse_duration,
    parse_listen_address,
)

from llm_pinference import __version__
from llm_pinference.core.settings import DEFAULT_BASE_URL


def test_durations_are_the_cores_with_a_config_error() -> None:
    assert parse_duration("1m30s") == 90 and parse_duration("0") == 0
    for text in ("30", "1s1m", None, 30):
        with pytest.raises(ConfigError, match="is not a duration"):
            parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(":8795", ListenAddress("", 8795)), ("127.0.0.1:8795", ListenAddress("127.0.0.1", 8795)),
     ("[::1]:9", ListenAddress("::1", 9)), ("localhost:0", ListenAddress("localhost", 0)),
     ("[::]:8795", ListenAddress("::", 8795))],
)  # fmt: skip
def test_parse_listen_address(text: str, expected: ListenAddress) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["8795", ":70000", "[::1]", "host:", "a:b", "::1:80", ""])
def test_parse_listen_address_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="not a listen address"):
        parse_listen_address(text)


def test_defaults(config_from: Callable[[list[str]], ExporterConfig]) -> None:
    config = config_from([])
    assert config.addresses == (ListenAddress("", 8795),) and config.telemetry_path == "/metrics"
    assert config.probe_interval == 30 and config.timeout == 10
    assert config.concurrency == 4 and config.max_series == 1000
    assert config.max_response_bytes == 16 * 1024 * 1024 and config.web is None
    assert not config.enable_lifecycle
    (account,) = config.accounts
    assert account.name == "default" and account.sample_size == 2
    assert account.base_url == DEFAULT_BASE_URL and account.api_key is None


def test_default_timeout_is_half_a_short_interval(
    config_from: Callable[[list[str]], ExporterConfig],
) -> None:
    assert config_from(["--probe.interval=4s"]).timeout == 2
    assert config_from(["--probe.interval=1m"]).timeout == 10


def test_config_file_vs_flags_vs_environment(
    config_from: Callable[[list[str]], ExporterConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRIME_INFERENCE_URL", "http://from-env.example/api/v1")
    monkeypatch.setenv("PRIME_API_KEY", "env-key-0000")
    monkeypatch.setenv("PRIME_TEAM_ID", "env-team")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "key").write_text("  file-key-1234\n")
    config_file = tmp_path / "exporter.yml"
    config_file.write_text(
        """
web:
  listen_address: 127.0.0.1:9999
  telemetry_path: /custom
probe:
  interval: 1m
  timeout: 5s
  models: [a/one, b/two]
  concurrency: 2
models:
  max_series: 50
api:
  base_url: http://from-file.example/api/v1/
  key_file: secrets/key
log:
  level: debug
"""
    )
    only_file = config_from([f"--config.file={config_file}"])
    assert only_file.listen_address == ("127.0.0.1:9999",)
    assert only_file.telemetry_path == "/custom"
    assert (only_file.probe_interval, only_file.timeout) == (60, 5)
    (settings,) = only_file.accounts
    assert settings.probe_models == ("a/one", "b/two")
    assert (only_file.concurrency, only_file.max_series) == (2, 50)
    assert settings.base_url == "http://from-file.example/api/v1"  # the file beats the env
    assert settings.api_key == "file-key-1234"  # relative to the file, whitespace stripped
    assert settings.team_id == "env-team"  # not in the file: the environment's

    flags = config_from([
        f"--config.file={config_file}", "--probe.interval=10s", "--probe.models=c/three",
        "--probe.models=d/four", "--api.base-url=http://from-flag.example/v1",
        "--web.listen-address=:0",
    ])  # fmt: skip
    assert flags.probe_interval == 10 and flags.timeout == 5
    assert flags.accounts[0].probe_models == ("c/three", "d/four")  # the flags replace the file's
    assert flags.listen_address == (":0",) and flags.telemetry_path == "/custom"
    assert flags.accounts[0].base_url == "http://from-flag.example/v1"

    (no_file,) = config_from([]).accounts
    assert no_file.base_url == "http://from-env.example/api/v1"
    assert no_file.api_key == "env-key-0000"


def test_settings_repr_never_shows_the_key(
    config_from: Callable[[list[str]], ExporterConfig], tmp_path: Path
) -> None:
    key = tmp_path / "key"
    key.write_text("sk-very-secret-key")
    config = config_from([f"--api.key-file={key}"])
    assert "sk-very-secret-key" not in repr(config)


BAD_ARGS = {
    "duration": (["--probe.interval=abc"], "--probe.interval: 'abc' is not a duration"),
    "timeout >= interval": (
        ["--probe.interval=5s", "--probe.timeout=5s"],
        "--probe.timeout (5s) must be shorter than --probe.interval (5s)",
    ),
    "zero interval": (["--probe.interval=0"], "--probe.interval: '0' is outside 1s to 1d"),
    "sub-second interval": (["--probe.interval=999ms"], "'999ms' is outside 1s to 1d"),
    "interval over a day": (["--probe.interval=1d1ms"], "'1d1ms' is outside 1s to 1d"),
    "interval of centuries": (["--probe.interval=300y"], "'300y' is outside 1s to 1d"),
    "timeout above interval": (
        ["--probe.interval=2s", "--probe.timeout=1m"],
        "--probe.timeout (1m) must be shorter than --probe.interval (2s)",
    ),
    "watched id leaving /models/": (
        ["--probe.models=../../admin"],
        "--probe.models: invalid model id '../../admin': a path segment is '.' or '..'",
    ),
    "watched id escaped dots": (["--probe.models=a/%2e%2E/b"], "a path segment is '.' or '..'"),
    "empty listen address list": (["--web.listen-address="], "not a listen address"),
    "address": (["--web.listen-address=8795"], "--web.listen-address: '8795' is not a listen"),
    "port": (["--web.listen-address=:70000"], "not a listen address"),
    "log level": (["--log.level=verbose"], "--log.level: 'verbose' is not one of debug"),
    "log format": (["--log.format=text"], "--log.format"),
    "concurrency": (["--probe.concurrency=0"], "--probe.concurrency: '0' is not an integer"),
    "max series": (["--models.max-series=-1"], "--models.max-series"),
    "sample size": (["--probe.sample-size=x"], "--probe.sample-size"),
    "response bytes": (["--probe.max-response-bytes=10"], "--probe.max-response-bytes"),
    "telemetry path": (["--web.telemetry-path=/-/ready"], "--web.telemetry-path"),
    "relative telemetry path": (["--web.telemetry-path=metrics"], "must start with /"),
    "base url": (["--api.base-url=ftp://x"], "is not an http:// or https:// URL"),
    "unknown flag": (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    "missing value": (["--probe.interval"], "expected one argument"),
    "missing config": (["--config.file=/nonexistent/x.yml"], "cannot read config file"),
    "missing key file": (["--api.key-file=/nonexistent/key"], "cannot read API key file"),
    "tls half": (["--web.tls-cert-file=/x.pem"], "go together"),
    "tls files": (
        ["--web.tls-cert-file=/nonexistent/c", "--web.tls-key-file=/nonexistent/k"],
        "cannot read TLS certificate /nonexistent/c: No such file",
    ),
    "web config": (["--web.config.file=/nonexistent/web.yml"], "cannot read web config"),
}


@pytest.mark.parametrize("name", list(BAD_ARGS))
def test_bad_values_exit_2_with_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv, message = BAD_ARGS[name]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("pinference-exporter: error: ")
    assert message in err


BAD_FILES = {
    "not yaml": ("probe: [unclosed", "not valid YAML (line"),
    "not a mapping": ("- a\n- b\n", "expected a mapping of sections"),
    "unknown section": ("prob:\n  interval: 1s\n", "unknown key 'prob'"),
    "unknown key": ("probe:\n  intervall: 1s\n", "unknown key 'probe.intervall'"),
    "number as duration": ("probe:\n  interval: 30\n", "probe.interval: 30 is not a duration"),
    "section not a mapping": ("web: 8795\n", "'web' must be a mapping"),
    "models not a list": ("probe:\n  models: {a: 1}\n", "is not a list of model ids"),
    "bool as integer": ("probe:\n  concurrency: true\n", "probe.concurrency"),
    "empty key file": ("api:\n  key_file: empty\n", "is empty"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_config_files_exit_2_with_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, message = BAD_FILES[name]
    (tmp_path / "empty").write_text("  \n")
    path = tmp_path / "exporter.yml"
    path.write_text(text)
    assert cli.main([f"--config.file={path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert f"pinference-exporter, version {__version__}" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    help_text = capsys.readouterr().out
    for flag in ("--web.listen-address", "--web.telemetry-path", "--probe.interval",
                 "--probe.timeout", "--probe.models", "--probe.concurrency",
                 "--models.max-series", "--config.file", "--api.key-file", "--log.level",
                 "--log.format", "--web.config.file", "--web.tls-cert-file",
                 "--web.tls-key-file", "--version"):  # fmt: skip
        assert flag in help_text


def test_the_documented_config_examples_are_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re
    import textwrap

    import yaml

    from tests.exporter.helpers import ROOT

    doc = (ROOT / "docs" / "exporter.md").read_text(encoding="utf-8")
    found = re.findall(r"^( *)```yaml\n(.*?)^\1```", doc, flags=re.S | re.M)
    blocks = [textwrap.dedent(block) for _, block in found]
    assert len(blocks) == 2
    (tmp_path / "key").write_text("sk-example-key")
    for block in blocks:
        data = yaml.safe_load(block)
        for entry in [data.get("api") or {}, *(data.get("accounts") or [])]:
            if "key_file" in entry:
                entry["key_file"] = "key"  # the README's /run/secrets/... are not here
        data.get("web", {}).pop("config_file", None)
        path = tmp_path / "exporter.yml"
        path.write_text(yaml.safe_dump(data))
        assert cli.main([f"--config.file={path}", "--config.check"]) == 0, capsys.readouterr()
        assert capsys.readouterr().out == "ok\n"
