"""Mutation testing: do the tests fail when the code is wrong?

    make mutation                          (every target below; minutes, not part of make test)
    make mutation MUTATE="llm_pinference/core/text.py rules"     (some targets only)
    make mutation MUTATE="--narrow llm_pinference/core/text.py"  (judged by test_text*.py)
    .venv/bin/python scripts/mutation.py --list                  (the targets and their tests)

Python modules: mutmut 3 (the `mutation` extra; shared settings in pyproject.toml's
[tool.mutmut]). Each module runs on its own, in a copy of the tree under build/mutation/,
judged by the tests of its folder (the tests mirror the packages: `tests_for` below); of
those, mutmut runs for each mutant only the tests that call the mutated function, fastest
first, stopping at the first failure.

Alert rules (`rules`): mutmut does not read PromQL, so this script mutates it: every number
and every duration in each rule's `expr` and `for` is doubled and halved (a zero becomes 1,
a ratio between 0.5 and 1 moves twice as far from 1 and half as far, 0.995 -> 0.99 and
0.9975), one at a time, and each mutant is judged by the promtool unit tests
(prometheus/tests/*.test.yml), fastest file first. tests/alerting/test_rules.py keeps a
curated list of such mutations in `make test`; this sweep finds the ones that list lacks.

The report (score per target, every survivor with its change) is printed and written to
build/mutation/report.md.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
BIN = Path(sys.executable).parent

# What is mutated, and the tests that judge it, from the layout: the tests mirror the
# packages, so a module's tests are those of its folder (tests/core for
# llm_pinference/core/*.py, tests/plugin for llm_pinference/*.py, tests/exporter for
# exporter/*.py), narrowed with --narrow to the files named for it (test_<module>*.py) when
# there are any. mutmut learns which test calls which function by running them once in its
# own process, then runs for each mutant only the tests that call it.
TEST_FOLDERS = {
    "llm_pinference/core": "tests/core",
    "llm_pinference": "tests/plugin",
    "exporter": "tests/exporter",
}


def modules() -> list[str]:
    """Every module a test folder judges (package markers and entry shims left out)."""
    found = []
    for package in TEST_FOLDERS:
        for path in sorted((ROOT / package).glob("*.py")):
            if path.name not in ("__init__.py", "__main__.py"):
                found.append(path.relative_to(ROOT).as_posix())
    return found


#: Left out of a plain `make mutation` for its time (its survivors each run ~40 s of real
#: socket timing tests): name it, or `all`, to run it.
SLOW = frozenset({"llm_pinference/core/transport.py"})
RULES_TARGET = "rules"
RULES = ROOT / "prometheus" / "pinference.rules.yml"
RULES_TESTS = ROOT / "prometheus" / "tests"
EDGE_RULE_TESTS = ROOT / "tests" / "alerting" / "test_rule_windows.py"
PROMTOOL_TIMEOUT = 120

# mutmut's verdicts: caught, not caught, and neither (reported, left out of the score).
CAUGHT = {"killed", "timeout", "caught by type check", "segfault"}
MISSED = {"survived", "no tests"}


@dataclass
class Outcome:
    target: str
    counts: Counter[str] = field(default_factory=Counter)
    survivors: list[tuple[str, str]] = field(default_factory=list)  # (name, change)
    seconds: float = 0.0
    error: str | None = None

    @property
    def caught(self) -> int:
        return sum(n for status, n in self.counts.items() if status in CAUGHT)

    @property
    def missed(self) -> int:
        return sum(n for status, n in self.counts.items() if status in MISSED)

    @property
    def score(self) -> float | None:
        judged = self.caught + self.missed
        return 100.0 * self.caught / judged if judged else None


def say(text: str) -> None:
    print(text, flush=True)


def project_files() -> list[str]:
    """The tree as it is now (tracked and new files, not ignored ones): what a copy holds."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [name for name in out.split("\0") if name and (ROOT / name).is_file()]


def copy_tree(dest: Path, files: Sequence[str]) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def tests_for(module: str, narrow: bool = False) -> list[str]:
    """The tests of the module's folder; with `narrow`, those named for it if any are."""
    folder = ROOT / TEST_FOLDERS[str(Path(module).parent)]
    named = sorted(folder.glob(f"test_{Path(module).stem}*.py")) if narrow else []
    return [(p.relative_to(ROOT).as_posix()) for p in named] or [
        folder.relative_to(ROOT).as_posix()
    ]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    raise TypeError(f"[tool.mutmut]: cannot write {value!r}")


