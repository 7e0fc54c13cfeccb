"""The files an operator deploys next to the exporter, shipped inside the package.

The Grafana dashboard and provisioning, the Prometheus scrape config, alert rules (and their
promtool tests), the Alertmanager example, the runbooks and the container, compose,
Kubernetes and systemd files. Each is read from its one place in the source tree (the
wheel maps those folders into this package), so a pip user gets them without cloning:

    python -m pinference_exporter.assets --list
    python -m pinference_exporter.assets --print prometheus/pinference.rules.yml
    python -m pinference_exporter.assets --extract ./pinference

Names are paths as in the source repository; `--extract` recreates that layout, so the
relative references between the files (compose mounts, the generators) keep working.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

FOLDERS = ("prometheus", "grafana", "docs", "deploy")  # top folders of the repository
# deploy/assets is this package's own code; compose/secrets holds a user's secrets;
# grafana/schema-check is the project's own dashboard check (node tooling), not an asset
SKIP = {"__pycache__", "deploy/assets", "deploy/compose/secrets", "grafana/schema-check"}


class AssetError(Exception):
    """A name that is not an asset, or a file that extracting would overwrite."""


def _base() -> Traversable:
    """Where the folders are: inside this package when installed from a wheel, else (a
    source tree, an editable install) at the repository root, two levels up."""
    here = files(__name__)
    if here.joinpath(FOLDERS[0]).is_dir():
        return here
    return Path(__file__).resolve().parents[2]


def _walk(node: Traversable, name: PurePosixPath) -> Iterator[tuple[str, Traversable]]:
    if str(name) in SKIP or name.name in SKIP or name.name.startswith("."):
        return  # (dot files, such as a .gitignore, are not assets)
    if node.is_dir():
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            yield from _walk(child, name / child.name)
    elif name.suffix != ".pyc":
        yield str(name), node


def assets() -> dict[str, Traversable]:
    """Every asset, by its path in the source repository (e.g. `prometheus/prometheus.yml`)."""
    base = _base()
    found: dict[str, Traversable] = {}
    for folder in FOLDERS:
        found.update(_walk(base.joinpath(folder), PurePosixPath(folder)))
    return dict(sorted(found.items()))


def read(name: str) -> bytes:
    try:
        return assets()[name].read_bytes()
    except KeyError:
        raise AssetError(f"no asset named {name!r} (--list shows them)") from None


def extract(target: Path, *, overwrite: bool = False) -> list[Path]:
    """Write every asset under `target`, in the repository's layout. Refuses to replace an
    existing file unless `overwrite`; nothing is written when it refuses."""
    planned = [(target / name, node) for name, node in assets().items()]
    if not overwrite:
        existing = [path for path, _ in planned if path.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise AssetError(f"{existing[0]} exists{more}; use --force to overwrite")
    for path, node in planned:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(node.read_bytes())
    return [path for path, _ in planned]
