"""The ``pinference-fake`` command: serve the fake API until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import ssl
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .admin import help_text, is_loopback
from .catalog import default_catalog, generate_catalog, load_catalog
from .server import FakePinference

KEY_ENV = "PINFERENCE_FAKE_REQUIRE_KEY"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pinference-fake",
        description="Serve a realistic fake Pinference API (OpenAI-compatible) for tests and\n"
        "demos, with runtime control (faults, models, keys) under /_admin/ from loopback.\n"
        "GET /_admin/ shows the reference below and the server's current state.",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument(
        "--port", type=int, default=8099, help="port to bind; 0 picks a free one (default 8099)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--models", metavar="FILE", help="catalog JSON: a list or {'data': []}")
    source.add_argument("--generate", type=int, metavar="N", help="serve N generated models")
    parser.add_argument(
        "--require-key",
        metavar="KEY",
        default=os.environ.get(KEY_ENV) or None,
        help=f"answer 401 unless 'Authorization: Bearer KEY' (env {KEY_ENV})",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, metavar="SECONDS", help="delay every request"
    )
    parser.add_argument(
        "--tls-cert-file",
        metavar="FILE",
        help="serve HTTPS with this PEM certificate (then any intermediates); needs --tls-key-file",
    )
    parser.add_argument("--tls-key-file", metavar="FILE", help="the certificate's PEM key")
    parser.add_argument("--verbose", action="store_true", help="log one line per request")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback address"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server in the foreground; 0 on a clean stop, 1 if it cannot bind, 2 on usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    try:
        if args.models:
            models = load_catalog(args.models)
        elif args.generate is not None:
            models = generate_catalog(args.generate)
        else:
            models = default_catalog()
    except ValueError as exc:
        print(f"pinference-fake: error: {exc}", file=sys.stderr)
        return 2

    try:
        fake = FakePinference(
            models,
            host=args.host,
            port=args.port,
            require_key=args.require_key,
            latency=args.latency,
            verbose=args.verbose,
            certfile=args.tls_cert_file or None,
            keyfile=args.tls_key_file or None,
        )
    except OSError as exc:  # unreadable files, or a certificate and key that do not match
        print(f"pinference-fake: error: {tls_problem(exc)}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            fake.start()
        except OSError as exc:
            print(
                f"pinference-fake: error: cannot bind {args.host}:{args.port}: {exc}",
                file=sys.stderr,
            )
            return 1
        print(f"pinference-fake serving {fake.base_url} ({len(models)} models)", flush=True)
        while not stop.wait(0.5):  # short waits keep signal delivery prompt everywhere
            pass
        return 0
    finally:
        fake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors exit 2 with argparse's message."""
    args.host = args.host.strip("[]")  # accept the URL spelling of IPv6 too
    if not args.allow_remote and not _loopback_host(args.host):
        parser.error(f"refusing to bind non-loopback --host {args.host} without --allow-remote")
    if args.latency < 0 or (args.generate is not None and args.generate < 0):
        parser.error("--latency and --generate must not be negative")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be from 0 to 65535")
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        parser.error("--tls-cert-file and --tls-key-file go together")


_TLS_REASONS = {
    "KEY_VALUES_MISMATCH": "the key does not belong to the certificate",
    # OpenSSL's reason for a file that is not PEM, or holds no certificate or key; some
    # builds leave `reason` unset for it, and only the text says "PEM lib".
    "PEM_LIB": "the files are not a PEM certificate and key",
}


def tls_problem(exc: OSError) -> str:
    """One line on why the certificate and key cannot be used."""
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or ("PEM_LIB" if "PEM lib" in str(exc) else ""))
        detail = _TLS_REASONS.get(reason, reason.lower().replace("_", " ") or "TLS error")
    else:
        detail = exc.strerror or type(exc).__name__
        if exc.filename:
            detail += f": {exc.filename}"
    return f"cannot use the TLS certificate and key: {detail}"


def _loopback_host(host: str) -> bool:
    return host.lower() == "localhost" or is_loopback(host)
