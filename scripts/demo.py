"""`make demo`: the whole project against the fake Pinference on 127.0.0.1, ending by itself.

Nothing here needs an account or the internet: the fake API runs in this process, llm and
the exporter run as the real commands, Prometheus (when installed) runs the shipped scrape
config and rules, and Alertmanager (when installed) the shipped routing and inhibition,
notifying a webhook in this process. Every command is printed as a user would type it,
with the environment it runs in; faults are injected with curl on the fake's admin routes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # harness/ (not in the wheel)
from harness import Process, ProjectFiles, free_port, wait_until
from harness.alertmanager import (
    WebhookReceiver,
    am_alerts,
    find_alertmanager,
    rewrite_alertmanager_config,
    start_alertmanager,
)
from harness.prometheus import (
    prom_alerts,
    prom_values,
    rewrite_config,
    rewrite_rules,
    start_prometheus,
    write_yaml,
)
from llm_pinference.core.client import PinferenceClient
from llm_pinference.core.settings import Settings
from pinference_fake import FakePinference

ROOT = Path(__file__).resolve().parent.parent
FILES = ProjectFiles(ROOT)
BIN = Path(sys.executable).parent
MODEL = "meta-llama/llama-3.1-70b-instruct"
SHOWN_MODELS = 5
T = TypeVar("T")
DEMO_KEY = "demo-key-not-secret"  # the fake accepts any key; llm wants one to prompt
# Bold headings on a terminal only: piped or captured output stays plain text.
BOLD, PLAIN = (
    ("\033[1m", "\033[0m") if sys.stdout.isatty() and not os.environ.get("NO_COLOR") else ("", "")
)


def step(title: str) -> None:
    print(f"\n{BOLD}== {title}{PLAIN}", flush=True)


def shown(path: Path | str) -> str:
    """A path as a user would type it: relative to the current directory when inside it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def command_line(argv: Sequence[str]) -> str:
    return shlex.join([shown(argv[0]) if os.sep in argv[0] else argv[0], *argv[1:]])


def run(argv: list[str], env: dict[str, str], keep: Callable[[str], bool] | None = None) -> str:
    """Run a command as a user would, echoing it and (a filtered view of) its output."""
    line = command_line(argv)
    print(f"$ {line}", flush=True)
    out = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    text = out.stdout + out.stderr
    lines = [entry for entry in text.splitlines() if keep is None or keep(entry)]
    print("\n".join(lines), flush=True)
    if out.returncode != 0:
        raise SystemExit(f"demo: {line} failed with exit code {out.returncode}")
    return text


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 90) -> T:
    """A bounded wait that ends the demo with one line instead of a traceback."""
    try:
        return wait_until(check, timeout=timeout, what=what, interval=0.3)
    except AssertionError as exc:
        raise SystemExit(f"demo: {exc}") from None


def curl_admin(base: str, method: str, route: str, body: dict[str, Any] | None = None) -> None:
    """Call an admin route of the fake with curl, as printed (the same request without
    curl when it is not installed)."""
    url = f"{base}/_admin/{route}"
    argv = ["curl", "-s", "-X", method, url]
    data = json.dumps(body) if body is not None else None
    if data is not None:
        argv += ["-H", "Content-Type: application/json", "-d", data]
    print(f"$ {shlex.join(argv)}", flush=True)
    if shutil.which("curl"):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        answer = done.stdout
    else:
        answer = requests.request(method, url, data=data, timeout=30,
                                  headers={"Content-Type": "application/json"}).text  # fmt: skip
    print(answer.strip(), flush=True)


def scrape(url: str, names: Sequence[str]) -> None:
    """Print the lines of these metrics, as the printed curl | grep pipeline would; failure
    counters are pre-set to 0 for every reason: only those that moved are shown."""
    pattern = rf"^({'|'.join(names)})[ {{]"
    print(f"$ curl -s {url} | grep -E '{pattern}' | grep -v 'reason=.* 0.0$'", flush=True)
    for line in requests.get(url, timeout=5).text.splitlines():
        if re.match(pattern, line) and not re.search(r"reason=.* 0\.0$", line):
            print("  " + line)