def mutmut_config(module: str, narrow: bool) -> str:
    """pyproject.toml for one module's copy: [tool.mutmut] narrowed to it and its tests."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    settings = dict(tomllib.loads(text)["tool"]["mutmut"])
    settings["only_mutate"] = [module]
    settings["pytest_add_cli_args_test_selection"] = [*tests_for(module, narrow), "-m",
                                                      "not integration"]  # fmt: skip
    # Drop the shared section (up to the next table header) and write the narrowed one.
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    return text.rstrip("\n") + "\n\n[tool.mutmut]\n" + "\n".join(lines) + "\n"


def mutmut(work: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run mutmut in `work`; its output to `log` (progress spinners) or captured."""
    command = [str(BIN / "mutmut"), *args]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if log is None:
        return subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, check=False
        )
    with log.open("w") as out:
        return subprocess.run(
            command, cwd=work, env=env, stdout=out, stderr=out, text=True, check=False
        )


def changed_lines(diff: str) -> str:
    """The -/+ lines of a unified diff (the mutation itself), stripped of the headers."""
    lines = [
        line.rstrip()
        for line in diff.splitlines()
        if line[:1] in "-+" and not line.startswith(("---", "+++"))
    ]
    return "\n".join(lines)


def run_module(module: str, files: Sequence[str], jobs: int, narrow: bool) -> Outcome:
    outcome = Outcome(module)
    started = time.monotonic()
    work = WORK / module.replace("/", ".").removesuffix(".py")
    copy_tree(work, files)
    (work / "pyproject.toml").write_text(mutmut_config(module, narrow), encoding="utf-8")
    # The installed name of the exporter (pinference_exporter) must load the mutants too:
    # the editable install maps it to the source tree, which the copy's sys.path outranks.
    (work / "mutants").mkdir()
    (work / "mutants" / "pinference_exporter").symlink_to("exporter", target_is_directory=True)
    # mutmut copies the source paths and the tests; the harness the tests import stays out.
    (work / "mutants" / "harness").symlink_to("../harness", target_is_directory=True)
    log = work / "mutmut.log"
    run = mutmut(work, "run", "--max-children", str(jobs), log=log)
    results = mutmut(work, "results", "--all", "true")
    for line in results.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            outcome.counts[status] += 1
            if status in MISSED:
                shown = mutmut(work, "show", name).stdout
                outcome.survivors.append((f"{name} ({status})", changed_lines(shown)))
    if run.returncode != 0 or not outcome.counts:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        outcome.error = f"mutmut exited with {run.returncode}; {log}:\n{tail}"
    outcome.seconds = time.monotonic() - started
    return outcome


# ------------------------------------------------------------------ alert rules

# Strings are left alone (label values, regexes); durations before numbers: `5m` is one.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LITERAL = re.compile(
    r"(?<![\w.:])(?:(?P<duration>(?:\d+(?:ms|[smhdwy]))+)|(?P<number>\d+(?:\.\d+)?))(?![\w.])"
)


@dataclass(frozen=True)
class RuleMutant:
    group: int
    index: int
    rule: str
    field: str
    start: int
    end: int
    new: str

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        rule = doc["groups"][self.group]["rules"][self.index]
        text = rule[self.field]
        rule[self.field] = text[: self.start] + self.new + text[self.end :]
        return doc

    def describe(self, doc: dict[str, Any]) -> str:
        text = doc["groups"][self.group]["rules"][self.index][self.field]
        line_start = text.rfind("\n", 0, self.start) + 1
        line_end = text.find("\n", self.end)
        line = text[line_start : None if line_end < 0 else line_end]
        at = self.start - line_start
        mutated = line[:at] + self.new + line[at + self.end - self.start :]
        return f"- {line.strip()}\n+ {mutated.strip()}"


def _number_text(value: float) -> str:
    return f"{round(value, 10):g}"


def number_variants(text: str) -> list[str]:
    value = float(text)
    if value == 0:
        return ["1"]
    if 0.5 < value < 1:  # an objective or a quantile: its distance to 1 is what matters
        return [_number_text(1 - (1 - value) * 2), _number_text(1 - (1 - value) / 2)]
    return [_number_text(value * 2), _number_text(value / 2)]


def duration_variants(text: str) -> list[str]:
    from llm_pinference.core.text import format_duration, parse_duration

    seconds = parse_duration(text)
    if seconds == 0:
        return ["1m"]  # one evaluation interval of the unit tests
    return [format_duration(seconds * 2), format_duration(seconds / 2)]


