"""The container image (deploy/container/Containerfile), built with Podman from a checkout
and from the wheel alone, and run.

No image registry is reachable here, so the base is a Debian image made locally with
mmdebstrap (built once, then kept in /var/tmp and in Podman's store) and passed as
`--build-arg BASE`, as a user would pass theirs. The container runs on the host network
against the fake API on 127.0.0.1, read-only, with every capability dropped, and the key
in a mounted secret file.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinference_fake import FakePinference
from tests.deploy.helpers import ROOT, require, run, source_copy, tool_env, wait_until_up
from tests.support import free_port

pytestmark = pytest.mark.integration

BASE_IMAGE = "localhost/debian-py:bookworm"
# The base image's rootfs, kept between runs (mmdebstrap takes ~30 s, an import ~5 s).
BASE_TAR = Path(os.environ.get("PINFERENCE_BASE_TAR", "/var/tmp/pinference-ci/debian-py.tar"))
IMAGE = "localhost/pinference-exporter:test"
KEY = "pit_container_test_key_7c1e"
# Left where the compose stack keeps its secrets, in the build context: must not get in.
PLANTED_SECRET = f"pit_{secrets.token_hex(12)}"  # random: not in any shipped file
# How this machine kind runs Podman (../shared containers recipe): runc with cgroupfs,
# and no default ulimits (setrlimit fails in this sandbox).
CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
# pip inside the build stage reaches the index only with the machine's CA bundle and pip
# settings (mounted read-only when present).
BUILD_MOUNTS = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf")
MAX_ADDED_BYTES = 40_000_000  # what the image adds to its base: the venv and our code
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
WHEEL_IMAGE = "localhost/pinference-exporter:test-from-wheel"


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The podman command line (with this machine's settings) as a list."""
    binary = require("podman", "apt-get install podman runc")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    saved = os.environ.get("CONTAINERS_CONF")
    os.environ["CONTAINERS_CONF"] = str(conf)  # for every podman child of this module
    try:
        yield [binary]
    finally:
        if saved is None:
            os.environ.pop("CONTAINERS_CONF", None)
        else:
            os.environ["CONTAINERS_CONF"] = saved


