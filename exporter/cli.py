"""`pinference-exporter` (also `python -m exporter`): flags, config file, signals.

Precedence: flags, then the `--config.file` YAML, then the environment and
~/.prime/config.json (key, team, base URL), then defaults. A bad flag or value is one line
on stderr and exit status 2; failing to listen is exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import platform
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from llm_pinference import __version__
from llm_pinference.text import format_duration, redact_url

from .app import Exporter
from .config import ExporterConfig, build_config, load_config_file, log_options
from .logs import kv, setup_logging
from .options import OPTIONS, ConfigError, ListenAddress, parse_option

PROG = "pinference-exporter"
log = logging.getLogger("exporter")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the usage block
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Prometheus exporter for Prime Intellect's inference API (Pinference). "
        "It probes GET /models and GET /models/{id} on its own interval; scrapes read the "
        "latest results.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config.file", dest="config_file", metavar="FILE",
        help="YAML file with the same settings (flags win over it; it wins over the "
        "environment and defaults)",
    )  # fmt: skip
    for option in OPTIONS:
        parser.add_argument(
            option.flag,
            dest=option.key,
            metavar=option.metavar,
            help=option.full_help,
            action="append" if option.repeat else "store",
        )
    parser.add_argument(
        "--version", action="version", version=f"{PROG}, version {__version__} "
        f"(python {platform.python_version()})",
    )  # fmt: skip
    return parser


def resolve_values(args: argparse.Namespace) -> dict[str, Any]:
    """Parsed option values keyed like `probe.interval`: the file, then the flags over it."""
    values: dict[str, Any] = load_config_file(args.config_file) if args.config_file else {}
    for option in OPTIONS:
        raw = getattr(args, option.key)
        if raw is not None:
            values[option.key] = parse_option(option, raw, option.flag)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        values = resolve_values(args)
        config = build_config(values)
        exporter = Exporter(config)
    except (_UsageError, ConfigError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    setup_logging(**log_options(values), secrets=[exporter.settings.api_key])
    stopping: list[int] = []  # a plain list: a signal handler must not take locks

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _serve(exporter, config, stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(exporter: Exporter, config: ExporterConfig, stopping: list[int]) -> int:
    try:
        exporter.start(probe=False)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        print(f"{PROG}: error: cannot listen on {config.listen_address}: {reason}",
              file=sys.stderr)  # fmt: skip
        return 1
    settings = exporter.settings
    try:
        log.info(
            "starting pinference-exporter",
            extra=kv(
                version=__version__,
                listen=str(ListenAddress(config.address.host, exporter.port)),
                telemetry_path=config.telemetry_path,
                target=redact_url(settings.base_url),
                auth="bearer" if settings.api_key else "none",
                interval=format_duration(config.probe_interval),
                timeout=format_duration(config.timeout),
                watched=len(config.probe_models),
            ),
        )
        exporter.prober.start()
        while not stopping:
            time.sleep(0.05)
        log.info("shutting down", extra=kv(signal=signal.Signals(stopping[0]).name))
    finally:
        # Probes in flight run on daemon threads: waiting for them would only delay exit.
        exporter.stop(timeout=0.2)
    log.info("stopped")
    return 0
