"""The real `pinference-exporter` in a subprocess: signals, logs, secrets, isolation from llm,
and what works without the exporter's extra."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from pinference_fake import FakePinference, Fault
from tests.exporter.helpers import ROOT, SECRET, exporter_process, promtool_check, wait_for

WATCHED = "meta-llama/llama-3.1-70b-instruct"
# As in an environment from `pip install llm-pinference` or `llm install llm-pinference`:
# neither prometheus_client nor yaml can be imported.
WITHOUT_EXTRA = "import sys; sys.modules.update(prometheus_client=None, yaml=None); "
MISSING_EXTRA = (
    "pinference-exporter: error: the exporter needs its extra: "
    "pip install 'llm-pinference[exporter]'\n"
)


def base_args(fake: FakePinference, *extra: str) -> list[str]:
    return ["--web.listen-address=127.0.0.1:0", f"--api.base-url={fake.base_url}", *extra]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_quickly_with_a_probe_in_flight(fake: FakePinference, sig: int) -> None:
    fake.set_fault("list", Fault(mode="hang"))
    args = base_args(fake, "--probe.interval=30s", "--probe.timeout=20s")
    with exporter_process(args) as proc:
        wait_for(lambda: fake.requests_for("list"), what="the hanging list probe")
        assert requests.get(proc.url + "/-/ready", timeout=10).status_code == 503
        took = proc.terminate(sig)
        assert proc.proc.returncode == 0
        assert took < 5.0, f"took {took:.2f}s to stop"  # the design target is < 1s
        assert 'msg="shutting down"' in proc.stderr and "msg=stopped" in proc.stderr


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_the_key_never_appears_in_metrics_page_or_debug_logs(
    fake: FakePinference, tmp_path: Path, log_format: str
) -> None:
    fake.require_key = SECRET
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    args = base_args(
        fake, f"--api.key-file={key_file}", "--log.level=debug", f"--log.format={log_format}",
        f"--probe.models={WATCHED}", "--probe.interval=1s", "--probe.timeout=800ms",
    )  # fmt: skip
    with exporter_process(args) as proc:
        wait_for(lambda: len(fake.requests_for("get")) >= 1, what="a get probe")
        fake.set_fault("*", Fault(status=401, times=2))  # errors get logged too
        wait_for(lambda: "unauthorized" in proc.stderr, what="a logged 401")
        metrics = requests.get(proc.url + "/metrics", timeout=10).text
        page = requests.get(proc.url + "/", timeout=10).text
        promtool_check(metrics)
        proc.terminate()
    assert "pinference_up" in metrics and WATCHED in page
    for text in (metrics, page, proc.stderr, proc.stdout):
        assert SECRET not in text
        assert SECRET[5:20] not in text
    # The key was used: the fake accepted it (only 2 requests were failed on purpose).
    assert any(r.header("authorization") == f"Bearer {SECRET}" for r in fake.requests)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert any("probe succeeded" in line for line in lines)  # debug lines were on
    if log_format == "json":
        records = [json.loads(line) for line in lines]
        assert {"ts", "level", "msg"} <= set(records[0])
        assert any(r.get("reason") == "unauthorized" for r in records)
    else:
        assert all(line.startswith("ts=") and " level=" in line for line in lines), lines[:3]
        assert any("level=warn" in line and "reason=unauthorized" in line for line in lines)


def test_config_file_and_environment_drive_the_real_cli(
    fake: FakePinference, tmp_path: Path
) -> None:
    fake.require_key = SECRET
    (tmp_path / "key").write_text(SECRET)
    config = tmp_path / "exporter.yml"
    config.write_text(
        "web:\n  listen_address: 127.0.0.1:0\n  telemetry_path: /pinference\n"
        f"probe:\n  interval: 2s\n  models: ['{WATCHED}']\n"
        "api:\n  key_file: key\n"
    )
    env = {"PRIME_INFERENCE_URL": fake.base_url}  # the base URL from the environment
    with exporter_process([f"--config.file={config}", "--probe.interval=1s"], env) as proc:
        wait_for(
            lambda: requests.get(proc.url + "/-/ready", timeout=10).status_code == 200,
            what="readiness",
        )
        metrics = requests.get(proc.url + "/pinference", timeout=10).text
        assert "pinference_probe_interval_seconds 1.0" in metrics  # the flag beat the file
        wait_for(
            lambda: (
                f'pinference_model_available{{account="default",model="{WATCHED}"}} 1.0'
                in requests.get(proc.url + "/pinference", timeout=10).text
            ),
            what="the watched model",
        )
        proc.terminate()


def test_python_m_pinference_exporter_version_and_bad_flag() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "pinference_exporter", "--version"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert version.returncode == 0 and "pinference-exporter, version" in version.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "pinference_exporter", "--probe.interval=soon"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert "--probe.interval: 'soon' is not a duration" in bad.stderr


def test_port_in_use_is_one_line_and_exit_1(fake: FakePinference) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pinference_exporter", f"--web.listen-address=127.0.0.1:{port}",
             f"--api.base-url={fake.base_url}"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_llm_is_never_imported(fake: FakePinference) -> None:
    code = f"""
import sys, requests
import pinference_exporter.cli
from pinference_exporter import AccountConfig, Exporter, ExporterConfig
account = AccountConfig(base_url={fake.base_url!r}, probe_models=({WATCHED!r},))
config = ExporterConfig(accounts=(account,), listen_address="127.0.0.1:0")
with Exporter(config).start(probe=False) as exp:
    exp.run_probe_cycle()
    text = requests.get(exp.metrics_url, timeout=10).text
    assert 'pinference_up{{account="default"}} 1.0' in text
names = ("llm.", "llm_pinference.plugin")
print(sorted(m for m in sys.modules if m == "llm" or m.startswith(names)))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def without_extra(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA + code],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_help_version_and_assets_work_without_the_extra() -> None:
    cli = "from pinference_exporter.cli import main; sys.exit(main({}))"
    assets = "import runpy; sys.argv[1:] = {}; runpy.run_module('pinference_exporter.assets', "
    assets += "run_name='__main__')"
    version = without_extra(cli.format("['--version']"))
    assert version.returncode == 0 and "pinference-exporter, version" in version.stdout
    usage = without_extra(cli.format("['--help']"))
    assert usage.returncode == 0 and "--probe.interval" in usage.stdout
    listed = without_extra(assets.format("['--list']"))
    assert listed.returncode == 0, listed.stderr
    assert "prometheus/pinference.rules.yml" in listed.stdout.split()

    run = without_extra(cli.format("['--web.listen-address=127.0.0.1:0']"))
    assert (run.returncode, run.stdout, run.stderr) == (2, "", MISSING_EXTRA)
    library = without_extra("from pinference_exporter import Exporter")
    assert library.returncode == 1
    assert library.stderr.strip().splitlines()[-1] == (
        "ImportError: the exporter needs its extra: pip install 'llm-pinference[exporter]'"
    )
