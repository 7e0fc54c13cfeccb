"""Reload and several accounts, with the real CLI as a child process: SIGHUP and
POST /-/reload with good and bad configs, key and web config rotation, two accounts side by
side, and the flags that are refused before anything starts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import (
    ROOT,
    SECRET,
    Scrape,
    bcrypt_hash,
    exporter_process,
    scrape_url,
    wait_for,
)

MODEL_A = "meta-llama/llama-3.1-70b-instruct"
MODEL_B = "deepseek/deepseek-r1-0528"
PRIVATE = {"id": "team-a/secret-model", "object": "model", "owned_by": "team-a"}
RELOADED = "pinference_exporter_config_last_reload_successful"
RELOADED_AT = "pinference_exporter_config_last_reload_success_timestamp_seconds"


def write_config(path: Path, base_url: str, models: list[str], *, interval: str = "1s") -> None:
    path.write_text(
        "web: {listen_address: '127.0.0.1:0'}\n"
        f"probe: {{interval: {interval}, timeout: 500ms, models: {models!r}}}\n"
        f"api: {{base_url: '{base_url}', key_file: key}}\n"
    )


def metrics(url: str) -> Scrape:
    return scrape_url(url + "/metrics")


def wait_metrics(url: str, predicate: Callable[[Scrape], object], what: str) -> Scrape:
    """Scrape until `predicate` holds; returns that scrape."""
    found: list[Scrape] = []

    def check() -> bool:
        found[:] = [metrics(url)]
        return bool(predicate(found[0]))

    wait_for(check, what=what)
    return found[0]


def list_probes(url: str, account: str = "default") -> float:
    return metrics(url).value("pinference_probes_total", account=account, endpoint="list") or 0


@pytest.mark.parametrize("trigger", ["sighup", "post"])
def test_reload_applies_a_good_config_and_keeps_the_old_one_on_a_bad_one(
    fake: FakePinference, tmp_path: Path, trigger: str
) -> None:
    fake.require_key = SECRET
    (tmp_path / "key").write_text(SECRET)
    config = tmp_path / "exporter.yml"
    write_config(config, fake.base_url, [MODEL_A])
    args = [f"--config.file={config}", "--web.enable-lifecycle"]
    with exporter_process(args) as proc:

        def reload(expect_ok: bool) -> None:
            if trigger == "sighup":
                proc.proc.send_signal(signal.SIGHUP)
                return
            answer = requests.post(proc.url + "/-/reload", timeout=10)
            assert answer.status_code == (200 if expect_ok else 500), answer.text
            if not expect_ok:
                assert answer.text.startswith("failed to reload config: ")
                assert answer.text.count("\n") == 1

        wait_for(lambda: list_probes(proc.url) >= 2, what="two list probes")
        before = metrics(proc.url)
        assert before.value(RELOADED) == 1
        assert before.value("pinference_model_available", model=MODEL_A) == 1
        started_at = before.value(RELOADED_AT)
        time.sleep(0.05)  # the success timestamp must move

        write_config(config, fake.base_url, [MODEL_B])
        reload(expect_ok=True)
        after = wait_metrics(
            proc.url,
            lambda s: s.value("pinference_model_available", model=MODEL_B),
            "the reloaded config's watched model",
        )
        assert after.value("pinference_model_available", model=MODEL_A) is None  # unwatched
        assert after.value(RELOADED) == 1 and after.value(RELOADED_AT) > started_at
        # Counters and histograms carried on through the reload.
        for name, labels in [
            ("pinference_probes_total", {"endpoint": "list"}),
            ("pinference_probe_duration_seconds_count", {"endpoint": "list"}),
            ("pinference_probes_total", {"endpoint": "get"}),
        ]:
            assert after.value(name, **labels) >= before.value(name, **labels) >= 1, name

        config.write_text("probe: {interval: soon}\n")
        reload(expect_ok=False)
        failed = wait_metrics(
            proc.url, lambda s: s.value(RELOADED) == 0, "the reload metric to say it failed"
        )
        assert proc.proc.poll() is None  # alive
        assert failed.value(RELOADED_AT) == after.value(RELOADED_AT)
        probes = list_probes(proc.url)
        wait_for(lambda: list_probes(proc.url) > probes, what="probing with the old config")
        assert metrics(proc.url).value("pinference_model_available", model=MODEL_B) == 1
        errors = [line for line in proc.stderr.splitlines() if "reload failed" in line]
        assert len(errors) == 1, errors
        assert "level=error" in errors[0] and "'soon' is not a duration" in errors[0]

        write_config(config, fake.base_url, [MODEL_B])  # fixed: the metric recovers
        reload(expect_ok=True)
        wait_for(lambda: metrics(proc.url).value(RELOADED) == 1, what="a good reload again")
        assert proc.terminate() < 30 and proc.proc.returncode == 0  # a bound for a hang
    assert "Traceback" not in proc.stderr and SECRET not in proc.stderr


def test_a_reload_from_any_bad_file_keeps_the_running_config(
    fake: FakePinference, tmp_path: Path
) -> None:
    """Each bad file on reload: the old config kept, the reload metric 0, the reason logged
    once, one line in the answer; a FIFO or /dev/zero blocks nothing."""
    import os

    (tmp_path / "key").write_text(SECRET)
    config = tmp_path / "exporter.yml"
    write_config(config, fake.base_url, [MODEL_A])
    bad = {
        "deep": "probe: " + "[" * 5000 + "]" * 5000 + "\n",
        "digits": "probe: {sample_size: " + "9" * 5000 + "}\n",
        "unicode digit": "probe: {sample_size: ²}\n",
        "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [{', '.join([f'*{chr(ord(c) - 1)}'] * 9)}]\n" for c in "bcdefgh"),
        "empty": "",
    }  # fmt: skip
    with exporter_process([f"--config.file={config}", "--web.enable-lifecycle"]) as proc:
        wait_for(lambda: list_probes(proc.url) >= 1, what="a list probe")
        good = config.read_text()
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        for count, name in enumerate([*bad, "fifo", "/dev/zero"], start=1):
            config.unlink()
            if name == "fifo":
                config.symlink_to(fifo)
            elif name == "/dev/zero":
                config.symlink_to("/dev/zero")
            else:
                config.write_text(bad[name])
            answer = requests.post(proc.url + "/-/reload", timeout=30)
            assert answer.status_code == 500 and answer.text.count("\n") == 1, (name, answer.text)
            wait_for(lambda n=count: proc.stderr.count("reload failed") >= n, what="the log line")
            assert proc.stderr.count("reload failed") == count, name  # once each
            scraped = metrics(proc.url)
            assert scraped.value(RELOADED) == 0
            assert scraped.value("pinference_model_available", model=MODEL_A) == 1  # kept
        proc.proc.send_signal(signal.SIGHUP)  # the signal path with /dev/zero: no hang
        wait_for(lambda: proc.stderr.count("reload failed") == count + 1, what="the SIGHUP reload")
        config.unlink()
        config.write_text(good)
        assert requests.post(proc.url + "/-/reload", timeout=30).status_code == 200
        assert metrics(proc.url).value(RELOADED) == 1
        assert proc.proc.poll() is None
    assert "Traceback" not in proc.stderr


def test_reload_endpoint_is_off_without_enable_lifecycle(
    fake: FakePinference, tmp_path: Path
) -> None:
    (tmp_path / "key").write_text(SECRET)
    config = tmp_path / "exporter.yml"
    write_config(config, fake.base_url, [])
    with exporter_process([f"--config.file={config}"]) as proc:
        refused = requests.post(proc.url + "/-/reload", timeout=10)
        assert refused.status_code == 403 and "--web.enable-lifecycle" in refused.text
        assert "configuration loaded" not in proc.stderr
        proc.proc.send_signal(signal.SIGHUP)  # SIGHUP reloads whatever the flag says
        wait_for(lambda: "configuration loaded" in proc.stderr, what="the SIGHUP reload")
        assert proc.proc.poll() is None


def test_a_rotated_key_file_is_used_after_a_reload(fake: FakePinference, tmp_path: Path) -> None:
    old_key, new_key = SECRET, "sk-test-ROTATED-abcdef0123456789"
    fake.require_key = old_key
    key = tmp_path / "key"
    key.write_text(old_key + "\n")
    config = tmp_path / "exporter.yml"
    write_config(config, fake.base_url, [])
    with exporter_process([f"--config.file={config}"]) as proc:
        wait_for(lambda: metrics(proc.url).value("pinference_up") == 1, what="up with the key")
        fake.require_key = new_key  # the old key is revoked
        wait_for(
            lambda: metrics(proc.url).value(
                "pinference_probe_failures_total", endpoint="list", reason="unauthorized"
            ),
            what="the revoked key's 401",
        )
        key.write_text(new_key + "\n")  # the secret is rotated on disk...
        proc.proc.send_signal(signal.SIGHUP)  # ...and the exporter told
        wait_for(lambda: metrics(proc.url).value("pinference_up") == 1, what="up again")
        page = requests.get(proc.url + "/", timeout=10).text
        text = metrics(proc.url).text
        proc.terminate()
    assert fake.requests_for("list")[-1].header("authorization") == f"Bearer {new_key}"
    for output in (page, text, proc.stderr):
        assert new_key not in output and old_key not in output


def test_a_changed_web_config_password_applies_without_restart(
    fake: FakePinference, tmp_path: Path
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prom: '{bcrypt_hash('first')}'\n")
    args = ["--web.listen-address=127.0.0.1:0", f"--api.base-url={fake.base_url}",
            f"--web.config.file={web}"]  # fmt: skip
    with exporter_process(args) as proc:

        def status(password: str) -> int:
            response = requests.get(proc.url + "/metrics", auth=("prom", password), timeout=10)
            return response.status_code

        assert (status("first"), status("second")) == (200, 401)
        web.write_text(f"basic_auth_users:\n  prom: '{bcrypt_hash('second')}'\n")  # no signal
        wait_for(lambda: status("first") == 401, what="the old password refused")
        assert status("second") == 200
        web.write_text("basic_auth_users:\n  prom: not-a-hash\n")  # a bad edit is not applied
        wait_for(
            lambda: status("second") == 200 and "does not load" in proc.stderr,
            what="the bad web config logged and the previous one kept",
        )
        assert status("first") == 401
        s = scrape_url(proc.url + "/metrics", auth=("prom", "second"))
        assert s.value(RELOADED) == 0
        assert proc.proc.poll() is None


def test_two_accounts_side_by_side_only_the_team_sees_its_private_model(
    tmp_path: Path,
) -> None:
    with FakePinference(require_key=SECRET, private_models={"team-a": [PRIVATE]}) as fake:
        (tmp_path / "key").write_text(SECRET)
        config = tmp_path / "exporter.yml"
        accounts = f"""
