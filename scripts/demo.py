"""`make demo`: the whole project against the fake Pinference on 127.0.0.1, ending by itself.

Nothing here needs an account or the internet: the fake API runs in this process, llm and
the exporter run as the real commands, and Prometheus (when installed) runs the shipped
scrape config and alert rules. Every step prints what a user would type.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import requests
import yaml

from llm_pinference.client import PinferenceClient
from llm_pinference.fake import FakePinference, Fault
from llm_pinference.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import promhelpers  # noqa: E402  (the shipped config/rules rewrite, shared with the tests)
from support import free_port  # noqa: E402

BIN = Path(sys.executable).parent
MODEL = "meta-llama/llama-3.1-70b-instruct"
T = TypeVar("T")
DEMO_KEY = "demo-key-not-secret"  # the fake accepts any key; llm wants one to prompt


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def run(argv: list[str], env: dict[str, str], keep: Callable[[str], bool] | None = None) -> str:
    """Run a command as a user would, echoing it and (a filtered view of) its output."""
    shown = " ".join(shlex.quote(a) for a in [Path(argv[0]).name, *argv[1:]])
    print(f"$ {shown}", flush=True)
    out = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    text = out.stdout + out.stderr
    lines = [line for line in text.splitlines() if keep is None or keep(line)]
    print("\n".join(lines), flush=True)
    if out.returncode != 0:
        raise SystemExit(f"demo: {shown} failed with exit code {out.returncode}")
    return text


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """The tests' wait_until, ending the demo with one line instead of a traceback."""
    try:
        return promhelpers.wait_until(check, timeout=timeout, what=what, interval=0.3)
    except AssertionError as exc:
        raise SystemExit(f"demo: {exc}") from None


def demo_client(fake: FakePinference) -> None:
    step("The core client: GET /models and GET /models/{id}")
    with PinferenceClient(Settings(base_url=fake.base_url)) as client:
        listed = client.list_models()
        print(f"{len(listed.models)} models")
        for m in listed.models[:5]:
            print(f"  {m.id:<40} {m.display_name or '':<30} {m.context_window or ''}")
        model = client.get_model(MODEL)
        print(f"get {model.id}: owner={model.owned_by} tools={model.supports_tools}")


def demo_llm(env: dict[str, str]) -> None:
    llm = str(BIN / "llm")
    step("llm learns every Pinference model (the list is fetched once, then cached)")
    run([llm, "models"], env, keep=lambda line: "pinference/" in line)
    run([llm, "pinference", "models", "-q", "qwen"], env)
    step("Prompts: streaming, then not")
    run([llm, "-m", f"pinference/{MODEL}", "Say hello to the demo"], env)
    run([llm, "-m", f"pinference/{MODEL}", "--no-stream", "Once more, without streaming"], env)


def scrape(url: str, prefixes: tuple[str, ...]) -> None:
    text = requests.get(url, timeout=5).text
    for line in text.splitlines():
        # Failure counters are pre-set to 0 for every reason: show only the ones that moved.
        if line.startswith(prefixes) and not ("reason=" in line and line.endswith(" 0.0")):
            print("  " + line)


def start_prometheus(work: Path, exporter_target: str) -> tuple[promhelpers.Process, str] | None:
    binary = shutil.which("prometheus")
    if binary is None:
        print(
            "(prometheus is not installed: skipping the alerting part; apt-get install prometheus)"
        )
        return None
    rules = work / "pinference.rules.yml"
    rules.write_text(
        yaml.safe_dump(promhelpers.rewrite_rules(promhelpers.load_yaml(promhelpers.RULES)))
    )
    config = promhelpers.rewrite_config(
        promhelpers.load_yaml(promhelpers.PROM_CONFIG), exporter_target, rules
    )
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary,
        f"--config.file={work / 'prometheus.yml'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={work / 'tsdb'}",
    ]
    print("$ prometheus --config.file=prometheus/prometheus.yml (a copy: 1s intervals, short for:)")
    prom = promhelpers.Process("prometheus", argv, work / "prometheus.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: promhelpers.prom_values(url, 'up{job="pinference"} == 1'),
            "Prometheus to scrape the exporter",
        )
    except BaseException:
        prom.stop()
        raise
    print(f"Prometheus at {url} scrapes the exporter")
    return prom, url


