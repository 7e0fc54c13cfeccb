"""`pinference-exporter` (also `python -m pinference_exporter`): flags, config file,
signals, reload.

Precedence: flags, then the `--config.file` YAML, then the environment and
~/.prime/config.json (key, team, base URL), then defaults. A bad flag or value is one line
on stderr and exit status 2; failing to listen is exit status 1. SIGHUP (and POST /-/reload
with --web.enable-lifecycle) reads the config file, the key files and the web config again;
SIGTERM and SIGINT stop the exporter.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from llm_pinference.core.text import format_duration, redact_url

from . import build, needs_extra
from .config import ExporterConfig, Values, build_config, load_config_file
from .logs import kv, setup_logging
from .options import OPTIONS, ConfigError, parse_option

if TYPE_CHECKING:
    from .app import Exporter

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
        "It probes GET /models and GET /models/{id} on its own interval, for one or more "
        "accounts; scrapes read the latest results.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config.file", dest="config_file", metavar="FILE",
        help="YAML file with the same settings, and optionally a list of accounts (flags win "
        "over it; it wins over the environment and defaults). Read again on SIGHUP",
    )  # fmt: skip
    parser.add_argument(
        "--config.check", dest="config_check", action="store_true",
        help="check the flags and files (config, key files, web config), print ok and exit",
    )  # fmt: skip
    for option in OPTIONS:
        if option.switch:
            parser.add_argument(option.flag, dest=option.key, help=option.full_help,
                                action="store_const", const=True)  # fmt: skip
            continue
        parser.add_argument(
            option.flag,
            dest=option.key,
            metavar=option.metavar,
            help=option.full_help,
            action="append" if option.repeat else "store",
        )
    parser.add_argument("--version", action="version", version=f"{PROG}, {build.describe()}")
    return parser


def resolve_values(args: argparse.Namespace) -> Values:
    """Parsed option values keyed like `probe.interval`: the flags over the file."""
    from_file = load_config_file(args.config_file) if args.config_file else Values()
    flags: dict[str, object] = {}
    for option in OPTIONS:
        raw = getattr(args, option.key)
        if raw is not None:
            flags[option.key] = parse_option(option, raw, option.flag)
    origins = {option.key: option.flag for option in OPTIONS if option.key in flags}
    return Values(flags, origins).over(from_file)


def main(argv: Sequence[str] | None = None) -> int:
    # SIGHUP's default action ends the process: take it over before anything else.
    signals: list[int] = []  # a plain list: a signal handler must not take locks
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda signum, _: signals.append(signum))
                for sig in handled}  # fmt: skip
    try:
        return _main(argv, signals)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: Sequence[str] | None, signals: list[int]) -> int:
    try:
        args = build_parser().parse_args(argv)
        if problem := needs_extra.missing():  # --help and --version did without it
            raise _UsageError(problem)
        from .app import Exporter

        def load() -> ExporterConfig:
            return build_config(resolve_values(args))

        config = load()
        if args.config_check:
            print("ok")
            return 0
        exporter = Exporter(config, loader=load)
    except (_UsageError, ConfigError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)

    def logs(config: ExporterConfig) -> None:
        setup_logging(config.log_level, config.log_format, secrets=exporter.secrets)

    logs(config)
    exporter.after_reload(logs)
    return _serve(exporter, signals)


def _serve(exporter: Exporter, signals: list[int]) -> int:
    try:
        exporter.start(probe=False)
    except OSError as exc:
        print(f"{PROG}: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    config = exporter.config
    try:
        log.info(
            "starting pinference-exporter",
            extra=kv(
                version=build.version(),
                revision=build.revision(),
                listen=",".join(u.split("://", 1)[1] for u in exporter.urls),
                telemetry_path=config.telemetry_path,
                accounts=",".join(a.name for a in exporter.accounts),
                interval=format_duration(config.probe_interval),
                timeout=format_duration(config.timeout),
                lifecycle=config.enable_lifecycle,
            ),
        )
        for account in exporter.accounts:
            chat = {"chat_models": len(account.chat_models),  # billed: say so at start
                    "chat_interval": format_duration(account.chat_interval)}  # fmt: skip
            log.info("account", extra=kv(
                account=account.name, target=redact_url(account.base_url),
                team=account.team_id, auth="bearer" if account.api_key else "none",
                watched=len(account.probe_models), **(chat if account.chat_models else {}),
            ))  # fmt: skip
        exporter.start()  # the probers
        while True:
            while not signals:
                time.sleep(0.05)
            signum = signals.pop(0)
            if signum != signal.SIGHUP:
                break
            log.debug("reloading", extra=kv(signal="SIGHUP"))
            with contextlib.suppress(ConfigError):  # logged, counted, the old config kept
                exporter.reload()
        log.info("shutting down", extra=kv(signal=signal.Signals(signum).name))
    finally:
        # Probes in flight run on daemon threads: waiting for them would only delay exit.
        exporter.stop(timeout=0.2)
    log.info("stopped")
    return 0
