"""The API key (and a base URL's credentials) never appears in a metric, a log line, an
exception message, a cache file or a repr, in any front end: the core (models, errors,
settings), the llm plugin (its commands' output, its cache file), the exporter (its
pages, its metrics, its log records) and the fake server (its admin routes, its repr).
Whatever the API echoes back counts: every test here talks to a server that echoes."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from llm_pinference import cache as catalog
from llm_pinference.cache import Catalog
from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.errors import PinferenceError, Reason
from llm_pinference.core.settings import Settings
from pinference_fake import FakePinference, Fault
from tests.support import free_port

KEY = "pit_echoed_secret_7788"
USER, PASSWORD = "proxyuser", "pr0xy-passw0rd"
SECRETS = (KEY, PASSWORD, f"{USER}:{PASSWORD}")


def strings(value: object) -> Iterator[str]:
    """Every string inside a value: dataclasses, mappings (keys too), sequences."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            yield item
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            todo += [getattr(item, f.name) for f in dataclasses.fields(item)]
        elif isinstance(item, dict):
            todo += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            todo += list(item)


def assert_clean(*values: object) -> None:
    for value in values:
        for text in strings(value):
            for secret in SECRETS:
                assert secret not in text, f"{secret!r} in {text!r}"


def with_credentials(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{USER}:{PASSWORD}@{rest}"


def echoing_models() -> list[dict[str, object]]:
    """Models whose every field a hostile server filled with what the caller sent."""
    echo = f"key {KEY} url {USER}:{PASSWORD}"
    return [
        {
            "id": f"echo/{KEY}",
            "object": "model",
            "owned_by": f"owner {PASSWORD}",
            "display_name": echo,
            "serving": KEY,
            "pricing": {"input_usd_per_mtok": 1, KEY: PASSWORD},
            "specs": {"modalities": {"input": ["text", KEY], "output": [PASSWORD]}},
            "supported_parameters": ["tools", f"x-{KEY}"],
            "extra": [[[{"deep": [echo]}]]],
        },
        {"id": "plain/model", "object": "model", "display_name": "Plain"},
    ]


@pytest.fixture
def settings(fake: FakePinference) -> Settings:
    return Settings(api_key=KEY, team_id="team-1", base_url=with_credentials(fake.base_url))


# ------------------------------------------------------------------ the core


def test_listed_and_single_models_carry_no_secret(fake: FakePinference, settings: Settings):
    fake.set_models(echoing_models())
    client = PinferenceClient(settings)
    listed = client.list_models().models
    assert [m.display_name for m in listed] == ["key *** url ***", "Plain"]
    assert listed[0].id == "echo/***" and listed[0].owned_by == "owner ***"
    single = client.get_model("plain/model")
    assert_clean(listed, [m.raw for m in listed], single, single.raw)


def test_escaped_secrets_in_json_are_found_too(fake: FakePinference, settings: Settings):
    escaped = "".join(f"\\u{ord(c):04x}" for c in KEY)  # no plain copy of the key on the wire
    body = '{"data": [{"id": "a/b", "display_name": "' + escaped + '"}]}'
    fake.set_fault("list", Fault(body=body))
    (model,) = PinferenceClient(settings).list_models().models
    assert model.display_name == "***"


def test_api_error_messages_and_urls_carry_no_secret(fake: FakePinference, settings: Settings):
    body = json.dumps({"error": {"message": f"bad key {KEY} for {USER}:{PASSWORD}" + "x" * 280}})
    fake.set_fault("list", Fault(status=401, body=body))
    with pytest.raises(PinferenceError) as info:
        PinferenceClient(settings).list_models()
    err = info.value
    assert err.reason is Reason.UNAUTHORIZED
    assert err.url == fake.base_url  # no user info
    assert "bad key *** for ***" in (err.api_message or "")
    assert_clean(str(err), repr(err), err.message, err.api_message, err.url, err.args)


def test_a_secret_across_the_length_cut_leaves_no_part(fake: FakePinference, settings: Settings):
    message = "x" * 290 + KEY  # the one-line limit falls inside the key
    fake.set_fault("list", Fault(status=500, body=json.dumps({"error": {"message": message}})))
    with pytest.raises(PinferenceError) as info:
        PinferenceClient(settings).list_models()
    assert KEY[:6] not in (info.value.api_message or "")


def test_transport_errors_name_the_url_without_credentials():
    url = with_credentials(f"http://127.0.0.1:{free_port()}/api/v1")
    settings = Settings(api_key=KEY, base_url=url)
    with pytest.raises(PinferenceError) as info:
        PinferenceClient(settings).list_models()
    assert info.value.reason is Reason.CONNECTION_ERROR
    assert_clean(str(info.value), repr(info.value), info.value.url)
    assert_clean(repr(settings), repr(PinferenceClient(settings)))
    assert f"{USER}:***@" not in repr(settings) and "***@127.0.0.1" in repr(settings)


def test_the_cache_holds_no_secret(fake: FakePinference, settings: Settings, tmp_path: Path):
    fake.set_models(echoing_models())
    path = tmp_path / catalog.CACHE_FILENAME
    lookup = Catalog(path, settings).get()
    assert len(lookup.models) == 2
    fake.set_fault("list", Fault(status=503, body=json.dumps({"error": f"down {KEY} {PASSWORD}"})))
    failed = Catalog(path, settings, ttl=0, backoff=0).get()
    assert failed.error is not None
    text = path.read_text()
    for secret in (*SECRETS, USER):
        assert secret not in text
    assert list(json.loads(text)["accounts"]) == [f"{fake.base_url}|team=team-1"]


def test_settings_secrets_and_account():
    settings = Settings(api_key=KEY, team_id="t", base_url=with_credentials("https://h/v1?x=1"))
    assert set(settings.secrets) == {KEY, f"{USER}:{PASSWORD}", PASSWORD, USER}
    assert settings.account == "https://h/v1|team=t"
    assert Settings().secrets == ()


def test_redact_data_copies_at_the_deepest_json_read():
    from llm_pinference.core.text import MAX_JSON_DEPTH, redact_data

    deep: object = {KEY: [KEY]}
    for _ in range(MAX_JSON_DEPTH - 2):
        deep = [deep]
    clean = redact_data(deep, [KEY])
    assert clean is not deep
    while isinstance(clean, list):
        clean = clean[0]
    assert clean == {"***": ["***"]}
    original = {"a": [KEY, {"b": KEY}], KEY: 1, "n": None, "x": 1.5}
    assert redact_data(original, [KEY]) == {
        "a": ["***", {"b": "***"}],
        "***": 1,
        "n": None,
        "x": 1.5,
    }
    assert original["a"][0] == KEY  # the input is left alone
    assert redact_data(original, [None, "ab"]) == original  # nothing worth redacting


# ------------------------------------------------------------------ the llm plugin


def test_the_plugin_commands_show_no_secret(
    fake: FakePinference, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.plugin.helpers import cache_file, invoke, reset_state

    reset_state()
    monkeypatch.setenv("PRIME_API_KEY", KEY)
    monkeypatch.setenv("PRIME_INFERENCE_URL", with_credentials(fake.base_url))
    fake.set_models(echoing_models())
    shown = [invoke(["pinference", "models", "--json"]), invoke(["models"])]
    fake.set_fault("*", Fault(status=401, body=json.dumps({"error": f"bad key {KEY}"})))
    failed = invoke(["pinference", "refresh", "-v"])
    assert failed.exit_code != 0
    for result in (*shown, failed):
        assert_clean(result.output, repr(result.exception))
    assert_clean(cache_file().read_text())


# ------------------------------------------------------------------ the exporter


def test_the_exporter_pages_metrics_and_logs_carry_no_secret(
    fake: FakePinference, caplog: pytest.LogCaptureFixture
) -> None:
    from pinference_exporter import AccountConfig, Exporter, ExporterConfig

    caplog.set_level(logging.DEBUG)
    fake.set_models(echoing_models())
    account = AccountConfig(
        api_key=KEY, base_url=with_credentials(fake.base_url), probe_models=("plain/model",)
    )
    config = ExporterConfig(
        accounts=(account,), listen_address="127.0.0.1:0", probe_interval=30.0,
        probe_timeout=10.0,
    )  # fmt: skip
    with Exporter(config).start(probe=False) as exporter:
        exporter.run_probe_cycle()
        fake.set_fault("*", Fault(status=401, body=json.dumps({"error": f"bad key {KEY}"})))
        exporter.run_probe_cycle()
        fake.set_fault("*", Fault(mode="malformed"))
        exporter.run_probe_cycle()
        pages = [requests.get(exporter.url + path, timeout=10).text for path in ("/", "/metrics")]
        assert "pinference_up" in pages[1]
        assert_clean(pages, exporter.scrape(), repr(exporter), repr(config))
    assert caplog.records  # the failures were logged
    for record in caplog.records:
        assert_clean(record.getMessage(), [str(v) for v in vars(record).values()])


# ------------------------------------------------------------------ the fake server


def test_the_fake_shows_no_key_it_was_sent_or_requires(fake: FakePinference) -> None:
    fake.require_key = KEY
    requests.get(fake.base_url + "/models", headers={"Authorization": f"Bearer {KEY}"},
                 timeout=10)  # fmt: skip
    admin = [requests.get(f"{fake.url}/_admin/{route}", timeout=10).text
             for route in ("", "requests")]  # fmt: skip
    assert_clean(admin, repr(fake))
