"""Basic auth as served: every route and method behind it (HEAD too), the realm, and
unknown users taking as long as wrong passwords."""

from __future__ import annotations

import base64
import statistics
import time
from pathlib import Path

import requests
from pinference_exporter.webconfig import BasicAuth, load_web_config

from pinference_fake import FakePinference
from tests.exporter.helpers import bcrypt_hash, make_exporter

ROUTES = ("/", "/metrics", "/logs?id=1", "/-/healthy", "/-/ready", "/-/reload", "/nope")


def test_every_route_and_method_asks_for_credentials(fake: FakePinference, tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prom: '{bcrypt_hash('pw')}'\n")
    with make_exporter(fake.base_url, web=load_web_config(str(web))) as exporter:
        exporter.run_probe_cycle()
        for path in ROUTES:
            for method in ("GET", "HEAD", "POST"):
                for auth in (None, ("prom", "wrong"), ("nobody", "pw")):
                    denied = requests.request(method, exporter.url + path, auth=auth, timeout=10)
                    assert denied.status_code == 401, (method, path, auth)
                    assert denied.headers["WWW-Authenticate"].startswith('Basic realm="')
                    assert b"pinference" not in denied.content  # nothing of the page
            for method in ("GET", "HEAD"):
                allowed = requests.request(method, exporter.url + path, auth=("prom", "pw"),
                                           timeout=10)  # fmt: skip
                assert allowed.status_code != 401, (method, path)
                assert allowed.status_code in (200, 403, 404, 405), (method, path)


def test_unknown_users_take_as_long_as_wrong_passwords() -> None:
    """Otherwise timing tells which user names exist (0.5 ms against 50 ms before)."""
    users = {"prom": bcrypt_hash("right", cost=10), "other": bcrypt_hash("x", cost=4)}
    auth = BasicAuth(users)

    def timed(user: str) -> float:
        header = "Basic " + base64.b64encode(f"{user}:wrong".encode()).decode()
        started = time.perf_counter()
        assert not auth.allows(header)
        return time.perf_counter() - started

    wrong, unknown = [], []
    for _ in range(5):  # alternated, so that load changes hit both alike
        wrong.append(timed("prom"))
        unknown.append(timed("nobody"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2.0, (wrong, unknown)
