"""A real Alertmanager for the tests and the demo, and a webhook receiver to catch what
it sends.

The shipped `prometheus/alertmanager.yml` runs with its routes, grouping and inhibition
unchanged; only every receiver is pointed at the local webhook receiver (keeping its
name, so a test can tell a page from a ticket) and the timings are made short.
"""

from __future__ import annotations

import copy
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from .net import free_port
from .process import Process
from .prometheus import STARTUP_TIMEOUT, until_ready, write_yaml

# Debian's package names the server prometheus-alertmanager; upstream names it alertmanager.
BINARIES = ("prometheus-alertmanager", "alertmanager")


def find_alertmanager() -> str | None:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps every JSON notification POSTed to it.

    Receiver `name` of the rewritten config posts to `{url}/{name}`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notifications: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"invalid": body.decode("utf-8", "replace")}
                payload["_path"] = self.path
                receiver.record(payload)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def record(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self._notifications.append(payload)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def notifications(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._notifications)

    def alerts(
        self, alertname: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Every alert of every notification so far, each with the receiver and the
        notification's status added (`_receiver`, `_status`)."""
        found = []
        for notification in self.notifications:
            for alert in notification.get("alerts", []):
                if alertname is not None and alert["labels"].get("alertname") != alertname:
                    continue
                if status is not None and alert.get("status") != status:
                    continue
                found.append(
                    {**alert, "_receiver": notification.get("receiver"),
                     "_status": notification.get("status")}
                )  # fmt: skip
        return found


_TIMINGS = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}


def _shorten_route(route: dict[str, Any]) -> None:
    for key, value in _TIMINGS.items():
        if key in route or key == "group_wait":
            route[key] = value
    for child in route.get("routes") or []:
        _shorten_route(child)


def rewrite_alertmanager_config(shipped: dict[str, Any], webhook_url: str) -> dict[str, Any]:
    """The shipped config with every receiver posting to `{webhook_url}/{receiver name}`
    and the route timings shortened; routes, grouping and inhibition are kept."""
    config = copy.deepcopy(shipped)
    for receiver in config.get("receivers") or []:
        name = receiver["name"]
        for key in [k for k in receiver if k.endswith("_configs")]:
            del receiver[key]
        receiver["webhook_configs"] = [{"url": f"{webhook_url}/{name}", "send_resolved": True}]
    route = config.setdefault("route", {})
    _shorten_route(route)
    route["group_interval"] = _TIMINGS["group_interval"]
    config.setdefault("global", {})["resolve_timeout"] = "1m"
    return config


def start_alertmanager(
    work: Path,
    config: dict[str, Any],
    *,
    binary: str | None = None,
    timeout: float = STARTUP_TIMEOUT,
) -> tuple[Process, str]:
    """Alertmanager on 127.0.0.1 (no clustering) with `config`; ready when returned."""
    binary = binary or find_alertmanager()
    if binary is None:
        raise FileNotFoundError("Alertmanager is not installed (prometheus-alertmanager)")
    config_file = write_yaml(work / "alertmanager.yml", config)
    port = free_port()
    process = Process(
        "alertmanager",
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.path={work / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # a single instance: no gossip port
            "--log.level=warn",
        ],
        work / "alertmanager.log",
        cwd=work,
    )
    return process, until_ready(process, port, "Alertmanager to be ready", timeout)


def am_alerts(base_url: str, **filters: str) -> list[dict[str, Any]]:
    """Alertmanager's alerts (API v2), with their status (active, suppressed, inhibitedBy)."""
    params = {"active": "true", "silenced": "true", "inhibited": "true", **filters}
    response = requests.get(f"{base_url}/api/v2/alerts", params=params, timeout=10)
    response.raise_for_status()
    return list(response.json())


def am_post_alerts(base_url: str, alerts: list[dict[str, Any]]) -> None:
    """Send alerts the way Prometheus does (labels, annotations, startsAt/endsAt)."""
    response = requests.post(f"{base_url}/api/v2/alerts", json=alerts, timeout=10)
    response.raise_for_status()
