"""What the llm-pinference plugin costs llm, next to no plugins and to llm-openrouter.

    .venv/bin/python bench/bench_llm_models.py [--rounds 15] [--models 500,5000] [--quick] [--json]

1. Warm cache, at each size (500 and 5000 models cached for each plugin by default): `llm
   models` and `llm --help` with llm-pinference only, with no plugins, and with
   llm-openrouter only, run ALTERNATED (one of each per round and size, rotating the order)
   so machine noise hits all alike; and `llm models` timed inside the interpreter (import
   phase, run phase). Reported: medians, same-round (paired) differences from no plugins
   with 95% confidence intervals, and the goals: the plugin's added run phase at most half
   of llm-openrouter's, its whole-process paired overhead below llm-openrouter's.
2. Cold start against the fake server: HTTP requests made by the first `llm models`
   (must be exactly 1) and by the second (must be 0).
3. Offline: a closed port (connection refused) and a loopback socket that listens but
   never answers: the first `llm models` returns within the plugin's timeouts, the next
   ones at warm speed (the failure back-off), with one warning in all.

The plugin's cache is written as the plugin writes it (the list and its registration
records). Not a test: it prints numbers (exit status 1 only if a correctness check fails; a
goal not met is reported, not failed). Standard library + subprocess; the fake server runs
in this process. --quick: 4 rounds, 2 offline runs.
"""

from __future__ import annotations

import argparse
import contextlib
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

from llm_pinference import cache as catalog
from llm_pinference.core.models import parse_models
from llm_pinference.core.settings import Settings
from pinference_fake import FakePinference, generate_catalogue

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


def prepare(home: Path, user_dir: Path, n_models: int) -> tuple[dict[str, str], Path]:
    """Both plugins' caches with n_models each; the environment for llm."""
    base_url = f"http://127.0.0.1:{closed_port()}/api/v1"  # never contacted when warm
    user_dir.mkdir()
    models = parse_models(generate_catalogue(n_models))[0]
    path = user_dir / catalog.CACHE_FILENAME
    settings = Settings(base_url=base_url)
    catalog.Catalog(path, settings, fetch=lambda s: models).get()
    (user_dir / "openrouter_models.json").write_text(json.dumps(openrouter_catalogue(n_models)))
    return base_env(home, user_dir, base_url), path


