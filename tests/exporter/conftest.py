"""Fixtures shared by the exporter tests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pinference_exporter import cli
from pinference_exporter.config import ExporterConfig

from tests.exporter.helpers import make_certificate


@pytest.fixture(scope="module")
def web_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (also usable as its own CA), per module."""
    return make_certificate(tmp_path_factory.mktemp("tls"))




@pytest.fixture
def config_from() -> Callable[[list[str]], ExporterConfig]:
    """The config the CLI builds from these arguments (files and environment read)."""

    def build(argv: list[str]) -> ExporterConfig:
        return cli.build_config(cli.resolve_values(cli.build_parser().parse_args(argv)))

    return build


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """setup_logging() replaces the root logger's handlers: put pytest's back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
