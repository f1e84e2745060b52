"""The faults of the issue "Faults and hostile input" other than timed kill -9, as rows of a table.

benchmarks/faults.py kills runs at random moments itself; every other fault is injected by a
pytest test (tests/integration/test_faults.py, test_kill9.py, test_fuzz_input.py, test_ars.py),
because it needs a hook inside the process (a write that raises ENOSPC, an env that returns NaN)
or a planted file. This module runs those tests, one group per fault, and tabulates them:

    .venv/bin/python benchmarks/faults_pytest.py        # alone (faults.py runs it after its trials)

Columns: fault; cases (pytest cases, parametrisations counted; a hypothesis test is one case of
many generated inputs); survived (the case passed: each checks the one-line error or refusal, the
exit status, that the last checkpoint or policy still loads where there is one, and that no
process is left); not survived; skipped (with the reason: a package or a GPU this machine lacks);
and the longest case in seconds: an upper bound on the time to fail cleanly, since a case also
trains up to its fault and checks the files after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTS_TESTS = "tests/integration/test_faults.py"

# (the fault, the tests that inject it: pytest arguments: files or node ids, at most one -k for all)
GROUPS: list[tuple[str, list[str]]] = [
    (
        "kill -9 at chosen moments (the fast cases of the kill -9 table)",
        ["tests/integration/test_kill9.py"],
    ),
    (
        "disk full / I/O error (ENOSPC, EIO) writing checkpoint, policy, metrics, TensorBoard",
        [FAULTS_TESTS, "-k", "write_that_fails"],
    ),
    (
        "the env fails: raises in step/reset, wrong shape, not numbers, NaN/inf, a worker dies",
        [FAULTS_TESTS, "tests/integration/test_ppo.py", "-k", "env_that_fails or nan_from_env"],
    ),
    ("an async env hangs (env_timeout)", [FAULTS_TESTS, "-k", "hanging_async_env"]),
    (
        "Ray: a seed task, an ARS actor, a tuning trial killed; a cluster that cannot be reached",
        [FAULTS_TESTS, "tests/integration/test_ars.py", "-k", "killed_ray or unreachable_ray or killed_worker"],
    ),
    (
        "two runs, one folder; a stale lock; a finished run's folder; temp files left",
        [FAULTS_TESTS, "-k", "folder or lock or temp_files"],
    ),
    (
        "hostile files: memory bombs, tampered header, newer format, symlinks, named classes",
        [FAULTS_TESTS, "-k", "absurd_shapes or newer_format or naming_a_class"],
    ),
    ("episodes that never end (evaluation cap)", [FAULTS_TESTS, "-k", "time_limit"]),
    ("a resumed tuning study", [FAULTS_TESTS, "-k", "resumed_study"]),
    (
        "fuzzed input (hypothesis): --set values, preset files, CLI strings, non-finite numbers",
        ["tests/integration/test_fuzz_input.py", f"{FAULTS_TESTS}::test_non_finite_hyperparameters_are_refused"],
    ),
]


@dataclass
class GroupResult:
    fault: str
    cases: int
    passed: int
    failed: list[str]  # node names of cases that did not pass
    skipped: list[str]  # "name: reason"
    longest_seconds: float
    wall_seconds: float


def run_group(fault: str, arguments: list[str]) -> GroupResult:
    """Run one group's tests in a pytest process of their own; read its JUnit XML report."""
    with tempfile.TemporaryDirectory(prefix="pgrad-fault-tests-") as scratch:
        report = Path(scratch) / "report.xml"
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *arguments],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        wall = time.monotonic() - started
        cases = list(ElementTree.parse(report).iter("testcase")) if report.is_file() else []
    # a parametrisation with nothing in it (the empty list of known bugs) is no case
    cases = [c for c in cases if "empty parameter set" not in _skip_message(c)]
    failed = [c.get("name", "?") for c in cases if c.find("failure") is not None or c.find("error") is not None]
    skipped = [f"{c.get('name', '?')}: {_skip_message(c)}" for c in cases if c.find("skipped") is not None]
    if not cases:  # pytest itself failed (a collection error): the group did not run
        failed = ["(no test ran: pytest could not collect the group)"]
    return GroupResult(
        fault=fault,
        cases=len(cases),
        passed=len(cases) - len(failed) - len(skipped) if cases else 0,
        failed=failed,
        skipped=skipped,
        longest_seconds=max((float(c.get("time", 0.0)) for c in cases), default=0.0),
        wall_seconds=wall,
    )


def _skip_message(case: ElementTree.Element) -> str:
    skipped = case.find("skipped")
    return "" if skipped is None else skipped.get("message", "")


def table(results: list[GroupResult]) -> str:
    lines = [
        "| fault | cases | survived | not survived | skipped | longest case s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [r.fault, r.cases, r.passed, len(r.failed), len(r.skipped), f"{r.longest_seconds:.1f}"]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    total = [
        "**all**",
        sum(r.cases for r in results),
        sum(r.passed for r in results),
        sum(len(r.failed) for r in results),
        sum(len(r.skipped) for r in results),
        f"{max((r.longest_seconds for r in results), default=0.0):.1f}",
    ]
    lines.append("| " + " | ".join(str(cell) for cell in total) + " |")
    return "\n".join(lines)


def run_all(log=lambda line: print(line, file=sys.stderr)) -> list[GroupResult]:
    results = []
    for fault, arguments in GROUPS:
        result = run_group(fault, arguments)
        log(f"{fault}: {result.passed}/{result.cases} survived ({result.wall_seconds:.0f} s)")
        for name in result.failed:
            log(f"    NOT SURVIVED: {name}")
        for line in result.skipped:
            log(f"    skipped: {line}")
        results.append(result)
    return results


def main() -> int:
    started = time.monotonic()
    results = run_all()
    print(table(results))
    print(f"\n{sum(r.cases for r in results)} cases, {time.monotonic() - started:.0f} s")
    return 0 if not any(r.failed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
