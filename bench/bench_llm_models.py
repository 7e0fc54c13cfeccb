"""What the llm-pinference plugin costs llm, next to no plugins and to llm-openrouter.

    .venv/bin/python bench/bench_llm_models.py [--rounds 15] [--models 500] [--json]

1. Warm cache, 500 models cached for each plugin: `llm models` and `llm --help` with
   llm-pinference only, with no plugins, and with llm-openrouter only, run ALTERNATED
   (one of each per round, rotating the order) so machine noise hits all three alike.
   Medians, and the cost added over no plugins. Budget: < 5% for llm-pinference.
2. Cold start against the fake server: HTTP requests made by the first `llm models`
   (must be exactly 1) and by the second (must be 0).
3. Offline: a closed port (connection refused) and a loopback socket that listens but
   never answers: the first `llm models` returns within the plugin's timeouts, the next
   ones at warm speed (the failure back-off), with one warning in all.

Not a test: it prints numbers (exit status 1 only if a correctness check fails).
Standard library + subprocess; the fake server runs in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llm_pinference import catalog
from llm_pinference.fake import FakePinference, generate_catalogue
from llm_pinference.models import parse_models
from llm_pinference.settings import Settings

LLM = str(Path(sys.executable).with_name("llm"))
CONFIGS = {  # label -> LLM_LOAD_PLUGINS ("" = no plugins at all)
    "no plugins": "",
    "llm-pinference": "llm-pinference",
    "llm-openrouter": "llm-openrouter",
}
COMMANDS = {"llm models": ["models"], "llm --help": ["--help"]}
WARNING = "llm-pinference: could not refresh the model list"


def openrouter_catalogue(n: int) -> dict[str, Any]:
    """A list shaped like https://openrouter.ai/api/v1/models, as llm-openrouter caches it."""
    data = []
    for i in range(n):
        data.append(
            {
                "id": f"vendor{i % 17}/model-{i}",
                "name": f"Vendor{i % 17}: Model {i}",
                "created": 1700000000 + i,
                "description": "A generated model for the benchmark. " * 4,
                "context_length": 2 ** (13 + i % 8),
                "architecture": {
                    "modality": "text+image->text" if i % 7 == 0 else "text->text",
                    "input_modalities": ["text", "image"] if i % 7 == 0 else ["text"],
                    "output_modalities": ["text"],
                    "tokenizer": "Other",
                },
                "pricing": {"prompt": "0.0000005", "completion": "0.0000015"},
                "top_provider": {"context_length": 2 ** (13 + i % 8), "is_moderated": False},
                "supported_parameters": ["tools", "temperature", "structured_outputs"]
                if i % 3
                else ["temperature"],
            }
        )
    return {"data": data}


def base_env(home: Path, user_dir: Path, base_url: str) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE is dropped: an installed plugin runs from compiled bytecode,
    # and timing the compiler on every run would measure an artefact of this checkout.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PRIME_", "LLM_", "OPENROUTER_", "OPENAI_"))
        and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        HOME=str(home),
        LLM_USER_PATH=str(user_dir),
        PRIME_INFERENCE_URL=base_url,
        OPENROUTER_KEY="sk-or-dummy-benchmark",  # llm-openrouter lists only with a key
        PRIME_API_KEY="pit-dummy-benchmark",  # so does llm-pinference's hook (the fetching)
    )
    return env


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], env: dict[str, str], plugins: str) -> tuple[float, str, str, float]:
    """Run llm; returns (wall seconds, stdout, stderr, CPU seconds of the child)."""
    cpu = children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [LLM, *args],
        env={**env, "LLM_LOAD_PLUGINS": plugins},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"llm {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return elapsed, proc.stdout, proc.stderr, children_cpu() - cpu


# `llm models` inside one interpreter, timed in two phases: importing llm (with its
# plugins) and running the command. Interpreter start and exit (~0.2 s of llm's own
# shutdown here, and very noisy) are left out, so small costs become visible.
PHASES = """
import json, sys, time
started = time.perf_counter()
import llm.cli
imported = time.perf_counter()
sys.argv = ["llm", "models"]
try:
    llm.cli.cli(standalone_mode=False)
except SystemExit:
    pass
done = time.perf_counter()
sys.stdout.flush()
sys.stderr.write(json.dumps([imported - started, done - imported]))
"""