def demo_client(fake: FakePinference) -> None:
    step("The core client: GET /models and GET /models/{id}")
    print(">>> from llm_pinference.core.client import PinferenceClient")
    print(">>> from llm_pinference.core.settings import Settings")
    print(f">>> client = PinferenceClient(Settings(base_url={fake.base_url!r}))")
    print(">>> listed = client.list_models()")
    with PinferenceClient(Settings(base_url=fake.base_url)) as client:
        listed = client.list_models()
        count = len(listed.models)
        if count > SHOWN_MODELS:
            print(f"{count} models; the first {SHOWN_MODELS}:")
        else:
            print(f"{count} models:")
        for m in listed.models[:SHOWN_MODELS]:
            print(f"  {m.id:<40} {m.display_name or '':<30} {m.context_window or ''}")
        print(f">>> client.get_model({MODEL!r})")
        model = client.get_model(MODEL)
        print(f"get {model.id}: owner={model.owned_by} tools={model.supports_tools}")


def demo_llm(env: dict[str, str]) -> None:
    llm = str(BIN / "llm")
    step("llm learns every Pinference model (the list is fetched once, then cached)")
    print("(only the Pinference lines of llm's list are shown)")
    run([llm, "models"], env, keep=lambda line: "pinference/" in line)
    run([llm, "pinference", "models", "-q", "qwen"], env)
    step("Prompts: streaming, then not")
    run([llm, "-m", f"pinference/{MODEL}", "Say hello to the demo"], env)
    run([llm, "-m", f"pinference/{MODEL}", "--no-stream", "Once more, without streaming"], env)


def start_alerting(
    work: Path, target: str, receiver: WebhookReceiver
) -> tuple[list[Process], str | None, str | None]:
    """Alertmanager (if installed) with the shipped config notifying `receiver`, then
    Prometheus (if installed) with the shipped config and rules sending to it."""
    processes: list[Process] = []
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        print("(prometheus is not installed: no alerting part; apt-get install prometheus)")
        return processes, None, None
    am_url = None
    binary = find_alertmanager()
    if binary is None:
        print("(Alertmanager is not installed, so no notification; "
              "apt-get install prometheus-alertmanager)")  # fmt: skip
    else:
        step("Alertmanager routes the alerts: critical pages, warnings make a ticket")
        print("# the shipped prometheus/alertmanager.yml, its two receivers pointed at a webhook")
        print(f"# in this demo ({receiver.url}/<receiver>) and its timings shortened to 1s")
        config = rewrite_alertmanager_config(yaml.safe_load(FILES.alertmanager_config.read_text()),
                                             receiver.url)  # fmt: skip
        am, am_url = start_alertmanager(work, config, binary=binary)
        processes.append(am)
        print(f"$ {command_line(am.argv)}")
        print(f"Alertmanager at {am_url}")
    step("Prometheus evaluates the shipped alert rules")
    print("# copies of prometheus/prometheus.yml (target, 1s intervals) and of the rules")
    print("# (every for: 2s, windows a tenth as long) so that alerts show within seconds")
    rules = write_yaml(work / "pinference.rules.yml",
                       rewrite_rules(yaml.safe_load(FILES.rules.read_text())))  # fmt: skip
    config = rewrite_config(
        yaml.safe_load(FILES.prometheus_config.read_text()), target, rules,
        alertmanager=am_url.removeprefix("http://") if am_url else None,
    )  # fmt: skip
    try:
        prom, prom_url = start_prometheus(work, config, binary=prometheus)
    except BaseException:
        for process in processes:
            process.stop()
        raise
    processes.append(prom)
    print(f"$ {command_line(prom.argv)}")
    wait_for(lambda: prom_values(prom_url, 'up{job="pinference"} == 1'),
             "Prometheus to scrape the exporter")  # fmt: skip
    print(f"Prometheus at {prom_url} scrapes the exporter")
    return processes, prom_url, am_url


def show_alerts(prom_url: str) -> None:
    alerts = wait_for(
        lambda: [a for a in prom_alerts(prom_url)
                 if a["labels"].get("alertname") == "PinferenceAuthFailing"
                 and a["state"] == "firing"],
        "PinferenceAuthFailing to fire",
    )  # fmt: skip
    alerts = sorted(prom_alerts(prom_url), key=lambda a: a["labels"]["alertname"])
    print(f"$ curl -s {prom_url}/api/v1/alerts   # in short:")
    for alert in alerts:
        labels = alert["labels"]
        print(f"  {labels['alertname']} [{alert['state']}] severity={labels['severity']}"
              f"{' endpoint=' + labels['endpoint'] if 'endpoint' in labels else ''}: "
              f"{alert['annotations']['summary']}")  # fmt: skip