def ensure_base_image(podman: list[str]) -> None:
    if run([*podman, "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        return
    if not BASE_TAR.exists():
        mmdebstrap = require("mmdebstrap", "apt-get install mmdebstrap")
        if os.geteuid() != 0:
            pytest.skip("building the Debian base image with mmdebstrap needs root")
        BASE_TAR.parent.mkdir(parents=True, exist_ok=True)
        partial = BASE_TAR.with_name(BASE_TAR.name + ".partial")
        run(
            [
                mmdebstrap,
                "--variant=minbase",
                "--format=tar",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                partial,
            ],
            timeout=900,
        )
        partial.rename(BASE_TAR)
    run([*podman, "import", "--quiet", BASE_TAR, BASE_IMAGE], timeout=300)


def build(podman: list[str], context: Path, tag: str) -> str:
    """Build the shipped Containerfile on `context` as `tag`, replacing the previous one
    (unchanged inputs hit the layer cache)."""
    ensure_base_image(podman)
    mounts = [f"--volume={m}:{m}:ro" for m in BUILD_MOUNTS if Path(m).exists()]
    previous = run([*podman, "image", "inspect", "--format={{.Id}}", tag], check=False)
    started = time.monotonic()
    run([*podman, "build", "--format=docker", "--network=host", *mounts,
         f"--build-arg=BASE={BASE_IMAGE}", f"--file={CONTAINERFILE}", f"--tag={tag}", context],
        timeout=900)  # fmt: skip
    print(f"{tag} built in {time.monotonic() - started:.1f}s")
    current = run([*podman, "image", "inspect", "--format={{.Id}}", tag]).stdout.strip()
    if previous.returncode == 0 and previous.stdout.strip() != current:
        run([*podman, "image", "rm", previous.stdout.strip()], check=False)  # replaced
    return tag


@pytest.fixture(scope="module")
def image(podman: list[str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image, built from the files a clone has, with a key planted in
    deploy/compose/secrets/ and junk where a checkout has a venv."""
    context = source_copy(tmp_path_factory.mktemp("context"))
    (context / "deploy" / "compose" / "secrets" / "prime_api_key").write_text(PLANTED_SECRET)
    (context / ".venv").mkdir()
    (context / ".venv" / "junk").write_text(PLANTED_SECRET)
    return build(podman, context, IMAGE)


def inspect(podman: list[str], ref: str) -> dict:
    return json.loads(run([*podman, "image", "inspect", ref]).stdout)[0]


def healthcheck(podman: list[str], ref: str) -> list[str]:
    """The HEALTHCHECK command (`["CMD", ...]`); Podman reports it beside the Config."""
    data = inspect(podman, ref)
    found = data.get("Healthcheck") or data["Config"].get("Healthcheck")
    assert found, "the image has no HEALTHCHECK (built without --format=docker?)"
    return list(found["Test"])


def test_image_is_non_root_exposes_8795_and_checks_its_health(
    podman: list[str], image: str
) -> None:
    config = inspect(podman, image)["Config"]
    assert config["User"] == "10001:10001"
    assert "8795/tcp" in config["ExposedPorts"]
    check = healthcheck(podman, image)
    assert check[0] == "CMD" and "PINFERENCE_HEALTHCHECK_URL" in " ".join(check)
    assert "PINFERENCE_HEALTHCHECK_URL=http://127.0.0.1:8795/-/healthy" in config["Env"]
    assert config["Entrypoint"] == ["pinference-exporter"]
    assert "--api.key-file=/run/secrets/prime_api_key" in config["Cmd"]


def test_runtime_has_no_compiler_no_pip_and_no_secret(podman: list[str], image: str) -> None:
    script = (
        "for t in gcc cc c++ clang make pip pip3 curl wget; do command -v $t; done;"
        " /opt/pinference/bin/python -c 'import pip' 2>/dev/null && echo pip-module;"
        " ls /opt/build /wheels /src /context 2>/dev/null;"
        f" grep -rl {PLANTED_SECRET} /opt /home /tmp /etc 2>/dev/null; true"
    )
    found = run(
        [*podman, "run", "--rm", "--network=host", "--entrypoint=/bin/sh", image, "-c", script]
    ).stdout
    assert found.strip() == ""


def test_image_size(podman: list[str], image: str) -> None:
    size = inspect(podman, image)["Size"]
    added = size - inspect(podman, BASE_IMAGE)["Size"]
    print(f"image {size / 1e6:.0f} MB, of which {added / 1e6:.1f} MB on top of {BASE_IMAGE}")
    assert 0 < added < MAX_ADDED_BYTES


def test_serves_metrics_from_the_fake_as_non_root_with_the_key_from_a_file(
    podman: list[str], image: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "prime_api_key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)  # the container's user is not the file's owner
    port = free_port()
    name = f"pinference-exporter-test-{port}"
    with FakePinference(require_key=KEY) as fake:
        try:
            run(
                [
                    *podman,
                    "run",
                    "--detach",
                    f"--name={name}",
                    "--network=host",
                    "--read-only",
                    "--cap-drop=ALL",
                    "--security-opt=no-new-privileges",
                    f"--volume={key_file}:/run/secrets/prime_api_key:ro",
                    f"--env=PRIME_INFERENCE_URL={fake.base_url}",
                    f"--env=PINFERENCE_HEALTHCHECK_URL=http://127.0.0.1:{port}/-/healthy",
                    image,
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--api.key-file=/run/secrets/prime_api_key",
                ]
            )
            body = wait_until_up(f"http://127.0.0.1:{port}/metrics", timeout=60)
            assert re.search(r"^pinference_models\{", body, re.M)
            assert KEY not in body
            assert any(r.headers.get("authorization") == f"Bearer {KEY}" for r in fake.requests)

            status = run([*podman, "exec", name, "cat", "/proc/1/status"]).stdout
            uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
            assert uids and uids[1].split() == ["10001"] * 4, status

            assert run([*podman, "healthcheck", "run", name], check=False).returncode == 0
            check = healthcheck(podman, image)[1:]  # after "CMD"
            closed = f"--env=PINFERENCE_HEALTHCHECK_URL=http://127.0.0.1:{free_port()}/"
            failing = run([*podman, "exec", closed, name, *check], check=False)
            assert failing.returncode != 0

            started = time.monotonic()
            run([*podman, "stop", "--time=10", name], timeout=60)
            assert time.monotonic() - started < 8  # SIGTERM, not the 10 s kill
            state = json.loads(run([*podman, "inspect", name]).stdout)[0]["State"]
            assert state["ExitCode"] == 0, state
        finally:
            run([*podman, "rm", "--force", name], check=False)


def test_image_builds_from_the_wheel_alone(
    podman: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """What a user without a checkout does: the wheel in an otherwise empty folder."""
    context = tmp_path_factory.mktemp("wheel-context")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", context, ROOT], timeout=300,
        env=tool_env())  # fmt: skip
    (wheel,) = context.glob("llm_pinference-*.whl")
    tag = build(podman, context, WHEEL_IMAGE)
    version = run([*podman, "run", "--rm", "--network=host", tag, "--version"]).stdout
    assert version.startswith("pinference-exporter, version ") and version.split()[2] in wheel.name
    assert inspect(podman, tag)["Config"]["Entrypoint"] == ["pinference-exporter"]
    found = run([*podman, "run", "--rm", "--network=host", "--entrypoint=/bin/sh", tag, "-c",
                 "ls /context /wheels 2>/dev/null; true"]).stdout  # fmt: skip
    assert found.strip() == ""