def phases(env: dict[str, str], plugins: str) -> tuple[float, float]:
    proc = subprocess.run(
        [sys.executable, "-c", PHASES],
        env={**env, "LLM_LOAD_PLUGINS": plugins},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=True,
    )
    imported, ran = json.loads(proc.stderr.strip().splitlines()[-1])
    return imported, ran


@contextmanager
def workspace() -> Iterator[tuple[Path, Path]]:
    root = Path(tempfile.mkdtemp(prefix="bench-llm-models-"))
    try:
        (root / "home").mkdir()
        yield root / "home", root / "llm"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def silent_server() -> Iterator[int]:
    """Listens (the kernel completes the handshake into the backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


# 1. warm cache


def warm(rounds: int, n_models: int) -> dict[str, Any]:
    with workspace() as (home, user_dir):
        base_url = f"http://127.0.0.1:{closed_port()}/api/v1"  # never contacted when warm
        user_dir.mkdir()
        models = parse_models(generate_catalogue(n_models))[0]
        path = user_dir / catalog.CACHE_FILENAME
        catalog.Catalog(path, Settings(base_url=base_url), fetch=lambda s: models).get()
        (user_dir / "openrouter_models.json").write_text(json.dumps(openrouter_catalogue(n_models)))
        before = path.stat().st_mtime_ns
        env = base_env(home, user_dir, base_url)

        # Correctness first (and a warm-up that writes bytecode): each plugin lists its
        # models from the cache, silently.
        checks: dict[str, Any] = {}
        for label, plugins in CONFIGS.items():
            _, out, err, _ = run(["models"], env, plugins)
            checks[label] = {
                "pinference_models": out.count("Pinference: pinference/"),
                "openrouter_models": out.count("OpenRouter: openrouter/"),
                "stderr": err.strip(),
            }
        checks["cache_untouched"] = path.stat().st_mtime_ns == before

        times: dict[str, dict[str, list[float]]] = {c: {k: [] for k in CONFIGS} for c in COMMANDS}
        cpu: dict[str, dict[str, list[float]]] = {c: {k: [] for k in CONFIGS} for c in COMMANDS}
        phase: dict[str, list[tuple[float, float]]] = {k: [] for k in CONFIGS}
        labels = list(CONFIGS)
        for r in range(rounds):
            order = labels[r % 3 :] + labels[: r % 3]  # rotate who goes first
            for command, args in COMMANDS.items():
                for label in order:
                    wall, _, _, used = run(args, env, CONFIGS[label])
                    times[command][label].append(wall)
                    cpu[command][label].append(used)
            for label in order:
                phase[label].append(phases(env, CONFIGS[label]))
        plugin_work = inprocess(env)
        checks["cache_untouched"] = checks["cache_untouched"] and path.stat().st_mtime_ns == before
    return {
        "times": times,
        "cpu": cpu,
        "phases": phase,
        "checks": checks,
        "plugin": plugin_work,
    }


# 1b. the plugin's own work, in-process (free of process start-up noise)

INPROCESS = """
import json, statistics, sys, time
import llm.cli
started = time.perf_counter()
import llm_pinference.plugin as plugin
imported = time.perf_counter()
from llm_pinference import catalog

def register(*args, **kwargs):
    register.count += 1

register.count = 0
first_start = time.perf_counter()
plugin.register_models(register)  # imports catalog + models, reads and parses the file
first = time.perf_counter() - first_start
cold, memo = [], []
for _ in range(int(sys.argv[1])):
    catalog.reset_process_state()
    a = time.perf_counter()
    plugin.register_models(register)
    b = time.perf_counter()
    plugin.register_models(register)
    memo.append(time.perf_counter() - b)
    cold.append(b - a)