web: {{listen_address: '127.0.0.1:0'}}
probe: {{interval: 1s, timeout: 500ms}}
accounts:
  - {{name: personal, base_url: '{fake.base_url}', key_file: key}}
  - {{name: team-a, base_url: '{fake.base_url}', key_file: key, team_id: team-a,
     models: ['{PRIVATE["id"]}']}}
"""
        config.write_text(accounts)
        public = len(fake.models)
        with exporter_process([f"--config.file={config}"]) as proc:
            s = wait_metrics(
                proc.url,
                lambda s: (
                    s.value("pinference_catalog_models", account="team-a")
                    and s.value("pinference_catalog_models", account="personal")
                ),
                "both accounts' lists",
            )
            assert s.value("pinference_catalog_models", account="personal") == public
            assert s.value("pinference_catalog_models", account="team-a") == public + 1
            private = [x["account"] for x in s.labelsets("pinference_model_info")
                       if x["model"] == PRIVATE["id"]]  # fmt: skip
            assert private == ["team-a"]
            assert s.value("pinference_models", account="team-a", owned_by="team-a") == 1
            assert s.value("pinference_models", account="personal", owned_by="team-a") is None
            assert s.value("pinference_up", account="personal") == 1
            watched = wait_for(
                lambda: metrics(proc.url).value(
                    "pinference_model_available", account="team-a", model=PRIVATE["id"]
                ),
                what="the team's watched private model",
            )
            assert watched == 1
            page = requests.get(proc.url + "/", timeout=10).text
            assert "Account <code>personal</code>" in page
            assert "Account <code>team-a</code>" in page and "team <code>team-a</code>" in page

            # Reload without the team account: its series go, the other's stay.
            config.write_text(accounts.split("  - {name: team-a", maxsplit=1)[0])
            proc.proc.send_signal(signal.SIGHUP)
            gone = wait_metrics(
                proc.url,
                lambda s: s.value("pinference_up", account="team-a") is None,
                "the removed account's series to disappear",
            )
            assert not [x for f in gone.families.values() for x in f.samples
                        if x.labels.get("account") == "team-a"]  # fmt: skip
            assert gone.value("pinference_up", account="personal") == 1
            assert "Account <code>team-a</code>" not in requests.get(proc.url, timeout=10).text
            team_requests = len([r for r in fake.requests if r.header("x-prime-team-id")])
            time.sleep(2.5)  # two more intervals: the removed account's prober has stopped
            assert len([r for r in fake.requests if r.header("x-prime-team-id")]) == team_requests


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pinference_exporter", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--probe.interval=300y"], "--probe.interval: '300y' is outside 1s to 1d"),
        (["--probe.interval=1ms"], "--probe.interval: '1ms' is outside 1s to 1d"),
        (["--probe.interval=25h"], "--probe.interval: '25h' is outside 1s to 1d"),
        (["--probe.interval=5s", "--probe.timeout=5s"], "must be shorter than --probe.interval"),
        (["--probe.interval=5s", "--probe.timeout=1m"], "must be shorter than --probe.interval"),
    ],
)
def test_bad_durations_are_refused_before_anything_starts(args: list[str], message: str) -> None:
    result = run_cli("--web.listen-address=127.0.0.1:0", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_config_check(fake: FakePinference, tmp_path: Path) -> None:
    (tmp_path / "key").write_text(SECRET)
    config = tmp_path / "exporter.yml"
    write_config(config, fake.base_url, [MODEL_A])
    good = run_cli(f"--config.file={config}", "--config.check")
    assert (good.returncode, good.stdout, good.stderr) == (0, "ok\n", "")
    (tmp_path / "key").write_text("")
    bad = run_cli(f"--config.file={config}", "--config.check")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "is empty" in bad.stderr
    assert not fake.requests  # checking probes nothing


def test_every_listen_address_serves(fake: FakePinference) -> None:
    args = ["--web.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.2:0",
            f"--api.base-url={fake.base_url}"]  # fmt: skip
    with exporter_process(args) as proc:
        line = next(line for line in proc.stderr.splitlines() if "starting" in line)
        listen = line.split(" listen=")[1].split()[0].split(",")
        assert [a.rsplit(":", 1)[0] for a in listen] == ["127.0.0.1", "127.0.0.2"]
        for address in listen:
            assert requests.get(f"http://{address}/-/healthy", timeout=10).status_code == 200


def test_every_api_series_has_the_account_label_and_the_exporters_own_do_not(
    fake: FakePinference,
) -> None:
    fake.set_fault("list", Fault(status=503))
    args = ["--web.listen-address=127.0.0.1:0", f"--api.base-url={fake.base_url}",
            "--probe.interval=1s", "--probe.timeout=500ms"]  # fmt: skip
    with exporter_process(args) as proc:
        s = wait_metrics(
            proc.url,
            lambda s: s.value("pinference_probe_success", endpoint="list") == 0,
            "a failed list probe",
        )
    for family in s.families.values():
        for sample in family.samples:
            own = sample.name.startswith(("pinference_exporter_", "pinference_probe_interval"))
            if sample.name.startswith("pinference_"):
                assert ("account" in sample.labels) is not own, sample
    assert s.value("pinference_probe_failures_total", account="default", endpoint="list",
                   reason="server_error") >= 1  # fmt: skip
