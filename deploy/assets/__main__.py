"""`python -m pinference_exporter.assets`: list, print or extract the shipped files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llm_pinference.core.text import os_reason

from . import AssetError, assets, extract, read

PROG = "python -m pinference_exporter.assets"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The dashboard, alert rules, Alertmanager example, scrape config, "
        "runbooks and deploy files that ship with pinference-exporter.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list the assets (the default)")
    action.add_argument("--print", metavar="NAME", dest="name", help="write one asset to stdout")
    action.add_argument(
        "--extract", metavar="DIR", type=Path, help="write them all under DIR, as in the repository"
    )
    parser.add_argument("--force", action="store_true", help="let --extract overwrite files")
    args = parser.parse_args(argv)
    try:
        if args.name:
            sys.stdout.buffer.write(read(args.name))
        elif args.extract:
            written = extract(args.extract, overwrite=args.force)
            print(f"wrote {len(written)} files under {args.extract}")
        else:
            print("\n".join(assets()))
    except AssetError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = exc.filename or args.extract
        print(f"{PROG}: error: cannot write {where}: {os_reason(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
