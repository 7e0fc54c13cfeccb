"""The pages for people: the landing page (per-account and per-model state, recent probes,
the configuration in force) and each probe's debug log; hostile text escaped, ages
rounded, secrets never shown."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import requests
from pinference_exporter import Exporter, ExporterConfig
from pinference_exporter.config import AccountConfig
from pinference_exporter.recent import RecentProbes

from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import SECRET, make_exporter
from tests.support import free_port as closed_port

WATCHED = "meta-llama/llama-3.1-70b-instruct"
HOSTILE = '<img src=x onerror="alert(1)">&amp;'


def get(exporter: Exporter, path: str) -> requests.Response:
    return requests.get(exporter.url + path, timeout=10)


def log_links(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'href="/logs\?id=(\d+)"', page)]


def test_landing_page_shows_the_target_and_the_last_probes_but_no_secret(
    fake: FakePinference,
) -> None:
    fake.require_key = SECRET
    with make_exporter(fake.base_url, api_key=SECRET, telemetry_path="/probe/metrics") as exporter:
        before = get(exporter, "/").text
        assert "not probed yet" in before and "No probe has finished yet" in before
        fake.set_fault("get", Fault(status=402))
        exporter.run_probe_cycle()
        page = get(exporter, "/")
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        text = page.text
        assert 'href="/probe/metrics"' in text
        assert fake.base_url in text and SECRET not in text
        assert "payment_required" in text and "11 model(s)" in text
        assert get(exporter, "/probe/metrics").status_code == 200
        assert get(exporter, "/metrics").status_code == 404
    # The key did reach the API: the fake answered 200 to the list.
    assert fake.requests_for("list")[0].header("authorization") == f"Bearer {SECRET}"


def test_user_info_in_the_base_url_is_never_shown() -> None:
    url = f"http://user:hunter2@127.0.0.1:{closed_port()}/api/v1"
    with make_exporter(url) as exporter:
        exporter.run_probe_cycle()
        pages = [get(exporter, "/").text]
        pages += [get(exporter, f"/logs?id={n}").text for n in log_links(pages[0])]
        assert "connection_error" in pages[0] and len(pages) > 1
        for text in pages:
            assert "hunter2" not in text and "http://127.0.0.1:" in text
        assert "hunter2" not in repr(exporter)


def test_watched_models_and_recent_probes_with_their_debug_logs(fake: FakePinference) -> None:
    fake.require_key = SECRET
    with make_exporter(fake.base_url, api_key=SECRET, probe_models=(WATCHED, "no/such")) as exp:
        exp.run_probe_cycle()
        fake.set_fault("get", Fault(status=503))
        exp.run_probe_cycle()
        page = get(exp, "/").text
        recent = page.split("<h2>Recent probes</h2>", 1)[1].split("<h2>", 1)[0]
        links = log_links(recent)
        assert links == sorted(links, reverse=True) and len(links) == 6  # newest first
        assert recent.count("server_error") == 2 and recent.count("not_found") == 1
        watched = page.split("<h3>Watched models</h3>", 1)[1].split("</table>", 1)[0]
        row = next(r for r in watched.split("<tr>") if WATCHED in r)
        assert "server_error" in row and "503" in row and "yes" in row  # 503 is not a 404
        assert "no" in next(r for r in watched.split("<tr>") if "no/such" in r)

        list_log = get(exp, f"/logs?id={min(links)}")  # the first list probe
        assert list_log.status_code == 200
        text = html.unescape(list_log.text)
        assert f"GET {fake.base_url}/models\n" in text
        assert "Authorization: Bearer <secret>" in text and SECRET not in list_log.text
        assert "Status: 200" in text and "Result: success" in text
        assert re.search(r"Phases \(a new connection\): resolve [\d.]+s, connect", text)
        failed = html.unescape(get(exp, f"/logs?id={max(links)}").text)
        assert "Status: 503" in failed and "Result: failed (server_error)" in failed
        assert "Error: " in failed and "/models/" in failed

        for missing in ("/logs?id=999999", "/logs?id=x", "/logs", "/logs?id=" + "9" * 30):
            assert get(exp, missing).status_code == 404, missing


def test_hostile_model_ids_are_escaped_everywhere(fake: FakePinference) -> None:
    fake.set_models([*fake.models, {"id": HOSTILE, "object": "model", "owned_by": HOSTILE}])
    fake.set_fault("get", Fault(status=500, body=HOSTILE))
    with make_exporter(fake.base_url, probe_models=(HOSTILE,)) as exporter:
        exporter.run_probe_cycle()
        page = get(exporter, "/").text
        pages = [page, *(get(exporter, f"/logs?id={n}").text for n in log_links(page))]
    assert html.escape(HOSTILE) in page
    for text in pages:
        assert "<img" not in text and 'onerror="' not in text


def test_ages_are_rounded_for_people(fake: FakePinference) -> None:
    with make_exporter(fake.base_url) as exporter:
        now = time.time()
        exporter.state.record("list", 0.1, now - 189.9, status=200)  # 3m9s900ms ago
        exporter.state.record("get", 0.1, now - 3 * 3600 - 5, status=500, reason="server_error")
        page = get(exporter, "/").text
    assert ">3 min ago<" in page and ">3 h ago<" in page
    assert "ms ago" not in page and "3m9s" not in page
    assert re.search(r'title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"', page)  # the exact time


def test_configuration_in_force_names_key_files_never_keys(
    fake: FakePinference, tmp_path: Path
) -> None:
    key_file = tmp_path / "prime_api_key"
    url = fake.base_url.replace("://", "://u:pw@")
    account = AccountConfig(name="team-a", base_url=url, api_key=SECRET, key_file=str(key_file),
                            probe_models=(WATCHED,))  # fmt: skip
    other = AccountConfig(name="team-b", base_url=fake.base_url, api_key=SECRET + "-b")
    config = ExporterConfig(accounts=(account, other), listen_address="127.0.0.1:0",
                            probe_interval=45.0)  # fmt: skip
    with Exporter(config).start(probe=False) as exporter:
        page = get(exporter, "/").text
    shown = html.unescape(page.split("<h2>Configuration</h2>", 1)[1])
    assert "probe_interval: 45.0" in shown
    assert f"key_file: {key_file}" in shown and "api_key: <secret>" in shown
    assert f"the key from <code>{key_file}</code>" in page
    assert SECRET not in page and ":pw@" not in page
    assert "- name: team-a" in shown and "- name: team-b" in shown


def test_recent_probes_are_a_bounded_ring_keeping_each_watched_models_latest() -> None:
    recent = RecentProbes(size=3)
    account = AccountConfig(base_url="https://api.example/v1", probe_models=("a/b",))
    recent.add(account, "get", 0.1, 1.0, model="a/b", status=200)
    for n in range(4):
        recent.add(account, "list", 0.1, 2.0 + n, status=200)
    assert [r.id for r in recent.recent()] == [5, 4, 3]
    assert recent.find(1) is not None and recent.find(2) is None  # the watched model's last
    latest = recent.latest("default", "a/b")
    assert latest is not None and latest.url == "https://api.example/v1/models/a/b"