def show_notifications(receiver: WebhookReceiver, am_url: str, status: str) -> None:
    # a refused key pages as the key, once; the API is not "down" for it
    notified = wait_for(
        lambda: receiver.alerts("PinferenceAuthFailing", status),
        f"the {status} PinferenceAuthFailing notification",
    )
    print(f"the webhook received ({status}):")
    for alert in notified:
        print(f"  to {alert['_receiver']}: [{alert['status']}] {alert['labels']['alertname']}: "
              f"{alert['annotations']['summary']}")  # fmt: skip
    if status == "firing":
        print(f"$ curl -s '{am_url}/api/v2/alerts'   # in short:")
        for alert in sorted(am_alerts(am_url), key=lambda a: a["labels"]["alertname"]):
            print(f"  {alert['labels']['alertname']}: {alert['status']['state']}")


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
    print(f"$ {command_line(argv)} &")
    exporter = Process("exporter", argv, work / "exporter.log", env=env)
    base = f"http://127.0.0.1:{port}"
    processes: list[Process] = [exporter]
    receiver = WebhookReceiver().start()
    try:
        wait_for(lambda: requests.get(f"{base}/-/ready", timeout=2).ok, "the exporter")
        scrape(f"{base}/metrics", ["pinference_up", "pinference_catalog_models",
                                   "pinference_probes_total", "pinference_model_available",
                                   "pinference_probe_http_status_code"])  # fmt: skip
        started, prom_url, am_url = start_alerting(work, f"127.0.0.1:{port}", receiver)
        processes += started

        step("A fault: the API starts answering 401 Unauthorized")
        curl_admin(fake.url, "POST", "fault", {"endpoint": "list", "status": 401})
        curl_admin(fake.url, "POST", "fault", {"endpoint": "get", "status": 401})
        wait_for(
            lambda: re.search(r'^pinference_probe_failures_total\{[^}]*"unauthorized"[^}]*\} [1-9]',
                              requests.get(f"{base}/metrics", timeout=2).text, flags=re.M),
            "the exporter to count the 401",
        )  # fmt: skip
        scrape(f"{base}/metrics", ["pinference_up", "pinference_probe_failures_total",
                                   "pinference_probe_http_status_code"])  # fmt: skip
        if prom_url is not None:
            show_alerts(prom_url)
        if am_url is not None:
            show_notifications(receiver, am_url, "firing")

        step("The fault clears and the exporter recovers")
        curl_admin(fake.url, "DELETE", "fault")
        wait_for(lambda: re.search(r"^pinference_up(\{[^}]*\})? 1\.0$",
                                   requests.get(f"{base}/metrics", timeout=2).text, flags=re.M),
                 "recovery")  # fmt: skip
        scrape(f"{base}/metrics", ["pinference_up"])
        if am_url is not None:
            show_notifications(receiver, am_url, "resolved")
    finally:
        for process in reversed(processes):
            process.stop()
        receiver.stop()


def main() -> int:
    with FakePinference() as fake, tempfile.TemporaryDirectory(prefix="pinference-demo-") as tmp:
        work = Path(tmp)
        (work / "home").mkdir()
        print(f"fake Pinference serving {fake.base_url} (admin routes under {fake.url}/_admin/)")
        # A private llm directory and HOME: the demo never touches your llm keys or cache.
        demo_env = {
            "PRIME_INFERENCE_URL": fake.base_url,
            "PRIME_API_KEY": DEMO_KEY,
            "LLM_USER_PATH": str(work / "llm"),
            "HOME": str(work / "home"),
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIME_", "LLM_"))}
        env.update(demo_env)
        step("The environment of every command below")
        print("# a private llm directory and HOME, so that your own keys and cache are not used;")
        print("# paste it into a scratch shell")
        print("$ export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in demo_env.items()))
        demo_client(fake)
        demo_llm(env)
        demo_exporter(fake, env, work)
    step("Done: everything ran on 127.0.0.1 and has stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