def literal_sites(text: str) -> Iterator[tuple[int, int, str, list[str]]]:
    masked = _STRING.sub(lambda m: " " * len(m.group()), text)
    for match in _LITERAL.finditer(masked):
        old = match.group()
        variants = duration_variants(old) if match["duration"] else number_variants(old)
        yield match.start(), match.end(), old, variants


def rule_mutants(doc: dict[str, Any]) -> list[RuleMutant]:
    mutants = []
    for g, group in enumerate(doc["groups"]):
        for i, rule in enumerate(group["rules"]):
            name = rule.get("alert") or rule.get("record")
            for key in ("expr", "for"):
                value = rule.get(key)
                if not isinstance(value, str):
                    continue
                for start, end, _, variants in literal_sites(value):
                    mutants.extend(RuleMutant(g, i, name, key, start, end, v) for v in variants)
    return mutants


@dataclass(frozen=True)
class TestGroup:
    """One group of a promtool test file, runnable alone (groups have their own series)."""

    name: str  # file: group
    doc: dict[str, Any]  # the file with only this group
    text: str  # the group as written: which rules it can see
    seconds: float = 0.0

    def run(self, rules_file: Path, out: Path) -> str | None:
        """None if the group passes against `rules_file`, else why it does not."""
        import yaml

        out.write_text(yaml.safe_dump({**self.doc, "rule_files": [str(rules_file)]}))
        try:
            result = subprocess.run(
                ["promtool", "test", "rules", str(out)],
                capture_output=True,
                text=True,
                timeout=PROMTOOL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"{self.name}: timeout"
        return None if result.returncode == 0 else self.name


def edge_rule_files() -> dict[str, dict[str, Any]]:
    """The promtool cases kept in tests/alerting/test_rule_windows.py (PROMTOOL_FILES)."""
    if not EDGE_RULE_TESTS.exists():
        return {}
    sys.path.insert(0, str(ROOT))  # its own imports (tests.alerting.helpers)
    spec = importlib.util.spec_from_file_location(EDGE_RULE_TESTS.stem, EDGE_RULE_TESTS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.PROMTOOL_FILES)


def test_groups() -> list[TestGroup]:
    import yaml

    files = {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(RULES_TESTS.glob("*.test.yml"))
    }
    files.update(
        {f"{EDGE_RULE_TESTS.name}: {name}": doc for name, doc in edge_rule_files().items()}
    )
    groups = []
    for file, doc in files.items():
        for test in doc["tests"]:
            name = f"{file}: {test['name']}"
            groups.append(TestGroup(name, {**doc, "tests": [test]}, yaml.safe_dump(test)))
    return groups


def seen_by(rule: str, doc: dict[str, Any]) -> set[str]:
    """The rule and every rule reading it, directly or not: what a test group must name
    to be able to notice a change of `rule`."""
    exprs = {
        r.get("alert") or r.get("record"): r["expr"] for g in doc["groups"] for r in g["rules"]
    }
    names, grown = {rule}, True
    while grown:
        readers = {
            name
            for name, expr in exprs.items()
            if any(re.search(rf"(?<![\w:]){re.escape(n)}(?![\w:])", expr) for n in names)
        }
        grown = not readers <= names
        names |= readers
    return names


def run_rules(jobs: int) -> Outcome:
    import yaml

    outcome = Outcome(RULES_TARGET)
    started = time.monotonic()
    if shutil.which("promtool") is None:
        outcome.error = "promtool not found (Debian: apt-get install prometheus)"
        return outcome
    work = WORK / RULES_TARGET
    if work.exists():
        shutil.rmtree(work)
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))

    # Every group passes alone on the unmutated rules, written the way the mutants are;
    # timed, so that each mutant meets the fastest groups first.
    clean = work / "clean"
    clean.mkdir(parents=True)
    (clean / "rules.yml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    groups = []
    for number, group in enumerate(test_groups()):
        begun = time.monotonic()
        failed = group.run(clean / "rules.yml", clean / f"g{number:02d}.yml")
        if failed:
            outcome.error = f"the unmutated rules fail {failed}: fix that first"
            return outcome
        groups.append(TestGroup(group.name, group.doc, group.text, time.monotonic() - begun))
    groups.sort(key=lambda group: group.seconds)

    mutants = rule_mutants(doc)
    say(f"  {len(mutants)} mutants of {RULES.relative_to(ROOT)}, {len(groups)} test groups")

    def judge(number: int) -> str | None:
        mutant = mutants[number]
        folder = work / f"m{number:03d}"
        folder.mkdir()
        rules_file = folder / "rules.yml"
        rules_file.write_text(yaml.safe_dump(mutant.apply(doc), sort_keys=False))
        names = seen_by(mutant.rule, doc)
        for index, group in enumerate(groups):
            if any(name in group.text for name in names):
                failed = group.run(rules_file, folder / f"g{index:02d}.yml")
                if failed:
                    return failed
        return None

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        verdicts = list(pool.map(judge, range(len(mutants))))
    for mutant, failed in zip(mutants, verdicts, strict=True):
        if failed is None:
            outcome.counts["survived"] += 1
            outcome.survivors.append((f"{mutant.rule} ({mutant.field})", mutant.describe(doc)))
        else:
            outcome.counts["timeout" if failed.endswith("timeout") else "killed"] += 1
    outcome.seconds = time.monotonic() - started
    return outcome


# ------------------------------------------------------------------ report


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def report(outcomes: Sequence[Outcome], total_seconds: float, jobs: int) -> str:
    lines = [
        f"Mutation testing ({jobs} workers, {minutes(total_seconds)} in all)",
        "",
        "| target | mutants | caught | survived | score | time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        score = "error" if o.error else (f"{o.score:.1f}%" if o.score is not None else "-")
        lines.append(
            f"| {o.target} | {sum(o.counts.values())} | {o.caught} | {o.missed} | {score} "
            f"| {minutes(o.seconds)} |"
        )
    caught, missed = sum(o.caught for o in outcomes), sum(o.missed for o in outcomes)
    if caught + missed:
        lines.append(
            f"| all | {caught + missed} | {caught} | {missed} "
            f"| {100 * caught / (caught + missed):.1f}% | {minutes(total_seconds)} |"
        )
    for o in outcomes:
        other = {s: n for s, n in o.counts.items() if s not in CAUGHT | MISSED}
        if other:
            lines += ["", f"{o.target}: not judged: {other}"]
        if o.error:
            lines += ["", f"{o.target}: ERROR {o.error}"]
        if o.survivors:
            lines += ["", f"## Survivors: {o.target}", ""]
            for name, change in o.survivors:
                lines += [f"{name}", "```diff", change, "```"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "targets",
        nargs="*",
        help=f"modules (paths as in --list) and/or {RULES_TARGET!r}, or `all` (default: all "
        "but the slow ones)",
    )
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--list", action="store_true", help="show the targets and their tests")
    parser.add_argument(
        "--narrow", action="store_true", help="judge a module by test_<module>*.py only, if any"
    )
    args = parser.parse_args(argv)
    targets_known = modules()

    if args.list:
        for module in targets_known:
            slow = " (slow: not run by default)" if module in SLOW else ""
            say(f"{module}{slow}: {' '.join(tests_for(module, args.narrow))}")
        say(f"{RULES_TARGET}: {RULES.relative_to(ROOT)} against {RULES_TESTS.relative_to(ROOT)}")
        return 0
    if args.targets == ["all"]:
        targets = [*targets_known, RULES_TARGET]
    else:
        targets = args.targets or [*(t for t in targets_known if t not in SLOW), RULES_TARGET]
    unknown = [t for t in targets if t not in targets_known and t != RULES_TARGET]
    if unknown:
        parser.error(f"unknown target(s) {' '.join(unknown)}; see --list")
    if not (BIN / "mutmut").exists() and any(t in targets_known for t in targets):
        parser.error(f"{BIN / 'mutmut'} not found: install the `mutation` extra (make mutation)")

    WORK.mkdir(parents=True, exist_ok=True)
    files = project_files()
    started = time.monotonic()
    outcomes = []
    for target in targets:
        say(f"mutation: {target}")
        if target == RULES_TARGET:
            outcome = run_rules(args.jobs)
        else:
            outcome = run_module(target, files, args.jobs, args.narrow)
        score = "error" if outcome.error else f"{outcome.score or 0:.1f}%"
        say(
            f"  {score}: {outcome.caught} caught, {outcome.missed} survived, "
            f"{minutes(outcome.seconds)}"
        )
        outcomes.append(outcome)
    text = report(outcomes, time.monotonic() - started, args.jobs)
    (WORK / "report.md").write_text(text, encoding="utf-8")
    say("\n" + text)
    say(f"(also in {(WORK / 'report.md').relative_to(ROOT)})")
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
