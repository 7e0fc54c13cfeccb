"""Run every bench/bench_*.py, one after the other, each in its own process.

    .venv/bin/python bench/run_all.py [--quick] [--json] [--only NAME ...]

--quick and --json are passed through to the benches that take them (a bench whose source
does not mention a flag is run without it, with a note). Output is printed as each bench
finishes; with --json, one JSON object {bench: its JSON output} instead. The exit status
is non-zero if any bench failed or timed out. `make bench` runs this.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import BENCH, ROOT, machine_line, parser

TIMEOUT = {False: 20 * 60, True: 5 * 60}  # seconds per bench: full, --quick


def flags_for(script: Path, wanted: list[str]) -> tuple[list[str], list[str]]:
    """(flags the bench takes, flags it does not): benches are written by several people."""
    source = script.read_text()
    taken = [flag for flag in wanted if f'"{flag}"' in source or "parser(__doc__)" in source]
    return taken, [flag for flag in wanted if flag not in taken]


def run(script: Path, flags: list[str], timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(script), *flags],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        status, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        status = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = f"timed out after {timeout:.0f} s"
    return {"status": status, "seconds": time.monotonic() - started, "stdout": out, "stderr": err}


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--only", nargs="+", metavar="NAME", help="e.g. exporter_soak")
    args = args_parser.parse_args()
    wanted = [flag for flag, on in (("--quick", args.quick), ("--json", args.json)) if on]
    scripts = sorted(BENCH.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if any(name in s.stem for name in args.only)]
    results: dict[str, Any] = {}
    failed = []
    for script in scripts:
        flags, missing = flags_for(script, wanted)
        if not args.json:
            print(f"=== {script.name} {' '.join(flags)}", flush=True)
            if missing:
                print(f"(note: {script.name} takes no {' '.join(missing)}; run without)")
        result = run(script, flags, TIMEOUT[args.quick])
        ok = result["status"] == 0
        if not ok:
            failed.append(script.name)
        if args.json:
            try:
                output: Any = json.loads(result["stdout"])
            except ValueError:
                output = result["stdout"]
            results[script.stem] = {
                "status": result["status"], "seconds": result["seconds"], "output": output,
                **({} if ok else {"stderr": result["stderr"][-4000:]}),
            }  # fmt: skip
            continue
        print(result["stdout"], end="" if result["stdout"].endswith("\n") else "\n")
        if not ok:
            print(f"--- {script.name} FAILED (status {result['status']}):\n"
                  f"{result['stderr'][-4000:]}")  # fmt: skip
        print(f"=== {script.name}: {'ok' if ok else 'FAILED'} in {result['seconds']:.1f} s\n",
              flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(machine_line())
        print("all benches ok" if not failed else f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