def demo_exporter(fake: FakePinference, env: dict[str, str], work: Path) -> None:
    step("pinference-exporter probes the API and serves metrics")
    port = free_port()
    argv = [
        str(BIN / "pinference-exporter"),
        f"--web.listen-address=127.0.0.1:{port}",
        "--probe.interval=1s",
        "--probe.timeout=500ms",
        f"--probe.models={MODEL}",
    ]
    print("$ " + " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv)))
    exporter = promhelpers.Process("exporter", argv, work / "exporter.log", env=env)
    base = f"http://127.0.0.1:{port}"
    prom = None
    try:
        wait_for(lambda: requests.get(f"{base}/-/ready", timeout=2).ok, "the exporter")
        print(f"$ curl -s {base}/metrics   (selected lines)")
        scrape(
            f"{base}/metrics",
            (
                "pinference_up",
                "pinference_catalog_models",
                "pinference_probes_total",
                "pinference_model_available",
                "pinference_probe_http_status_code",
            ),
        )
        step("Prometheus evaluates the shipped alert rules")
        prom = start_prometheus(work, f"127.0.0.1:{port}")

        step("A fault: the API starts answering 401 Unauthorized")
        print(">>> fake.set_fault('list' and 'get', Fault(status=401))")
        fake.set_fault("list", Fault(status=401))
        fake.set_fault("get", Fault(status=401))
        wait_for(
            lambda: (
                'reason="unauthorized"} 0.0' not in requests.get(f"{base}/metrics", timeout=2).text
            ),
            "the exporter to count the 401",
        )
        time.sleep(2)
        print(f"$ curl -s {base}/metrics   (failure lines)")
        scrape(
            f"{base}/metrics",
            (
                "pinference_up",
                "pinference_probe_failures_total",
                "pinference_probe_http_status_code",
            ),
        )
        if prom is not None:
            url = prom[1]
            alerts = wait_for(
                lambda: [
                    a
                    for a in promhelpers.prom_alerts(url)
                    if a["labels"].get("alertname") == "PinferenceAuthFailing"
                    and a["state"] == "firing"
                ],
                "PinferenceAuthFailing",
                timeout=90,
            )
            print(f"$ curl -s {url}/api/v1/alerts")
            for alert in alerts:
                labels = alert["labels"]
                print(
                    f"  {labels['alertname']} [{alert['state']}] severity={labels['severity']} "
                    f"endpoint={labels.get('endpoint')}: {alert['annotations']['summary']}"
                )

        step("The fault clears and the exporter recovers")
        fake.clear_faults()
        wait_for(
            lambda: (
                'pinference_up{account="default"} 1.0'
                in requests.get(f"{base}/metrics", timeout=2).text
            ),
            "recovery",
        )
        scrape(f"{base}/metrics", ("pinference_up",))
    finally:
        exporter.stop()
        if prom is not None:
            prom[0].stop()


def main() -> int:
    with FakePinference() as fake, tempfile.TemporaryDirectory(prefix="pinference-demo-") as tmp:
        work = Path(tmp)
        (work / "home").mkdir()
        print(f"fake Pinference serving {fake.base_url}")
        # A private llm directory and HOME: the demo never touches your llm keys or cache.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIME_", "LLM_"))}
        env.update(
            PRIME_INFERENCE_URL=fake.base_url,
            PRIME_API_KEY=DEMO_KEY,
            LLM_USER_PATH=str(work / "llm"),
            HOME=str(work / "home"),
        )
        demo_client(fake)
        demo_llm(env)
        demo_exporter(fake, env, work)
    step("Done: everything ran on 127.0.0.1 and has stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