def warm(rounds: int, sizes: list[int]) -> dict[int, dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        envs: dict[int, dict[str, str]] = {}
        caches: dict[int, tuple[Path, int]] = {}
        for n in sizes:
            home, user_dir = stack.enter_context(workspace())
            envs[n], path = prepare(home, user_dir, n)
            caches[n] = path, path.stat().st_mtime_ns

        # Correctness first (and a warm-up that writes bytecode): each plugin lists its
        # models from the cache, silently, and nothing is written.
        for n in sizes:
            checks: dict[str, Any] = {}
            for label, plugins in CONFIGS.items():
                _, out, err, _ = run(["models"], envs[n], plugins)
                checks[label] = {
                    "pinference_models": out.count("Pinference: pinference/"),
                    "openrouter_models": out.count("OpenRouter: openrouter/"),
                    "stderr": err.strip(),
                }
            results[n] = {
                "checks": checks,
                "times": {c: {k: [] for k in CONFIGS} for c in COMMANDS},
                "cpu": {c: {k: [] for k in CONFIGS} for c in COMMANDS},
                "phases": {k: [] for k in CONFIGS},
            }

        labels = list(CONFIGS)
        for r in range(rounds):
            order = labels[r % 3 :] + labels[: r % 3]  # rotate who goes first
            for n in sizes if r % 2 == 0 else sizes[::-1]:  # and which size
                res = results[n]
                for command, args in COMMANDS.items():
                    for label in order:
                        wall, _, _, used = run(args, envs[n], CONFIGS[label])
                        res["times"][command][label].append(wall)
                        res["cpu"][command][label].append(used)
                for label in order:
                    res["phases"][label].append(phases(envs[n], CONFIGS[label]))
        for n in sizes:
            results[n]["plugin"] = inprocess(envs[n])
            path, before = caches[n]
            results[n]["checks"]["cache_untouched"] = path.stat().st_mtime_ns == before
    return results


# 1b. the plugin's own work, in-process (free of process start-up noise)

INPROCESS = """
import json, statistics, sys, time
import llm.cli
started = time.perf_counter()
import llm_pinference.plugin as plugin
imported = time.perf_counter()
from llm_pinference import cache as catalog

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
    """The first `llm models` fetches once (and writes the cache), the second does not."""
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


def summary(warm_n: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Per command and configuration: median, min, and the cost added over no plugins."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for command, by_label in warm_n["times"].items():
        cpu = warm_n["cpu"][command]
        base = statistics.median(by_label["no plugins"])
        cpu_base = statistics.median(cpu["no plugins"])
        out[command] = {}
        for label, samples in by_label.items():
            med, cpu_med = statistics.median(samples), statistics.median(cpu[label])
            # Same-round differences cancel slow drifts of the machine: the fairest estimate.
            mean, ci95 = paired(samples, by_label["no plugins"])
            out[command][label] = {
                "median_s": med,
                "min_s": min(samples),
                "added_s": med - base,
                "added_pct": (med / base - 1) * 100,
                "cpu_median_s": cpu_med,
                "cpu_added_pct": (cpu_med / cpu_base - 1) * 100,
                "paired_mean_s": mean,
                "paired_ci95_s": ci95,
                "paired_mean_pct": mean / base * 100,
            }
    return out


def paired(samples: list[float], base: list[float]) -> tuple[float, float]:
    """Mean of same-round differences and its 95% confidence half-width, in seconds."""
    diffs = [a - b for a, b in zip(samples, base, strict=True)]
    spread = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    return statistics.mean(diffs), 1.96 * spread


def phase_summary(warm_n: dict[str, Any]) -> dict[str, dict[str, float]]:
    by_label = warm_n["phases"]
    base = by_label["no plugins"]
    out = {}
    for label, rows in by_label.items():
        imp = paired([r[0] for r in rows], [r[0] for r in base])
        run_ = paired([r[1] for r in rows], [r[1] for r in base])
        total = paired([r[0] + r[1] for r in rows], [r[0] + r[1] for r in base])
        # The median of same-round differences: robust to one round's stall.
        run_median = statistics.median(a[1] - b[1] for a, b in zip(rows, base, strict=True))
        out[label] = {
            "run_added_median_s": run_median,
            "import_median_s": statistics.median(r[0] for r in rows),
            "run_median_s": statistics.median(r[1] for r in rows),
            "import_added_s": imp[0],
            "import_ci95_s": imp[1],
            "run_added_s": run_[0],
            "run_ci95_s": run_[1],
            "total_added_s": total[0],
            "total_ci95_s": total[1],
        }
    return out


def goals(summary_n: dict[str, Any], phases_n: dict[str, Any]) -> dict[str, Any]:
    """The plugin against llm-openrouter at one size."""
    ours, peer = phases_n["llm-pinference"], phases_n["llm-openrouter"]
    wall = summary_n["llm models"]
    medians = ours["run_added_median_s"], peer["run_added_median_s"]
    return {
        "run_ratio": ours["run_added_s"] / peer["run_added_s"] if peer["run_added_s"] else None,
        "run_median_ratio": medians[0] / medians[1] if medians[1] else None,
        "run_half_met": ours["run_added_s"] <= peer["run_added_s"] / 2,
        "process_ours_s": wall["llm-pinference"]["paired_mean_s"],
        "process_peer_s": wall["llm-openrouter"]["paired_mean_s"],
        "process_below_met": (
            wall["llm-pinference"]["paired_mean_s"] < wall["llm-openrouter"]["paired_mean_s"]
        ),
    }


def failed_checks(results: dict[str, Any]) -> list[str]:
    failures = []
    for n, warm_n in results["warm"].items():
        checks = warm_n["checks"]
        if checks["llm-pinference"]["pinference_models"] != n:
            failures.append(f"warm {n}: llm-pinference did not list every cached model")
        if checks["llm-openrouter"]["openrouter_models"] != n:
            failures.append(f"warm {n}: llm-openrouter did not list its cached models")
        if checks["llm-pinference"]["stderr"] or not checks["cache_untouched"]:
            failures.append(f"warm {n}: llm-pinference warned or rewrote its cache")
    for n, cold_r in results["cold"].items():
        if cold_r["first_requests"] != 1 or cold_r["second_requests"] != 0 or cold_r["listed"] != n:
            failures.append(f"cold {n}: expected exactly 1 request, then none")
    limit = catalog.CONNECT_TIMEOUT + catalog.TOTAL_TIMEOUT
    first_size = next(iter(results["warm"].values()))
    warm_median = statistics.median(first_size["times"]["llm models"]["no plugins"])
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
    rounds = results["rounds"]
    load = " -> ".join(" ".join(f"{x:.2f}" for x in la) for la in results["loadavg"])
    print(
        f"\nWarm cache, {rounds} rounds alternated (configurations and sizes); python "
        f"{results['python']}, {results['cpus']} CPUs, load average {load}"
    )
    for n, warm_n in results["warm"].items():
        print(f"\n--- {n} models cached per plugin")
        print(
            f"{'command':<11} {'configuration':<15} {'median':>7} {'min':>7} "
            f"{'median vs none':>21} {'paired diff, 95% CI':>24} {'CPU med':>8} "
            f"{'CPU vs none':>11}"
        )
        for command, by_label in results["summary"][n].items():
            for label, row in by_label.items():
                delta = pair = cpu_delta = ""
                if label != "no plugins":
                    delta = f"{row['added_pct']:+.1f}% ({row['added_s'] * 1000:+.0f} ms)"
                    pair = (
                        f"{row['paired_mean_pct']:+.1f}% ({row['paired_mean_s'] * 1000:+.0f}"
                        f"±{row['paired_ci95_s'] * 1000:.0f} ms)"
                    )
                    cpu_delta = f"{row['cpu_added_pct']:+.1f}%"
                print(
                    f"{command:<11} {label:<15} {ms(row['median_s']):>7} {ms(row['min_s']):>7} "
                    f"{delta:>21} {pair:>24} {ms(row['cpu_median_s']):>8} {cpu_delta:>11}"
                )
        checks = warm_n["checks"]
        print(
            f"listed from the caches: llm-pinference "
            f"{checks['llm-pinference']['pinference_models']}, llm-openrouter "
            f"{checks['llm-openrouter']['openrouter_models']}; pinference cache "
            f"untouched: {checks['cache_untouched']}"
        )
        print("`llm models` inside the interpreter (start-up and exit excluded; paired, 95% CI)")
        for label, row in results["phases"][n].items():
            line = (
                f"{label:<15} import llm {ms(row['import_median_s']):>7}, run "
                f"{row['run_median_s'] * 1000:6.1f} ms"
            )
            if label != "no plugins":
                line += (
                    f"   added: import {row['import_added_s'] * 1000:+.1f}±"
                    f"{row['import_ci95_s'] * 1000:.1f} ms, run {row['run_added_s'] * 1000:+.1f}±"
                    f"{row['run_ci95_s'] * 1000:.1f} ms (median "
                    f"{row['run_added_median_s'] * 1000:+.1f}), both "
                    f"{row['total_added_s'] * 1000:+.1f}±{row['total_ci95_s'] * 1000:.1f} ms"
                )
            print(line)
        w = warm_n["plugin"]
        print(
            f"in-process: plugin import {w['import_s'] * 1000:.1f} ms; register_models for "
            f"{w['registered']} models: first {w['first_register_s'] * 1000:.1f} ms (imports + "
            f"files), from the files {w['register_file_s'] * 1000:.1f} ms, memoised "
            f"{w['register_memo_s'] * 1000:.1f} ms"
        )
        g = results["goals"][n]
        ratio = f"{g['run_ratio']:.2f}x" if g["run_ratio"] is not None else "n/a"
        if g["run_median_ratio"] is not None:
            ratio += f" (medians {g['run_median_ratio']:.2f}x)"
        print(
            f"goals: run phase added {ratio} llm-openrouter's (at most 0.5x: "
            f"{'met' if g['run_half_met'] else 'NOT met'}); whole process paired "
            f"{g['process_ours_s'] * 1000:+.0f} ms vs {g['process_peer_s'] * 1000:+.0f} ms "
            f"(below: {'met' if g['process_below_met'] else 'NOT met'})"
        )

    for n, c in results["cold"].items():
        print(f"\nCold start against the fake server ({n} models)")
        print(
            f"first `llm models`:  {ms(c['first_s']):>8}, {c['first_requests']} HTTP "
            f"request(s) ({c['first_list_requests']} GET /models), {c['listed']} models listed"
        )
        print(
            f"second `llm models`: {ms(c['second_s']):>8}, {c['second_requests']} HTTP request(s)"
        )

    print(
        f"\nOffline `llm models` (plugin timeouts: connect {catalog.CONNECT_TIMEOUT:g} s, "
        f"total {catalog.TOTAL_TIMEOUT:g} s; back-off {catalog.DEFAULT_BACKOFF:g} s)"
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


def sizes_arg(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="alternated rounds (default 15)")
    parser.add_argument(
        "--models",
        type=sizes_arg,
        default=[500, 5000],
        help="models per plugin cache, comma-separated sizes (default 500,5000)",
    )
    parser.add_argument("--offline-runs", type=int, default=4, help="runs per offline case")
    parser.add_argument("--quick", action="store_true", help="4 rounds, 2 offline runs")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args(argv)
    if not Path(LLM).exists():
        parser.error(f"{LLM} not found: run this with the project's virtualenv python")
    rounds = 4 if args.quick else args.rounds
    offline_runs = 2 if args.quick else args.offline_runs
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "rounds": rounds,
        "models": args.models,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "warm": warm(rounds, args.models),
        "cold": {n: cold(n) for n in args.models},
        "offline": offline(offline_runs),
    }
    results["loadavg"] = [load_before, os.getloadavg()]
    results["summary"] = {n: summary(w) for n, w in results["warm"].items()}
    results["phases"] = {n: phase_summary(w) for n, w in results["warm"].items()}
    results["goals"] = {
        n: goals(results["summary"][n], results["phases"][n]) for n in results["warm"]
    }
    results["failures"] = failed_checks(results)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