print(json.dumps({"import_s": imported - started, "first_register_s": first,
                  "register_file_s": statistics.median(cold),
                  "register_memo_s": statistics.median(memo),
                  "registered": register.count // (2 * int(sys.argv[1]) + 1)}))
"""


def inprocess(env: dict[str, str], repeats: int = 20) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", INPROCESS, str(repeats)],
        env={**env, "LLM_LOAD_PLUGINS": ""},  # the plugin is imported by the script itself
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(proc.stdout)


# 2. cold start


def cold(n_models: int) -> dict[str, Any]:
    with (
        workspace() as (home, user_dir),
        FakePinference(models=generate_catalogue(n_models)) as fake,
    ):
        env = base_env(home, user_dir, fake.base_url)
        first, out, _, _ = run(["models"], env, "llm-pinference")
        first_requests = len(fake.requests)
        second, _, _, _ = run(["models"], env, "llm-pinference")
        return {
            "first_s": first,
            "first_requests": first_requests,
            "first_list_requests": len(fake.requests_for("list")),
            "listed": out.count("Pinference: pinference/"),
            "second_s": second,
            "second_requests": len(fake.requests) - first_requests,
        }


# 3. offline


def offline_case(port: int, runs: int) -> dict[str, Any]:
    with workspace() as (home, user_dir):
        env = base_env(home, user_dir, f"http://127.0.0.1:{port}/api/v1")
        results = [run(["models"], env, "llm-pinference") for _ in range(runs)]
        return {
            "times_s": [r[0] for r in results],
            "warnings": [r[2].count(WARNING) for r in results],
            "openai_models_listed": all("OpenAI Chat: gpt-4o" in r[1] for r in results),
        }


def offline(runs: int) -> dict[str, Any]:
    refused = offline_case(closed_port(), runs)
    with silent_server() as port:
        silent = offline_case(port, runs)
    return {"connection refused": refused, "silent server": silent}


# report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def summary(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Per command and configuration: median, min, and the cost added over no plugins."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for command, by_label in results["warm"]["times"].items():
        cpu = results["warm"]["cpu"][command]
        base = statistics.median(by_label["no plugins"])
        cpu_base = statistics.median(cpu["no plugins"])
        out[command] = {}
        for label, samples in by_label.items():
            med, cpu_med = statistics.median(samples), statistics.median(cpu[label])
            # Same-round differences cancel slow drifts of the machine: the fairest estimate.
            paired = [a - b for a, b in zip(samples, by_label["no plugins"], strict=True)]
            spread = statistics.stdev(paired) / len(paired) ** 0.5 if len(paired) > 1 else 0.0
            out[command][label] = {
                "median_s": med,
                "min_s": min(samples),
                "added_s": med - base,
                "added_pct": (med / base - 1) * 100,
                "cpu_median_s": cpu_med,
                "cpu_added_pct": (cpu_med / cpu_base - 1) * 100,
                "paired_mean_s": statistics.mean(paired),
                "paired_ci95_s": 1.96 * spread,
                "paired_mean_pct": statistics.mean(paired) / base * 100,
            }
    return out


def paired(samples: list[float], base: list[float]) -> tuple[float, float]:
    """Mean of same-round differences and its 95% confidence half-width, in seconds."""
    diffs = [a - b for a, b in zip(samples, base, strict=True)]
    spread = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    return statistics.mean(diffs), 1.96 * spread


def phase_summary(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    by_label = results["warm"]["phases"]
    out = {}
    for label, rows in by_label.items():
        base = by_label["no plugins"]
        imp = paired([r[0] for r in rows], [r[0] for r in base])
        run_ = paired([r[1] for r in rows], [r[1] for r in base])
        out[label] = {
            "import_median_s": statistics.median(r[0] for r in rows),
            "run_median_s": statistics.median(r[1] for r in rows),
            "import_added_s": imp[0],
            "import_ci95_s": imp[1],
            "run_added_s": run_[0],
            "run_ci95_s": run_[1],
        }
    return out


def failed_checks(results: dict[str, Any]) -> list[str]:
    failures = []
    n, checks = results["models"], results["warm"]["checks"]
    if checks["llm-pinference"]["pinference_models"] != n:
        failures.append("warm: llm-pinference did not list every cached model")
    if checks["llm-openrouter"]["openrouter_models"] != n:
        failures.append("warm: llm-openrouter did not list its cached models (did it fetch?)")
    if checks["llm-pinference"]["stderr"] or not checks["cache_untouched"]:
        failures.append("warm: llm-pinference warned or rewrote the cache (a network attempt?)")
    cold_r = results["cold"]
    if cold_r["first_requests"] != 1 or cold_r["second_requests"] != 0 or cold_r["listed"] != n:
        failures.append("cold: expected exactly 1 request, then none")
    limit = catalog.CONNECT_TIMEOUT + catalog.READ_TIMEOUT
    warm_median = statistics.median(results["warm"]["times"]["llm models"]["no plugins"])
    for case, o in results["offline"].items():
        first, rest = o["times_s"][0], o["times_s"][1:]
        if first > limit + 3 or o["warnings"][0] != 1 or sum(o["warnings"]) != 1:
            failures.append(f"offline/{case}: first run too slow or warnings not exactly once")
        if rest and statistics.median(rest) > 2 * warm_median:
            failures.append(f"offline/{case}: later runs are not at warm speed")
        if not o["openai_models_listed"]:
            failures.append(f"offline/{case}: llm's own models went missing")
    return failures


def report(results: dict[str, Any]) -> None:
    n, rounds = results["models"], results["rounds"]
    print(
        f"\nWarm cache: {n} models cached per plugin; {rounds} rounds alternated "
        f"(python {results['python']}, {results['cpus']} CPUs)"
    )
    print(
        f"{'command':<11} {'configuration':<15} {'median':>7} {'min':>7} "
        f"{'median vs none':>21} {'paired diff, 95% CI':>24} {'CPU med':>8} {'CPU vs none':>11}"
    )
    for command, by_label in results["summary"].items():
        for label, row in by_label.items():
            delta = paired = cpu_delta = ""
            if label != "no plugins":
                delta = f"{row['added_pct']:+.1f}% ({row['added_s'] * 1000:+.0f} ms)"
                paired = (
                    f"{row['paired_mean_pct']:+.1f}% ({row['paired_mean_s'] * 1000:+.0f}"
                    f"±{row['paired_ci95_s'] * 1000:.0f} ms)"
                )
                cpu_delta = f"{row['cpu_added_pct']:+.1f}%"
            print(
                f"{command:<11} {label:<15} {ms(row['median_s']):>7} {ms(row['min_s']):>7} "
                f"{delta:>21} {paired:>24} {ms(row['cpu_median_s']):>8} {cpu_delta:>11}"
            )
    checks = results["warm"]["checks"]
    print(
        f"listed from the caches: llm-pinference {checks['llm-pinference']['pinference_models']}"
        f", llm-openrouter {checks['llm-openrouter']['openrouter_models']}; "
        f"pinference cache file untouched: {checks['cache_untouched']}"
    )

    print("\n`llm models` inside the interpreter (start-up and exit excluded; paired, 95% CI)")
    for label, row in results["phases"].items():
        line = (
            f"{label:<15} import llm {ms(row['import_median_s']):>7}, run "
            f"{row['run_median_s'] * 1000:5.1f} ms"
        )
        if label != "no plugins":
            line += (
                f"   added: import {row['import_added_s'] * 1000:+.0f}±"
                f"{row['import_ci95_s'] * 1000:.0f} ms, run {row['run_added_s'] * 1000:+.1f}±"
                f"{row['run_ci95_s'] * 1000:.1f} ms"
            )
        print(line)
    w = results["warm"]["plugin"]
    print(
        f"in-process: plugin import {w['import_s'] * 1000:.1f} ms; register_models for "
        f"{w['registered']} models: first {w['first_register_s'] * 1000:.1f} ms (imports + "
        f"file), from the file {w['register_file_s'] * 1000:.1f} ms, memoised "
        f"{w['register_memo_s'] * 1000:.1f} ms"
    )

    c = results["cold"]
    print(f"\nCold start against the fake server ({n} models)")
    print(
        f"first `llm models`:  {ms(c['first_s']):>8}, {c['first_requests']} HTTP request(s) "
        f"({c['first_list_requests']} GET /models), {c['listed']} models listed"
    )
    print(f"second `llm models`: {ms(c['second_s']):>8}, {c['second_requests']} HTTP request(s)")

    print(
        f"\nOffline `llm models` (plugin timeouts: connect {catalog.CONNECT_TIMEOUT:g} s, "
        f"read {catalog.READ_TIMEOUT:g} s; back-off {catalog.DEFAULT_BACKOFF:g} s)"
    )
    for case, o in results["offline"].items():
        first, rest = o["times_s"][0], o["times_s"][1:]
        print(
            f"{case:<19} first {ms(first):>8}, then {', '.join(ms(t) for t in rest)}; "
            f"warnings per run {o['warnings']}"
        )
    for failure in results["failures"]:
        print(f"CHECK FAILED: {failure}")
    if not results["failures"]:
        print("\nall checks passed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="alternated rounds (default 15)")
    parser.add_argument("--models", type=int, default=500, help="models per plugin cache")
    parser.add_argument("--offline-runs", type=int, default=4, help="runs per offline case")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args(argv)
    if not Path(LLM).exists():
        parser.error(f"{LLM} not found: run this with the project's virtualenv python")
    results = {
        "rounds": args.rounds,
        "models": args.models,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "warm": warm(args.rounds, args.models),
        "cold": cold(args.models),
        "offline": offline(args.offline_runs),
    }
    results["summary"] = summary(results)
    results["phases"] = phase_summary(results)
    results["failures"] = failed_checks(results)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
